//! `stress`, the plan's Test 2 and its 10,000-request check: are any updates lost?
//!
//! Over HTTP: 100 threads send 10,000 requests through each pool to nodes that fail 1% of
//! attempts; the client's tally, the pool's stats and the nodes' counters must agree exactly and
//! every active gauge must be back at zero. In memory: 100 threads x 1,000 requests' bookkeeping
//! through each ledger must count exactly 100,000.

use std::time::Duration;

use pool::testing::{Outcome, simulate_request};
use pool::{AtomicLedger, Ledger, LockScope, MutexLedger, Pool, PoolConfig, Strategy};
use serde_json::json;

use super::{Ctx, Findings};
use crate::load::Workload;
use crate::measure::measure;
use crate::nodes::{ClusterSpec, Nodes};
use crate::results::{Accounting, Row};
use crate::summary::{Latency, Summary};
use crate::variant::Variant;

/// Outcome of one HTTP stress run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StressOutcome {
    /// Requests issued minus requests accounted for, plus every disagreement between client,
    /// pool and nodes ([`crate::measure::check`]).
    pub lost: u64,
    /// Sum of the pool's active gauges after the run.
    pub active_after: u64,
}

/// 10,000 requests (or `requests`) from `threads` threads through `variant`.
pub fn http_stress(
    ctx: &Ctx,
    variant: Variant,
    requests: usize,
    threads: usize,
) -> anyhow::Result<(StressOutcome, Accounting, Latency)> {
    let spec = ClusterSpec {
        error_rate: 0.01,
        ..ClusterSpec::uniform(2, 64, Duration::ZERO)
    };
    let cluster = Nodes::start(&spec, &[])?;
    let workload = Workload {
        workers: threads,
        requests,
        cap: None,
        model: "all-minilm".into(),
        text: None,
    };
    let mut accounting = Accounting::default();
    let m = measure(
        variant,
        &cluster,
        ctx.pool_options(),
        &workload,
        &mut accounting,
    )?;
    let accounted = m.run.ok() + m.run.failed();
    let lost = (requests as u64).abs_diff(accounted) + m.lost;
    let s = &m.stats;
    Ok((
        StressOutcome {
            lost,
            active_after: s.active_total(),
        },
        accounting,
        Latency::of(&m.run.latency),
    ))
}

fn in_memory(ledger: impl Into<Ledger>, threads: usize, per_thread: usize) -> anyhow::Result<u64> {
    let pool = Pool::new(ledger, PoolConfig::default(), &["http://a:1", "http://b:2"])?;
    std::thread::scope(|s| {
        for _ in 0..threads {
            let ledger = pool.ledger();
            s.spawn(move || {
                for _ in 0..per_thread {
                    simulate_request(
                        ledger,
                        Strategy::RoundRobin,
                        Outcome::Success {
                            latency: Duration::from_millis(1),
                        },
                    );
                }
            });
        }
    });
    let stats = pool.stats();
    let want = (threads * per_thread) as u64;
    let per_node: u64 = stats
        .node_performance
        .values()
        .map(|n| n.total_requests)
        .sum();
    Ok(want.abs_diff(stats.total_requests)
        + want.abs_diff(stats.successful_requests)
        + want.abs_diff(per_node))
}

/// Lost updates of 100 threads x 1,000 requests in memory: `(mutex, atomic)`.
pub fn counters_lost() -> anyhow::Result<(u64, u64)> {
    Ok((
        in_memory(MutexLedger::new(LockScope::Counters), 100, 1000)?,
        in_memory(AtomicLedger::new(), 100, 1000)?,
    ))
}

/// Lost updates (with the latency) and leftover gauges of one HTTP stress run.
fn http_rows(variant: Variant, case: &str, outcome: StressOutcome, latency: Latency) -> Vec<Row> {
    let one = |v: u64| Summary::of(vec![v as f64]);
    vec![
        Row::new(variant.name(), case, "lost", "updates", one(outcome.lost))
            .ideal(0.0)
            .latency(latency),
        Row::new(
            variant.name(),
            case,
            "active_after",
            "requests",
            one(outcome.active_after),
        )
        .ideal(0.0),
    ]
}

