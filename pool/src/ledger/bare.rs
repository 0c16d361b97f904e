//! `BareLedger`: FlockParser-legacy's client. A round-robin cursor and nothing else: no counts,
//! no gauges, no strategy. It is the floor against which the cost of any bookkeeping is measured.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use arc_swap::ArcSwap;
use crossbeam_utils::CachePadded;

use crate::error::PoolError;
use crate::ledger::{LedgerCore, Outcome, Picked, RequestBody, Steps};
use crate::node::NodeAddr;
use crate::stats::{PoolStats, Totals};
use crate::strategy::{NodeReading, Strategy};

/// Round-robin over a node list; every other step is a no-op.
#[derive(Debug, Default)]
pub struct BareLedger {
    cursor: CachePadded<AtomicU64>,
    /// The cursor never advances (`testing::degraded_pool`'s stuck round-robin).
    cursor_stuck: bool,
    nodes: ArcSwap<Vec<NodeAddr>>,
    next_id: std::sync::Mutex<u64>,
}

/// The chosen node.
#[derive(Debug)]
pub(crate) struct BarePick(NodeAddr);

impl Picked for BarePick {
    fn node(&self) -> &NodeAddr {
        &self.0
    }
}

impl BareLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Steps for &BareLedger {
    type Pick = BarePick;
    fn begin(&mut self) {}
    fn select(&mut self, _strategy: Strategy, tried: &[u64]) -> Option<BarePick> {
        let list = self.nodes.load();
        let n = list.len();
        let start = self
            .cursor
            .fetch_add(u64::from(!self.cursor_stuck), Relaxed) as usize;
        (0..n)
            .map(|k| &list[(start + k) % n])
            .find(|a| !tried.contains(&a.id))
            .cloned()
            .map(BarePick)
    }
    fn mark_active(&mut self, _: &BarePick) -> bool {
        true
    }
    fn record(&mut self, _: &BarePick, _: Outcome) {}
    fn unmark_active(&mut self, _: &BarePick) {}
    fn fail(&mut self) {}
}

impl BareLedger {
    /// Stops the round-robin cursor from advancing (see `AtomicCore::stick_cursor`).
    pub(crate) fn stick_cursor(&mut self) {
        self.cursor_stuck = true;
    }
}

impl LedgerCore for BareLedger {
    fn steps(&self) -> impl Steps + '_ {
        self
    }

    fn run<B: RequestBody>(&self, _hold_lock: bool, body: B) -> B::Output {
        body.run(&mut &*self)
    }

    fn add_node(&self, key: &str, url: &str) -> Result<NodeAddr, PoolError> {
        let mut next_id = self
            .next_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.nodes.load().iter().any(|a| &*a.key == key) {
            return Err(PoolError::DuplicateNode(key.to_owned()));
        }
        let addr = NodeAddr::new(*next_id, key, url);
        *next_id += 1;
        self.nodes.rcu(|list| {
            let mut next = Vec::clone(list);
            next.push(addr.clone());
            next
        });
        Ok(addr)
    }

    /// Unlike the other ledgers this does not wait for in-flight requests: it tracks none.
    fn remove_node(&self, key: &str) -> Result<NodeAddr, PoolError> {
        let _membership = self
            .next_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = self.nodes.load().iter().find(|a| &*a.key == key).cloned();
        let addr = found.ok_or_else(|| PoolError::UnknownNode(key.to_owned()))?;
        self.nodes.rcu(|list| {
            list.iter()
                .filter(|a| a.id != addr.id)
                .cloned()
                .collect::<Vec<_>>()
        });
        Ok(addr)
    }

    fn nodes(&self) -> Vec<NodeAddr> {
        Vec::clone(&self.nodes.load())
    }

    fn probe(&self, _hold_lock: bool, _check: &mut dyn FnMut(&NodeAddr) -> bool) {}

    /// Counts nothing, and reports round-robin whatever it is asked: that is how it routes.
    fn snapshot(&self, _strategy: Strategy) -> PoolStats {
        let list = self.nodes.load();
        let idle = NodeReading {
            available: true,
            ..NodeReading::default()
        };
        PoolStats::assemble(
            Strategy::RoundRobin,
            Totals::default(),
            list.iter().map(|a| (&*a.key, idle)),
        )
    }
}
