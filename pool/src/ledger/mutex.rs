//! [`MutexLedger`]: all request state behind one lock, taken where SOLLOL takes `self._lock`.
//!
//! The state itself is a plain [`Book`] with no synchronisation of its own. Per-point steps lock,
//! run one `Book` method and unlock; a request run with `hold_lock` locks once and runs every
//! `Book` method (and the HTTP exchange) inside, which is the plan's "serialized" diagram.
//! [`MutexCore`] is generic over the sync family for the loom models; [`MutexLedger`] is the
//! std-backed one a pool uses, with its [`LockScope`].

use std::time::Instant;

use crate::error::PoolError;
use crate::ledger::{LedgerCore, LockScope, Outcome, Picked, RequestBody, Steps};
use crate::lock_timing::{LockTimingSummary, LockTimings};
use crate::node::NodeAddr;
use crate::stats::{PoolStats, Totals};
use crate::strategy::{NodeReading, Strategy, choose};
use crate::sync::{Lock, StdSync, SyncFamily};

/// One node's entry in the book.
#[derive(Debug, Clone)]
struct BookNode {
    addr: NodeAddr,
    reading: NodeReading,
    /// Removed from routing; kept until its in-flight requests finish.
    removed: bool,
}

/// Everything the global lock protects.
#[derive(Debug, Default, Clone)]
pub(crate) struct Book {
    totals: Totals,
    cursor: u64,
    /// The cursor never advances (`testing::degraded_pool`'s stuck round-robin).
    cursor_stuck: bool,
    next_id: u64,
    nodes: Vec<BookNode>,
    timings: Option<LockTimings>,
}

/// A node chosen from the book.
#[derive(Debug, Clone)]
pub(crate) struct BookPick(NodeAddr);

impl Picked for BookPick {
    fn node(&self) -> &NodeAddr {
        &self.0
    }
}

impl Book {
    fn node_mut(&mut self, id: u64) -> Option<&mut BookNode> {
        self.nodes.iter_mut().find(|n| n.addr.id == id)
    }

    fn begin(&mut self) {
        self.totals.total += 1;
    }

    fn select(&mut self, strategy: Strategy, tried: &[u64]) -> Option<BookPick> {
        let ticket = self.cursor;
        self.cursor = self.cursor.wrapping_add(u64::from(!self.cursor_stuck));
        let nodes = &self.nodes;
        let i = choose(strategy, nodes.len(), ticket, |i| {
            let n = &nodes[i];
            (!n.removed && !tried.contains(&n.addr.id)).then_some(n.reading)
        })?;
        Some(BookPick(nodes[i].addr.clone()))
    }

    fn mark_active(&mut self, pick: &BookPick) -> bool {
        match self.node_mut(pick.0.id) {
            Some(node) if !node.removed => {
                node.reading.active += 1;
                true
            }
            _ => false,
        }
    }

    fn record(&mut self, pick: &BookPick, outcome: Outcome) {
        let Some(node) = self.node_mut(pick.0.id) else {
            return;
        };
        node.reading.total += 1;
        match outcome {
            Outcome::Success { latency } => {
                node.reading.latency_sum_us += latency.as_micros() as u64;
                node.reading.latency_count += 1;
                self.totals.successful += 1;
            }
            Outcome::NodeFault => node.reading.failed += 1,
            Outcome::ClientFault => {}
        }
    }

    fn unmark_active(&mut self, pick: &BookPick) {
        if let Some(node) = self.node_mut(pick.0.id) {
            node.reading.active = node.reading.active.saturating_sub(1);
        }
    }

    fn fail(&mut self) {
        self.totals.failed += 1;
    }
}

/// `Steps` inside a lock that is already held.
struct HeldSteps<'a>(&'a mut Book);

impl Steps for HeldSteps<'_> {
    type Pick = BookPick;
    fn begin(&mut self) {
        self.0.begin()
    }
    fn select(&mut self, strategy: Strategy, tried: &[u64]) -> Option<BookPick> {
        self.0.select(strategy, tried)
    }
    fn mark_active(&mut self, pick: &BookPick) -> bool {
        self.0.mark_active(pick)
    }
    fn record(&mut self, pick: &BookPick, outcome: Outcome) {
        self.0.record(pick, outcome)
    }
    fn unmark_active(&mut self, pick: &BookPick) {
        self.0.unmark_active(pick)
    }
    fn fail(&mut self) {
        self.0.fail()
    }
}

/// One global lock over all request state, on `S`'s primitives.
pub(crate) struct MutexCore<S: SyncFamily> {
    book: S::Lock<Book>,
    timed: bool,
}

