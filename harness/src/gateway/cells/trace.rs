//! The `trace` cell: a real serving trace replayed through the gateway, its arrivals as an open
//! loop, at the trace's own speed and at the speed that loads the cluster to 80% of its capacity
//! for the trace's mix of lengths. That capacity is the `direct` cell's: with `--workload trace`
//! the direct runs send the same mix (the trace's requests in a closed loop, straight at each
//! node), so both speeds are set from a measurement in the same run, never from a configured
//! figure.
//!
//! Each speed is a cell (`trace-1x`, `trace-80pct`) with goodput, TTFT, ITL and TPOT, each node's
//! share of the served work against its share of the capacity, and the per-request audit.

use std::sync::Arc;
use std::time::Duration;

use super::{CellSpec, Context};
use crate::engine::Schedule;
use crate::gateway::{Cell, Limits, audited_repeats, target};
use crate::summary::Summary;
use crate::trace::Trace;
use crate::workload::Workload;

/// The load the second replay aims at, as a share of the capacity for the trace's mix.
const LOAD: f64 = 0.8;
/// Most connections a replay opens: arrivals beyond wait for one, and the wait counts in their
/// time to first token.
const MAX_CONNECTIONS: usize = 512;

/// The cell.
pub(super) struct TraceReplay;

impl CellSpec for TraceReplay {
    fn streams(&self) -> bool {
        true
    }
    fn name(&self) -> &'static str {
        "trace"
    }
    fn about(&self) -> &'static str {
        "--workload trace only: the trace's arrivals at 1x and at the speed that loads the cluster to 80% of its capacity for the trace's mix: goodput, TTFT/ITL, shares, audit."
    }
    fn by_default(&self) -> bool {
        false
    }
    fn cell_names(&self) -> Vec<String> {
        vec!["trace-1x".into(), "trace-80pct".into()]
    }
    fn figures(&self) -> &'static [&'static str] {
        &["speed", "offered_rps", "goodput_rps"]
    }
    fn measure(&self, cx: &Context) -> anyhow::Result<Vec<Cell>> {
        let Workload::Trace(trace) = &cx.settings.workload.workload else {
            anyhow::bail!(
                "the trace cell replays a trace: run it with --workload trace --trace FILE"
            );
        };
        let rate = own_rate(trace);
        let fast = LOAD * cx.limits.ideal / rate.max(1e-9);
        anyhow::ensure!(
            fast.is_finite() && fast > 0.0,
            "the trace cell needs the capacity for the trace's mix, and the direct runs measured none (did every request straight at the nodes fail?)"
        );
        [("trace-1x", 1.0), ("trace-80pct", fast)]
            .into_iter()
            .map(|(name, speed)| replay(cx, trace, name, speed, rate))
            .collect()
    }
    fn verdicts(&self, cell: &Cell, limits: Limits, _service_ms: f64) -> Vec<String> {
        let figure = |name: &str| cell.figures.get(name).map_or(f64::NAN, |s| s.median);
        let offered = format!(
            "{}: the trace at {:.2}x its speed offers {:.1} req/s on average ({} of the {:.1} req/s capacity for its mix)",
            cell.name,
            figure("speed"),
            figure("offered_rps"),
            crate::wording::ratio(figure("offered_rps") / limits.ideal.max(1e-9)),
            limits.ideal,
        );
        // A replay's rates over its whole run include the drain after the last arrival, so
        // what it did with the trace is said per request.
        let Some(t) = &cell.tokens else {
            return vec![format!("{offered}.")];
        };
        let within = match (t.meeting_slo, t.slo) {
            (Some(met), Some(slo)) => format!(
                ", {:.0}% within the SLO ({})",
                100.0 * met as f64 / t.requests.max(1) as f64,
                String::from(slo)
            ),
            _ => String::new(),
        };
        vec![format!(
            "{offered}: {} of {} answers whole{within}; time to first token p50 {:.0} ms, p99 {:.0} ms (last run).",
            t.whole, t.requests, t.ttft.p50, t.ttft.p99,
        )]
    }
}

/// Requests per second of the trace as recorded: its requests over the time from the first
/// arrival to the last (at least one second).
fn own_rate(trace: &Trace) -> f64 {
    let span = trace.requests.last().map_or(Duration::ZERO, |r| r.at);
    trace.requests.len() as f64 / span.as_secs_f64().max(1.0)
}

/// The trace through the gateway at `speed` times its own, every repeat audited.
fn replay(cx: &Context, trace: &Trace, name: &str, speed: f64, rate: f64) -> anyhow::Result<Cell> {
    let settings = cx.settings;
    let offsets: Arc<[Duration]> = trace.requests.iter().map(|r| r.at.div_f64(speed)).collect();
    let target = target(&settings.target, settings);
    let audited = audited_repeats(cx.nodes, settings, cx.capacity, |r| {
        let schedule = Schedule::Replay {
            offsets: Arc::clone(&offsets),
            connections: offsets.len().min(MAX_CONNECTIONS),
        };
        Ok(cx.engine.run(&target, schedule, &format!("{name}{r}"))?)
    })?;
    let goodput = audited.goodputs.clone();
    let mut cell = audited.cell(name);
    cell.figures = [
        ("speed", Summary::of(vec![speed])),
        ("offered_rps", Summary::of(vec![rate * speed])),
        ("goodput_rps", Summary::of(goodput)),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();
    Ok(cell)
}
