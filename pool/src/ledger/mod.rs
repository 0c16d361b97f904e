//! The bookkeeping of one request, and the three ways of synchronising it.
//!
//! SOLLOL's `_make_request` touches shared state at five points: count the request, select a node
//! (reading per-node state), mark the node active, record the result, un-mark it. [`Steps`] names
//! those points; the pool's request path (`crate::pool`) is written once against it. A
//! [`LedgerCore`] owns the state and hands out `Steps`:
//!
//! - [`MutexCore`]: one lock over everything, taken at each point, as SOLLOL does; it can also be
//!   held across a whole request ([`LedgerCore::run`] with `hold_lock`), the plan's diagram.
//! - [`AtomicCore`]: atomics in cache-padded per-node slots, a lock-free cursor and an RCU node
//!   list, the plan's proposal done properly.
//! - [`BareLedger`]: a round-robin cursor and nothing else, FlockParser-legacy's client.
//!
//! The cores are generic over [`crate::sync::SyncFamily`] so the loom models check the shipped
//! code; that parameter and every trait here stay inside the crate. What a user sees is
//! [`Ledger`], one enum over the three std-backed ledgers ([`MutexLedger`] carries its
//! [`LockScope`]), so a pool is one type whatever its bookkeeping.

mod any;
mod atomic;
mod bare;
mod mutex;

use std::time::Duration;

pub(crate) use any::with_core;
pub use any::{Ledger, LockScope};
#[cfg(test)]
pub(crate) use atomic::AtomicCore;
pub use atomic::AtomicLedger;
pub use bare::BareLedger;
#[cfg(test)]
pub(crate) use mutex::MutexCore;
pub use mutex::MutexLedger;

use crate::error::PoolError;
use crate::node::NodeAddr;
use crate::stats::PoolStats;
use crate::strategy::Strategy;

/// How an attempt on a node ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The node answered; the request is done.
    Success {
        /// Time from sending to the complete answer.
        latency: Duration,
    },
    /// The node failed (connect error, timeout, 5xx, bad body); the pool tries another node.
    NodeFault,
    /// The node refused the request (4xx). The node did its job, so it is not counted as a node
    /// failure; the request fails without retry.
    ClientFault,
}

/// A node chosen for one attempt.
pub(crate) trait Picked {
    /// The node's address.
    fn node(&self) -> &NodeAddr;
}

/// The five bookkeeping points of one request, plus the failure count.
///
/// Call order for a request: `begin`, then per attempt `select`, `mark_active` (retry `select` if
/// it returns false), `record`, `unmark_active`; `fail` once if no attempt succeeded.
pub(crate) trait Steps {
    /// The chosen node, as this ledger tracks it.
    type Pick: Picked;
    /// Counts a new request.
    fn begin(&mut self);
    /// Chooses a node not in `tried` (node ids), or `None` when no candidate is left.
    fn select(&mut self, strategy: Strategy, tried: &[u64]) -> Option<Self::Pick>;
    /// Marks the node busy; false when it was removed since `select` (choose again).
    fn mark_active(&mut self, pick: &Self::Pick) -> bool;
    /// Records the attempt's outcome.
    fn record(&mut self, pick: &Self::Pick, outcome: Outcome);
    /// Undoes `mark_active`.
    fn unmark_active(&mut self, pick: &Self::Pick);
    /// Counts the request as failed.
    fn fail(&mut self);
}

/// A request body generic over the ledger's `Steps` (a closure cannot be generic, a trait can).
pub(crate) trait RequestBody {
    /// What the request returns.
    type Output;
    /// Runs the request against `steps`.
    fn run<S: Steps>(self, steps: &mut S) -> Self::Output;
}

/// Shared request state: bookkeeping, node membership, probing and stats.
pub(crate) trait LedgerCore: Send + Sync + 'static {
    /// Per-point bookkeeping: each call synchronises on its own.
    fn steps(&self) -> impl Steps + '_;

    /// Runs one request. With `hold_lock` a ledger that has a global lock holds it for the whole
    /// request, I/O included; ledgers without one ignore the flag.
    fn run<B: RequestBody>(&self, hold_lock: bool, body: B) -> B::Output;

    /// Adds a node with its `host:port` key and base URL.
    fn add_node(&self, key: &str, url: &str) -> Result<NodeAddr, PoolError>;

    /// Removes the node with `key`. When this returns, no request is in flight to the node and
    /// none will be sent to it.
    fn remove_node(&self, key: &str) -> Result<NodeAddr, PoolError>;

    /// The current nodes, in pool order.
    fn nodes(&self) -> Vec<NodeAddr>;

    /// Runs `check` on every node and stores the verdict as the node's availability. With
    /// `hold_lock` a ledger with a global lock holds it across all checks, as SOLLOL's health and
    /// VRAM loops do.
    fn probe(&self, hold_lock: bool, check: &mut dyn FnMut(&NodeAddr) -> bool);

    /// A consistent-enough copy of the statistics (see each ledger for its guarantee).
    fn snapshot(&self, strategy: Strategy) -> PoolStats;
}

/// One request's whole bookkeeping with a single attempt and no I/O, exactly as the pool's request
/// path calls the steps. Benchmarks and models use it to measure or check the ledger alone.
/// Returns the chosen node's id, or `None` when no node could be chosen.
pub(crate) fn simulate_request<S: Steps>(
    steps: &mut S,
    strategy: Strategy,
    outcome: Outcome,
) -> Option<u64> {
    steps.begin();
    let Some(pick) = steps.select(strategy, &[]) else {
        steps.fail();
        return None;
    };
    let id = pick.node().id;
    let Some(mut active) = ActiveGuard::mark(steps, pick) else {
        steps.fail();
        return None;
    };
    active.record(outcome);
    drop(active);
    if !matches!(outcome, Outcome::Success { .. }) {
        steps.fail();
    }
    Some(id)
}

/// Un-marks a node when dropped, so the active gauge returns to zero on every path, panics and
/// early returns included.
pub(crate) struct ActiveGuard<'s, S: Steps> {
    steps: &'s mut S,
    pick: S::Pick,
}

impl<'s, S: Steps> ActiveGuard<'s, S> {
    /// Marks `pick` active; `None` if the node was removed meanwhile.
    pub(crate) fn mark(steps: &'s mut S, pick: S::Pick) -> Option<Self> {
        // Not `then_some`: its argument is built even when the mark is refused, and dropping that
        // guard would un-mark a node this request never marked.
        if steps.mark_active(&pick) {
            Some(Self { steps, pick })
        } else {
            None
        }
    }

    /// The node this guard keeps active.
    pub(crate) fn node(&self) -> &NodeAddr {
        self.pick.node()
    }

    /// Records the attempt's outcome (the un-mark still happens on drop).
    pub(crate) fn record(&mut self, outcome: Outcome) {
        self.steps.record(&self.pick, outcome);
    }
}

impl<S: Steps> Drop for ActiveGuard<'_, S> {
    fn drop(&mut self) {
        self.steps.unmark_active(&self.pick);
    }
}
