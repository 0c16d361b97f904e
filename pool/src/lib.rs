//! A minimal Ollama load-balancing pool with swappable bookkeeping, the thing this project
//! measures.
//!
//! It models the request path of SOLLOL's `OllamaPool` (count, select, mark active, send, record,
//! un-mark; fail over on node errors) with the shared state behind one of three ledgers:
//!
//! | ledger | synchronisation | models |
//! |---|---|---|
//! | [`MutexLedger`] | one `std::sync::Mutex`, scope set by [`LockScope`] | SOLLOL today |
//! | [`AtomicLedger`] | atomics, padded per-node slots, RCU node list | the plan's fix |
//! | [`BareLedger`] | a round-robin cursor only | FlockParser-legacy |
//!
//! All three share the request path ([`Pool`]), the routing code ([`strategy`]) and the stats type
//! ([`PoolStats`], SOLLOL's `get_stats()` keys), so any difference the harness measures comes from
//! synchronisation. The ledgers are generic over a [`sync::SyncFamily`], which lets the loom
//! models run the shipped code under a plain `cargo test`.
//!
//! ```no_run
//! use pool::{AtomicLedger, Pool, PoolConfig};
//! let pool = Pool::new(AtomicLedger::new(), PoolConfig::default(), &["http://127.0.0.1:11434"])?;
//! let reply = pool.embed("mxbai-embed-large", "some text")?;
//! println!("{} dims from {}", reply.value.embeddings[0].len(), reply.node);
//! println!("{}", serde_json::to_string_pretty(&pool.stats()).unwrap());
//! # Ok::<(), pool::PoolError>(())
//! ```
#![forbid(unsafe_code)]

pub mod error;
pub mod ledger;
pub mod lock_timing;
pub mod node;
mod pool;
pub mod prober;
pub mod stats;
pub mod strategy;
pub mod sync;

#[cfg(test)]
mod tests;

pub use error::{FailureReason, NodeFailure, PoolError};
pub use ledger::{AtomicLedger, BareLedger, Ledger, MutexLedger, Outcome, Steps, simulate_request};
pub use lock_timing::LockTimingSummary;
pub use node::NodeAddr;
pub use pool::{
    ChatMessage, ChatResponse, EmbedResponse, GenerateResponse, LockScope, Pool, PoolConfig, Reply,
};
pub use prober::ProbeConfig;
pub use stats::{NodePerformance, PoolStats};
pub use strategy::Strategy;
