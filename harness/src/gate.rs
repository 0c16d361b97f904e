//! `harness gate`: quick measurements judged against checked-in bounds, for CI.
//!
//! The bounds and the reason for each live in `harness/gate-bounds.json` (compiled in). Timing
//! metrics are ratios measured within one run, so the machine's speed cancels; one that fails is
//! measured once more before it counts. Metrics marked `baseline` are also held to a limit drawn
//! from the spread of clean runs on this machine (`results/gate-spread.json`, [`crate::spread`]),
//! and every line says the smallest regression the metric catches. `--candidate VARIANT`
//! measures that variant where the atomic pool is normally measured, which is how the gate is
//! shown to catch a real regression.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::bounds::{self, Bound, Bounds, Name, judge};
use crate::cost::CostSettings;
use crate::machine::Machine;
use crate::nodes::ClusterSpec;
use crate::results::Accounting;
use crate::routing::{self, RoutingSettings};
use crate::scenarios::contention::{Book, ns_per_request};
use crate::scenarios::scaling::{measure_curves, relative};
use crate::scenarios::stress::{counters_lost, http_stress};
use crate::scenarios::{Ctx, Options, two_node};
use crate::spread::{self, SpreadFile};
use crate::summary::Summary;
use crate::variant::Variant;

/// The checked-in bounds file.
pub const BOUNDS: &str = include_str!("../gate-bounds.json");

/// A metric the gate knows how to measure; its name in the bounds file is its [`Display`] form
/// in the one bounds grammar (`two-node.atomic.speedup`), and a name that is not one of these is
/// a parse error.
///
/// [`Display`]: std::fmt::Display
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// Two one-slot nodes over one (the plan's Target 1), for a variant.
    TwoNodeSpeedup(Variant),
    /// Twelve workers over one with spare slots (Target 2), for a variant.
    Scaling12(Variant),
    /// Requests lost between client, pool and nodes in the HTTP stress run.
    StressLost,
    /// Active gauges left above zero after the HTTP stress run.
    StressActiveAfter,
    /// Lost updates of 100 threads x 1,000 requests in memory, both ledgers.
    CountersLost,
    /// Atomic over mutex bookkeeping cost at 100 threads, in memory.
    BookkeepingRatio100t,
    /// The pool's requests/s over the reference client's at zero service time ([`crate::cost`]).
    Overhead(Variant),
    /// New TCP connections per request the node accepted from the pool.
    ConnectionsPerRequest(Variant),
    /// The pool's added median latency over the reference client's, at moderate load.
    LatencyAddedP50(Variant),
    /// The pool's added p99 latency over the reference client's, at moderate load.
    LatencyAddedP99(Variant),
    /// The pool's callers' CPU time per request over the reference client's, interleaved.
    CpuPerRequest(Variant),
    /// A load-aware strategy's requests/s on unequal nodes over their capacity ([`routing`]).
    RoutingEfficiency(routing::Cell),
    /// The slow node's share of the answers over its share of capacity ([`routing`]).
    RoutingSlowShare(routing::Cell),
}

