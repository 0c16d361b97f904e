//! `explain`: which mechanism serialises a pool? Lock scope, node heterogeneity and routing, each
//! measured as a speedup over the fastest node alone.
//!
//! Two one-slot nodes, 12 workers, 20 ms at speed 1. Every cell runs for a fixed window (2.5 s, or
//! two whole probe cycles when the control plane is slow) and counts the answers inside it, so a
//! background probe weighs in at its steady-state share. The reference is the fastest node alone, driven by the
//! bare client (no lock, no probe), measured in every repeat; a cell's speedup is its throughput
//! over that reference, pair by pair. The capacity ideal is the sum of node capacities over the
//! fastest node's.
//!
//! The full product of the axes (6 lock cells x 3 speed ratios x 4 strategies = 72 cells) would take
//! about 15 minutes per repeat here, so the axes are swept from a baseline cell (atomic, equal
//! nodes, round-robin, instant control plane): the lock-scope axis on equal nodes with round-robin,
//! and speed ratio x strategy (fully crossed, 12 cells) with the atomic pool.

use std::collections::BTreeMap;
use std::time::Duration;

use pool::{ProbeConfig, Strategy};
use serde_json::json;

use super::Ctx;
use crate::cluster::{Cluster, ClusterSpec};
use crate::load::Workload;
use crate::measure::measure;
use crate::results::{Accounting, Row, ScenarioResult};
use crate::summary::{Latency, Summary, new_histogram};
use crate::variant::{PoolOptions, Variant};

/// One cell of the matrix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    /// Lock scope (variant).
    pub variant: Variant,
    /// Latency of the nodes' `/api/tags` and `/api/ps`.
    pub control: Duration,
    /// Slow node's service time over the fast node's.
    pub ratio: f64,
    /// Routing.
    pub strategy: Strategy,
    /// Which axis the cell belongs to.
    pub axis: &'static str,
}

impl Cell {
    /// Short label for tables and charts.
    pub fn label(&self) -> String {
        match self.axis {
            "lock scope" => format!("control plane {} ms", self.control.as_millis()),
            _ if self.ratio == 1.0 => format!("equal nodes, {}", self.strategy),
            _ => format!("node 2 {}x slower, {}", self.ratio, self.strategy),
        }
    }

    /// Sum of node capacities over the fastest node's.
    pub fn ideal(&self) -> f64 {
        1.0 + 1.0 / self.ratio
    }
}

/// What the repeats of one cell measured.
struct CellSamples {
    speedups: Vec<f64>,
    throughput: Vec<f64>,
    latency: hdrhistogram::Histogram<u64>,
    locks: Vec<pool::LockTimingSummary>,
    /// Per run: time requests spent waiting for the lock over their total latency, percent.
    lock_shares: Vec<f64>,
}

/// The swept cells.
pub fn cells() -> Vec<Cell> {
    let ms = Duration::from_millis;
    let scope = |variant, control| Cell {
        variant,
        control,
        ratio: 1.0,
        strategy: Strategy::RoundRobin,
        axis: "lock scope",
    };
    let mut cells = vec![
        scope(Variant::Atomic, ms(0)),
        scope(Variant::MutexCounters, ms(0)),
        scope(Variant::MutexProbe, ms(0)),
        scope(Variant::MutexProbe, ms(200)),
        scope(Variant::MutexProbe, ms(1000)),
        scope(Variant::Atomic, ms(1000)),
        scope(Variant::MutexRequest, ms(0)),
    ];
    for ratio in [1.0, 3.0, 7.0] {
        for strategy in [
            Strategy::RoundRobin,
            Strategy::LeastLoaded,
            Strategy::LatencyFirst,
            Strategy::Weighted,
        ] {
            cells.push(Cell {
                variant: Variant::Atomic,
                control: ms(0),
                ratio,
                strategy,
                axis: "speed x strategy",
            });
        }
    }
    cells
}

