//! `soak`: does anything leak or go missing when nodes misbehave?
//!
//! Per variant, 10,000 requests from 12 threads through a fresh pool over three nodes that answer
//! 2% of attempts with a 500, stall 1% for 20 ms and reset 1% of connections; node 1 is taken
//! down (connections refused) after a third of the requests have finished and brought back on
//! the same port after two thirds. The client's tally, the pool's stats and the nodes' counters
//! must agree exactly, every active gauge must be back at 0, and the process's threads and file
//! descriptors must return to where they were. `cargo test` runs the same at 1,500 requests
//! (`pool/tests/fault_soak.rs`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use mock_ollama::{FaultConfig, MockCluster, NodeConfig, NodeSpec};
use pool::{FailureReason, PoolError, PoolStats};
use serde_json::json;

use super::{Ctx, Findings};
use crate::load::{Schedule, threads};
use crate::results::{Accounting, Row};
use crate::summary::Summary;
use crate::variant::{PoolUnderTest, Variant};

/// Threads and open descriptors of this process (Linux `/proc`; 0 elsewhere).
fn process_counts() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0.0);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
    (threads, fds as f64)
}

fn faulty_nodes() -> anyhow::Result<MockCluster> {
    let faults = FaultConfig {
        error_rate: 0.02,
        stall_rate: 0.01,
        stall: Duration::from_millis(20),
        reset_rate: 0.01,
        ..FaultConfig::default()
    };
    // Each node its own seed (`NodeSpec::config`): with one seed, three nodes draw the same fault
    // for their k-th request, and a pool that serialises requests (mutex-request) sees all three
    // fail together (measured: 19 requests of 10,000 met three 500s in a row, against 0.08
    // expected).
    let configs = (0..3)
        .map(|i| NodeConfig {
            faults,
            ..NodeSpec::new(Duration::ZERO, 1).config(i)
        })
        .collect();
    Ok(MockCluster::start(configs)?)
}

/// What one soak measured.
struct SoakRun {
    ok: u64,
    failed: u64,
    stats: PoolStats,
    /// 2xx and other answers the nodes counted.
    served_ok: u64,
    served_failed: u64,
    /// Threads and descriptors after minus before.
    thread_delta: f64,
    fd_delta: f64,
    /// Client-visible errors by what each node tried said (`500, reset, refused`).
    causes: BTreeMap<String, u64>,
}

/// A failed request's cause in a few words: each attempt's reason, in order.
fn cause(error: &PoolError) -> String {
    let PoolError::AllNodesFailed { failures } = error else {
        return error.to_string();
    };
    let words: Vec<String> = failures
        .iter()
        .map(|f| match &f.reason {
            FailureReason::Connect(_) => "refused".into(),
            FailureReason::Timeout => "timeout".into(),
            FailureReason::Status { status, .. } => status.to_string(),
            FailureReason::Body(_) => "cut-off body".into(),
            FailureReason::Transport(_) => "transport".into(),
        })
        .collect();
    words.join(", ")
}

/// Sends `requests` embeds from `workers` threads, taking node 1 down after a third and back
/// after two thirds (counted in finished requests, not time).
fn drive(
    pool: &dyn PoolUnderTest,
    nodes: &MockCluster,
    requests: u64,
    workers: usize,
) -> anyhow::Result<(u64, u64, BTreeMap<String, u64>)> {
    let done = AtomicU64::new(0);
    let causes = Mutex::new(BTreeMap::new());
    let send = |i: u64| {
        let status = match pool.embed("all-minilm", format!("soak {i}").into()) {
            Ok(_) => Some(200),
            Err(e) => {
                let mut causes = causes.lock().unwrap_or_else(|p| p.into_inner());
                *causes.entry(cause(&e)).or_insert(0) += 1;
                None
            }
        };
        done.fetch_add(1, Ordering::Relaxed);
        status
    };
    let schedule = Schedule::Closed {
        workers,
        requests,
        cap: None,
    };
    // Set when the load has ended, however: the fault thread never waits for counts that will
    // not come (a load thread that died).
    let ended = AtomicBool::new(false);
    let run = std::thread::scope(|s| {
        let faults = s.spawn(|| {
            let waiting =
                |count| done.load(Ordering::Relaxed) < count && !ended.load(Ordering::Relaxed);
            while waiting(requests / 3) {
                std::thread::yield_now();
            }
            nodes.pause_node(1);
            while waiting(2 * requests / 3) {
                std::thread::yield_now();
            }
            nodes.resume_node(1)
        });
        let run = threads::run(schedule, "soak", |_| Ok(send));
        ended.store(true, Ordering::Relaxed);
        let resumed = faults
            .join()
            .map_err(|_| anyhow::anyhow!("the fault thread panicked"))?;
        resumed?;
        Ok::<_, anyhow::Error>(run?)
    })?;
    let causes = causes.into_inner().unwrap_or_else(|p| p.into_inner());
    Ok((run.ok(), run.failed(), causes))
}

