//! `contention`: what the bookkeeping itself costs per request, with no I/O at all.
//!
//! Threads released together each run the five bookkeeping steps of a request through a ledger
//! (no HTTP), so the cost of the lock is seen apart from the network. Beside the two ledgers: the
//! bare round-robin (the plan's "legacy" client) and a reference of three relaxed `fetch_add`s on
//! one cache line (what "atomic counters" cost at best when every thread shares them).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use pool::testing::{Outcome, simulate_request};
use pool::{AtomicLedger, BareLedger, Ledger, LockScope, MutexLedger, Pool, PoolConfig, Strategy};
use serde_json::json;

use super::{Ctx, Findings};
use crate::load::released;
use crate::results::{Accounting, Row};
use crate::summary::Summary;

/// Thread counts of the scenario.
pub const THREADS: [usize; 4] = [1, 2, 12, 100];

/// What is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Book {
    /// `MutexLedger`.
    Mutex,
    /// `AtomicLedger`.
    Atomic,
    /// `BareLedger`.
    Bare,
    /// Three relaxed `fetch_add`s on one shared cache line.
    ThreeFetchAdds,
}

impl Book {
    /// Every kind, in report order.
    pub const ALL: [Book; 4] = [Book::Mutex, Book::Atomic, Book::Bare, Book::ThreeFetchAdds];

    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Book::Mutex => "MutexLedger",
            Book::Atomic => "AtomicLedger",
            Book::Bare => "bare round-robin",
            Book::ThreeFetchAdds => "3x fetch_add (one line)",
        }
    }
}

fn timed(threads: usize, ops: usize, work: impl Fn(usize) + Sync) -> Duration {
    let per_thread = ops / threads;
    released(threads, |_| work(per_thread)).0
}

/// A pool over two nodes; only its ledger is used (no request is sent).
fn with_nodes(ledger: impl Into<Ledger>) -> anyhow::Result<Pool> {
    let urls = ["http://127.0.0.1:11434", "http://127.0.0.1:11435"];
    Ok(Pool::new(ledger, PoolConfig::default(), &urls)?)
}

fn ledger_time(ledger: impl Into<Ledger>, threads: usize, ops: usize) -> anyhow::Result<Duration> {
    let pool = with_nodes(ledger)?;
    let outcome = Outcome::Success {
        latency: super::PLAN_SERVICE,
    };
    Ok(timed(threads, ops, |n| {
        for _ in 0..n {
            simulate_request(pool.ledger(), Strategy::RoundRobin, outcome);
        }
    }))
}