/// A gate metric's name: experiment, cell, measure.
type Parts = (&'static str, &'static str, &'static str);

impl Metric {
    /// The variant a per-variant metric measures, with `atomic` standing for the candidate.
    fn variant(self, candidate: Variant) -> Option<Variant> {
        self.measured_variant()
            .map(|v| if v == Variant::Atomic { candidate } else { v })
    }

    /// The variant in the metric's name, for per-variant metrics.
    fn measured_variant(self) -> Option<Variant> {
        match self {
            Metric::TwoNodeSpeedup(v)
            | Metric::Scaling12(v)
            | Metric::Overhead(v)
            | Metric::ConnectionsPerRequest(v)
            | Metric::LatencyAddedP50(v)
            | Metric::LatencyAddedP99(v)
            | Metric::CpuPerRequest(v) => Some(v),
            Metric::StressLost
            | Metric::StressActiveAfter
            | Metric::CountersLost
            | Metric::BookkeepingRatio100t
            | Metric::RoutingEfficiency(_)
            | Metric::RoutingSlowShare(_) => None,
        }
    }

    /// `(experiment, cell, measure)` in the one bounds grammar ([`crate::bounds`]): the
    /// experiment is the scenario that measures it, the cell its variant or case.
    fn name_parts(self) -> Parts {
        match self {
            Metric::TwoNodeSpeedup(v) => ("two-node", v.name(), "speedup"),
            Metric::Scaling12(v) => ("scaling", v.name(), "speedup_12"),
            Metric::Overhead(v) => ("cost", v.name(), "overhead"),
            Metric::ConnectionsPerRequest(v) => ("cost", v.name(), "connections_per_request"),
            Metric::LatencyAddedP50(v) => ("cost", v.name(), "latency_added_p50"),
            Metric::LatencyAddedP99(v) => ("cost", v.name(), "latency_added_p99"),
            Metric::CpuPerRequest(v) => ("cost", v.name(), "cpu_per_request"),
            Metric::RoutingEfficiency(c) => ("routing", c.name(), "efficiency"),
            Metric::RoutingSlowShare(c) => ("routing", c.name(), "slow_share"),
            Metric::StressLost => ("stress", "http", "lost"),
            Metric::StressActiveAfter => ("stress", "http", "active_after"),
            Metric::CountersLost => ("stress", "in-memory", "lost"),
            Metric::BookkeepingRatio100t => ("contention", "100-threads", "atomic_over_mutex"),
        }
    }

    /// The name the CI's Bencher history has used since before the one grammar
    /// (`gate/two_node_speedup.atomic`), kept so that history keeps joining.
    pub fn bencher_name(self) -> String {
        let family = match self {
            Metric::TwoNodeSpeedup(_) => "two_node_speedup",
            Metric::Scaling12(_) => "scaling_12",
            Metric::Overhead(_) => "overhead",
            Metric::ConnectionsPerRequest(_) => "connections_per_request",
            Metric::LatencyAddedP50(_) => "latency_added_p50",
            Metric::LatencyAddedP99(_) => "latency_added_p99",
            Metric::CpuPerRequest(_) => "cpu_per_request",
            Metric::StressLost => "stress.lost",
            Metric::StressActiveAfter => "stress.active_after",
            Metric::CountersLost => "counters.lost",
            Metric::BookkeepingRatio100t => "bookkeeping_ratio_100t",
            Metric::RoutingEfficiency(_) => "routing_efficiency",
            Metric::RoutingSlowShare(_) => "routing_slow_share",
        };
        let cell = match self {
            Metric::RoutingEfficiency(c) | Metric::RoutingSlowShare(c) => Some(c.name()),
            _ => self.measured_variant().map(Variant::name),
        };
        match cell {
            Some(cell) => format!("{family}.{}", cell.replace('-', "_")),
            None => family.to_owned(),
        }
    }

    /// Every metric the gate can measure, each per-variant one for every variant.
    fn all() -> impl Iterator<Item = Metric> {
        let per_variant: [fn(Variant) -> Metric; 7] = [
            Metric::TwoNodeSpeedup,
            Metric::Scaling12,
            Metric::Overhead,
            Metric::ConnectionsPerRequest,
            Metric::LatencyAddedP50,
            Metric::LatencyAddedP99,
            Metric::CpuPerRequest,
        ];
        let fixed = [
            Metric::StressLost,
            Metric::StressActiveAfter,
            Metric::CountersLost,
            Metric::BookkeepingRatio100t,
        ];
        let routing = routing::Cell::ALL
            .into_iter()
            .flat_map(|c| [Metric::RoutingEfficiency(c), Metric::RoutingSlowShare(c)]);
        per_variant
            .into_iter()
            .flat_map(|make| Variant::ALL.into_iter().map(make))
            .chain(fixed)
            .chain(routing)
    }

    /// Whether `a` and `b` measure this metric at the same sizes, so that a spread recorded at
    /// one may judge a run at the other.
    fn same_sizes(self, a: &GateSettings, b: &GateSettings) -> bool {
        let repeats = a.repeats == b.repeats;
        match self {
            Metric::TwoNodeSpeedup(_) => {
                repeats
                    && a.two_node_requests == b.two_node_requests
                    && a.service_ms == b.service_ms
            }
            Metric::Scaling12(_) => repeats && a.scaling_service_ms == b.scaling_service_ms,
            Metric::StressLost | Metric::StressActiveAfter => {
                a.stress_requests == b.stress_requests
            }
            Metric::CountersLost => true,
            Metric::BookkeepingRatio100t => repeats && a.contention_ops == b.contention_ops,
            Metric::RoutingEfficiency(_) | Metric::RoutingSlowShare(_) => {
                repeats && a.routing == b.routing
            }
            Metric::Overhead(_)
            | Metric::ConnectionsPerRequest(_)
            | Metric::LatencyAddedP50(_)
            | Metric::LatencyAddedP99(_)
            | Metric::CpuPerRequest(_) => repeats && a.cost == b.cost,
        }
    }

    /// Whether [`crate::cost`] measures it.
    fn is_cost(self) -> bool {
        matches!(
            self,
            Metric::Overhead(_)
                | Metric::ConnectionsPerRequest(_)
                | Metric::LatencyAddedP50(_)
                | Metric::LatencyAddedP99(_)
                | Metric::CpuPerRequest(_)
        )
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (experiment, cell, measure) = self.name_parts();
        write!(f, "{experiment}.{cell}.{measure}")
    }
}

impl std::str::FromStr for Metric {
    type Err = String;

    /// A gate metric's name; the error names the first part no metric has.
    fn from_str(text: &str) -> Result<Self, String> {
        let name = Name::split(text)?;
        if let Some(w) = name.workload.filter(|w| *w != crate::bounds::WORKLOADS[0]) {
            return Err(format!(
                "{text:?}: the gate measures the {} workload only, not {w:?}",
                crate::bounds::WORKLOADS[0]
            ));
        }
        let all: Vec<(Metric, Parts)> = Metric::all().map(|m| (m, m.name_parts())).collect();
        let known = |pick: fn(&Parts) -> &'static str, keep: &dyn Fn(&Parts) -> bool| {
            let mut parts: Vec<String> = all
                .iter()
                .filter(|(_, p)| keep(p))
                .map(|(_, p)| pick(p).to_owned())
                .collect();
            parts.sort();
            parts.dedup();
            parts
        };
        let experiments = known(|p| p.0, &|_| true);
        if !experiments.iter().any(|e| e == name.experiment) {
            return Err(Name::unknown(
                text,
                "gate experiment",
                name.experiment,
                &experiments,
            ));
        }
        let cells = known(|p| p.1, &|p| p.0 == name.experiment);
        if !cells.iter().any(|c| c == name.cell) {
            return Err(Name::unknown(text, "cell", name.cell, &cells));
        }
        all.iter()
            .find(|(_, p)| *p == (name.experiment, name.cell, name.measure))
            .map(|(m, _)| *m)
            .ok_or_else(|| {
                let measures = known(|p| p.2, &|p| p.0 == name.experiment && p.1 == name.cell);
                Name::unknown(text, "measure", name.measure, &measures)
            })
    }
}

