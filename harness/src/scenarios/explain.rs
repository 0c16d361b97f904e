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
use std::collections::btree_map::Entry;
use std::time::Duration;

use pool::{ProbeConfig, Strategy};
use serde_json::json;

use super::{Ctx, Findings};
use crate::load::Workload;
use crate::measure::{Measurement, measure};
use crate::nodes::{ClusterSpec, Nodes};
use crate::results::{Accounting, Row};
use crate::summary::{Latency, Summary, new_histogram};
use crate::variant::{PoolOptions, Variant};

/// Which sweep a cell belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    /// What the lock covers, on equal nodes with round-robin.
    LockScope,
    /// Slow-node ratio x routing strategy, with the atomic pool.
    SpeedStrategy,
}

impl Axis {
    /// Name in notes.
    pub fn name(self) -> &'static str {
        match self {
            Axis::LockScope => "lock scope",
            Axis::SpeedStrategy => "speed x strategy",
        }
    }
}

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
    pub axis: Axis,
}

impl Cell {
    /// Short label for tables and charts.
    pub fn label(&self) -> String {
        match self.axis {
            Axis::LockScope => format!("control plane {} ms", self.control.as_millis()),
            _ if self.ratio == 1.0 => format!("equal nodes, {}", self.strategy),
            _ => format!("node 2 {}x slower, {}", self.ratio, self.strategy),
        }
    }

    /// Sum of node capacities over the fastest node's.
    pub fn ideal(&self) -> f64 {
        1.0 + 1.0 / self.ratio
    }

    /// The run window: at least two whole probe cycles when the control plane is slow. A probe
    /// round asks 2 endpoints per node; a window shorter than two cycles measures where in the
    /// cycle the run happened to fall (a 2.5 s window inside a 4 s round under the lock shows 0
    /// answers).
    fn window(&self, base: Duration, probe_interval: Duration) -> Duration {
        if self.control.is_zero() {
            base
        } else {
            base.max((probe_interval + self.control * 4) * 2)
        }
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

impl CellSamples {
    fn new() -> Self {
        Self {
            speedups: vec![],
            throughput: vec![],
            latency: new_histogram(),
            locks: vec![],
            lock_shares: vec![],
        }
    }

    /// Adds one run, whose speedup is over `reference` (req/s).
    fn add(&mut self, m: &Measurement, reference: f64) {
        self.speedups.push(m.run.throughput() / reference);
        self.throughput.push(m.run.throughput());
        crate::summary::merge(&mut self.latency, &m.run.latency);
        if let Some(lock) = m.lock {
            let requests = m.run.latency.len().max(1) as f64;
            let mean_ns = (m.run.latency.mean() * 1000.0).max(1.0);
            self.lock_shares
                .push(100.0 * lock.wait_ns.sum / requests / mean_ns);
            self.locks.push(lock);
        }
    }
}

/// The swept cells.
pub fn cells() -> Vec<Cell> {
    let ms = Duration::from_millis;
    let scope = |variant, control| Cell {
        variant,
        control,
        ratio: 1.0,
        strategy: Strategy::RoundRobin,
        axis: Axis::LockScope,
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
                axis: Axis::SpeedStrategy,
            });
        }
    }
    cells
}

/// The settings every cell shares, and the clusters, started once per (ratio, control plane).
struct Bench<'c> {
    ctx: &'c Ctx,
    service: Duration,
    window: Duration,
    workload: Workload,
    clusters: BTreeMap<(u64, u128), Nodes<'static>>,
}

impl<'c> Bench<'c> {
    fn new(ctx: &'c Ctx) -> Self {
        let o = &ctx.opts;
        let window = o.cap.unwrap_or(Duration::from_millis(2500));
        Self {
            ctx,
            service: ctx.service(),
            window,
            workload: Workload {
                workers: o.workers.unwrap_or(12),
                requests: usize::MAX / 2,
                cap: Some(window),
                model: "mxbai-embed-large".into(),
                text: None,
            },
            clusters: BTreeMap::new(),
        }
    }

    /// The bare client on the fastest node alone: the reference of every speedup.
    fn reference(&self, node: &Nodes, accounting: &mut Accounting) -> anyhow::Result<f64> {
        let options = PoolOptions {
            strategy: Strategy::RoundRobin,
            ..PoolOptions::default()
        };
        let m = measure(Variant::Bare, node, options, &self.workload, accounting)?;
        Ok(m.run.throughput())
    }

