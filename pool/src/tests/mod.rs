//! Race verification of the ledgers: loom models, proptest properties, in-memory stress, and the
//! canary that shows each checker can fail.
//!
//! These live inside the crate (not in `tests/`) because the loom family and the racy canary
//! family are compiled only under `cfg(test)`, and an integration test cannot see them.
//!
//! | checker | proves | cannot prove |
//! |---|---|---|
//! | [`loom_models`] | every interleaving (and every allowed stale read) of 2-3 threads, up to the preemption bound | anything beyond 4 threads or the bound; arc-swap's internals (modelled by a lock) |
//! | [`properties`] | sequential equivalence to a plain model, and exact totals on real threads with random shapes | a race the OS scheduler never produced |
//! | [`stress`] | the plan's Test 2 (100 threads x 1,000) is exact | as above: luck, not proof |
//! | [`canary`] | that the three checkers above catch a real lost update | - |

mod canary;
mod exchange;
mod lock_scope;
mod loom_models;
mod properties;
mod state_machine;
mod stress;
mod twins;

use std::time::Duration;

use crate::ledger::{AtomicCore, MutexCore, Outcome};
use crate::sync::StdSync;

/// The atomic ledger on std primitives, as it ships.
pub(crate) type StdAtomic = AtomicCore<StdSync>;
/// The mutex ledger on std primitives, as it ships.
pub(crate) type StdMutex = MutexCore<StdSync>;

/// One request's full bookkeeping (the crate's own [`crate::ledger::simulate_request`]).
pub(crate) use crate::ledger::simulate_request as one_request;

/// A successful attempt of `micros` microseconds.
pub(crate) fn success(micros: u64) -> Outcome {
    Outcome::Success {
        latency: Duration::from_micros(micros),
    }
}