/// Parses bounds from the text of a bounds file.
pub fn parse_bounds(text: &str) -> anyhow::Result<Bounds<Metric>> {
    // The gate's bounds say whether they are timed, held to the clean spread and why: a bound
    // that left one out would silently lose its re-measure or its statistical limit.
    let raw: serde_json::Value = serde_json::from_str(text).context("parsing gate-bounds.json")?;
    let metrics = raw.get("metrics").and_then(|m| m.as_object());
    for (name, bound) in metrics.into_iter().flatten() {
        for field in ["timing", "baseline", "reason"] {
            anyhow::ensure!(
                bound.get(field).is_some(),
                "gate-bounds.json: {name} lacks {field:?}"
            );
        }
    }
    bounds::parse(text).context("in gate-bounds.json")
}

/// The checked-in bounds.
pub fn bounds() -> anyhow::Result<Bounds<Metric>> {
    parse_bounds(BOUNDS)
}

/// One judged metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateMetric {
    /// Measured value (median over repeats).
    pub value: f64,
    /// The bound, in words (plus the clean spread's limit when one applied).
    pub bound: String,
    /// Whether it passed.
    pub pass: bool,
    /// All samples of the final measurement.
    pub samples: Vec<f64>,
    /// Whether it was measured a second time after failing once.
    pub remeasured: bool,
    /// The smallest regression it catches 95 times in 100, in words ([`spread`]); reports
    /// written before it existed read as empty.
    #[serde(default)]
    pub detects: String,
    /// Seconds the measurement that gave it took (shared by the metrics of one run).
    #[serde(default)]
    pub seconds: f64,
}

/// The gate's verdict, written to `gate.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    /// All metrics passed.
    pub pass: bool,
    /// Each metric by name.
    pub metrics: BTreeMap<String, GateMetric>,
    /// The variant measured under the atomic bounds, when not `atomic`.
    pub candidate: Option<Variant>,
    /// Where it ran.
    pub machine: Machine,
    /// The quick settings.
    pub settings: GateSettings,
}

