//! [`Ledger`]: the one public handle on a pool's bookkeeping, whichever of the three it is.
//!
//! The request path is generic over the crate-private [`LedgerCore`] (so each ledger is
//! monomorphised, and the loom models run the same code); this enum is the type erasure a caller
//! would otherwise write, with one `match` per call, so [`crate::Pool`] is a single type.

use serde::{Deserialize, Serialize};

use super::{AtomicLedger, BareLedger, LedgerCore, MutexLedger, RequestBody};
use crate::error::PoolError;
use crate::lock_timing::LockTimingSummary;
use crate::node::NodeAddr;
use crate::stats::PoolStats;
use crate::strategy::Strategy;

/// What [`MutexLedger`]'s global lock covers besides the bookkeeping itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockScope {
    /// Bookkeeping only; the lock is released before any I/O (what the plan's code shows).
    #[default]
    Counters,
    /// Also the background health/VRAM probe's HTTP calls, as SOLLOL's loops do.
    Probe,
    /// The whole HTTP exchange (the plan's thread diagram).
    Request,
}

/// A pool's bookkeeping: one of the three ledgers. Built with `.into()` from any of them.
// One per pool, behind an `Arc`: the padding costs nothing, a `Box` would cost a pointer chase on
// every request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Ledger {
    /// One global lock ([`MutexLedger`]).
    Mutex(MutexLedger),
    /// Atomics ([`AtomicLedger`]).
    Atomic(AtomicLedger),
    /// A round-robin cursor only ([`BareLedger`]).
    Bare(BareLedger),
}

impl From<MutexLedger> for Ledger {
    fn from(ledger: MutexLedger) -> Self {
        Ledger::Mutex(ledger)
    }
}

impl From<AtomicLedger> for Ledger {
    fn from(ledger: AtomicLedger) -> Self {
        Ledger::Atomic(ledger)
    }
}

impl From<BareLedger> for Ledger {
    fn from(ledger: BareLedger) -> Self {
        Ledger::Bare(ledger)
    }
}

/// Runs `$body` with `$core` bound to the ledger's [`LedgerCore`].
macro_rules! with_core {
    ($ledger:expr, $core:ident => $body:expr) => {
        match $ledger {
            Ledger::Mutex(m) => {
                let $core = m.core();
                $body
            }
            Ledger::Atomic(a) => {
                let $core = a.core();
                $body
            }
            Ledger::Bare(b) => {
                let $core = b;
                $body
            }
        }
    };
}
pub(crate) use with_core;

impl Ledger {
    /// `mutex`, `atomic` or `bare`.
    pub fn kind(&self) -> &'static str {
        match self {
            Ledger::Mutex(_) => "mutex",
            Ledger::Atomic(_) => "atomic",
            Ledger::Bare(_) => "bare",
        }
    }

    /// The mutex ledger's lock scope; `None` for ledgers without a lock.
    pub fn lock_scope(&self) -> Option<LockScope> {
        match self {
            Ledger::Mutex(m) => Some(m.scope()),
            _ => None,
        }
    }

    /// Lock wait and hold percentiles of an instrumented mutex ledger; `None` otherwise.
    pub fn lock_timings(&self) -> Option<LockTimingSummary> {
        match self {
            Ledger::Mutex(m) => m.lock_timings(),
            _ => None,
        }
    }

    /// Whether the ledger routes by `strategy` (the bare ledger only knows round-robin).
    pub(crate) fn supports(&self, strategy: Strategy) -> bool {
        !matches!(self, Ledger::Bare(_)) || strategy == Strategy::RoundRobin
    }

    /// Runs one request; a mutex ledger scoped to [`LockScope::Request`] holds its lock across it.
    pub(crate) fn run<B: RequestBody>(&self, body: B) -> B::Output {
        let hold = self.lock_scope() == Some(LockScope::Request);
        with_core!(self, core => core.run(hold, body))
    }

    /// One probe round; a mutex ledger scoped to [`LockScope::Probe`] holds its lock across it.
    pub(crate) fn probe(&self, check: &mut dyn FnMut(&NodeAddr) -> bool) {
        let hold = self.lock_scope() == Some(LockScope::Probe);
        with_core!(self, core => core.probe(hold, check))
    }

    pub(crate) fn stick_cursor(&mut self) {
        match self {
            Ledger::Mutex(m) => m.core_mut().stick_cursor(),
            Ledger::Atomic(a) => a.core_mut().stick_cursor(),
            Ledger::Bare(b) => b.stick_cursor(),
        }
    }

    pub(crate) fn add_node(&self, key: &str, url: &str) -> Result<NodeAddr, PoolError> {
        with_core!(self, core => core.add_node(key, url))
    }

    pub(crate) fn remove_node(&self, key: &str) -> Result<NodeAddr, PoolError> {
        with_core!(self, core => core.remove_node(key))
    }

    pub(crate) fn nodes(&self) -> Vec<NodeAddr> {
        with_core!(self, core => core.nodes())
    }

    pub(crate) fn snapshot(&self, strategy: Strategy) -> PoolStats {
        with_core!(self, core => core.snapshot(strategy))
    }
}
