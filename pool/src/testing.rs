//! Hooks for benchmarks, the harness and the gate's self-test: not part of the request API.
//!
//! - [`simulate_request`] runs one request's bookkeeping with no I/O, exactly as the request path
//!   calls the ledger, so the cost and correctness of the ledgers can be measured apart from HTTP.
//! - [`degraded_pool`] builds a deliberately worse pool from a [`Degradation`], so a regression
//!   check can be shown catching each kind of regression it claims to catch (slower attempts, a
//!   slow tail, a stuck cursor, attempts the books never record, a probe that ignores errors).
//!   It composes the pool from outside, through the seams a production pool has: a transport
//!   wrapper ([`Degraded`]), a request wrapper ([`PerRequest`]) and a ledger whose cursor never
//!   moves; the production path carries no field or check for any of it.
//!   Connection reuse is not here: it is an ordinary setting, [`crate::HttpConfig`].

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::PoolError;
use crate::http::{AttemptError, Http, Transport};
use crate::ledger::{self, Ledger, Outcome as CoreOutcome, RequestBody, Steps, with_core};
use crate::node::NodeAddr;
use crate::pool::{Pool, PoolConfig};
use crate::strategy::Strategy;
use crate::wrap::{Wrap, sealed::RunRequest};

/// How a simulated attempt ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The node answered after `latency`.
    Success {
        /// Recorded as the attempt's latency.
        latency: Duration,
    },
    /// The node failed (counted as a node failure and a failed request).
    NodeFault,
    /// The node refused the request (a failed request, not a node failure).
    ClientFault,
}

impl From<Outcome> for CoreOutcome {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Success { latency } => CoreOutcome::Success { latency },
            Outcome::NodeFault => CoreOutcome::NodeFault,
            Outcome::ClientFault => CoreOutcome::ClientFault,
        }
    }
}

/// One request's whole bookkeeping with a single attempt and no I/O: count, select, mark,
/// record, un-mark (and count the failure). Returns the chosen node's id, or `None` when no node
/// could be chosen or the chosen one was removed meanwhile.
pub fn simulate_request(ledger: &Ledger, strategy: Strategy, outcome: Outcome) -> Option<u64> {
    let outcome = CoreOutcome::from(outcome);
    with_core!(ledger, core => {
        let mut steps = ledger::LedgerCore::steps(core);
        ledger::simulate_request(&mut steps, strategy, outcome)
    })
}

/// Ways to make a pool worse on purpose, each one a regression a CI gate should catch.
/// The default degrades nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Degradation {
    /// Blocks every attempt this long before it is sent (a logging call or extra work on the
    /// request path).
    pub attempt_delay: Duration,
    /// One request in N blocks this much longer before its first attempt (a tail regression,
    /// such as a lock that a few requests wait on far longer than the rest).
    pub slow_path: Option<SlowPath>,
    /// The round-robin cursor never advances, so every request starts at the first node.
    pub stuck_round_robin: bool,
    /// One request in N (counted as `slow_path` counts) is sent but its attempts are not recorded
    /// in the ledger: the node serves it, the pool's books miss it (a lost update end to end, for
    /// showing that the harness's accounting check catches one).
    pub unrecorded_every: Option<NonZeroU64>,
    /// The health probe counts any complete answer as healthy, a 500 included (a probe that only
    /// checks that the node answers): the prober's test must catch it.
    pub lenient_probe: bool,
    /// Selection stops reading the in-flight counts (a load-blind strategy): least-loaded then
    /// routes as round-robin (every count reads zero, and the ticket breaks ties in turn) and
    /// weighted as latency-first (its score without the queue term). Other strategies are
    /// unchanged.
    pub load_blind: bool,
    /// Busy CPU work after every answer is decoded (extra work per answer: a second parse, a
    /// copy, a checksum). Spent on the calling thread, so its CPU time shows where the pool's
    /// callers are measured.
    pub answer_work: Duration,
}

/// A slow path taken by one request in `every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowPath {
    /// Period in requests (counted per pool, from the first).
    pub every: NonZeroU64,
    /// Extra blocking time of the slow request.
    pub delay: Duration,
}

impl Degradation {
    /// Whether anything is degraded.
    pub fn is_none(&self) -> bool {
        *self == Self::default()
    }
}