fn soak_one(ctx: &Ctx, variant: Variant, requests: u64, workers: usize) -> anyhow::Result<SoakRun> {
    let before = process_counts();
    let nodes = faulty_nodes()?;
    let pool = variant.build(&nodes.urls(), ctx.pool_options())?;
    let (ok, failed, causes) = drive(&*pool, &nodes, requests, workers)?;
    let stats = pool.stats();
    drop(pool);
    let counters = nodes.counters();
    let served_ok = counters.iter().map(|c| c.succeeded("/api/embed")).sum();
    let served_failed = counters.iter().map(|c| c.failed("/api/embed")).sum();
    nodes.shutdown();
    let after = process_counts();
    Ok(SoakRun {
        ok,
        failed,
        stats,
        served_ok,
        served_failed,
        thread_delta: after.0 - before.0,
        fd_delta: after.1 - before.1,
        causes,
    })
}

/// Records every disagreement in `accounting`; returns the lost updates.
fn account(variant: Variant, run: &SoakRun, requests: u64, accounting: &mut Accounting) -> u64 {
    accounting.runs += 1;
    accounting.sent += run.ok + run.failed;
    accounting.succeeded += run.ok;
    accounting.failed += run.failed;
    let mut checks = vec![
        (
            "requests with an outcome vs sent",
            run.ok + run.failed,
            requests,
        ),
        ("nodes' answers vs client answers", run.served_ok, run.ok),
    ];
    if variant.keeps_stats() {
        let s = &run.stats;
        checks.push(("pool total vs client tally", s.total_requests, requests));
        checks.push((
            "pool successes vs client answers",
            s.successful_requests,
            run.ok,
        ));
        checks.push((
            "pool failures vs client errors",
            s.failed_requests,
            run.failed,
        ));
        checks.push(("active gauges after the run", s.active_total(), 0));
    }
    let mut lost = 0;
    for (what, ours, theirs) in checks {
        if ours != theirs {
            lost += ours.abs_diff(theirs);
            accounting
                .mismatches
                .push(format!("{variant}: {what}: {ours} != {theirs}"));
        }
    }
    accounting.checked_against_pool += u64::from(variant.keeps_stats());
    accounting.checked_against_server += 1;
    lost
}

/// The scenario, as the registry ([`super::SCENARIOS`]) lists it.
pub struct Soak;

impl super::ScenarioSpec for Soak {
    fn name(&self) -> &'static str {
        "soak"
    }
    fn title(&self) -> &'static str {
        "Faults and a node down and back: nothing lost, nothing leaked"
    }
    fn question(&self) -> &'static str {
        "With 500s, stalls, resets and a node that goes down and comes back, does every request keep an exact account on client, pool and nodes, and does the process get its threads and descriptors back?"
    }
    fn measure(&self, ctx: &Ctx) -> anyhow::Result<Findings> {
        run(ctx)
    }
    fn reword(&self, result: &crate::results::ScenarioResult) -> Option<Vec<String>> {
        // Results from before the `active_after` row keep the verdicts they were written with.
        result.rows.iter().find(|r| r.metric == "active_after")?;
        let requests = result.params["requests"].as_u64()?;
        Some(verdicts(&result.rows, requests))
    }
}

