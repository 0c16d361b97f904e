//! `harness gate`: quick measurements judged against checked-in bounds, for CI.
//!
//! The bounds and the reason for each live in `harness/gate-bounds.json` (compiled in). Timing
//! metrics are ratios measured within one run, so the machine's speed cancels; one that fails is
//! measured once more before it counts. Speedups are also compared with `results/baseline.json`
//! (an accepted earlier gate run) and fail when more than 10% below it. `--candidate VARIANT`
//! measures that variant where the atomic pool is normally measured, which is how the gate is
//! shown to catch a real regression.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::cluster::ClusterSpec;
use crate::cost::CostSettings;
use crate::machine::Machine;
use crate::results::Accounting;
use crate::scenarios::contention::{Book, ns_per_request};
use crate::scenarios::scaling::{measure_curves, relative};
use crate::scenarios::stress::{counters_lost, http_stress};
use crate::scenarios::{Ctx, Options, two_node};
use crate::summary::Summary;
use crate::variant::Variant;

/// The checked-in bounds file.
pub const BOUNDS: &str = include_str!("../gate-bounds.json");

/// A metric the gate knows how to measure; its name in the bounds file is its [`Display`] form
/// (`two_node_speedup.atomic`), and a name that is not one of these is a parse error.
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
}

impl Metric {
    /// The variant a per-variant metric measures, with `atomic` standing for the candidate.
    fn variant(self, candidate: Variant) -> Option<Variant> {
        let (_, v) = self.parts();
        v.map(|v| if v == Variant::Atomic { candidate } else { v })
    }

    /// The name, or a per-variant metric's family prefix with its variant.
    fn parts(self) -> (&'static str, Option<Variant>) {
        match self {
            Metric::TwoNodeSpeedup(v) => ("two_node_speedup", Some(v)),
            Metric::Scaling12(v) => ("scaling_12", Some(v)),
            Metric::Overhead(v) => ("overhead", Some(v)),
            Metric::ConnectionsPerRequest(v) => ("connections_per_request", Some(v)),
            Metric::LatencyAddedP50(v) => ("latency_added_p50", Some(v)),
            Metric::LatencyAddedP99(v) => ("latency_added_p99", Some(v)),
            Metric::StressLost => ("stress.lost", None),
            Metric::StressActiveAfter => ("stress.active_after", None),
            Metric::CountersLost => ("counters.lost", None),
            Metric::BookkeepingRatio100t => ("bookkeeping_ratio_100t", None),
        }
    }

    /// Every metric the gate can measure, each per-variant one for every variant.
    fn all() -> impl Iterator<Item = Metric> {
        let per_variant: [fn(Variant) -> Metric; 6] = [
            Metric::TwoNodeSpeedup,
            Metric::Scaling12,
            Metric::Overhead,
            Metric::ConnectionsPerRequest,
            Metric::LatencyAddedP50,
            Metric::LatencyAddedP99,
        ];
        let fixed = [
            Metric::StressLost,
            Metric::StressActiveAfter,
            Metric::CountersLost,
            Metric::BookkeepingRatio100t,
        ];
        per_variant
            .into_iter()
            .flat_map(|make| Variant::ALL.into_iter().map(make))
            .chain(fixed)
    }

    /// Whether [`crate::cost`] measures it.
    fn is_cost(self) -> bool {
        matches!(
            self,
            Metric::Overhead(_)
                | Metric::ConnectionsPerRequest(_)
                | Metric::LatencyAddedP50(_)
                | Metric::LatencyAddedP99(_)
        )
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.parts() {
            (name, None) => f.write_str(name),
            (prefix, Some(v)) => write!(f, "{prefix}.{}", v.name().replace('-', "_")),
        }
    }
}

impl std::str::FromStr for Metric {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Metric::all()
            .find(|m| m.to_string() == name)
            .ok_or_else(|| format!("the gate does not know how to measure {name:?}"))
    }
}