impl GateReport {
    /// Names of failing metrics.
    pub fn failures(&self) -> Vec<&str> {
        self.metrics
            .iter()
            .filter(|(_, m)| !m.pass)
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

/// How big the quick measurements are.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GateSettings {
    /// Repeats per timing metric.
    pub repeats: usize,
    /// Requests per two-node run.
    pub two_node_requests: usize,
    /// Service time of embedded nodes, milliseconds.
    pub service_ms: u64,
    /// Service time of the scaling figure's nodes, milliseconds. Longer than `service_ms`: the
    /// 12 workers' answers land together, and at 10 ms the 2 cores' time to turn them around
    /// made the figure a reading of the machine's CPU speed (11.65x on both cores, 11.10x on one,
    /// against 11.93x and 11.77x at 50 ms); reports written before it read as 0, which no
    /// spread matches.
    #[serde(default)]
    pub scaling_service_ms: u64,
    /// Requests in the HTTP stress run.
    pub stress_requests: usize,
    /// Requests per contention measurement.
    pub contention_ops: usize,
    /// Sizes of the cost figures (overhead, connections, latency added, CPU); gate reports
    /// written before they existed read as the defaults.
    #[serde(default)]
    pub cost: CostSettings,
    /// Sizes of the routing figures; reports written before them read as the defaults.
    #[serde(default)]
    pub routing: RoutingSettings,
}

impl Default for GateSettings {
    fn default() -> Self {
        Self {
            repeats: 3,
            two_node_requests: 120,
            service_ms: 10,
            scaling_service_ms: 50,
            stress_requests: 10_000,
            // With fewer requests each of the 100 threads finishes within one scheduler time
            // slice, the threads barely overlap on two cores, and the mutex looks uncontended
            // (one gate run measured 0.5+ at 100,000, then 0.30 on re-measure).
            contention_ops: 1_000_000,
            cost: CostSettings::default(),
            routing: RoutingSettings::default(),
        }
    }
}

/// Samples by metric.
type Samples = BTreeMap<Metric, Vec<f64>>;

/// Measures `metric` and every metric the same run yields (the HTTP stress run gives two, the
/// cost run four); returns each one's samples (a value is their median).
fn measure_all(
    metric: Metric,
    candidate: Variant,
    settings: &GateSettings,
    ctx: &Ctx,
) -> anyhow::Result<Samples> {
    if let (true, Some(named)) = (metric.is_cost(), metric.measured_variant()) {
        let measured = metric.variant(candidate).unwrap_or(named);
        return measure_cost(named, measured, settings, ctx);
    }
    if let Metric::RoutingEfficiency(cell) | Metric::RoutingSlowShare(cell) = metric {
        return measure_routing(cell, candidate, settings, ctx);
    }
    if matches!(metric, Metric::StressLost | Metric::StressActiveAfter) {
        let (lost, active) = measure_stress(candidate, settings, ctx)?;
        return Ok(BTreeMap::from([
            (Metric::StressLost, vec![lost]),
            (Metric::StressActiveAfter, vec![active]),
        ]));
    }
    Ok(BTreeMap::from([(
        metric,
        measure(metric, candidate, settings, ctx)?,
    )]))
}

/// The cost figures of `measured` over `settings.repeats` interleaved samples, under the names
/// of `named` (the candidate is measured under the atomic pool's names).
fn measure_cost(
    named: Variant,
    measured: Variant,
    settings: &GateSettings,
    ctx: &Ctx,
) -> anyhow::Result<Samples> {
    gather(settings.repeats, |repeat| {
        let sample = crate::cost::sample(measured, ctx.pool_options(), &settings.cost, repeat)?;
        Ok(vec![
            (Metric::Overhead(named), sample.overhead),
            (
                Metric::ConnectionsPerRequest(named),
                sample.connections_per_request,
            ),
            (Metric::LatencyAddedP50(named), sample.latency_added_p50),
            (Metric::LatencyAddedP99(named), sample.latency_added_p99),
            (Metric::CpuPerRequest(named), sample.cpu_per_request),
        ])
    })
}

/// Both routing figures of `cell` for `candidate`, `settings.repeats` samples each.
fn measure_routing(
    cell: routing::Cell,
    candidate: Variant,
    settings: &GateSettings,
    ctx: &Ctx,
) -> anyhow::Result<Samples> {
    gather(settings.repeats, |_| {
        let sample = routing::sample(cell, candidate, ctx.pool_options(), &settings.routing)?;
        Ok(vec![
            (Metric::RoutingEfficiency(cell), sample.efficiency),
            (Metric::RoutingSlowShare(cell), sample.slow_share),
        ])
    })
}

/// `repeats` runs that each give several metrics one value (`run(i)`), as samples by metric.
fn gather(
    repeats: usize,
    mut run: impl FnMut(usize) -> anyhow::Result<Vec<(Metric, f64)>>,
) -> anyhow::Result<Samples> {
    let mut all = Samples::new();
    for repeat in 0..repeats {
        for (metric, value) in run(repeat)? {
            all.entry(metric).or_default().push(value);
        }
    }
    Ok(all)
}

/// Measures one metric that no other shares a run with; returns its samples.
fn measure(
    metric: Metric,
    candidate: Variant,
    settings: &GateSettings,
    ctx: &Ctx,
) -> anyhow::Result<Vec<f64>> {
    match metric {
        Metric::TwoNodeSpeedup(_) => {
            let variant = metric.variant(candidate).context("a per-variant metric")?;
            two_node_speedups(variant, settings, ctx)
        }
        Metric::Scaling12(_) => {
            let variant = metric.variant(candidate).context("a per-variant metric")?;
            let scaling_service = Duration::from_millis(settings.scaling_service_ms);
            let spec = ClusterSpec::uniform(2, 6, scaling_service);
            let workers = [1, 12];
            let mut accounting = Accounting::default();
            let curves = measure_curves(
                ctx,
                &[variant],
                &workers,
                &spec,
                settings.repeats,
                &mut accounting,
            )?;
            Ok(relative(&curves.0[&variant], 12))
        }
        Metric::StressLost
        | Metric::StressActiveAfter
        | Metric::Overhead(_)
        | Metric::ConnectionsPerRequest(_)
        | Metric::LatencyAddedP50(_)
        | Metric::LatencyAddedP99(_)
        | Metric::CpuPerRequest(_)
        | Metric::RoutingEfficiency(_)
        | Metric::RoutingSlowShare(_) => {
            anyhow::bail!("{metric} is measured with the others of its run (measure_all)")
        }
        Metric::CountersLost => {
            let (mutex, atomic) = counters_lost()?;
            Ok(vec![(mutex + atomic) as f64])
        }
        Metric::BookkeepingRatio100t => (0..settings.repeats)
            .map(|_| {
                let atomic = ns_per_request(Book::Atomic, 100, settings.contention_ops)?;
                let mutex = ns_per_request(Book::Mutex, 100, settings.contention_ops)?;
                Ok(atomic / mutex)
            })
            .collect(),
    }
}

/// The two-node scenario's speedup samples for one variant, at the gate's quick size.
fn two_node_speedups(
    variant: Variant,
    settings: &GateSettings,
    ctx: &Ctx,
) -> anyhow::Result<Vec<f64>> {
    let opts = Options {
        requests: Some(settings.two_node_requests),
        service: Some(Duration::from_millis(settings.service_ms)),
        repeats: settings.repeats,
        variants: vec![variant],
        ..ctx.opts.clone()
    };
    let result = two_node::run(&Ctx {
        opts,
        machine: ctx.machine.clone(),
    })?;
    let row = result
        .rows
        .iter()
        .find(|r| r.metric == "speedup")
        .context("two-node produced no speedup")?;
    Ok(row.value.samples.clone())
}

/// Lost updates and leftover active gauges of the HTTP stress run, summed over the candidate and
/// `mutex-counters`.
fn measure_stress(
    candidate: Variant,
    settings: &GateSettings,
    ctx: &Ctx,
) -> anyhow::Result<(f64, f64)> {
    let (mut lost, mut active) = (0, 0);
    for variant in [candidate, Variant::MutexCounters] {
        let (outcome, _, _) = http_stress(ctx, variant, settings.stress_requests, 100)?;
        lost += outcome.lost;
        active += outcome.active_after;
    }
    Ok((lost as f64, active as f64))
}

/// Judges `samples`; a failing timing metric is measured once more and judged on that.
fn judge_with_remeasure(
    bound: &Bound,
    samples: Vec<f64>,
    statistical: Option<f64>,
    remeasure: impl FnOnce() -> anyhow::Result<Vec<f64>>,
) -> anyhow::Result<GateMetric> {
    let (pass, text) = judge(bound, Summary::of(samples.clone()).median, statistical);
    let (samples, pass, bound_text, remeasured) = if !pass && bound.timing {
        let samples = remeasure()?;
        let (pass, text) = judge(bound, Summary::of(samples.clone()).median, statistical);
        (samples, pass, text, true)
    } else {
        (samples, pass, text, false)
    };
    Ok(GateMetric {
        value: Summary::of(samples.clone()).median,
        bound: bound_text,
        pass,
        samples,
        remeasured,
        detects: String::new(),
        seconds: 0.0,
    })
}

/// The clean spread's limits, when `spread` was recorded on this machine, build and HTTP
/// client; says which.
fn usable_spread<'a>(spread: Option<&'a SpreadFile>, ctx: &Ctx) -> Option<&'a SpreadFile> {
    let Some(s) = spread else {
        println!("statistical limits not applied: no recorded spread; fixed bounds only");
        return None;
    };
    let client = http_client_name(ctx);
    if let Some(why) = s.mismatch(&ctx.machine, client.as_deref()) {
        println!("statistical limits not applied: the spread was {why}; fixed bounds only");
        return None;
    }
    println!(
        "statistical limits from {} clean runs on this machine ({}, {}), for metrics measured at the recorded sizes",
        s.runs, s.machine.git_commit, s.machine.date
    );
    Some(s)
}

