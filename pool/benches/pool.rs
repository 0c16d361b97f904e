//! Criterion benchmarks of the ledgers (filled in by the benchmark work).
fn main() {}