impl<'de> Deserialize<'de> for Metric {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// How a bound compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// The value must be at least the limit.
    #[serde(rename = ">=")]
    AtLeast,
    /// The value must be at most the limit.
    #[serde(rename = "<=")]
    AtMost,
    /// The value must equal the limit (counts).
    #[serde(rename = "==")]
    Equals,
    /// Measured and shown, never failing.
    #[serde(rename = "report")]
    Report,
}

/// One bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bound {
    /// How the value compares with `value`.
    pub op: Op,
    /// The limit.
    pub value: f64,
    /// Measured by timing (re-measured once before failing).
    pub timing: bool,
    /// Also compared with the baseline.
    pub baseline: bool,
    /// How far from the baseline the value may move against its bound's direction before it
    /// fails, as a fraction of the baseline: 0.1 (the default) for speedups, wider for ratios
    /// whose clean runs spread more (set from `results/gate-spread.md`).
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Why this bound.
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BoundsFile {
    #[serde(rename = "comment")]
    _comment: String,
    metrics: BTreeMap<Metric, Bound>,
}

/// Parses bounds from the text of a bounds file.
pub fn parse_bounds(text: &str) -> anyhow::Result<BTreeMap<Metric, Bound>> {
    Ok(serde_json::from_str::<BoundsFile>(text)
        .context("parsing gate-bounds.json")?
        .metrics)
}

/// The checked-in bounds.
pub fn bounds() -> anyhow::Result<BTreeMap<Metric, Bound>> {
    parse_bounds(BOUNDS)
}

impl Op {
    /// Whether `value` satisfies `limit` under this comparison.
    pub fn holds(self, value: f64, limit: f64) -> bool {
        match self {
            Op::AtLeast => value >= limit,
            Op::AtMost => value <= limit,
            Op::Equals => value == limit,
            Op::Report => true,
        }
    }

    /// `>= 1.8`, or `reported`.
    pub fn describe(self, limit: f64) -> String {
        let op = match self {
            Op::AtLeast => ">=",
            Op::AtMost => "<=",
            Op::Equals => "==",
            Op::Report => return "reported".into(),
        };
        format!("{op} {limit}")
    }
}

impl Bound {
    /// Whether `value` satisfies the bound.
    pub fn holds(&self, value: f64) -> bool {
        self.op.holds(value, self.value)
    }

    /// `>= 1.8`, or `reported`.
    pub fn describe(&self) -> String {
        self.op.describe(self.value)
    }
}

/// One judged metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateMetric {
    /// Measured value (median over repeats).
    pub value: f64,
    /// The bound, in words (plus the baseline floor when one applied).
    pub bound: String,
    /// Whether it passed.
    pub pass: bool,
    /// All samples of the final measurement.
    pub samples: Vec<f64>,
    /// Whether it was measured a second time after failing once.
    pub remeasured: bool,
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
    /// Requests in the HTTP stress run.
    pub stress_requests: usize,
    /// Requests per contention measurement.
    pub contention_ops: usize,
    /// Sizes of the cost figures (overhead, connections, latency added); gate reports written
    /// before they existed read as the defaults.
    #[serde(default)]
    pub cost: CostSettings,
}