/// Runs the scenario.
fn run(ctx: &Ctx) -> anyhow::Result<Findings> {
    let o = &ctx.opts;
    anyhow::ensure!(
        o.external.is_empty(),
        "soak takes a node down, so it needs embedded nodes"
    );
    let requests = o.requests.unwrap_or(10_000) as u64;
    let workers = o.workers.unwrap_or(12);
    // tokio's signal driver opens a socket pair once per process and keeps it: open it before
    // the first baseline, so the deltas show what a soak leaves behind.
    drop(MockCluster::start(vec![])?);
    // Likewise the mock's precise timer thread, one per process.
    mock_ollama::timer::start();
    let mut accounting = Accounting::default();
    let mut rows = Vec::new();
    let bar = ctx.progress("soak", o.variants.len());
    for &variant in &o.variants {
        bar.set_message(variant.name());
        let run = soak_one(ctx, variant, requests, workers)?;
        let lost = account(variant, &run, requests, &mut accounting);
        rows.extend(describe(variant, &run, requests, lost));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let params = json!({
        "requests": requests, "workers": workers, "nodes": 3, "error_rate": 0.02, "stall_rate": 0.01,
        "stall_ms": 20, "reset_rate": 0.01, "service_ms": 0,
        "node_down": "node 1 refuses connections from 1/3 to 2/3 of the requests finished",
        "variants": o.variants,
    });
    Ok(Findings {
        repeats: 1,
        params,
        verdicts: verdicts(&rows, requests),
        rows,
        accounting,
    })
}

/// The note on a run's `client_errors` row that names its most common causes.
const MOST_COMMON: &str = "most common: ";

/// One verdict per variant, from the rows alone (so `harness report` rewords them).
fn verdicts(rows: &[Row], requests: u64) -> Vec<String> {
    let find = |variant: &str, metric: &str| {
        rows.iter()
            .find(|r| r.variant == variant && r.metric == metric)
    };
    let value =
        |variant: &str, metric: &str| find(variant, metric).map_or(f64::NAN, |r| r.value.median);
    rows.iter()
        .filter(|r| r.metric == "lost")
        .map(|r| {
            let v = r.variant.as_str();
            let causes = find(v, "client_errors")
                .and_then(|e| e.note.as_deref())
                .and_then(|n| n.strip_prefix(MOST_COMMON))
                .unwrap_or("none");
            format!(
                "{v}: {} lost, {} client-visible errors of {requests} (most common: {causes}), {} active after; threads {:+}, descriptors {:+} after the run.",
                r.value.median,
                value(v, "client_errors"),
                value(v, "active_after"),
                value(v, "thread_delta"),
                value(v, "fd_delta"),
            )
        })
        .collect()
}

/// The run's rows.
fn describe(variant: Variant, run: &SoakRun, requests: u64, lost: u64) -> Vec<Row> {
    let one = |v: f64| Summary::of(vec![v]);
    let name = variant.name();
    let case = format!("{requests} requests, faults, node 1 down and back");
    let attempts: u64 = run
        .stats
        .node_performance
        .values()
        .map(|n| n.total_requests)
        .sum();
    let node_failures: u64 = run
        .stats
        .node_performance
        .values()
        .map(|n| n.failed_requests)
        .sum();
    let mut causes: Vec<(&String, &u64)> = run.causes.iter().collect();
    causes.sort_by(|a, b| b.1.cmp(a.1));
    let causes: Vec<String> = causes
        .iter()
        .take(3)
        .map(|(c, n)| format!("{n} x [{c}]"))
        .collect();
    let causes = match causes.is_empty() {
        true => "none".to_owned(),
        false => causes.join(", "),
    };
    let mut rows = vec![
        Row::new(name, case.clone(), "lost", "requests", one(lost as f64)),
        Row::new(
            name,
            case.clone(),
            "client_errors",
            "requests",
            one(run.failed as f64),
        )
        .note(format!("{MOST_COMMON}{causes}")),
        Row::new(
            name,
            case.clone(),
            "active_after",
            "requests",
            one(run.stats.active_total() as f64),
        ),
        Row::new(
            name,
            case.clone(),
            "thread_delta",
            "threads",
            one(run.thread_delta),
        ),
        Row::new(name, case.clone(), "fd_delta", "fds", one(run.fd_delta)),
    ];
    if variant.keeps_stats() {
        // Attempts the pool counted as node failures that no node saw: connects refused while
        // node 1 was down, and requests on connections it closed.
        let unseen = node_failures.saturating_sub(run.served_failed);
        rows.push(Row::new(
            name,
            case.clone(),
            "retries",
            "attempts",
            one(attempts.saturating_sub(requests) as f64),
        ));
        rows.push(Row::new(
            name,
            case,
            "failures_no_node_saw",
            "attempts",
            one(unseen as f64),
        ));
    }
    rows
}