/// Nanoseconds per request of `book` with `threads` threads sharing `ops` requests.
pub fn ns_per_request(book: Book, threads: usize, ops: usize) -> anyhow::Result<f64> {
    let ops = ops.max(threads);
    let elapsed = match book {
        Book::Mutex => ledger_time(MutexLedger::new(LockScope::Counters), threads, ops)?,
        Book::Atomic => ledger_time(AtomicLedger::new(), threads, ops)?,
        Book::Bare => ledger_time(BareLedger::new(), threads, ops)?,
        Book::ThreeFetchAdds => {
            let line = CachePadded::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
            timed(threads, ops, |n| {
                for _ in 0..n {
                    for counter in line.iter() {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        }
    };
    Ok(elapsed.as_nanos() as f64 / (ops - ops % threads) as f64)
}

/// Every book at every thread count, interleaved, `repeats` times.
fn measure_all(
    ctx: &Ctx,
    threads: &[usize],
    ops: usize,
) -> anyhow::Result<BTreeMap<(Book, usize), Vec<f64>>> {
    let mut samples: BTreeMap<(Book, usize), Vec<f64>> = BTreeMap::new();
    let bar = ctx.progress(
        "contention",
        ctx.opts.repeats * threads.len() * Book::ALL.len(),
    );
    for _ in 0..ctx.opts.repeats {
        for &t in threads {
            for book in Book::ALL {
                let ns = ns_per_request(book, t, ops)?;
                samples.entry((book, t)).or_default().push(ns);
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    Ok(samples)
}

/// The sentences, from the rows at the most threads measured: each ledger's cost per request
/// against a 20 ms embed, and the atomic ledger against three bare `fetch_add`s.
fn verdicts(rows: &[Row], cores: usize) -> Vec<String> {
    let threads = |r: &Row| r.case.strip_prefix("threads=")?.parse::<usize>().ok();
    let top = rows.iter().filter_map(threads).max().unwrap_or(1);
    let median = |variant: &str, metric: &str| {
        rows.iter()
            .find(|r| r.variant == variant && r.metric == metric && threads(r) == Some(top))
            .map_or(f64::NAN, |r| r.value.median)
    };
    let mutex = median(Book::Mutex.name(), "bookkeeping");
    let atomic = median(Book::Atomic.name(), "bookkeeping");
    let reference = median(Book::ThreeFetchAdds.name(), "bookkeeping");
    let ratio = median("AtomicLedger / MutexLedger", "bookkeeping_ratio");
    let request_ns = super::PLAN_SERVICE.as_nanos() as f64;
    vec![
        format!(
            "At {top} threads the ledgers complete one request's bookkeeping every {mutex:.0} ns with the global mutex and every {atomic:.0} ns with atomics \
             (inverse throughput over the machine's {cores} cores; ratio {ratio:.2}): {:.4}% and {:.4}% of a {} ms embed. A request that waits for the lock behind others sees more.",
            100.0 * mutex / request_ns,
            100.0 * atomic / request_ns,
            super::PLAN_SERVICE.as_millis()
        ),
        format!(
            "AtomicLedger is {:.1}x three relaxed fetch_adds on one shared line ({reference:.0} ns) at {top} threads.",
            atomic / reference
        ),
    ]
}

/// The scenario, as the registry ([`super::SCENARIOS`]) lists it.
pub struct Contention;

impl super::ScenarioSpec for Contention {
    fn name(&self) -> &'static str {
        "contention"
    }
    fn title(&self) -> &'static str {
        "Bookkeeping cost without I/O"
    }
    fn question(&self) -> &'static str {
        "What does the lock itself cost per request, apart from the network, and how does that compare with a request?"
    }
    fn in_main_job(&self) -> bool {
        true
    }
    fn measure(&self, ctx: &Ctx) -> anyhow::Result<Findings> {
        run(ctx)
    }
    fn charts(&self) -> &'static [&'static str] {
        &["contention.svg"]
    }
    fn draw(
        &self,
        dir: &std::path::Path,
        result: &crate::results::ScenarioResult,
    ) -> anyhow::Result<()> {
        crate::charts::draw_contention(dir, result)
    }
    fn reword(&self, result: &crate::results::ScenarioResult) -> Option<Vec<String>> {
        Some(verdicts(&result.rows, result.machine.cores))
    }
}

/// Runs the scenario.
fn run(ctx: &Ctx) -> anyhow::Result<Findings> {
    let o = &ctx.opts;
    let ops = o.requests.unwrap_or(1_000_000);
    let threads: Vec<usize> = o.workers.map_or(THREADS.to_vec(), |w| vec![1, w]);
    let samples = measure_all(ctx, &threads, ops)?;
    let mut rows = Vec::new();
    for ((book, t), ns) in &samples {
        rows.push(Row::new(
            book.name(),
            format!("threads={t}"),
            "bookkeeping",
            "ns/request",
            Summary::of(ns.clone()),
        ));
    }
    let top = *threads.iter().max().unwrap_or(&1);
    let at = |book| samples.get(&(book, top)).cloned().unwrap_or_default();
    let ratio = Summary::of(
        at(Book::Atomic)
            .iter()
            .zip(at(Book::Mutex))
            .map(|(a, m)| a / m)
            .collect(),
    );
    rows.push(Row::new(
        "AtomicLedger / MutexLedger",
        format!("threads={top}"),
        "bookkeeping_ratio",
        "x",
        ratio,
    ));
    let verdicts = verdicts(&rows, ctx.machine.cores);
    let params = json!({ "threads": threads, "requests_per_measurement": ops, "nodes_in_ledger": 2, "strategy": "round_robin" });
    Ok(Findings {
        repeats: o.repeats,
        params,
        rows,
        verdicts,
        accounting: Accounting::default(),
    })
}
