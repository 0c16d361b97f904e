//! `scaling`, the plan's Target 2: does throughput grow linearly with workers up to 12?
//!
//! Workers 1 to 100 against two nodes with enough slots for every worker, so the nodes never limit
//! throughput and whatever flattens the curve is the pool. Throughput relative to 1 worker is
//! computed pair by pair within each repeat; the ideal is the worker count.

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

/// Default worker counts.
pub const WORKERS: [usize; 9] = [1, 2, 4, 8, 12, 16, 32, 64, 100];
/// Requests each worker sends per run.
const PER_WORKER: usize = 10;

/// Throughput of each variant at each worker count, over repeats.
pub type Curves = BTreeMap<Variant, BTreeMap<usize, Vec<f64>>>;

/// Merged latency histograms per variant and worker count.
pub type LatencyByPoint = BTreeMap<(Variant, usize), hdrhistogram::Histogram<u64>>;

/// Measures throughput for every variant in `variants` at every count in `workers`.
pub fn measure_curves(
    ctx: &Ctx,
    variants: &[Variant],
    workers: &[usize],
    spec: &ClusterSpec,
    repeats: usize,
    accounting: &mut Accounting,
) -> anyhow::Result<(Curves, LatencyByPoint)> {
    let cluster = Nodes::start(spec, &ctx.opts.external)?;
    let cap = ctx.opts.cap.or(Some(Duration::from_secs(1)));
    let mut curves = Curves::new();
    let mut latency = BTreeMap::new();
    let bar = ctx.progress("scaling", repeats * workers.len() * variants.len());
    for _ in 0..repeats {
        for &w in workers {
            for &variant in variants {
                bar.set_message(format!("{variant} x{w}"));
                let requests = ctx.opts.requests.map_or(w * PER_WORKER, |r| r.max(w));
                let workload = Workload {
                    workers: w,
                    requests,
                    cap,
                    model: "nomic-embed-text".into(),
                    text: None,
                };
                let m = measure(variant, &cluster, ctx.pool_options(), &workload, accounting)?;
                curves
                    .entry(variant)
                    .or_default()
                    .entry(w)
                    .or_default()
                    .push(m.run.throughput());
                let merged = latency.entry((variant, w)).or_insert_with(new_histogram);
                crate::summary::merge(merged, &m.run.latency);
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    Ok((curves, latency))
}

/// Throughput at `w` workers over throughput at 1 worker, pair by pair.
pub fn relative(curve: &BTreeMap<usize, Vec<f64>>, w: usize) -> Vec<f64> {
    match (curve.get(&1), curve.get(&w)) {
        (Some(base), Some(at)) => base.iter().zip(at).map(|(b, a)| a / b).collect(),
        _ => Vec::new(),
    }
}

/// Throughput relative to one worker (ideal: `w`) and absolute (ideal: what the nodes and `w`
/// closed-loop workers allow) at `w` workers.
fn worker_rows(
    variant: Variant,
    curve: &BTreeMap<usize, Vec<f64>>,
    w: usize,
    spec: &ClusterSpec,
    latency: Option<&hdrhistogram::Histogram<u64>>,
) -> Vec<Row> {
    let case = format!("workers={w}");
    let rel = Summary::of(relative(curve, w));
    let thr = Summary::of(curve.get(&w).cloned().unwrap_or_default());
    let mut row = Row::new(variant.name(), case.clone(), "throughput", "req/s", thr)
        .ideal(spec.capacity().min(w as f64 / spec.service.as_secs_f64()));
    if let Some(h) = latency {
        row = row.latency(Latency::of(h));
    }
    vec![
        Row::new(variant.name(), case, "throughput_rel", "x", rel).ideal(w as f64),
        row,
    ]
}

/// One sentence per variant from its rows: how close it gets to linear at 12 workers (or the
/// most measured), beside the bare client on the same nodes.
fn verdicts(rows: &[Row]) -> Vec<String> {
    let workers = |r: &Row| r.case.strip_prefix("workers=")?.parse::<usize>().ok();
    let most = rows.iter().filter_map(workers).max().unwrap_or(1);
    let at = if rows.iter().any(|r| workers(r) == Some(12)) {
        12
    } else {
        most
    };
    let rel_of = |variant: &str| {
        rows.iter()
            .find(|r| {
                r.variant == variant && r.metric == "throughput_rel" && workers(r) == Some(at)
            })
            .map(|r| r.value.median)
    };
    let mut variants: Vec<&str> = rows.iter().map(|r| r.variant.as_str()).collect();
    variants.dedup();
    variants
        .into_iter()
        .filter_map(|variant| Some((variant, rel_of(variant)?)))
        .map(|(variant, rel)| {
            // The bare client on the same nodes shows what the machine allows; a variant far
            // below it is limited by itself, not by the CPU the mock nodes share with the client.
            let bare = rel_of(Variant::Bare.name()).filter(|_| variant != Variant::Bare.name());
            format!(
                "{variant}: {rel:.1}x the 1-worker throughput at {at} workers (ideal {at}x, {:.0}% of linear{}){}.",
                100.0 * rel / at as f64,
                bare.map_or(String::new(), |b| format!("; bare client {b:.1}x")),
                if rel >= 0.8 * at as f64 { "" } else { ": does not scale" }
            )
        })
        .collect()
}

/// The scenario, as the registry ([`super::SCENARIOS`]) lists it.
pub struct Scaling;

impl super::ScenarioSpec for Scaling {
    fn name(&self) -> &'static str {
        "scaling"
    }
    fn title(&self) -> &'static str {
        "Target 2: throughput vs workers"
    }
    fn question(&self) -> &'static str {
        "Does throughput grow linearly with worker threads (10-12x at 12 workers, as the plan expects) when the nodes have capacity to spare?"
    }
    fn in_main_job(&self) -> bool {
        true
    }
    fn measure(&self, ctx: &Ctx) -> anyhow::Result<Findings> {
        run(ctx)
    }
    fn charts(&self) -> &'static [&'static str] {
        &["scaling.svg"]
    }
    fn draw(
        &self,
        dir: &std::path::Path,
        result: &crate::results::ScenarioResult,
    ) -> anyhow::Result<()> {
        crate::charts::draw_scaling(dir, result)
    }
    fn reword(&self, result: &crate::results::ScenarioResult) -> Option<Vec<String>> {
        Some(verdicts(&result.rows))
    }
}

