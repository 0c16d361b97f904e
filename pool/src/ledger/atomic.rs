//! [`AtomicLedger`]: the plan's atomics, with the details the plan leaves out. [`AtomicCore`] is
//! generic over the sync family for the loom models; `AtomicLedger` is the std-backed one.
//!
//! - Global counters and the round-robin cursor each sit on their own cache line, and each node's
//!   counters share one padded slot, so unrelated updates never false-share.
//! - The node list is RCU (`arc-swap` in production): a request reads it without blocking, and
//!   adding or removing a node publishes a new list without blocking any request.
//! - Mean latency is kept as an atomic sum and count, never as a read-modify-write of an average
//!   (which would lose updates exactly as the Python `+=` does).
//!
//! # Orderings
//! Independent counters only need `Relaxed` (a read-modify-write always acts on the latest value,
//! so no increment is lost). Two cross-counter properties need more, and the loom models check
//! both:
//! - *A snapshot never shows effects before causes* (`failed <= total`, `successful + failed <=
//!   total`, per-node totals within the global total). Writers bump the cause first and publish
//!   the effect with `Release`; [`AtomicLedger::snapshot`] reads effects first with `Acquire` and
//!   causes last, so every effect it saw has its cause visible.
//! - *No request reaches a node after `remove_node` returns*. A request increments the node's
//!   `active` and then reads `removed`; the remover sets `removed` and then waits for `active` to
//!   reach zero. A `SeqCst` fence between the write and the read on both sides guarantees that at
//!   least one of them sees the other (Dekker): either the request backs off, or the remover waits
//!   for it. (Fences rather than `SeqCst` accesses because loom models the former exactly; the
//!   loom model of this handshake failed with `SeqCst` accesses, a known loom false alarm.)

use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use crossbeam_utils::CachePadded;

use crate::error::PoolError;
use crate::ledger::{LedgerCore, Outcome, Picked, RequestBody, Steps};
use crate::node::NodeAddr;
use crate::stats::{PoolStats, Totals};
use crate::strategy::{NodeReading, Strategy, choose};
use crate::sync::{Counter, Lock, Rcu, StdSync, SyncFamily};

/// One node's counters, kept together on their own cache line(s).
#[derive(Debug)]
struct Slot<S: SyncFamily> {
    active: S::Counter,
    total: S::Counter,
    failed: S::Counter,
    latency_sum_us: S::Counter,
    latency_count: S::Counter,
    available: S::Counter,
    removed: S::Counter,
}

/// A node and its counters.
#[derive(Debug)]
pub(crate) struct AtomicNode<S: SyncFamily> {
    addr: NodeAddr,
    slot: CachePadded<Slot<S>>,
}

impl<S: SyncFamily> AtomicNode<S> {
    fn new(addr: NodeAddr) -> Self {
        let zero = || S::Counter::new(0);
        Self {
            addr,
            slot: CachePadded::new(Slot {
                active: zero(),
                total: zero(),
                failed: zero(),
                latency_sum_us: zero(),
                latency_count: zero(),
                available: S::Counter::new(1),
                removed: zero(),
            }),
        }
    }

    /// Reads effects before causes (see the module's "Orderings").
    fn reading(&self) -> NodeReading {
        let s = &self.slot;
        let failed = s.failed.load(Acquire);
        // Count before sum, Acquire: every counted latency has its sum visible, so the mean never
        // reads low (it may read high by a sample in flight, which routing tolerates).
        let latency_count = s.latency_count.load(Acquire);
        let latency_sum_us = s.latency_sum_us.load(Relaxed);
        let total = s.total.load(Acquire);
        NodeReading {
            active: s.active.load(Relaxed),
            total,
            failed,
            latency_sum_us,
            latency_count,
            available: s.available.load(Relaxed) != 0,
        }
    }
}

/// A node chosen for one attempt: a handle to its counters, valid even after removal.
#[derive(Debug)]
pub(crate) struct AtomicPick<S: SyncFamily>(Arc<AtomicNode<S>>);

impl<S: SyncFamily> Picked for AtomicPick<S> {
    fn node(&self) -> &NodeAddr {
        &self.0.addr
    }
}

