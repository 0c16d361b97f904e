//! `two-node`, the plan's Target 1: how much faster is a batch on two nodes than on one?
//!
//! 1 node vs 2 identical nodes with one slot each (as Ollama serves embedding models), 12 workers,
//! 240 embeds (20 documents x 12 chunks), 20 ms service time. Per variant the speedup is
//! time(1 node) / time(2 nodes), computed pair by pair within each repeat.

use std::collections::BTreeMap;

use serde_json::json;

use super::{Ctx, Findings, judge_speedup};
use crate::load::Workload;
use crate::measure::measure;
use crate::nodes::{ClusterSpec, Nodes};
use crate::results::{Accounting, Row};
use crate::summary::{Latency, Summary, new_histogram};
use crate::variant::Variant;

/// What the repeats of one variant measured.
struct Pairs {
    /// Two-node over one-node throughput, per repeat.
    speedups: Vec<f64>,
    /// One-node throughput, per repeat.
    one: Vec<f64>,
    /// Two-node throughput, per repeat.
    two: Vec<f64>,
    /// Two-node latencies, all repeats.
    latency: hdrhistogram::Histogram<u64>,
}

impl Pairs {
    fn new() -> Self {
        Self {
            speedups: vec![],
            one: vec![],
            two: vec![],
            latency: new_histogram(),
        }
    }
}

/// The scenario, as the registry ([`super::SCENARIOS`]) lists it.
pub struct TwoNode;

impl super::ScenarioSpec for TwoNode {
    fn name(&self) -> &'static str {
        "two-node"
    }
    fn title(&self) -> &'static str {
        "Target 1: two nodes vs one"
    }
    fn question(&self) -> &'static str {
        "Does a second node make a batch of embeddings ~1.8x faster, as the plan expects, and which variants get there?"
    }
    fn in_main_job(&self) -> bool {
        true
    }
    fn measure(&self, ctx: &Ctx) -> anyhow::Result<Findings> {
        run(ctx)
    }
    fn charts(&self) -> &'static [&'static str] {
        &["two-node.svg", "two-node-latency.svg"]
    }
    fn draw(
        &self,
        dir: &std::path::Path,
        result: &crate::results::ScenarioResult,
    ) -> anyhow::Result<()> {
        crate::charts::draw_two_node(dir, result)
    }
    fn reword(&self, result: &crate::results::ScenarioResult) -> Option<Vec<String>> {
        Some(verdicts(&result.rows))
    }
}

/// Runs the scenario (also the gate's two-node speedups, at its quick size).
pub(crate) fn run(ctx: &Ctx) -> anyhow::Result<Findings> {
    let o = &ctx.opts;
    let (workers, requests) = (o.workers.unwrap_or(12), o.requests.unwrap_or(240));
    let (service, slots) = (ctx.service(), o.slots.unwrap_or(1));
    let specs = [
        ClusterSpec::uniform(1, slots, service),
        ClusterSpec::uniform(2, slots, service),
    ];
    let workload = Workload {
        workers,
        requests,
        cap: o.cap,
        model: "mxbai-embed-large".into(),
        text: None,
    };
    let mut accounting = Accounting::default();
    let per_variant = measure_pairs(ctx, &specs, &workload, &mut accounting)?;
    let rows: Vec<Row> = per_variant
        .into_iter()
        .flat_map(|(variant, pairs)| variant_rows(variant, pairs, &specs))
        .collect();
    let verdicts = verdicts(&rows);
    let params = json!({
        "workers": workers, "requests": requests, "service_ms": service.as_secs_f64() * 1e3, "slots_per_node": slots,
        "strategy": o.strategy, "variants": o.variants, "external_nodes": o.external, "cap_s": o.cap.map(|c| c.as_secs_f64()),
        "probe_interval_s": o.probe_interval.as_secs_f64(),
    });
    Ok(Findings {
        repeats: o.repeats,
        params,
        rows,
        verdicts,
        accounting,
    })
}

/// One sentence per variant from its speedup row: against the ideal, and what it means.
fn verdicts(rows: &[Row]) -> Vec<String> {
    let speedups = rows.iter().filter(|r| r.metric == "speedup");
    let verdict = |r: &Row| {
        let (speedup, ideal) = (r.value.median, r.ideal.unwrap_or(f64::NAN));
        format!(
            "{}: {speedup:.2}x on 2 nodes (ideal {ideal:.1}x, efficiency {:.0}%): {}.",
            r.variant,
            100.0 * speedup / ideal,
            judge_speedup(speedup, ideal)
        )
    };
    speedups.map(verdict).collect()
}

/// Each variant on one node and on two, back to back in every repeat, so a slow moment of the
/// machine moves both sides of a speedup.
fn measure_pairs(
    ctx: &Ctx,
    specs: &[ClusterSpec; 2],
    workload: &Workload,
    accounting: &mut Accounting,
) -> anyhow::Result<BTreeMap<Variant, Pairs>> {
    let o = &ctx.opts;
    let one = Nodes::start(&specs[0], &o.external)?;
    let two = Nodes::start(&specs[1], &o.external)?;
    let mut per_variant: BTreeMap<Variant, Pairs> = BTreeMap::new();
    let bar = ctx.progress("two-node", o.repeats * o.variants.len());
    for _ in 0..o.repeats {
        for &variant in &o.variants {
            bar.set_message(variant.name());
            let m1 = measure(variant, &one, ctx.pool_options(), workload, accounting)?;
            let m2 = measure(variant, &two, ctx.pool_options(), workload, accounting)?;
            let pairs = per_variant.entry(variant).or_insert_with(Pairs::new);
            pairs
                .speedups
                .push(m2.run.throughput() / m1.run.throughput());
            pairs.one.push(m1.run.throughput());
            pairs.two.push(m2.run.throughput());
            crate::summary::merge(&mut pairs.latency, &m2.run.latency);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(per_variant)
}

/// Speedup and efficiency against their ideals, and each side's throughput.
fn variant_rows(variant: Variant, pairs: Pairs, specs: &[ClusterSpec; 2]) -> Vec<Row> {
    let ideal = specs[1].capacity() / specs[0].capacity();
    let speedup = Summary::of(pairs.speedups);
    let efficiency = Summary::of(speedup.samples.iter().map(|s| 100.0 * s / ideal).collect());
    let name = variant.name();
    vec![
        Row::new(name, "2 nodes vs 1", "speedup", "x", speedup).ideal(ideal),
        Row::new(name, "2 nodes vs 1", "efficiency", "%", efficiency).ideal(100.0),
        Row::new(
            name,
            "1 node",
            "throughput",
            "req/s",
            Summary::of(pairs.one),
        )
        .ideal(specs[0].capacity()),
        Row::new(
            name,
            "2 nodes",
            "throughput",
            "req/s",
            Summary::of(pairs.two),
        )
        .ideal(specs[1].capacity())
        .latency(Latency::of(&pairs.latency)),
    ]
}