impl<S: SyncFamily> std::fmt::Debug for MutexCore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MutexCore")
            .field("timed", &self.timed)
            .finish_non_exhaustive()
    }
}

impl<S: SyncFamily> Default for MutexCore<S> {
    /// An empty ledger on `S`'s primitives, without lock instrumentation.
    fn default() -> Self {
        Self {
            book: S::Lock::new(Book::default()),
            timed: false,
        }
    }
}

/// One global `std::sync::Mutex` over all request state (SOLLOL's `self._lock`).
///
/// [`LockScope`] says what else the lock covers: nothing (`Counters`), the prober's HTTP calls
/// (`Probe`), or each whole HTTP exchange (`Request`).
#[derive(Debug)]
pub struct MutexLedger {
    core: MutexCore<StdSync>,
    scope: LockScope,
}

impl MutexLedger {
    /// An empty ledger whose lock covers `scope`, without lock instrumentation.
    pub fn new(scope: LockScope) -> Self {
        Self {
            core: MutexCore::default(),
            scope,
        }
    }

    /// Also records lock wait and hold times ([`MutexLedger::lock_timings`]); each acquisition
    /// then reads the clock twice.
    pub fn with_lock_timing(self) -> Self {
        self.core.book.with(|book| {
            book.timings = Some(LockTimings::default());
        });
        Self {
            core: MutexCore {
                timed: true,
                ..self.core
            },
            ..self
        }
    }

    /// What the lock covers.
    pub fn scope(&self) -> LockScope {
        self.scope
    }

    /// Lock wait and hold percentiles so far; `None` when not instrumented.
    pub fn lock_timings(&self) -> Option<LockTimingSummary> {
        self.core.lock_timings()
    }

    pub(crate) fn core(&self) -> &MutexCore<StdSync> {
        &self.core
    }

    pub(crate) fn core_mut(&mut self) -> &mut MutexCore<StdSync> {
        &mut self.core
    }
}

impl<S: SyncFamily> MutexCore<S> {
    /// Starts the round-robin cursor at `value` (tests use it to check wrap-around).
    #[cfg(test)]
    pub(crate) fn with_cursor(self, value: u64) -> Self {
        self.book.with(|book| book.cursor = value);
        self
    }

    /// Stops the round-robin cursor from advancing (see `AtomicCore::stick_cursor`).
    pub(crate) fn stick_cursor(&mut self) {
        self.book.with(|book| book.cursor_stuck = true);
    }

    /// Runs `f` under the global lock, timing the acquisition when instrumented.
    fn locked<R>(&self, f: impl FnOnce(&mut Book) -> R) -> R {
        if !self.timed {
            return self.book.with(f);
        }
        let asked = Instant::now();
        self.book.with(|book| {
            let got = Instant::now();
            let result = f(book);
            if let Some(t) = book.timings.as_mut() {
                t.record(got - asked, got.elapsed());
            }
            result
        })
    }

    fn lock_timings(&self) -> Option<LockTimingSummary> {
        self.book
            .with(|book| book.timings.as_ref().map(LockTimings::summary))
    }
}

impl<S: SyncFamily> Steps for &MutexCore<S> {
    type Pick = BookPick;
    fn begin(&mut self) {
        self.locked(Book::begin)
    }
    fn select(&mut self, strategy: Strategy, tried: &[u64]) -> Option<BookPick> {
        self.locked(|b| b.select(strategy, tried))
    }
    fn mark_active(&mut self, pick: &BookPick) -> bool {
        self.locked(|b| b.mark_active(pick))
    }
    fn record(&mut self, pick: &BookPick, outcome: Outcome) {
        self.locked(|b| b.record(pick, outcome))
    }
    fn unmark_active(&mut self, pick: &BookPick) {
        self.locked(|b| b.unmark_active(pick))
    }
    fn fail(&mut self) {
        self.locked(Book::fail)
    }
}