impl Default for GateSettings {
    fn default() -> Self {
        Self {
            repeats: 3,
            two_node_requests: 120,
            service_ms: 10,
            stress_requests: 10_000,
            // With fewer requests each of the 100 threads finishes within one scheduler time
            // slice, the threads barely overlap on two cores, and the mutex looks uncontended
            // (one gate run measured 0.5+ at 100,000, then 0.30 on re-measure).
            contention_ops: 1_000_000,
            cost: CostSettings::default(),
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
    if let (true, (_, Some(named))) = (metric.is_cost(), metric.parts()) {
        let measured = metric.variant(candidate).unwrap_or(named);
        return measure_cost(named, measured, settings, ctx);
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
    let variant = named;
    let mut all = Samples::new();
    for repeat in 0..settings.repeats {
        let sample = crate::cost::sample(measured, ctx.pool_options(), &settings.cost, repeat)?;
        for (metric, value) in [
            (Metric::Overhead(variant), sample.overhead),
            (
                Metric::ConnectionsPerRequest(variant),
                sample.connections_per_request,
            ),
            (Metric::LatencyAddedP50(variant), sample.latency_added_p50),
            (Metric::LatencyAddedP99(variant), sample.latency_added_p99),
        ] {
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
    let service = Duration::from_millis(settings.service_ms);
    match metric {
        Metric::TwoNodeSpeedup(_) => {
            let variant = metric.variant(candidate).context("a per-variant metric")?;
            two_node_speedups(variant, settings, ctx)
        }
        Metric::Scaling12(_) => {
            let variant = metric.variant(candidate).context("a per-variant metric")?;
            let spec = ClusterSpec::uniform(2, 6, service);
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
        | Metric::LatencyAddedP99(_) => {
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

fn default_tolerance() -> f64 {
    0.1
}

/// Judges a value against its bound and, for baseline metrics, against the baseline moved by the
/// bound's tolerance: a floor below it for `>=` bounds, a ceiling above it for `<=` bounds.
pub fn judge(bound: &Bound, value: f64, baseline: Option<f64>) -> (bool, String) {
    let mut pass = bound.holds(value) && !value.is_nan();
    let mut text = bound.describe();
    // A reported metric has no bound, so its baseline is shown but never fails the gate.
    if let Some(base) = baseline.filter(|_| bound.baseline) {
        match bound.op {
            Op::AtLeast => {
                let floor = (1.0 - bound.tolerance) * base;
                pass &= value >= floor;
                text.push_str(&format!("; baseline {base:.3}, floor {floor:.3}"));
            }
            Op::AtMost => {
                let ceiling = (1.0 + bound.tolerance) * base;
                pass &= value <= ceiling;
                text.push_str(&format!("; baseline {base:.3}, ceiling {ceiling:.3}"));
            }
            Op::Equals | Op::Report => {}
        }
    }
    (pass, text)
}

/// Judges `samples`; a failing timing metric is measured once more and judged on that.
fn judge_with_remeasure(
    bound: &Bound,
    samples: Vec<f64>,
    base: Option<f64>,
    remeasure: impl FnOnce() -> anyhow::Result<Vec<f64>>,
) -> anyhow::Result<GateMetric> {
    let (pass, text) = judge(bound, Summary::of(samples.clone()).median, base);
    let (samples, pass, bound_text, remeasured) = if !pass && bound.timing {
        let samples = remeasure()?;
        let (pass, text) = judge(bound, Summary::of(samples.clone()).median, base);
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
    })
}

/// Runs every metric of the bounds file and judges it. Prints one line per metric as it goes.
pub fn run(
    ctx: &Ctx,
    candidate: Option<Variant>,
    settings: GateSettings,
    baseline: Option<&Path>,
) -> anyhow::Result<GateReport> {
    run_selected(ctx, candidate, settings, baseline, |_| true)
}

/// [`run`], for the metrics `keep` selects only (the self-test measures what each injected
/// regression should move, not the whole gate each time).
pub fn run_selected(
    ctx: &Ctx,
    candidate: Option<Variant>,
    settings: GateSettings,
    baseline: Option<&Path>,
    keep: impl Fn(Metric) -> bool,
) -> anyhow::Result<GateReport> {
    let bounds = bounds()?;
    let baseline: Option<GateReport> = match baseline {
        Some(path) if path.exists() => Some(
            serde_json::from_str(
                &std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
            )
            .with_context(|| format!("parsing {}", path.display()))?,
        ),
        _ => None,
    };
    let measured = candidate.unwrap_or(Variant::Atomic);
    let mut metrics = BTreeMap::new();
    // Metrics that share a run: the figures of the others, kept for when their turn comes.
    let mut cached = Samples::new();
    for (&metric, bound) in bounds.iter().filter(|(m, _)| keep(**m)) {
        let name = metric.to_string();
        let base = baseline
            .as_ref()
            .and_then(|b| b.metrics.get(&name))
            .map(|m| m.value);
        // This metric's samples, and those of the others measured by the same run.
        let once = || -> anyhow::Result<(Vec<f64>, Samples)> {
            let mut all = measure_all(metric, measured, &settings, ctx)?;
            let samples = all.remove(&metric).context("a run without its metric")?;
            Ok((samples, all))
        };
        let samples = match cached.remove(&metric) {
            Some(samples) => samples,
            None => {
                let (samples, others) = once()?;
                cached.extend(others);
                samples
            }
        };
        let judged = judge_with_remeasure(bound, samples, base, || Ok(once()?.0))?;
        println!(
            "{} {name} = {:.3} ({}){}",
            if judged.pass { "PASS" } else { "FAIL" },
            judged.value,
            judged.bound,
            if judged.remeasured {
                " [re-measured]"
            } else {
                ""
            }
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_file_has_the_issues_metrics_with_reasons() {
        let b: BTreeMap<String, Bound> = bounds()
            .unwrap()
            .into_iter()
            .map(|(m, bound)| (m.to_string(), bound))
            .collect();
        for name in [
            "two_node_speedup.atomic",
            "two_node_speedup.mutex_counters",
            "two_node_speedup.mutex_request",
            "scaling_12.atomic",
            "scaling_12.mutex_request",
            "stress.lost",
            "stress.active_after",
            "counters.lost",
            "bookkeeping_ratio_100t",
            "overhead.atomic",
            "connections_per_request.atomic",
            "latency_added_p50.atomic",
            "latency_added_p99.atomic",
        ] {
            assert!(
                b.get(name).is_some_and(|m| m.reason.len() > 20),
                "{name} needs a bound and a reason"
            );
        }
    }

    #[test]
    fn typos_in_the_bounds_file_are_errors() {
        let good = r#"{"comment": "c", "metrics": {"stress.lost": {"op": "==", "value": 0, "timing": false, "baseline": false, "reason": "r"}}}"#;
        assert_eq!(parse_bounds(good).unwrap().len(), 1);
        for (typo, what) in [
            (good.replace("stress.lost", "stress.lots"), "unknown metric"),
            (good.replace("\"==\"", "\"=\""), "unknown op"),
            (good.replace("\"timing\"", "\"timming\""), "unknown field"),
            (
                good.replace("stress.lost", "two_node_speedup.atomc"),
                "unknown variant",
            ),
        ] {
            assert!(parse_bounds(&typo).is_err(), "{what} must not pass: {typo}");
        }
    }

    #[test]
    fn metric_names_round_trip() {
        for name in [
            "two_node_speedup.mutex_counters",
            "scaling_12.bare",
            "counters.lost",
            "overhead.mutex_request",
            "connections_per_request.atomic",
            "latency_added_p50.bare",
            "latency_added_p99.atomic",
        ] {
            assert_eq!(name.parse::<Metric>().unwrap().to_string(), name);
        }
    }

    #[test]
    fn judge_applies_bound_and_baseline_floor() {
        let b: BTreeMap<String, Bound> = bounds()
            .unwrap()
            .into_iter()
            .map(|(m, bound)| (m.to_string(), bound))
            .collect();
        let speedup = &b["two_node_speedup.atomic"];
        assert!(judge(speedup, 1.95, None).0);
        assert!(!judge(speedup, 1.7, None).0, "below 1.8");
        assert!(
            !judge(speedup, 1.85, Some(2.1)).0,
            "more than 10% below the baseline"
        );
        assert!(judge(speedup, 1.9, Some(2.1)).0);
        let p99 = Bound {
            op: Op::AtMost,
            value: 6.0,
            timing: true,
            baseline: true,
            tolerance: 0.5,
            reason: String::new(),
        };
        assert!(
            judge(&p99, 2.9, Some(2.0)).0,
            "within 50% above the baseline"
        );
        assert!(
            !judge(&p99, 3.1, Some(2.0)).0,
            "more than 50% above the baseline"
        );
        assert!(!judge(&b["stress.lost"], 1.0, None).0);
        assert!(
            judge(&b["two_node_speedup.mutex_counters"], 0.3, None).0,
            "reported only"
        );
        assert!(
            !judge(&b["two_node_speedup.mutex_request"], f64::NAN, None).0,
            "NaN never passes"
        );
    }
}