/// The HTTP client a gate run's pools use, as a spread file records it (`None`: the default).
pub fn http_client_name(ctx: &Ctx) -> Option<String> {
    ctx.opts.http_client.map(|c| format!("{c:?}"))
}

/// The limit `spread` puts on `metric`'s bound for a run of `ctx` at `settings`, when it applies
/// (same machine, build, client and sizes); quiet, for callers that size things by it.
pub fn recorded_limit(
    spread: Option<&SpreadFile>,
    metric: Metric,
    settings: &GateSettings,
    ctx: &Ctx,
) -> anyhow::Result<Option<spread::Limit>> {
    let bounds = bounds()?;
    let spread = spread.filter(|s| {
        s.mismatch(&ctx.machine, http_client_name(ctx).as_deref())
            .is_none()
    });
    Ok(bounds.get(&metric).and_then(|bound| {
        recorded_stats(spread, metric, settings).and_then(|stats| spread::limit(bound, &stats))
    }))
}

/// The statistics `spread` holds for `metric`, when recorded at the sizes `settings` measure it.
fn recorded_stats(
    spread: Option<&SpreadFile>,
    metric: Metric,
    settings: &GateSettings,
) -> Option<spread::Stats> {
    let spread = spread?;
    let recorded = spread.settings.as_ref()?;
    if !metric.same_sizes(recorded, settings) {
        return None;
    }
    spread.stats(&metric.to_string())
}