type NodeList<S> = Vec<Arc<AtomicNode<S>>>;

/// Atomic counters, padded per-node slots, a lock-free cursor and an RCU node list, on `S`'s
/// primitives.
pub(crate) struct AtomicCore<S: SyncFamily> {
    total: CachePadded<S::Counter>,
    successful: CachePadded<S::Counter>,
    failed: CachePadded<S::Counter>,
    cursor: CachePadded<S::Counter>,
    /// 1, or 0 for `testing::degraded_pool`'s stuck round-robin; fixed before the ledger is shared.
    cursor_step: u64,
    nodes: S::Rcu<NodeList<S>>,
    /// Serialises membership changes (rare) so ids and duplicate checks are exact; requests
    /// never take it.
    membership: S::Lock<u64>,
}

impl<S: SyncFamily> std::fmt::Debug for AtomicCore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicCore")
            .field("total", &self.total.load(Relaxed))
            .finish_non_exhaustive()
    }
}

/// Lock-free bookkeeping: atomic counters in cache-padded per-node slots, a lock-free
/// round-robin cursor and an RCU node list (the plan's proposal, with the orderings documented in
/// this module).
#[derive(Debug, Default)]
pub struct AtomicLedger(AtomicCore<StdSync>);

impl AtomicLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn core(&self) -> &AtomicCore<StdSync> {
        &self.0
    }

    pub(crate) fn core_mut(&mut self) -> &mut AtomicCore<StdSync> {
        &mut self.0
    }
}

impl<S: SyncFamily> Default for AtomicCore<S> {
    /// An empty ledger on `S`'s primitives.
    fn default() -> Self {
        let zero = || CachePadded::new(S::Counter::new(0));
        Self {
            total: zero(),
            successful: zero(),
            failed: zero(),
            cursor: zero(),
            cursor_step: 1,
            nodes: S::Rcu::new(Vec::new()),
            membership: S::Lock::new(0),
        }
    }
}

impl<S: SyncFamily> AtomicCore<S> {
    /// Starts the round-robin cursor at `value` (tests use it to check wrap-around).
    #[cfg(test)]
    pub(crate) fn with_cursor(self, value: u64) -> Self {
        self.cursor.store(value, Relaxed);
        self
    }
}

impl<S: SyncFamily> Steps for &AtomicCore<S> {
    type Pick = AtomicPick<S>;

    fn begin(&mut self) {
        self.total.fetch_add(1, Relaxed);
    }

    fn select(&mut self, strategy: Strategy, tried: &[u64]) -> Option<AtomicPick<S>> {
        let ticket = self.cursor.fetch_add(self.cursor_step, Relaxed);
        self.nodes.read(|list| {
            let i = choose(strategy, list.len(), ticket, |i| {
                let node = &list[i];
                (!tried.contains(&node.addr.id)).then(|| node.reading())
            })?;
            Some(AtomicPick(Arc::clone(&list[i])))
        })
    }

    fn mark_active(&mut self, pick: &AtomicPick<S>) -> bool {
        let slot = &pick.0.slot;
        slot.active.fetch_add(1, Relaxed);
        S::fence();
        if slot.removed.load(Relaxed) != 0 {
            slot.active.fetch_sub(1, Release);
            return false;
        }
        true
    }

    fn record(&mut self, pick: &AtomicPick<S>, outcome: Outcome) {
        let slot = &pick.0.slot;
        match outcome {
            Outcome::Success { latency } => {
                slot.latency_sum_us
                    .fetch_add(latency.as_micros() as u64, Relaxed);
                slot.latency_count.fetch_add(1, Release);
                slot.total.fetch_add(1, Release);
                self.successful.fetch_add(1, Release);
            }
            Outcome::NodeFault => {
                slot.total.fetch_add(1, Release);
                slot.failed.fetch_add(1, Release);
            }
            Outcome::ClientFault => {
                slot.total.fetch_add(1, Release);
            }
        }
    }

    fn unmark_active(&mut self, pick: &AtomicPick<S>) {
        pick.0.slot.active.fetch_sub(1, Release);
    }

