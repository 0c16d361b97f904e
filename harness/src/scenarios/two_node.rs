//! `two-node`, the plan's Target 1: how much faster is a batch on two nodes than on one?
//!
//! 1 node vs 2 identical nodes with one slot each (as Ollama serves embedding models), 12 workers,
//! 240 embeds (20 documents x 12 chunks), 20 ms service time. Per variant the speedup is
//! time(1 node) / time(2 nodes), computed pair by pair within each repeat.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::{Ctx, judge_speedup};
use crate::cluster::{Cluster, ClusterSpec};
use crate::load::Workload;
use crate::measure::measure;
use crate::results::{Accounting, Row, ScenarioResult};
use crate::summary::{Latency, Summary, new_histogram};

/// Runs the scenario.
pub fn run(ctx: &Ctx) -> anyhow::Result<ScenarioResult> {
    let o = &ctx.opts;
    let (workers, requests) = (o.workers.unwrap_or(12), o.requests.unwrap_or(240));
    let (service, slots) = (
        o.service.unwrap_or(Duration::from_millis(20)),
        o.slots.unwrap_or(1),
    );
    let one_spec = ClusterSpec::uniform(1, slots, service);
    let two_spec = ClusterSpec::uniform(2, slots, service);
    let ideal = two_spec.capacity() / one_spec.capacity();
    let (one, two) = (
        Cluster::start(&one_spec, &o.external)?,
        Cluster::start(&two_spec, &o.external)?,
    );
    let workload = Workload {
        workers,
        requests,
        cap: o.cap,
        model: "mxbai-embed-large".into(),
        text: None,
    };
    let mut accounting = Accounting::default();
    let mut per_variant: BTreeMap<_, (Vec<f64>, Vec<f64>, Vec<f64>, _)> = BTreeMap::new();
    let bar = ctx.progress("two-node", o.repeats * o.variants.len());
    for _ in 0..o.repeats {
        for &variant in &o.variants {
            bar.set_message(variant.name());
            let m1 = measure(
                variant,
                &one,
                ctx.pool_options(),
                &workload,
                &mut accounting,
            )?;
            let m2 = measure(
                variant,
                &two,
                ctx.pool_options(),
                &workload,
                &mut accounting,
            )?;
            let entry = per_variant
                .entry(variant)
                .or_insert_with(|| (vec![], vec![], vec![], new_histogram()));
            entry.0.push(m2.run.throughput() / m1.run.throughput());
            entry.1.push(m1.run.throughput());
            entry.2.push(m2.run.throughput());
            entry.3.add(&m2.run.latency).expect("same bounds");
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let mut rows = Vec::new();
    let mut verdicts = Vec::new();
    for (variant, (speedups, thr1, thr2, latency)) in per_variant {
        let speedup = Summary::of(speedups);
        let efficiency = Summary::of(speedup.samples.iter().map(|s| 100.0 * s / ideal).collect());
        verdicts.push(format!(
            "{variant}: {:.2}x on 2 nodes (ideal {ideal:.1}x, efficiency {:.0}%): {}.",
            speedup.median,
            efficiency.median,
            judge_speedup(speedup.median, ideal)
        ));
        rows.push(Row::new(variant.name(), "2 nodes vs 1", "speedup", "x", speedup).ideal(ideal));
        rows.push(
            Row::new(
                variant.name(),
                "2 nodes vs 1",
                "efficiency",
                "%",
                efficiency,
            )
            .ideal(100.0),
        );
        rows.push(
            Row::new(
                variant.name(),
                "1 node",
                "throughput",
                "req/s",
                Summary::of(thr1),
            )
            .ideal(one_spec.capacity()),
        );
        rows.push(
            Row::new(
                variant.name(),
                "2 nodes",
                "throughput",
                "req/s",
                Summary::of(thr2),
            )
            .ideal(two_spec.capacity())
            .latency(Latency::of(&latency)),
        );
    }
    let params = json!({
        "workers": workers, "requests": requests, "service_ms": service.as_secs_f64() * 1e3, "slots_per_node": slots,
        "strategy": o.strategy, "variants": o.variants, "external_nodes": o.external, "cap_s": o.cap.map(|c| c.as_secs_f64()),
        "probe_interval_s": o.probe_interval.as_secs_f64(),
    });
    Ok(ctx.result(
        "two-node",
        "Target 1: two nodes vs one",
        "Does a second node make a batch of embeddings ~1.8x faster, as the plan expects, and which variants get there?",
        o.repeats,
        params,
        rows,
        verdicts,
        accounting,
    ))
}