/// A pool over `nodes` degraded as `degradation` says: [`Pool::new`]'s pool with its HTTP
/// wrapped in [`Degraded`], its requests in [`PerRequest`], and, for `stuck_round_robin`, a
/// ledger whose cursor never advances.
pub fn degraded_pool<U: AsRef<str>>(
    ledger: impl Into<Ledger>,
    config: PoolConfig,
    nodes: &[U],
    degradation: Degradation,
) -> Result<Pool<Degraded, PerRequest>, PoolError> {
    let mut ledger = ledger.into();
    if degradation.stuck_round_robin {
        ledger.stick_cursor();
    }
    let transport = Degraded {
        inner: Http::new(&config.http)?,
        attempt_delay: degradation.attempt_delay,
        answer_work: degradation.answer_work,
        lenient_probe: degradation.lenient_probe,
    };
    let wrap = PerRequest {
        slow_path: degradation.slow_path,
        unrecorded_every: degradation.unrecorded_every,
        load_blind: degradation.load_blind,
        requests: AtomicU64::new(0),
    };
    Pool::with_parts(ledger, config, nodes, transport, wrap)
}

/// A transport made worse: every attempt blocks first, every answer costs busy work after it
/// is decoded, and the probe may take any complete answer for health. Both are inside the
/// attempt as the pool times it (so its recorded latency grows by them too).
#[derive(Debug)]
pub struct Degraded<X = Http> {
    inner: X,
    attempt_delay: Duration,
    answer_work: Duration,
    lenient_probe: bool,
}

impl<X: Transport> Transport for Degraded<X> {
    fn post<T: DeserializeOwned>(
        &self,
        node: &NodeAddr,
        path: &str,
        body: Bytes,
    ) -> Result<T, AttemptError> {
        if !self.attempt_delay.is_zero() {
            std::thread::sleep(self.attempt_delay);
        }
        let answer = self.inner.post(node, path, body)?;
        busy_for(self.answer_work);
        Ok(answer)
    }

    fn get(&self, node: &NodeAddr, path: &str, timeout: Duration) -> Option<u16> {
        let status = self.inner.get(node, path, timeout)?;
        Some(if self.lenient_probe { 200 } else { status })
    }
}

/// Spins for `work` of wall time, which is CPU time on the calling thread unless the scheduler
/// takes the core away meanwhile (then less CPU than asked: the regression is never overstated).
fn busy_for(work: Duration) {
    if work.is_zero() {
        return;
    }
    let end = Instant::now() + work;
    let mut spins = 0u64;
    while Instant::now() < end {
        spins = std::hint::black_box(spins.wrapping_add(1));
    }
}

/// Requests made worse, counted per pool from the first: one in N blocks before its first
/// attempt, one in N goes unrecorded in the books, and every one may select load-blind.
#[derive(Debug)]
pub struct PerRequest {
    slow_path: Option<SlowPath>,
    unrecorded_every: Option<NonZeroU64>,
    load_blind: bool,
    requests: AtomicU64,
}

impl Wrap for PerRequest {}

#[allow(private_bounds, private_interfaces)] // sealed: see `crate::wrap`
impl RunRequest for PerRequest {
    fn run<B: RequestBody>(&self, ledger: &Ledger, body: B) -> B::Output {
        let n = self.requests.fetch_add(1, Relaxed);
        if let Some(slow) = self.slow_path
            && n.is_multiple_of(slow.every.get())
        {
            std::thread::sleep(slow.delay);
        }
        let unrecorded = self
            .unrecorded_every
            .is_some_and(|every| n.is_multiple_of(every.get()));
        let (record, blind) = (Dropped::Record, Dropped::LoadReading);
        match (unrecorded, self.load_blind) {
            (false, false) => ledger.run(body),
            (true, false) => ledger.run(Dropping::of(body, record)),
            (false, true) => ledger.run(Dropping::of(body, blind)),
            (true, true) => ledger.run(Dropping::of(Dropping::of(body, blind), record)),
        }
    }
}

/// A bookkeeping step a broken request path drops: the seam of `Degradation::unrecorded_every`
/// and of the loom model's twin that leaves a gauge marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// Every `record` (the attempt is made, the books never see it).
    Record,
    /// The un-mark after an attempt recorded as a node fault (a gauge left marked).
    UnmarkAfterFault,
    /// Selection's reading of the in-flight counts ([`Degradation::load_blind`]).
    LoadReading,
}

