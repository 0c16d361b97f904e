//! `open-loop`: latency at a fixed arrival rate, with and without coordinated omission.
//!
//! A closed loop slows its own sending when the pool slows down, which hides queueing. Here request
//! `i` is due at `t0 + i / rate` whatever happens to earlier ones (as in wrk2): latency measured from
//! that intended time counts the wait a real caller would see (coordinated omission corrected);
//! latency from the actual send time is what a naive tool reports. A send more than 1 ms after its
//! due time is counted as late.
//!
//! Rates are 50%, 80% and 95% of the cluster's capacity as measured in this run (a closed loop of
//! the bare client with two workers per slot), not as computed from the service time, so timer
//! granularity does not turn "95%" into an overload.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::json;

use super::{Ctx, Findings};
use crate::load::threads;
use crate::load::{Arrivals, Run, Workload};
use crate::measure::{check, measure};
use crate::nodes::{ClusterSpec, Nodes};
use crate::results::{Accounting, Row};
use crate::summary::{Latency, Summary, new_histogram};
use crate::variant::{PoolOptions, PoolUnderTest, Variant};

/// Load levels as fractions of measured capacity.
pub const LEVELS: [f64; 3] = [0.5, 0.8, 0.95];

/// What the repeats of one variant at one load level measured.
struct LevelSamples {
    corrected: Histogram<u64>,
    uncorrected: Histogram<u64>,
    p99_corrected: Vec<f64>,
    p99_uncorrected: Vec<f64>,
    late: Vec<f64>,
    late_pct: Vec<f64>,
}

/// Sends `count` requests at `rate` per second, evenly spaced, from `workers` threads (each
/// arrival taken by the next free thread); latency from the intended send and from the actual one.
pub(crate) fn open_loop(
    pool: &dyn PoolUnderTest,
    rate: f64,
    count: usize,
    workers: usize,
) -> anyhow::Result<Run> {
    let schedule = crate::load::Schedule::Open {
        rate,
        requests: count as u64,
        connections: workers,
        arrivals: Arrivals::Constant,
    };
    let send = |_| {
        let input = "an open-loop chunk".into();
        pool.embed("mxbai-embed-large", input).ok().map(|_| 200)
    };
    Ok(threads::run(schedule, "open", |_| Ok(send))?)
}

impl LevelSamples {
    fn new() -> Self {
        Self {
            corrected: new_histogram(),
            uncorrected: new_histogram(),
            p99_corrected: Vec::new(),
            p99_uncorrected: Vec::new(),
            late: Vec::new(),
            late_pct: Vec::new(),
        }
    }

    /// Adds one run that was meant to send `count` requests.
    fn add(&mut self, run: &Run, count: usize) {
        let uncorrected = run.latency_from_actual_send();
        self.p99_corrected.push(Latency::of(&run.latency).p99);
        self.p99_uncorrected.push(Latency::of(&uncorrected).p99);
        crate::summary::merge(&mut self.corrected, &run.latency);
        crate::summary::merge(&mut self.uncorrected, &uncorrected);
        self.late.push(run.late as f64);
        self.late_pct
            .push(100.0 * run.late as f64 / count.max(1) as f64);
    }
}

/// One open-loop run of a fresh `variant` pool, with the client/pool/nodes accounting check.
fn measure_open(
    ctx: &Ctx,
    cluster: &Nodes,
    variant: Variant,
    schedule: Schedule,
    accounting: &mut Accounting,
) -> anyhow::Result<Run> {
    let before = cluster.tally();
    let pool = variant.build(&cluster.urls(), ctx.pool_options())?;
    let run = open_loop(&*pool, schedule.rate, schedule.count, schedule.workers)?;
    let stats = pool.stats();
    drop(pool);
    let served = cluster
        .tally()
        .zip(before)
        .map(|(after, before)| crate::nodes::ServerTally::since(&after, &before));
    check(variant, &run, &stats, served.as_ref(), accounting);
    Ok(run)
}

/// Requests per second, how many, and from how many threads.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    rate: f64,
    count: usize,
    workers: usize,
}

/// The cluster's capacity as measured now: a closed loop of the bare client, two workers per slot.
fn measure_capacity(
    cluster: &Nodes,
    spec: &ClusterSpec,
    accounting: &mut Accounting,
) -> anyhow::Result<f64> {
    let probe = Workload {
        workers: 2 * spec.slots * spec.speeds.len(),
        requests: usize::MAX / 2,
        cap: Some(Duration::from_secs(2)),
        model: "mxbai-embed-large".into(),
        text: None,
    };
    let options = PoolOptions::default();
    Ok(
        measure(Variant::Bare, cluster, options, &probe, accounting)?
            .run
            .throughput(),
    )
}

/// Samples per (variant, level index), keyed for the report.
type Levels = BTreeMap<(Variant, usize), LevelSamples>;