    /// One run of `cell` on its cluster.
    fn cell(&mut self, cell: &Cell, accounting: &mut Accounting) -> anyhow::Result<Measurement> {
        let probe_interval = self.ctx.opts.probe_interval;
        let options = PoolOptions {
            strategy: cell.strategy,
            probe: Some(ProbeConfig {
                interval: probe_interval,
                timeout: Duration::from_secs(2),
            }),
            lock_timing: true,
            ..PoolOptions::default()
        };
        let workload = Workload {
            cap: Some(cell.window(self.window, probe_interval)),
            ..self.workload.clone()
        };
        let key = ((cell.ratio * 1000.0) as u64, cell.control.as_millis());
        let cluster = match self.clusters.entry(key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let spec = ClusterSpec {
                    speeds: vec![1.0, 1.0 / cell.ratio],
                    control_latency: cell.control,
                    ..ClusterSpec::uniform(2, 1, self.service)
                };
                e.insert(Nodes::start(&spec, &[])?)
            }
        };
        measure(cell.variant, cluster, options, &workload, accounting)
    }
}

/// The scenario, as the registry ([`super::SCENARIOS`]) lists it.
pub struct Explain;

impl super::ScenarioSpec for Explain {
    fn name(&self) -> &'static str {
        "explain"
    }
    fn title(&self) -> &'static str {
        "Which mechanism serialises a pool"
    }
    fn question(&self) -> &'static str {
        "Lock scope, node heterogeneity or routing: which cells reproduce SOLLOL's ~1.1x on two nodes, and which reach the capacity ideal?"
    }
    fn measure(&self, ctx: &Ctx) -> anyhow::Result<Findings> {
        run(ctx)
    }
    fn reword(&self, result: &crate::results::ScenarioResult) -> Option<Vec<String>> {
        Some(verdicts(&result.rows))
    }
    fn charts(&self) -> &'static [&'static str] {
        &["explain.svg"]
    }
    fn draw(
        &self,
        dir: &std::path::Path,
        result: &crate::results::ScenarioResult,
    ) -> anyhow::Result<()> {
        crate::charts::draw_speedups(
            &dir.join("explain.svg"),
            result,
            "speedup",
            "Speedup over the fastest node alone, per cell",
        )
    }
}

