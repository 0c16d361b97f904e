//! `plan-test1`, the plan's Test 1 as written: 1,000 texts of `"test" x 100` embedded with
//! `mxbai-embed-large` from 12 workers; requests per second per variant.
//!
//! The plan expects "before ~5-10 req/s, after ~80-120 req/s". Its pool had unknown nodes; here
//! the cluster is two nodes with six slots each (FlockParser's `sollol_compat` runs six workers
//! per node), so twelve requests can be served at once and the pool is the only possible limit.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::Ctx;
use crate::cluster::{Cluster, ClusterSpec};
use crate::load::Workload;
use crate::measure::measure;
use crate::results::{Accounting, Row, ScenarioResult};
use crate::summary::{Latency, Summary, new_histogram};

/// Runs the scenario.
pub fn run(ctx: &Ctx) -> anyhow::Result<ScenarioResult> {
    let o = &ctx.opts;
    let (workers, requests) = (o.workers.unwrap_or(12), o.requests.unwrap_or(1000));
    let spec = ClusterSpec::uniform(
        o.nodes.unwrap_or(2),
        o.slots.unwrap_or(6),
        o.service.unwrap_or(Duration::from_millis(20)),
    );
    let cap = o.cap.unwrap_or(Duration::from_secs(4));
    let cluster = Cluster::start(&spec, &o.external)?;
    let workload = Workload {
        workers,
        requests,
        cap: Some(cap),
        model: "mxbai-embed-large".into(),
        text: Some("test".repeat(100)),
    };
    let mut accounting = Accounting::default();
    let mut per_variant: BTreeMap<_, (Vec<f64>, Vec<f64>, _)> = BTreeMap::new();
    let bar = ctx.progress("plan-test1", o.repeats * o.variants.len());
    for _ in 0..o.repeats {
        for &variant in &o.variants {
            bar.set_message(variant.name());
            let m = measure(
                variant,
                &cluster,
                ctx.pool_options(),
                &workload,
                &mut accounting,
            )?;
            let e = per_variant
                .entry(variant)
                .or_insert_with(|| (vec![], vec![], new_histogram()));
            e.0.push(m.run.throughput());
            e.1.push(m.run.ok as f64);
            e.2.add(&m.run.latency).expect("same bounds");
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let mut rows = Vec::new();
    let mut verdicts = Vec::new();
    let fastest = per_variant
        .values()
        .map(|v| Summary::of(v.0.clone()).median)
        .fold(f64::NAN, f64::max);
    for (variant, (thr, done, latency)) in per_variant {
        let thr = Summary::of(thr);
        let done = Summary::of(done);
        let note = if done.min < requests as f64 {
            format!(
                "stopped at the {:.0} s cap after {:.0} of {requests} texts (median)",
                cap.as_secs_f64(),
                done.median
            )
        } else {
            format!("all {requests} texts")
        };
        let band = if thr.median < 5.0 {
            "below the plan's 'before' band"
        } else if thr.median <= 10.0 {
            "in the plan's 'before' band (5-10 req/s)"
        } else if thr.median < 80.0 {
            "between the plan's bands"
        } else if thr.median <= 120.0 {
            "in the plan's 'after' band (80-120 req/s)"
        } else {
            "above the plan's 'after' band"
        };
        verdicts.push(format!(
            "{variant}: {:.0} req/s, {band}; {:.1}x slower than the fastest variant.",
            thr.median,
            fastest / thr.median
        ));
        rows.push(
            Row::new(
                variant.name(),
                "1,000 texts, 12 workers",
                "throughput",
                "req/s",
                thr,
            )
            .ideal(spec.capacity())
            .latency(Latency::of(&latency))
            .note(note),
        );
    }
    let params = json!({
        "workers": workers, "texts": requests, "text": "\"test\" x 100", "model": "mxbai-embed-large",
        "nodes": spec.speeds.len(), "slots_per_node": spec.slots, "service_ms": spec.service.as_secs_f64() * 1e3,
        "cap_s": cap.as_secs_f64(), "strategy": o.strategy, "variants": o.variants, "external_nodes": o.external,
    });
    Ok(ctx.result(
        "plan-test1",
        "The plan's Test 1: 1,000 embeds from 12 workers",
        "Which variants land in the plan's 'before' (5-10 req/s) and 'after' (80-120 req/s) bands, and by which mechanism?",
        o.repeats,
        params,
        rows,
        verdicts,
        accounting,
    ))
}
