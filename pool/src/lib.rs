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
//! All three share the request path ([`Pool`]) and the stats type ([`PoolStats`], SOLLOL's
//! `get_stats()` keys); the mutex and atomic ledgers also share the routing code (every
//! [`Strategy`]), while the bare ledger routes round-robin only and refuses any other strategy.
//! So a difference the harness measures between the first two comes from synchronisation.
//!
//! # Examples
//!
//! A pool is one type whatever its ledger; building it sends nothing.
//!
//! ```
//! use pool::{LockScope, MutexLedger, Pool, PoolConfig, Strategy};
//!
//! let config = PoolConfig { strategy: Strategy::LeastLoaded, ..PoolConfig::default() };
//! let ledger = MutexLedger::new(LockScope::Counters);
//! let pool = Pool::new(ledger, config, &["http://127.0.0.1:11434", "127.0.0.1:11435"])?;
//! let stats = pool.stats();
//! assert_eq!(stats.nodes, ["127.0.0.1:11434", "127.0.0.1:11435"]);
//! assert_eq!(stats.routing_strategy, "least_loaded");
//! assert_eq!(pool.ledger().lock_scope(), Some(LockScope::Counters));
//! # Ok::<(), pool::PoolError>(())
//! ```
//!
//! Requests block the calling thread and fail over between nodes:
//!
//! ```no_run
//! use pool::{AtomicLedger, Pool, PoolConfig};
//!
//! let pool = Pool::new(AtomicLedger::new(), PoolConfig::default(), &["http://127.0.0.1:11434"])?;
//! let reply = pool.embed("mxbai-embed-large", "some text")?;
//! println!("{} dims from {}", reply.value.embeddings[0].len(), reply.node);
//! let batch = pool.embed("mxbai-embed-large", ["one", "two"])?;
//! assert_eq!(batch.value.embeddings.len(), 2);
//! # Ok::<(), pool::PoolError>(())
//! ```
//!
//! [`testing`] holds the hooks benchmarks and the gate's self-test use (bookkeeping without I/O,
//! deliberately degraded pools); it is not part of the request API.
#![forbid(unsafe_code)]

mod api;
mod error;
mod http;
mod ledger;
mod lock_timing;
mod node;
mod pool;
mod prober;
mod stats;
mod strategy;
mod sync;
pub mod testing;
mod wrap;

#[cfg(test)]
mod tests;

pub use api::{ChatMessage, ChatResponse, EmbedInput, EmbedResponse, GenerateResponse, Reply};
pub use error::{FailureReason, NodeFailure, PoolError};
pub use http::{AttemptError, Http, HttpClient, HttpConfig, Transport};
pub use ledger::{AtomicLedger, BareLedger, Ledger, LockScope, MutexLedger};
pub use lock_timing::{LockTimingSummary, Percentiles};
pub use node::NodeAddr;
pub use pool::{Pool, PoolConfig};
pub use prober::ProbeConfig;
pub use stats::{NodePerformance, PoolStats};
pub use strategy::Strategy;
pub use wrap::{Plain, Wrap};