/// Runs the scenario.
fn run(ctx: &Ctx) -> anyhow::Result<Findings> {
    let o = &ctx.opts;
    anyhow::ensure!(
        o.external.is_empty(),
        "explain varies node speeds and control-plane latency, so it needs embedded nodes"
    );
    let mut bench = Bench::new(ctx);
    let reference_node = Nodes::start(&ClusterSpec::uniform(1, 1, bench.service), &[])?;
    let cells = cells();
    let mut accounting = Accounting::default();
    let mut reference_thr = Vec::new();
    let mut per_cell: Vec<CellSamples> = cells.iter().map(|_| CellSamples::new()).collect();
    let bar = ctx.progress("explain", o.repeats * (cells.len() + 1));
    for _ in 0..o.repeats {
        bar.set_message("reference: fastest node alone");
        let reference = bench.reference(&reference_node, &mut accounting)?;
        reference_thr.push(reference);
        bar.inc(1);
        for (cell, samples) in cells.iter().zip(per_cell.iter_mut()) {
            bar.set_message(format!("{} {}", cell.variant, cell.label()));
            samples.add(&bench.cell(cell, &mut accounting)?, reference);
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
    for (cell, samples) in cells.iter().zip(per_cell) {
        rows.extend(cell_rows(cell, &samples));
    }
    Ok(Findings {
        repeats: o.repeats,
        params: params(&bench),
        verdicts: verdicts(&rows),
        rows,
        accounting,
    })
}

/// A cell's rows: speedup with its ideal, latency and a note naming its axis, lock-wait share,
/// throughput.
fn cell_rows(cell: &Cell, samples: &CellSamples) -> Vec<Row> {
    let speedup = Summary::of(samples.speedups.clone());
    let efficiency = 100.0 * speedup.median / cell.ideal();
    let (variant, label) = (cell.variant.name(), cell.label());
    let mut rows = Vec::new();
    let mut row = Row::new(variant, label.clone(), "speedup", "x", speedup.clone())
        .ideal(cell.ideal())
        .latency(Latency::of(&samples.latency));
    row.note = Some(format!(
        "{} axis; efficiency {efficiency:.0}%",
        cell.axis.name()
    ));
    if let Some(lock) = samples.locks.last() {
        let shares = Summary::of(samples.lock_shares.clone());
        row.lock = Some(*lock);
        row.note = Some(format!(
            "{} axis; efficiency {efficiency:.0}%; lock waits are {:.1}% of request time; longest hold {:.1} ms",
            cell.axis.name(),
            shares.median,
            lock.hold_ns.max as f64 / 1e6
        ));
        rows.push(Row::new(
            variant,
            label.clone(),
            "lock_wait_share",
            "%",
            shares,
        ));
    }
    rows.push(row);
    let throughput = Summary::of(samples.throughput.clone());
    rows.push(Row::new(variant, label, "throughput", "req/s", throughput));
    rows
}

/// The verdicts, from the rows alone (so `harness report` rewords them): which cells stay near
/// SOLLOL's 1.12x, which reach their capacity ideal, and for the locked and slow-control-plane
/// cells their throughput against the first cell's.
fn verdicts(rows: &[Row]) -> Vec<String> {
    let throughput = |r: &Row| {
        rows.iter()
            .find(|t| t.metric == "throughput" && t.variant == r.variant && t.case == r.case)
            .map_or(f64::NAN, |t| t.value.median)
    };
    let cells: Vec<&Row> = rows.iter().filter(|r| r.metric == "speedup").collect();
    let baseline_thr = cells.first().map_or(f64::NAN, |r| throughput(r));
    let (mut near_sollol, mut at_ideal, mut per_cell) = (Vec::new(), Vec::new(), Vec::new());
    for r in &cells {
        let (name, speedup) = (format!("{} ({})", r.variant, r.case), r.value.median);
        if speedup < 1.25 {
            near_sollol.push(format!("{name} {speedup:.2}x"));
        }
        if r.ideal.is_some_and(|ideal| speedup >= 0.9 * ideal) {
            at_ideal.push(format!("{name} {speedup:.2}x"));
        }
        let lock_axis = r
            .note
            .as_deref()
            .is_some_and(|n| n.starts_with(Axis::LockScope.name()));
        let slow_control = r
            .case
            .strip_prefix("control plane ")
            .and_then(|ms| ms.strip_suffix(" ms"))
            .is_some_and(|ms| ms != "0");
        if (lock_axis && r.variant != Variant::Atomic.name()) || slow_control {
            per_cell.push(format!(
                "{name}: {:.2} times the baseline cell's throughput, speedup {speedup:.2}x over one node, max latency {:.0} ms.",
                throughput(r) / baseline_thr,
                r.latency_ms.as_ref().map_or(f64::NAN, |l| l.max)
            ));
        }
    }
    let mut verdicts = vec![
        format!(
            "Cells at or below 1.25x (SOLLOL measured 1.12x on two nodes): {}.",
            list(&near_sollol)
        ),
        format!(
            "Cells within 10% of their capacity ideal: {}.",
            list(&at_ideal)
        ),
    ];
    verdicts.extend(per_cell);
    verdicts
}

fn params(bench: &Bench<'_>) -> serde_json::Value {
    let o = &bench.ctx.opts;
    json!({
        "workers": bench.workload.workers, "service_ms": bench.service.as_secs_f64() * 1e3, "window_s": bench.window.as_secs_f64(), "window_slow_control_plane": "max(window, 2 x (probe interval + 4 x control latency))", "slots_per_node": 1,
        "probe_interval_s": o.probe_interval.as_secs_f64(), "probe_timeout_s": 2,
        "axes": { "lock scope": "atomic, mutex-counters, mutex-probe (control plane 0/200/1000 ms), atomic at 1000 ms, mutex-request; equal nodes, round-robin",
                  "speed x strategy": "slow node 1x/3x/7x slower x round-robin/least-loaded/latency-first/weighted; atomic pool" },
        "not_run": "the full 72-cell product (about 15 min per repeat here)",
    })
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join("; ")
    }
}