/// The case of the in-memory rows.
const IN_MEMORY: &str = "100 threads x 1,000, in memory";

/// The verdicts, from the rows and the parameters alone (so `harness report` rewords them).
fn verdicts(rows: &[Row], params: &serde_json::Value) -> Vec<String> {
    let requests = params["requests"].as_u64().unwrap_or(0);
    let lost = rows.iter().filter(|r| r.metric == "lost");
    let (memory, http): (Vec<&Row>, Vec<&Row>) = lost.partition(|r| r.case == IN_MEMORY);
    let mut out: Vec<String> = http
        .iter()
        .map(|r| {
            let active = rows
                .iter()
                .find(|a| a.variant == r.variant && a.case == r.case && a.metric == "active_after")
                .map_or(f64::NAN, |a| a.value.median);
            let exact = r.value.median == 0.0 && active == 0.0;
            format!(
                "{}: {} lost updates, {active} requests still marked active after {requests} requests{}.",
                r.variant,
                r.value.median,
                if exact {
                    ": client, pool and nodes agree exactly"
                } else {
                    ": MISMATCH"
                }
            )
        })
        .collect();
    out.extend(memory.iter().map(|r| {
        format!(
            "{}: {} lost updates over 100 threads x 1,000 requests in memory.",
            r.variant, r.value.median
        )
    }));
    if params["bare_requested"].as_bool() == Some(true) {
        out.push("bare: keeps no statistics, so there is nothing to lose; not run.".into());
    }
    out
}

/// The scenario, as the registry ([`super::SCENARIOS`]) lists it.
pub struct Stress;

impl super::ScenarioSpec for Stress {
    fn name(&self) -> &'static str {
        "stress"
    }
    fn title(&self) -> &'static str {
        "Target 3: zero lost updates"
    }
    fn question(&self) -> &'static str {
        "Are all requests counted exactly (client, pool and nodes agree) under 100 threads, over HTTP and in memory?"
    }
    fn in_main_job(&self) -> bool {
        true
    }
    fn measure(&self, ctx: &Ctx) -> anyhow::Result<Findings> {
        run(ctx)
    }
    fn reword(&self, result: &crate::results::ScenarioResult) -> Option<Vec<String>> {
        Some(verdicts(&result.rows, &result.params))
    }
}

/// Runs the scenario.
fn run(ctx: &Ctx) -> anyhow::Result<Findings> {
    let o = &ctx.opts;
    let (requests, threads) = (o.requests.unwrap_or(10_000), o.workers.unwrap_or(100));
    let mut rows = Vec::new();
    let mut accounting = Accounting::default();
    let variants: Vec<Variant> = o
        .variants
        .iter()
        .copied()
        .filter(|v| v.keeps_stats())
        .collect();
    let bar = ctx.progress("stress", variants.len() + 1);
    for &variant in &variants {
        bar.set_message(variant.name());
        let (outcome, acc, latency) = http_stress(ctx, variant, requests, threads)?;
        accounting.merge(acc);
        let case = format!("{requests} requests, {threads} threads, 1% failures");
        rows.extend(http_rows(variant, &case, outcome, latency));
        bar.inc(1);
    }
    let (mutex_lost, atomic_lost) = counters_lost()?;
    bar.finish_and_clear();
    for (name, lost) in [("MutexLedger", mutex_lost), ("AtomicLedger", atomic_lost)] {
        let lost = Summary::of(vec![lost as f64]);
        rows.push(Row::new(name, IN_MEMORY, "lost", "updates", lost).ideal(0.0));
    }
    let params = json!({
        "requests": requests, "threads": threads, "nodes": 2, "slots_per_node": 64, "service_ms": 0, "error_rate": 0.01,
        "in_memory": "100 threads x 1000", "variants": variants,
        "bare_requested": o.variants.contains(&Variant::Bare),
    });
    Ok(Findings {
        repeats: 1,
        verdicts: verdicts(&rows, &params),
        params,
        rows,
        accounting,
    })
}