/// Runs the scenario.
pub fn run(ctx: &Ctx) -> anyhow::Result<ScenarioResult> {
    let o = &ctx.opts;
    anyhow::ensure!(
        o.external.is_empty(),
        "explain varies node speeds and control-plane latency, so it needs embedded nodes"
    );
    let service = o.service.unwrap_or(Duration::from_millis(20));
    let window = o.cap.unwrap_or(Duration::from_millis(2500));
    let workers = o.workers.unwrap_or(12);
    let workload = Workload {
        workers,
        requests: usize::MAX / 2,
        cap: Some(window),
        model: "mxbai-embed-large".into(),
        text: None,
    };
    let spec = |ratio: f64, control| ClusterSpec {
        speeds: vec![1.0, 1.0 / ratio],
        control_latency: control,
        ..ClusterSpec::uniform(2, 1, service)
    };
    let reference = Cluster::start(&ClusterSpec::uniform(1, 1, service), &[])?;
    let mut clusters: BTreeMap<(u64, u128), Cluster> = BTreeMap::new();
    let cells = cells();
    let mut accounting = Accounting::default();
    let mut reference_thr = Vec::new();
    let mut per_cell: Vec<CellSamples> = cells
        .iter()
        .map(|_| CellSamples {
            speedups: vec![],
            throughput: vec![],
            latency: new_histogram(),
            locks: vec![],
            lock_shares: vec![],
        })
        .collect();
    let bar = ctx.progress("explain", o.repeats * (cells.len() + 1));
    for _ in 0..o.repeats {
        bar.set_message("reference: fastest node alone");
        let options = PoolOptions {
            strategy: Strategy::RoundRobin,
            ..PoolOptions::default()
        };
        let base = measure(
            Variant::Bare,
            &reference,
            options,
            &workload,
            &mut accounting,
        )?
        .run
        .throughput();
        reference_thr.push(base);
        bar.inc(1);
        for (cell, acc) in cells.iter().zip(per_cell.iter_mut()) {
            bar.set_message(format!("{} {}", cell.variant, cell.label()));
            let key = ((cell.ratio * 1000.0) as u64, cell.control.as_millis());
            let cluster = match clusters.entry(key) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(Cluster::start(&spec(cell.ratio, cell.control), &[])?)
                }
            };
            let options = PoolOptions {
                strategy: cell.strategy,
                probe: Some(ProbeConfig {
                    interval: o.probe_interval,
                    timeout: Duration::from_secs(2),
                }),
                lock_timing: true,
                ..PoolOptions::default()
            };
            // A slow control plane makes a probe round long (2 calls per node); the window must hold
            // at least two whole probe cycles or it measures where in the cycle the run happened
            // to fall (a 2.5 s window inside a 4 s round under the lock shows 0 answers).
            let cycle = o.probe_interval + cell.control * 4;
            let cell_window = if cell.control.is_zero() {
                window
            } else {
                window.max(cycle * 2)
            };
            let cell_workload = Workload {
                cap: Some(cell_window),
                ..workload.clone()
            };
            let m = measure(
                cell.variant,
                cluster,
                options,
                &cell_workload,
                &mut accounting,
            )?;
            acc.speedups.push(m.run.throughput() / base);
            acc.throughput.push(m.run.throughput());
            acc.latency.add(&m.run.latency).expect("same bounds");
            if let Some(lock) = m.lock {
                let requests = m.run.latency.len().max(1) as f64;
                let mean_ns = (m.run.latency.mean() * 1000.0).max(1.0);
                acc.lock_shares
                    .push(100.0 * lock.wait_ns.sum / requests / mean_ns);
                acc.locks.push(lock);
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let mut rows = vec![Row::new(
        "bare",
        "fastest node alone",
        "throughput",
        "req/s",
        Summary::of(reference_thr),
    )];
    let mut near_sollol = Vec::new();
    let mut at_ideal = Vec::new();
    let mut verdicts = Vec::new();
    let baseline_thr = Summary::of(per_cell[0].throughput.clone()).median;
    for (
        cell,
        CellSamples {
            speedups,
            throughput: thr,
            latency,
            locks,
            lock_shares,
        },
    ) in cells.iter().zip(per_cell)
    {
        let speedup = Summary::of(speedups);
        let efficiency = 100.0 * speedup.median / cell.ideal();
        let lat = Latency::of(&latency);
        let label = cell.label();
        let mut row = Row::new(
            cell.variant.name(),
            label.clone(),
            "speedup",
            "x",
            speedup.clone(),
        )
        .ideal(cell.ideal())
        .latency(lat);
        row.note = Some(format!("{} axis; efficiency {efficiency:.0}%", cell.axis));
        if let Some(lock) = locks.last() {
            row.lock = Some(*lock);
            let share = Summary::of(lock_shares.clone()).median;
            row.note = Some(format!(
                "{} axis; efficiency {efficiency:.0}%; lock waits are {share:.1}% of request time; longest hold {:.1} ms",
                cell.axis,
                lock.hold_ns.max as f64 / 1e6
            ));
            rows.push(Row::new(
                cell.variant.name(),
                label.clone(),
                "lock_wait_share",
                "%",
                Summary::of(lock_shares.clone()),
            ));
        }
        rows.push(row);
        rows.push(Row::new(
            cell.variant.name(),
            label.clone(),
            "throughput",
            "req/s",
            Summary::of(thr.clone()),
        ));
        let name = format!("{} ({label})", cell.variant);
        if speedup.median < 1.25 {
            near_sollol.push(format!("{name} {:.2}x", speedup.median));
        }
        if efficiency >= 90.0 {
            at_ideal.push(format!("{name} {:.2}x", speedup.median));
        }
        if cell.axis == "lock scope" && cell.variant != Variant::Atomic
            || cell.control > Duration::ZERO
        {
            verdicts.push(format!(
                "{name}: {:.2} times the baseline cell's throughput, speedup {:.2}x over one node, max latency {:.0} ms.",
                Summary::of(thr).median / baseline_thr,
                speedup.median,
                lat.max
            ));
        }
    }
    verdicts.insert(
        0,
        format!(
            "Cells at or below 1.25x (SOLLOL measured 1.12x on two nodes): {}.",
            list(&near_sollol)
        ),
    );
    verdicts.insert(
        1,
        format!(
            "Cells within 10% of their capacity ideal: {}.",
            list(&at_ideal)
        ),
    );
    let params = json!({
        "workers": workers, "service_ms": service.as_secs_f64() * 1e3, "window_s": window.as_secs_f64(), "window_slow_control_plane": "max(window, 2 x (probe interval + 4 x control latency))", "slots_per_node": 1,
        "probe_interval_s": o.probe_interval.as_secs_f64(), "probe_timeout_s": 2,
        "axes": { "lock scope": "atomic, mutex-counters, mutex-probe (control plane 0/200/1000 ms), atomic at 1000 ms, mutex-request; equal nodes, round-robin",
                  "speed x strategy": "slow node 1x/3x/7x slower x round-robin/least-loaded/latency-first/weighted; atomic pool" },
        "not_run": "the full 72-cell product (about 15 min per repeat here)",
    });
    Ok(ctx.result(
        "explain",
        "Which mechanism serialises a pool",
        "Lock scope, node heterogeneity or routing: which cells reproduce SOLLOL's ~1.1x on two nodes, and which reach the capacity ideal?",
        o.repeats,
        params,
        rows,
        verdicts,
        accounting,
    ))
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join("; ")
    }
}