/// Runs a request body over steps that drop one kind of step.
pub(crate) struct Dropping<B> {
    pub(crate) body: B,
    pub(crate) dropped: Dropped,
}

impl<B> Dropping<B> {
    fn of(body: B, dropped: Dropped) -> Self {
        Self { body, dropped }
    }
}

impl<B: RequestBody> RequestBody for Dropping<B> {
    type Output = B::Output;

    fn run<S: Steps>(self, steps: &mut S) -> Self::Output {
        self.body.run(&mut DroppingSteps {
            inner: steps,
            dropped: self.dropped,
            faulted: false,
        })
    }
}

/// `S` with one kind of step dropped; every other step happens.
struct DroppingSteps<'a, S> {
    inner: &'a mut S,
    dropped: Dropped,
    /// The last recorded outcome was a node fault.
    faulted: bool,
}

impl<S: Steps> Steps for DroppingSteps<'_, S> {
    type Pick = S::Pick;
    fn begin(&mut self) {
        self.inner.begin()
    }
    fn select(&mut self, strategy: Strategy, tried: &[u64]) -> Option<S::Pick> {
        let strategy = match (self.dropped, strategy) {
            // With every in-flight count read as zero, least-loaded's stable minimum is the
            // first candidate from the ticket, which is round-robin's pick, and weighted's
            // `(0 + 1) x mean latency` is latency-first's score.
            (Dropped::LoadReading, Strategy::LeastLoaded) => Strategy::RoundRobin,
            (Dropped::LoadReading, Strategy::Weighted) => Strategy::LatencyFirst,
            _ => strategy,
        };
        self.inner.select(strategy, tried)
    }
    fn mark_active(&mut self, pick: &S::Pick) -> bool {
        self.inner.mark_active(pick)
    }
    fn record(&mut self, pick: &S::Pick, outcome: ledger::Outcome) {
        self.faulted = matches!(outcome, ledger::Outcome::NodeFault);
        if self.dropped != Dropped::Record {
            self.inner.record(pick, outcome)
        }
    }
    fn unmark_active(&mut self, pick: &S::Pick) {
        if !(self.dropped == Dropped::UnmarkAfterFault && self.faulted) {
            self.inner.unmark_active(pick)
        }
    }
    fn fail(&mut self) {
        self.inner.fail()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{AtomicLedger, LedgerCore, LockScope, MutexLedger, Picked};

    /// Ids `selections` least-loaded picks make while node `a:1` has one request in flight,
    /// through plain steps or through steps that drop `dropped`.
    fn picks_beside_a_busy_node(ledger: &Ledger, dropped: Option<Dropped>) -> (u64, Vec<u64>) {
        for key in ["a:1", "b:1", "c:1"] {
            ledger.add_node(key, &format!("http://{key}")).unwrap();
        }
        with_core!(ledger, core => {
            let mut steps = LedgerCore::steps(core);
            steps.begin();
            let busy = steps.select(Strategy::RoundRobin, &[]).unwrap();
            assert!(steps.mark_active(&busy));
            let busy_id = busy.node().id;
            let picks = (0..6)
                .map(|_| match dropped {
                    None => steps.select(Strategy::LeastLoaded, &[]),
                    Some(dropped) => DroppingSteps { inner: &mut steps, dropped, faulted: false }
                        .select(Strategy::LeastLoaded, &[]),
                })
                .map(|pick| pick.unwrap().node().id)
                .collect();
            (busy_id, picks)
        })
    }

    #[test]
    fn a_load_blind_least_loaded_sends_work_to_a_busy_node_and_a_plain_one_does_not() {
        let ledgers = || -> [Ledger; 2] {
            [
                AtomicLedger::new().into(),
                MutexLedger::new(LockScope::Counters).into(),
            ]
        };
        for ledger in ledgers() {
            let (busy, picks) = picks_beside_a_busy_node(&ledger, None);
            assert!(!picks.contains(&busy), "{picks:?} avoid {busy}");
        }
        for ledger in ledgers() {
            let (busy, picks) = picks_beside_a_busy_node(&ledger, Some(Dropped::LoadReading));
            assert_eq!(
                picks.iter().filter(|&&id| id == busy).count(),
                2,
                "in turn, the busy node included: {picks:?}"
            );
        }
    }
}