/// Runs every metric of the bounds file and judges it. Prints one line per metric as it goes.
pub fn run(
    ctx: &Ctx,
    candidate: Option<Variant>,
    settings: GateSettings,
    spread: Option<&SpreadFile>,
) -> anyhow::Result<GateReport> {
    run_selected(ctx, candidate, settings, spread, |_| true)
}

/// [`run`], for the metrics `keep` selects only (the self-test measures what each injected
/// regression should move, not the whole gate each time).
pub fn run_selected(
    ctx: &Ctx,
    candidate: Option<Variant>,
    settings: GateSettings,
    spread: Option<&SpreadFile>,
    keep: impl Fn(Metric) -> bool,
) -> anyhow::Result<GateReport> {
    let bounds = bounds()?;
    let spread = usable_spread(spread, ctx);
    let measured = candidate.unwrap_or(Variant::Atomic);
    let mut metrics = BTreeMap::new();
    // Metrics that share a run: the figures of the others, kept for when their turn comes.
    let mut cached: BTreeMap<Metric, (Vec<f64>, f64)> = BTreeMap::new();
    for (&metric, bound) in bounds.iter().filter(|(m, _)| keep(**m)) {
        let name = metric.to_string();
        let limit = recorded_stats(spread, metric, &settings)
            .and_then(|stats| spread::limit(bound, &stats));
        // This metric's samples, and those of the others measured by the same run.
        let once = || -> anyhow::Result<(Vec<f64>, Samples, f64)> {
            let started = std::time::Instant::now();
            let mut all = measure_all(metric, measured, &settings, ctx)?;
            let samples = all.remove(&metric).context("a run without its metric")?;
            Ok((samples, all, started.elapsed().as_secs_f64()))
        };
        let (samples, seconds) = match cached.remove(&metric) {
            Some(cached) => cached,
            None => {
                let (samples, others, seconds) = once()?;
                cached.extend(others.into_iter().map(|(m, v)| (m, (v, seconds))));
                (samples, seconds)
            }
        };
        // `judge` ignores it for bounds not held to the spread.
        let statistical = limit.map(|l| l.statistical);
        let mut judged = judge_with_remeasure(bound, samples, statistical, || Ok(once()?.0))?;
        judged.detects = spread::describe_detection(bound, limit.as_ref());
        judged.seconds = seconds;
        print_judged(&name, &judged);
        metrics.insert(name, judged);
    }
    let pass = metrics.values().all(|m| m.pass);
    Ok(GateReport {
        pass,
        metrics,
        candidate: candidate.filter(|c| *c != Variant::Atomic),
        machine: ctx.machine.clone(),
        settings,
    })
}

