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
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;

use super::Ctx;
use crate::cluster::{Cluster, ClusterSpec};
use crate::load::{Workload, released};
use crate::measure::{check, measure};
use crate::results::{Accounting, Row, ScenarioResult};
use crate::summary::{Latency, Summary, new_histogram};
use crate::variant::{AnyPool, PoolOptions, Variant};

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

/// One open-loop run's client-side view.
struct OpenRun {
    corrected: Histogram<u64>,
    uncorrected: Histogram<u64>,
    late: u64,
    ok: u64,
    failed: u64,
    elapsed: Duration,
}

/// Sends `count` requests at `rate` per second from `workers` threads (request `i` by worker
/// `i mod workers`), each at its due time or as soon as its worker is free.
fn open_loop(pool: &AnyPool, rate: f64, count: usize, workers: usize) -> OpenRun {
    let interval = Duration::from_secs_f64(1.0 / rate);
    // One schedule for every worker, fixed before any of them starts (spawning 64 threads takes a
    // few milliseconds; a send that is still late is counted as late).
    let t0 = Instant::now() + Duration::from_millis(50);
    let (elapsed, parts) = released(workers, |w| {
        let (mut corrected, mut uncorrected) = (new_histogram(), new_histogram());
        let (mut late, mut ok, mut failed) = (0u64, 0u64, 0u64);
        for i in (w..count).step_by(workers) {
            let due = t0 + interval.mul_f64(i as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let sent = Instant::now();
            if sent.saturating_duration_since(due) > Duration::from_millis(1) {
                late += 1;
            }
            let result = pool.embed("mxbai-embed-large", "an open-loop chunk");
            let done = Instant::now();
            match result {
                Ok(()) => {
                    ok += 1;
                    corrected.saturating_record(
                        (done.saturating_duration_since(due).as_micros() as u64).max(1),
                    );
                    uncorrected
                        .saturating_record((done.duration_since(sent).as_micros() as u64).max(1));
                }
                Err(_) => failed += 1,
            }
        }
        (corrected, uncorrected, late, ok, failed)
    });
    let mut run = OpenRun {
        corrected: new_histogram(),
        uncorrected: new_histogram(),
        late: 0,
        ok: 0,
        failed: 0,
        elapsed: Duration::ZERO,
    };
    for (c, u, late, ok, failed) in parts {
        run.corrected.add(&c).expect("same bounds");
        run.uncorrected.add(&u).expect("same bounds");
        run.late += late;
        run.ok += ok;
        run.failed += failed;
    }
    run.elapsed = elapsed;
    run
}

/// Runs the scenario.
pub fn run(ctx: &Ctx) -> anyhow::Result<ScenarioResult> {
    let o = &ctx.opts;
    let slots = o.slots.unwrap_or(1);
    let spec = ClusterSpec::uniform(
        o.nodes.unwrap_or(2),
        slots,
        o.service.unwrap_or(Duration::from_millis(20)),
    );
    let cluster = Cluster::start(&spec, &o.external)?;
    let window = o.cap.unwrap_or(Duration::from_secs(3));
    let workers = o.workers.unwrap_or(64);
    let mut accounting = Accounting::default();
    let bar = ctx.progress(
        "open-loop",
        o.repeats * (1 + LEVELS.len() * o.variants.len()),
    );
    let mut capacity = Vec::new();
    let mut results: BTreeMap<(Variant, usize), LevelSamples> = BTreeMap::new();
    for _ in 0..o.repeats {
        bar.set_message("measuring capacity");
        let probe = Workload {
            workers: 2 * slots * spec.speeds.len(),
            requests: usize::MAX / 2,
            cap: Some(Duration::from_secs(2)),
            model: "mxbai-embed-large".into(),
            text: None,
        };
        let cap_rate = measure(
            Variant::Bare,
            &cluster,
            PoolOptions::default(),
            &probe,
            &mut accounting,
        )?
        .run
        .throughput();
        capacity.push(cap_rate);
        bar.inc(1);
        for (level_index, level) in LEVELS.iter().enumerate() {
            let rate = cap_rate * level;
            let count = (rate * window.as_secs_f64()).ceil() as usize;
            for &variant in &o.variants {
                bar.set_message(format!("{variant} at {:.0}%", level * 100.0));
                let before = cluster.tally();
                let pool = AnyPool::build(variant, &cluster.urls(), ctx.pool_options())?;
                let run = open_loop(&pool, rate, count, workers);
                let stats = pool.stats();
                drop(pool);
                let served = cluster.tally().zip(before).map(|(a, b)| a - b);
                let as_closed = crate::load::RunResult {
                    elapsed: run.elapsed,
                    ok: run.ok,
                    failed: run.failed,
                    latency: run.uncorrected.clone(),
                    capped: false,
                    window: None,
                    window_ok: run.ok,
                };
                check(variant, &as_closed, &stats, served, &mut accounting);
                let e = results
                    .entry((variant, level_index))
                    .or_insert_with(|| LevelSamples {
                        corrected: new_histogram(),
                        uncorrected: new_histogram(),
                        p99_corrected: Vec::new(),
                        p99_uncorrected: Vec::new(),
                        late: Vec::new(),
                        late_pct: Vec::new(),
                    });
                e.p99_corrected.push(Latency::of(&run.corrected).p99);
                e.p99_uncorrected.push(Latency::of(&run.uncorrected).p99);
                e.corrected.add(&run.corrected).expect("same bounds");
                e.uncorrected.add(&run.uncorrected).expect("same bounds");
                e.late.push(run.late as f64);
                e.late_pct
                    .push(100.0 * run.late as f64 / count.max(1) as f64);
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    let capacity = Summary::of(capacity);
    let mut rows = vec![Row::new(
        "bare",
        "closed loop, 2 workers per slot",
        "capacity",
        "req/s",
        capacity.clone(),
    )];
    let mut verdicts = Vec::new();
    for (
        (variant, level_index),
        LevelSamples {
            corrected,
            uncorrected,
            p99_corrected,
            p99_uncorrected,
            late,
            late_pct,
        },
    ) in &results
    {
        let level = LEVELS[*level_index];
        let case = format!("{:.0}% of capacity", level * 100.0);
        let (c, u) = (Latency::of(corrected), Latency::of(uncorrected));
        rows.push(
            Row::new(
                variant.name(),
                case.clone(),
                "latency_p99_corrected",
                "ms",
                Summary::of(p99_corrected.clone()),
            )
            .latency(c),
        );
        rows.push(
            Row::new(
                variant.name(),
                case.clone(),
                "latency_p99_uncorrected",
                "ms",
                Summary::of(p99_uncorrected.clone()),
            )
            .latency(u),
        );
        rows.push(
            Row::new(
                variant.name(),
                case.clone(),
                "late_sends",
                "%",
                Summary::of(late_pct.clone()),
            )
            .note(format!(
                "median {:.0} late sends per run",
                Summary::of(late.clone()).median
            )),
        );
        if *level_index == LEVELS.len() - 1 {
            verdicts.push(format!(
                "{variant} at 95% of capacity: from the intended send time p50 {:.1} ms, p99 {:.1} ms; from the actual send p50 {:.1} ms, p99 {:.1} ms (the naive median hides {:.1}x); max {:.0} ms; {:.0}% of sends late.",
                c.p50,
                c.p99,
                u.p50,
                u.p99,
                c.p50 / u.p50.max(1e-9),
                c.max,
                Summary::of(late_pct.clone()).median
            ));
        }
    }
    let params = json!({
        "nodes": spec.speeds.len(), "slots_per_node": slots, "service_ms": spec.service.as_secs_f64() * 1e3,
        "window_s": window.as_secs_f64(), "workers": workers, "levels": LEVELS, "late_threshold_ms": 1,
        "capacity_req_s": capacity.median, "variants": o.variants, "strategy": o.strategy,
    });
    Ok(ctx.result(
        "open-loop",
        "Open-loop latency at 50/80/95% of capacity",
        "At a fixed arrival rate, what latency does a caller really see (from the intended send time), and how much does a closed-loop measurement hide?",
        o.repeats,
        params,
        rows,
        verdicts,
        accounting,
    ))
}