impl<S: SyncFamily> LedgerCore for MutexCore<S> {
    fn steps(&self) -> impl Steps + '_ {
        self
    }

    fn run<B: RequestBody>(&self, hold_lock: bool, body: B) -> B::Output {
        if hold_lock {
            self.locked(|book| body.run(&mut HeldSteps(book)))
        } else {
            body.run(&mut &*self)
        }
    }

    fn add_node(&self, key: &str, url: &str) -> Result<NodeAddr, PoolError> {
        self.locked(|book| {
            if book.nodes.iter().any(|n| !n.removed && &*n.addr.key == key) {
                return Err(PoolError::DuplicateNode(key.to_owned()));
            }
            let addr = NodeAddr::new(book.next_id, key, url);
            book.next_id += 1;
            book.nodes.push(BookNode {
                addr: addr.clone(),
                reading: NodeReading {
                    available: true,
                    ..NodeReading::default()
                },
                removed: false,
            });
            Ok(addr)
        })
    }

    fn remove_node(&self, key: &str) -> Result<NodeAddr, PoolError> {
        let addr = self.locked(|book| {
            let node = book
                .nodes
                .iter_mut()
                .find(|n| !n.removed && &*n.addr.key == key);
            node.map(|n| {
                n.removed = true;
                n.addr.clone()
            })
        });
        let addr = addr.ok_or_else(|| PoolError::UnknownNode(key.to_owned()))?;
        // Drain: the node leaves the book once its in-flight requests have finished.
        loop {
            let drained = self.locked(|book| {
                let busy = book
                    .nodes
                    .iter()
                    .any(|n| n.addr.id == addr.id && n.reading.active > 0);
                if !busy {
                    book.nodes.retain(|n| n.addr.id != addr.id);
                }
                !busy
            });
            if drained {
                return Ok(addr);
            }
            S::backoff();
        }
    }

    fn nodes(&self) -> Vec<NodeAddr> {
        self.locked(|book| {
            book.nodes
                .iter()
                .filter(|n| !n.removed)
                .map(|n| n.addr.clone())
                .collect()
        })
    }

    fn probe(&self, hold_lock: bool, check: &mut dyn FnMut(&NodeAddr) -> bool) {
        if hold_lock {
            self.locked(|book| {
                for node in book.nodes.iter_mut().filter(|n| !n.removed) {
                    node.reading.available = check(&node.addr);
                }
            });
            return;
        }
        for addr in self.nodes() {
            let verdict = check(&addr);
            self.locked(|book| {
                if let Some(node) = book.node_mut(addr.id) {
                    node.reading.available = verdict;
                }
            });
        }
    }

    /// Taken under the global lock, so it is exact; and, as in SOLLOL, a slow reader delays
    /// every request.
    fn snapshot(&self, strategy: Strategy) -> PoolStats {
        self.locked(|book| {
            let nodes = book
                .nodes
                .iter()
                .filter(|n| !n.removed)
                .map(|n| (&*n.addr.key, n.reading));
            PoolStats::assemble(strategy, book.totals, nodes)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ledger::{ActiveGuard, simulate_request};

    /// A timed ledger over two nodes, and the acquisitions adding them took (reading the
    /// timings takes the lock without being timed, so it adds none).
    fn timed(scope: LockScope) -> (MutexLedger, u64) {
        let ledger = MutexLedger::new(scope).with_lock_timing();
        for key in ["a:1", "b:2"] {
            ledger
                .core()
                .add_node(key, &format!("http://{key}"))
                .unwrap();
        }
        let added = ledger.lock_timings().expect("instrumented").wait_ns.count;
        assert_eq!(added, 2, "one acquisition per node added");
        (ledger, added)
    }

    /// A request body that holds whatever lock it runs under for `0`.
    struct Hold(Duration);

    impl RequestBody for Hold {
        type Output = ();
        fn run<St: Steps>(self, steps: &mut St) {
            steps.begin();
            std::thread::sleep(self.0);
        }
    }

    #[test]
    fn the_scope_is_the_one_asked_for() {
        for scope in [LockScope::Counters, LockScope::Probe, LockScope::Request] {
            assert_eq!(MutexLedger::new(scope).scope(), scope);
            assert_eq!(MutexLedger::new(scope).with_lock_timing().scope(), scope);
        }
    }

    #[test]
    fn lock_timings_exist_only_when_asked_for() {
        assert_eq!(MutexLedger::new(LockScope::Counters).lock_timings(), None);
        let fresh = MutexLedger::new(LockScope::Counters).with_lock_timing();
        let summary = fresh.lock_timings().expect("instrumented");
        assert_eq!((summary.wait_ns.count, summary.hold_ns.count), (0, 0));
    }

    /// A successful request takes the lock five times (count, select, mark, record, un-mark),
    /// a failed one six (plus the failure count): one wait and one hold sample each.
    #[test]
    fn every_acquisition_is_one_wait_and_one_hold_sample() {
        let (ledger, added) = timed(LockScope::Counters);
        let ok = Outcome::Success {
            latency: Duration::from_millis(1),
        };
        for _ in 0..10 {
            simulate_request(&mut ledger.core().steps(), Strategy::RoundRobin, ok);
        }
        simulate_request(
            &mut ledger.core().steps(),
            Strategy::RoundRobin,
            Outcome::NodeFault,
        );
        let summary = ledger.lock_timings().expect("instrumented");
        assert_eq!(summary.wait_ns.count - added, 10 * 5 + 6);
        assert_eq!(summary.hold_ns.count, summary.wait_ns.count);
        assert!(
            summary.wait_ns.max >= 1 && summary.hold_ns.max >= 1,
            "{summary:?}"
        );
    }

    /// A request run under the held lock is one acquisition held at least as long as the work
    /// inside it (a lower bound the clock guarantees); waiting and holding are not swapped.
    #[test]
    fn the_hold_sample_covers_the_work_done_under_the_lock() {
        let (ledger, added) = timed(LockScope::Request);
        let work = Duration::from_millis(20);
        ledger.core().run(true, Hold(work));
        let summary = ledger.lock_timings().expect("instrumented");
        assert_eq!(summary.hold_ns.count - added, 1);
        assert!(
            summary.hold_ns.max >= work.as_nanos() as u64,
            "held {} ns across {work:?} of work",
            summary.hold_ns.max
        );
        assert!(
            summary.hold_ns.sum >= work.as_nanos() as f64 * 0.99,
            "{summary:?}"
        );
    }

    /// Callers blocked behind a held lock record their waits, and holds never overlap: the two
    /// figures `explain` reports. Ten rounds of one holder (20 ms of work) and one caller that
    /// asks while it holds.
    #[test]
    fn blocked_callers_record_their_wait_and_holds_never_overlap() {
        let (ledger, added) = timed(LockScope::Request);
        let work = Duration::from_millis(20);
        let rounds = 10;
        let started = Instant::now();
        let mut longest_block = Duration::ZERO;
        for _ in 0..rounds {
            std::thread::scope(|s| {
                let (held, inside) = std::sync::mpsc::channel();
                let holder = s.spawn(|| ledger.core().run(true, HoldAndSignal(work, held)));
                inside.recv().unwrap();
                let asked = Instant::now();
                ledger.core().steps().begin();
                longest_block = longest_block.max(asked.elapsed());
                holder.join().unwrap();
            });
        }
        let wall = started.elapsed();
        let summary = ledger.lock_timings().expect("instrumented");
        assert_eq!(summary.wait_ns.count - added, 2 * rounds);
        // Upper bounds the clock guarantees: no wait outlasts the block its caller saw, and
        // holds of one lock are disjoint, so together they fit in the wall time (the histogram's
        // sum is exact to its 3 significant figures).
        assert!(
            u128::from(summary.wait_ns.max) <= longest_block.as_nanos() * 101 / 100,
            "{summary:?} vs blocked at most {longest_block:?}"
        );
        assert!(
            summary.hold_ns.sum <= wall.as_nanos() as f64 * 1.01,
            "holds overlap: {summary:?} in {wall:?}"
        );
        assert!(summary.hold_ns.max >= work.as_nanos() as u64, "{summary:?}");
        // The one bound that rests on the scheduler, with a wide margin: in one of ten rounds
        // the caller asked within 19 ms of the holder signalling, so it waited at least 1 ms of
        // the holder's 20 (failing needs a 19 ms stall of the caller ten times in a row).
        assert!(
            summary.wait_ns.max >= 1_000_000,
            "no caller waited: {summary:?}"
        );
    }

    /// `Hold` that says when it has the lock.
    struct HoldAndSignal(Duration, std::sync::mpsc::Sender<()>);

    impl RequestBody for HoldAndSignal {
        type Output = ();
        fn run<St: Steps>(self, steps: &mut St) {
            steps.begin();
            self.1.send(()).unwrap();
            std::thread::sleep(self.0);
        }
    }

    #[test]
    fn a_mark_refused_by_removal_keeps_other_requests_marked() {
        let ledger = MutexCore::<StdSync>::default();
        ledger.add_node("a:1", "http://a:1").unwrap();
        ledger.locked(|book| {
            let mut held = HeldSteps(book);
            let first = held.select(Strategy::RoundRobin, &[]).unwrap();
            let second = held.select(Strategy::RoundRobin, &[]).unwrap();
            assert!(held.mark_active(&first), "request 1 is in flight");
            held.0.nodes[0].removed = true;
            assert!(
                ActiveGuard::mark(&mut held, second).is_none(),
                "request 2 sees the removal"
            );
            assert_eq!(
                held.0.nodes[0].reading.active, 1,
                "request 1 must still count as in flight"
            );
        });
    }
}