/// One line per judged metric: verdict, value, bound, detection limit.
fn print_judged(name: &str, judged: &GateMetric) {
    println!(
        "{} {name} = {:.3} ({}; {}){}",
        if judged.pass { "PASS" } else { "FAIL" },
        judged.value,
        judged.bound,
        judged.detects,
        if judged.remeasured {
            " [re-measured]"
        } else {
            ""
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounds::Op;

    #[test]
    fn bounds_file_has_the_issues_metrics_with_reasons() {
        let b: BTreeMap<String, Bound> = bounds()
            .unwrap()
            .into_iter()
            .map(|(m, bound)| (m.to_string(), bound))
            .collect();
        for name in [
            "two-node.atomic.speedup",
            "two-node.mutex-counters.speedup",
            "two-node.mutex-request.speedup",
            "scaling.atomic.speedup_12",
            "scaling.mutex-request.speedup_12",
            "stress.http.lost",
            "stress.http.active_after",
            "stress.in-memory.lost",
            "contention.100-threads.atomic_over_mutex",
            "cost.atomic.overhead",
            "cost.atomic.connections_per_request",
            "cost.atomic.latency_added_p50",
            "cost.atomic.latency_added_p99",
            "cost.atomic.cpu_per_request",
            "routing.least-loaded-3x.efficiency",
            "routing.least-loaded-7x.efficiency",
            "routing.weighted-3x.slow_share",
            "routing.weighted-7x.slow_share",
        ] {
            assert!(
                b.get(name).is_some_and(|m| m.reason.len() > 20),
                "{name} needs a bound and a reason"
            );
        }
    }

    #[test]
    fn typos_in_the_bounds_file_are_errors() {
        let good = r#"{"comment": "c", "metrics": {"stress.http.lost": {"op": "==", "value": 0, "timing": false, "baseline": false, "reason": "r"}}}"#;
        assert_eq!(parse_bounds(good).unwrap().len(), 1);
        for (typo, what) in [
            (
                good.replace("stress.http.lost", "stress.http.lots"),
                "unknown measure",
            ),
            (
                good.replace("stress.http.lost", "stres.http.lost"),
                "unknown experiment",
            ),
            (good.replace("\"==\"", "\"=\""), "unknown op"),
            (good.replace("\"timing\"", "\"timming\""), "unknown field"),
            (good.replace("\"timing\": false, ", ""), "a missing timing"),
            (
                good.replace("stress.http.lost", "two-node.atomc.speedup"),
                "unknown variant",
            ),
            (
                good.replace("stress.http.lost", "two_node_speedup.atomic"),
                "a name from before the one grammar",
            ),
        ] {
            assert!(parse_bounds(&typo).is_err(), "{what} must not pass: {typo}");
        }
        let twice = good.replace(
            r#"}}}"#,
            r#"}, "stress.embed.http.lost": {"op": "==", "value": 0, "timing": false, "baseline": false, "reason": "r"}}}"#,
        );
        let error = parse_bounds(&twice).expect_err("one metric bounded twice");
        assert!(format!("{error:#}").contains("a second bound"), "{error:#}");
        let error = "two-node.atomc.speedup".parse::<Metric>().unwrap_err();
        assert!(
            error.contains("no cell \"atomc\"") && error.contains("mutex-counters"),
            "{error}"
        );
    }

    #[test]
    fn metric_names_round_trip_and_bencher_names_stay() {
        for (name, bencher) in [
            (
                "two-node.mutex-counters.speedup",
                "two_node_speedup.mutex_counters",
            ),
            ("scaling.bare.speedup_12", "scaling_12.bare"),
            ("stress.in-memory.lost", "counters.lost"),
            ("stress.http.active_after", "stress.active_after"),
            (
                "contention.100-threads.atomic_over_mutex",
                "bookkeeping_ratio_100t",
            ),
            ("cost.mutex-request.overhead", "overhead.mutex_request"),
            (
                "cost.atomic.connections_per_request",
                "connections_per_request.atomic",
            ),
            ("cost.bare.latency_added_p50", "latency_added_p50.bare"),
            ("cost.atomic.latency_added_p99", "latency_added_p99.atomic"),
            ("cost.atomic.cpu_per_request", "cpu_per_request.atomic"),
            (
                "routing.least-loaded-7x.efficiency",
                "routing_efficiency.least_loaded_7x",
            ),
            (
                "routing.weighted-3x.slow_share",
                "routing_slow_share.weighted_3x",
            ),
        ] {
            let metric = name.parse::<Metric>().unwrap();
            assert_eq!(metric.to_string(), name);
            assert_eq!(metric.bencher_name(), bencher);
        }
        let with_workload = "two-node.embed.atomic.speedup".parse::<Metric>().unwrap();
        assert_eq!(with_workload, Metric::TwoNodeSpeedup(Variant::Atomic));
        let chat = "two-node.chat.atomic.speedup"
            .parse::<Metric>()
            .unwrap_err();
        assert!(chat.contains("embed workload only"), "{chat}");
    }

    #[test]
    fn the_checked_in_bounds_judge_as_their_reasons_say() {
        let b: BTreeMap<String, Bound> = bounds()
            .unwrap()
            .into_iter()
            .map(|(m, bound)| (m.to_string(), bound))
            .collect();
        let speedup = &b["two-node.atomic.speedup"];
        assert!(judge(speedup, 1.95, None).0);
        assert!(!judge(speedup, 1.7, None).0, "below 1.8");
        assert!(!judge(&b["stress.http.lost"], 1.0, None).0);
        assert_eq!(b["two-node.mutex-counters.speedup"].op, Op::Report);
        assert!(
            !judge(&b["two-node.mutex-request.speedup"], f64::NAN, None).0,
            "NaN never passes"
        );
    }

    /// A spread judges only runs that measure a metric as it was recorded: same machine, build,
    /// client, and the sizes of that metric's own run.
    #[test]
    fn a_spread_applies_only_at_the_recorded_machine_client_and_sizes() {
        let settings = GateSettings::default();
        let machine = Machine::detect();
        let cpu = Metric::CpuPerRequest(Variant::Atomic);
        let two_node = Metric::TwoNodeSpeedup(Variant::Atomic);
        let file = SpreadFile {
            machine: machine.clone(),
            settings: Some(settings),
            http_client: None,
            runs: 3,
            metrics: BTreeMap::from([
                (cpu.to_string(), vec![1.5, 1.52, 1.54]),
                (two_node.to_string(), vec![1.99, 2.0, 1.98]),
            ]),
        };
        assert!(file.mismatch(&machine, None).is_none());
        assert!(file.mismatch(&machine, Some("Blocking")).is_some());
        let other_cpu = Machine {
            cpu: "another CPU".into(),
            ..machine.clone()
        };
        assert!(file.mismatch(&other_cpu, None).is_some());
        let debug = Machine {
            release_build: !machine.release_build,
            ..machine
        };
        assert!(file.mismatch(&debug, None).is_some());
        assert!(recorded_stats(Some(&file), cpu, &settings).is_some());
        let smaller_two_node = GateSettings {
            two_node_requests: 48,
            ..settings
        };
        assert!(recorded_stats(Some(&file), two_node, &smaller_two_node).is_none());
        assert!(
            recorded_stats(Some(&file), cpu, &smaller_two_node).is_some(),
            "the cost run's sizes did not change"
        );
        let unsized_file = SpreadFile {
            settings: None,
            ..file
        };
        assert!(recorded_stats(Some(&unsized_file), cpu, &settings).is_none());
    }
}