    fn fail(&mut self) {
        self.failed.fetch_add(1, Release);
    }
}

impl<S: SyncFamily> AtomicCore<S> {
    /// Stops the round-robin cursor from advancing: a deliberately broken ledger, reachable only
    /// through `testing::degraded_pool` and the loom twins, set before the ledger is shared.
    pub(crate) fn stick_cursor(&mut self) {
        self.cursor_step = 0;
    }
}

impl<S: SyncFamily> LedgerCore for AtomicCore<S> {
    fn steps(&self) -> impl Steps + '_ {
        self
    }

    fn run<B: RequestBody>(&self, _hold_lock: bool, body: B) -> B::Output {
        body.run(&mut &*self)
    }

    fn add_node(&self, key: &str, url: &str) -> Result<NodeAddr, PoolError> {
        self.membership.with(|next_id| {
            if self
                .nodes
                .read(|list| list.iter().any(|n| &*n.addr.key == key))
            {
                return Err(PoolError::DuplicateNode(key.to_owned()));
            }
            let addr = NodeAddr::new(*next_id, key, url);
            *next_id += 1;
            let node = Arc::new(AtomicNode::new(addr.clone()));
            self.nodes.update(|list| {
                let mut next = list.clone();
                next.push(Arc::clone(&node));
                next
            });
            Ok(addr)
        })
    }

    fn remove_node(&self, key: &str) -> Result<NodeAddr, PoolError> {
        let node = self.membership.with(|_| {
            let node = self
                .nodes
                .read(|list| list.iter().find(|n| &*n.addr.key == key).cloned())?;
            node.slot.removed.store(1, Relaxed);
            self.nodes.update(|list| {
                list.iter()
                    .filter(|n| n.addr.id != node.addr.id)
                    .cloned()
                    .collect()
            });
            Some(node)
        });
        let node = node.ok_or_else(|| PoolError::UnknownNode(key.to_owned()))?;
        S::fence();
        // Acquire: a request's un-mark (Release) happens-before removal completes.
        while node.slot.active.load(Acquire) != 0 {
            S::backoff();
        }
        Ok(node.addr.clone())
    }

    fn nodes(&self) -> Vec<NodeAddr> {
        self.nodes
            .read(|list| list.iter().map(|n| n.addr.clone()).collect())
    }

    fn probe(&self, _hold_lock: bool, check: &mut dyn FnMut(&NodeAddr) -> bool) {
        let list: NodeList<S> = self.nodes.read(Clone::clone);
        for node in list {
            let verdict = check(&node.addr);
            node.slot.available.store(u64::from(verdict), Relaxed);
        }
    }

    /// Lock-free. Each counter is exact; across counters the snapshot may miss requests in
    /// progress, but it never shows an effect without its cause (see "Orderings").
    fn snapshot(&self, strategy: Strategy) -> PoolStats {
        let successful = self.successful.load(Acquire);
        let failed = self.failed.load(Acquire);
        self.nodes.read(|list| {
            let readings: Vec<NodeReading> = list.iter().map(|n| n.reading()).collect();
            let total = self.total.load(Acquire);
            let nodes = list.iter().zip(readings).map(|(n, r)| (&*n.addr.key, r));
            PoolStats::assemble(
                strategy,
                Totals {
                    total,
                    successful,
                    failed,
                },
                nodes,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::ActiveGuard;

    #[test]
    fn a_mark_refused_by_removal_leaves_the_gauge_at_zero() {
        let ledger = AtomicCore::<StdSync>::default();
        ledger.add_node("a:1", "http://a:1").unwrap();
        let mut steps = &ledger;
        let pick = steps.select(Strategy::RoundRobin, &[]).unwrap();
        let slot = Arc::clone(&pick.0);
        ledger.remove_node("a:1").unwrap();
        assert!(
            ActiveGuard::mark(&mut steps, pick).is_none(),
            "a removed node cannot be marked"
        );
        assert_eq!(
            slot.slot.active.load(Relaxed),
            0,
            "a refused mark must not be un-marked"
        );
    }
}
