//! `plan-test1`, the plan's Test 1 as written: 1,000 texts of `"test" x 100` embedded with
//! `mxbai-embed-large` from 12 workers; requests per second per variant.
//!
//! The plan expects "before ~5-10 req/s, after ~80-120 req/s". Its pool had unknown nodes; here
//! the cluster is two nodes with six slots each (FlockParser's `sollol_compat` runs six workers
//! per node), so twelve requests can be served at once and the pool is the only possible limit.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::{Ctx, Findings};
use crate::load::Workload;
use crate::measure::measure;
use crate::nodes::{ClusterSpec, Nodes};
use crate::results::{Accounting, Row};
use crate::summary::{Latency, Summary, new_histogram};
use crate::variant::Variant;

/// What the repeats of one variant measured.
struct Runs {
    throughput: Vec<f64>,
    /// Texts answered per run (fewer than asked when the cap stopped it).
    answered: Vec<f64>,
    latency: hdrhistogram::Histogram<u64>,
}

impl Runs {
    fn new() -> Self {
        Self {
            throughput: vec![],
            answered: vec![],
            latency: new_histogram(),
        }
    }
}

/// Where a throughput falls against the plan's "before" and "after" bands.
fn band(throughput: f64) -> &'static str {
    if throughput < 5.0 {
        "below the plan's 'before' band"
    } else if throughput <= 10.0 {
        "in the plan's 'before' band (5-10 req/s)"
    } else if throughput < 80.0 {
        "between the plan's bands"
    } else if throughput <= 120.0 {
        "in the plan's 'after' band (80-120 req/s)"
    } else {
        "above the plan's 'after' band"
    }
}

/// The scenario, as the registry ([`super::SCENARIOS`]) lists it.
pub struct PlanTest1;

impl super::ScenarioSpec for PlanTest1 {
    fn name(&self) -> &'static str {
        "plan-test1"
    }
    fn title(&self) -> &'static str {
        "The plan's Test 1: 1,000 embeds from 12 workers"
    }
    fn question(&self) -> &'static str {
        "Which variants land in the plan's 'before' (5-10 req/s) and 'after' (80-120 req/s) bands, and by which mechanism?"
    }
    fn in_main_job(&self) -> bool {
        true
    }
    fn measure(&self, ctx: &Ctx) -> anyhow::Result<Findings> {
        run(ctx)
    }
    fn reword(&self, result: &crate::results::ScenarioResult) -> Option<Vec<String>> {
        Some(verdicts(&result.rows))
    }
}

/// Runs the scenario.
fn run(ctx: &Ctx) -> anyhow::Result<Findings> {
    let o = &ctx.opts;
    let (workers, requests) = (o.workers.unwrap_or(12), o.requests.unwrap_or(1000));
    let spec = ClusterSpec::uniform(o.nodes.unwrap_or(2), o.slots.unwrap_or(6), ctx.service());
    let cap = o.cap.unwrap_or(Duration::from_secs(4));
    let cluster = Nodes::start(&spec, &o.external)?;
    let workload = Workload {
        workers,
        requests,
        cap: Some(cap),
        model: "mxbai-embed-large".into(),
        text: Some("test".repeat(100)),
    };
    let mut accounting = Accounting::default();
    let per_variant = measure_all(ctx, &cluster, &workload, &mut accounting)?;
    let rows: Vec<Row> = per_variant
        .into_iter()
        .map(|(variant, runs)| row(variant, runs, &workload, cap).ideal(spec.capacity()))
        .collect();
    let verdicts = verdicts(&rows);
    let params = json!({
        "workers": workers, "texts": requests, "text": "\"test\" x 100", "model": "mxbai-embed-large",
        "nodes": spec.speeds.len(), "slots_per_node": spec.slots, "service_ms": spec.service.as_secs_f64() * 1e3,
        "cap_s": cap.as_secs_f64(), "strategy": o.strategy, "variants": o.variants, "external_nodes": o.external,
    });
    Ok(Findings {
        repeats: o.repeats,
        params,
        rows,
        verdicts,
        accounting,
    })
}

/// Every variant's runs, `repeats` times, interleaved.
fn measure_all(
    ctx: &Ctx,
    cluster: &Nodes,
    workload: &Workload,
    accounting: &mut Accounting,
) -> anyhow::Result<BTreeMap<Variant, Runs>> {
    let o = &ctx.opts;
    let mut per_variant: BTreeMap<Variant, Runs> = BTreeMap::new();
    let bar = ctx.progress("plan-test1", o.repeats * o.variants.len());
    for _ in 0..o.repeats {
        for &variant in &o.variants {
            bar.set_message(variant.name());
            let m = measure(variant, cluster, ctx.pool_options(), workload, accounting)?;
            let runs = per_variant.entry(variant).or_insert_with(Runs::new);
            runs.throughput.push(m.run.throughput());
            runs.answered.push(m.run.ok() as f64);
            crate::summary::merge(&mut runs.latency, &m.run.latency);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(per_variant)
}

/// One variant's throughput row, noting whether the cap stopped it.
fn row(variant: Variant, runs: Runs, workload: &Workload, cap: Duration) -> Row {
    let requests = workload.requests;
    let thr = Summary::of(runs.throughput);
    let done = Summary::of(runs.answered);
    let note = if done.min < requests as f64 {
        format!(
            "stopped at the {:.0} s cap after {:.0} of {requests} texts (median)",
            cap.as_secs_f64(),
            done.median
        )
    } else {
        format!("all {requests} texts")
    };
    // The case is the plan's, whatever the options: it names the benchmark in Bencher's history.
    Row::new(
        variant.name(),
        "1,000 texts, 12 workers",
        "throughput",
        "req/s",
        thr,
    )
    .latency(Latency::of(&runs.latency))
    .note(note)
}

/// One sentence per variant: its throughput against the plan's bands and the fastest variant.
fn verdicts(rows: &[Row]) -> Vec<String> {
    let throughput: Vec<&Row> = rows.iter().filter(|r| r.metric == "throughput").collect();
    let fastest = throughput
        .iter()
        .map(|r| r.value.median)
        .fold(f64::NAN, f64::max);
    let verdict = |r: &&Row| {
        let thr = r.value.median;
        format!(
            "{}: {thr:.0} req/s, {}; {}.",
            r.variant,
            band(thr),
            crate::wording::slower_than_fastest(thr, fastest)
        )
    };
    throughput.iter().map(verdict).collect()
}
