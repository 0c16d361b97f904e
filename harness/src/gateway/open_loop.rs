//! The `open-loop` cell: requests arrive at a fixed rate through the gateway, at 50%, 80% and 95%
//! of what it can be asked to pass: the capacity ideal (the nodes' throughput measured straight
//! at them), or the gateway's own ceiling where that is lower (a proxy that passes 130 req/s in
//! front of 400 req/s of nodes would otherwise be driven far past its limit and report only its
//! own queue). Poisson-spaced, each rate for one `--phase`.
//!
//! Closed-loop load slows down when the gateway does and so hides queueing; here latency runs from
//! each request's intended send time, so time spent waiting behind a badly placed request counts.
//! Requests that could not be sent within 1 ms of their time (no free connection) are counted.
//! An ideal balancer over N one-slot nodes behaves as one queue feeding N servers; routing that
//! ignores load (round-robin) gives each node its own queue, and its p99 grows faster with load.

use serde::{Deserialize, Serialize};

use super::audit::Audit;
use super::{Cell, Limits, Nodes, Settings, log_heads, logs_since, merge, target};
use crate::engine::{Arrivals, Engine, Schedule};
use crate::summary::{Latency, Summary};

/// The load levels, as fractions of the capacity ideal or the gateway's ceiling, the lower.
pub const LOADS: [f64; 3] = [0.5, 0.8, 0.95];

/// Connections per closed-loop worker the open-loop sender may use: enough that at 95% load a
/// request rarely waits for a free connection, so the gateway's queueing is what shows.
const CONNECTIONS_PER_WORKER: usize = 4;

/// One load level's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenLoopStep {
    /// Fraction of the rate the levels are taken from ([`OpenLoopReport::base`]).
    pub load: f64,
    /// Arrivals per second asked for.
    pub rate: f64,
    /// Complete answers per second, per repeat.
    pub throughput: Summary,
    /// Latency from the intended send time, last repeat, ms.
    pub latency: Latency,
    /// p99 latency per repeat, ms.
    pub p99_ms: Summary,
    /// Requests sent more than 1 ms late, summed over repeats.
    pub late: u64,
    /// Requests that failed at the client, summed over repeats.
    pub failed: u64,
}

/// What the open-loop cell measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenLoopReport {
    /// The capacity ideal, requests/s.
    pub ideal: f64,
    /// The gateway's ceiling, requests/s (`None` in results from before it was measured).
    #[serde(default)]
    pub ceiling: Option<f64>,
    /// The rate the levels are fractions of: the lower of the two (the ideal in older results).
    #[serde(default)]
    pub base: Option<f64>,
    /// Each load level, in increasing order.
    pub steps: Vec<OpenLoopStep>,
}

/// Measures the cell.
pub(super) fn open_loop(
    engine: &Engine,
    nodes: &Nodes,
    settings: &Settings,
    limits: Limits,
) -> anyhow::Result<Cell> {
    let base = limits.reachable();
    anyhow::ensure!(
        base > 0.0,
        "open-loop: nothing passed (the nodes directly or the gateway at zero service time), so \
         there is no rate to take fractions of"
    );
    let target = target(&settings.target, settings);
    let mut total = Audit::default();
    let mut steps = Vec::new();
    for load in LOADS {
        let rate = base * load;
        let requests = ((rate * settings.phase.as_secs_f64()).ceil() as u64).max(1);
        let (mut throughput, mut p99, mut late, mut failed, mut latency) =
            (Vec::new(), Vec::new(), 0, 0, None);
        for r in 0..settings.repeats {
            let heads = log_heads(nodes)?;
            let schedule = Schedule::Open {
                rate,
                requests,
                connections: settings.workers * CONNECTIONS_PER_WORKER,
                arrivals: Arrivals::Poisson { seed: r as u64 + 1 },
            };
            let id = format!("ol{}r{r}", (load * 100.0).round());
            let run = engine.run(&target, schedule, &id)?;
            merge(
                &mut total,
                super::audit::audit(&run, &logs_since(nodes, &heads)?),
            );
            let l = Latency::of(&run.latency);
            throughput.push(run.throughput());
            p99.push(l.p99);
            late += run.late;
            failed += run.failed();
            latency = Some(l);
        }
        steps.push(OpenLoopStep {
            load,
            rate,
            throughput: Summary::of(throughput),
            latency: latency.unwrap_or_else(|| Latency::of(&crate::summary::new_histogram())),
            p99_ms: Summary::of(p99),
            late,
            failed,
        });
    }
    let (throughput, latency) =
        super::last_step_figures(steps.last().map(|s| (&s.throughput, s.latency)));
    Ok(Cell {
        audit: Some(total),
        open_loop: Some(OpenLoopReport {
            ideal: limits.ideal,
            ceiling: limits.ceiling,
            base: Some(base),
            steps,
        }),
        ..Cell::new("open-loop", throughput, latency)
    })
}

/// The cell's verdict: p50/p99 at each load, in service times.
pub(super) fn verdict(cell: &Cell, service_ms: f64) -> Option<String> {
    let o = cell.open_loop.as_ref()?;
    let steps: Vec<String> = o
        .steps
        .iter()
        .map(|s| {
            format!(
                "{:.0}%: p50 {:.1} ms, p99 {:.1} ms ({:.1}-{:.1}){}",
                s.load * 100.0,
                s.latency.p50,
                s.p99_ms.median,
                s.p99_ms.min,
                s.p99_ms.max,
                if s.failed > 0 {
                    format!(", {} failed", s.failed)
                } else {
                    String::new()
                }
            )
        })
        .collect();
    let base = o.base.unwrap_or(o.ideal);
    let of = if base < o.ideal {
        format!(
            "the gateway's {base:.0} req/s ceiling (the capacity ideal, {:.0} req/s, is out of its reach; gateway-bound)",
            o.ideal
        )
    } else {
        format!("the {base:.0} req/s capacity ideal")
    };
    Some(format!(
        "open-loop: Poisson arrivals at fractions of {of}, latency from the intended send ({service_ms} ms service): {}.",
        steps.join("; ")
    ))
}