/// Per repeat: the capacity, then every variant at every level of it, interleaved.
fn measure_levels(
    ctx: &Ctx,
    cluster: &Nodes,
    spec: &ClusterSpec,
    window: Duration,
    workers: usize,
    accounting: &mut Accounting,
) -> anyhow::Result<(Vec<f64>, Levels)> {
    let o = &ctx.opts;
    let bar = ctx.progress(
        "open-loop",
        o.repeats * (1 + LEVELS.len() * o.variants.len()),
    );
    let mut capacity = Vec::new();
    let mut results = Levels::new();
    for _ in 0..o.repeats {
        bar.set_message("measuring capacity");
        let cap_rate = measure_capacity(cluster, spec, accounting)?;
        capacity.push(cap_rate);
        bar.inc(1);
        for (level_index, level) in LEVELS.iter().enumerate() {
            let rate = cap_rate * level;
            let count = (rate * window.as_secs_f64()).ceil() as usize;
            let schedule = Schedule {
                rate,
                count,
                workers,
            };
            for &variant in &o.variants {
                bar.set_message(format!("{variant} at {:.0}%", level * 100.0));
                let run = measure_open(ctx, cluster, variant, schedule, accounting)?;
                let samples = results
                    .entry((variant, level_index))
                    .or_insert_with(LevelSamples::new);
                samples.add(&run, count);
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    Ok((capacity, results))
}

/// The scenario, as the registry ([`super::SCENARIOS`]) lists it.
pub struct OpenLoop;

impl super::ScenarioSpec for OpenLoop {
    fn name(&self) -> &'static str {
        "open-loop"
    }
    fn title(&self) -> &'static str {
        "Open-loop latency at 50/80/95% of capacity"
    }
    fn question(&self) -> &'static str {
        "At a fixed arrival rate, what latency does a caller really see (from the intended send time), and how much does a closed-loop measurement hide?"
    }
    fn measure(&self, ctx: &Ctx) -> anyhow::Result<Findings> {
        run(ctx)
    }
    fn reword(&self, result: &crate::results::ScenarioResult) -> Option<Vec<String>> {
        Some(verdicts(&result.rows))
    }
    fn charts(&self) -> &'static [&'static str] {
        &["open-loop.svg"]
    }
    fn draw(
        &self,
        dir: &std::path::Path,
        result: &crate::results::ScenarioResult,
    ) -> anyhow::Result<()> {
        crate::charts::draw_open_loop(dir, result)
    }
}

/// Runs the scenario.
fn run(ctx: &Ctx) -> anyhow::Result<Findings> {
    let o = &ctx.opts;
    let spec = ClusterSpec::uniform(o.nodes.unwrap_or(2), o.slots.unwrap_or(1), ctx.service());
    let cluster = Nodes::start(&spec, &o.external)?;
    let window = o.cap.unwrap_or(Duration::from_secs(3));
    let workers = o.workers.unwrap_or(64);
    let mut accounting = Accounting::default();
    let (capacity, results) =
        measure_levels(ctx, &cluster, &spec, window, workers, &mut accounting)?;
    let capacity = Summary::of(capacity);
    let mut rows = vec![Row::new(
        "bare",
        "closed loop, 2 workers per slot",
        "capacity",
        "req/s",
        capacity.clone(),
    )];
    for (&(variant, level_index), samples) in &results {
        rows.extend(level_rows(variant, LEVELS[level_index], samples));
    }
    let params = json!({
        "nodes": spec.speeds.len(), "slots_per_node": spec.slots, "service_ms": spec.service.as_secs_f64() * 1e3,
        "window_s": window.as_secs_f64(), "workers": workers, "levels": LEVELS, "late_threshold_ms": 1,
        "capacity_req_s": capacity.median, "variants": o.variants, "strategy": o.strategy,
    });
    Ok(Findings {
        repeats: o.repeats,
        params,
        verdicts: verdicts(&rows),
        rows,
        accounting,
    })
}

/// p99 from the intended and from the actual send time, and late sends, at one load level.
fn level_rows(variant: Variant, level: f64, samples: &LevelSamples) -> Vec<Row> {
    let case = format!("{:.0}% of capacity", level * 100.0);
    let name = variant.name();
    let late = Summary::of(samples.late.clone()).median;
    vec![
        Row::new(
            name,
            case.clone(),
            "latency_p99_corrected",
            "ms",
            Summary::of(samples.p99_corrected.clone()),
        )
        .latency(Latency::of(&samples.corrected)),
        Row::new(
            name,
            case.clone(),
            "latency_p99_uncorrected",
            "ms",
            Summary::of(samples.p99_uncorrected.clone()),
        )
        .latency(Latency::of(&samples.uncorrected)),
        Row::new(
            name,
            case,
            "late_sends",
            "%",
            Summary::of(samples.late_pct.clone()),
        )
        .note(format!("median {late:.0} late sends per run")),
    ]
}

/// What a caller sees at the highest load level, and what a naive tool would report, per
/// variant: from the rows alone (so `harness report` rewords them).
fn verdicts(rows: &[Row]) -> Vec<String> {
    let top = LEVELS[LEVELS.len() - 1];
    let case = format!("{:.0}% of capacity", top * 100.0);
    let find = |variant: &str, metric: &str| {
        rows.iter()
            .find(|r| r.variant == variant && r.case == case && r.metric == metric)
    };
    rows.iter()
        .filter(|r| r.case == case && r.metric == "latency_p99_corrected")
        .filter_map(|r| {
            let c = r.latency_ms.as_ref()?;
            let u = find(&r.variant, "latency_p99_uncorrected")?.latency_ms.as_ref()?;
            let late = find(&r.variant, "late_sends")?.value.median;
            Some(format!(
                "{} at {case}: from the intended send time p50 {:.1} ms, p99 {:.1} ms; from the actual send p50 {:.1} ms, p99 {:.1} ms (the naive median hides {:.1}x); max {:.0} ms; {late:.0}% of sends late.",
                r.variant,
                c.p50,
                c.p99,
                u.p50,
                u.p99,
                c.p50 / u.p50.max(1e-9),
                c.max,
            ))
        })
        .collect()
}
