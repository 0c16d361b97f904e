//! Capacity benchmark of one mock node (filled in by the benchmark work).
fn main() {}