/// Runs the scenario.
fn run(ctx: &Ctx) -> anyhow::Result<Findings> {
    let o = &ctx.opts;
    let workers: Vec<usize> = match o.workers {
        Some(w) => vec![1, w],
        None => WORKERS.to_vec(),
    };
    let max_workers = *workers.iter().max().unwrap_or(&1);
    let nodes = o.nodes.unwrap_or(2);
    let slots = o.slots.unwrap_or(max_workers.div_ceil(nodes).max(1));
    let spec = ClusterSpec::uniform(nodes, slots, ctx.service());
    let mut accounting = Accounting::default();
    let (curves, latency) = measure_curves(
        ctx,
        &o.variants,
        &workers,
        &spec,
        o.repeats,
        &mut accounting,
    )?;
    let mut rows = Vec::new();
    for (variant, curve) in &curves {
        for &w in &workers {
            rows.extend(worker_rows(
                *variant,
                curve,
                w,
                &spec,
                latency.get(&(*variant, w)),
            ));
        }
    }
    let verdicts = verdicts(&rows);
    let params = json!({
        "workers": workers, "requests_per_worker": PER_WORKER, "requests_override": o.requests, "nodes": nodes,
        "slots_per_node": slots, "service_ms": spec.service.as_secs_f64() * 1e3, "cap_s": o.cap.unwrap_or(Duration::from_secs(1)).as_secs_f64(),
        "strategy": o.strategy, "variants": o.variants, "external_nodes": o.external,
    });
    Ok(Findings {
        repeats: o.repeats,
        params,
        rows,
        verdicts,
        accounting,
    })
}
