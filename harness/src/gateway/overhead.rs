//! The `overhead` cell: what the gateway itself costs a request.
//!
//! Two measurements, each paired with the same load straight at node 0 and interleaved (which side
//! goes first alternates by repeat):
//! - **latency added at low load**: one worker at the nodes' configured service time, so nothing
//!   queues anywhere; the gateway's p50 and p99 minus the direct ones, per repeat;
//! - **peak rate**: the nodes set to zero service time through their control API (restored
//!   after), `--workers` connections; requests/s through the gateway over straight at one node.
//!   On one machine the gateway, the nodes and the load engine share the cores, so this is the
//!   rate the whole path sustains here, not the gateway's own limit on a machine of its own.

use std::time::Duration;

use mock_ollama::SettingsPatch;
use serde::{Deserialize, Serialize};

use super::{Cell, Nodes, Run, Settings, run_once, while_patched};
use crate::engine::Engine;
use crate::summary::{Latency, Summary};

/// Requests per low-load run.
const LOW_LOAD_REQUESTS: u64 = 200;

/// What the overhead cell measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OverheadReport {
    /// Low load, straight at node 0 (last repeat), ms.
    pub direct_latency: Latency,
    /// Low load, through the gateway (last repeat), ms.
    pub gateway_latency: Latency,
    /// Gateway p50 minus direct p50 per repeat, ms.
    pub added_p50_ms: Summary,
    /// Gateway p99 minus direct p99 per repeat, ms.
    pub added_p99_ms: Summary,
    /// Zero service time: requests/s straight at node 0, per repeat.
    pub direct_peak: Summary,
    /// Zero service time: requests/s through the gateway, per repeat.
    pub gateway_peak: Summary,
}

/// What a gateway costs a request, each figure per repeat: paired runs through it and straight
/// at node 0 (which goes first alternates by repeat), at low load and at zero service time.
pub(super) struct PairedCosts {
    /// Gateway p50 minus direct p50, ms.
    pub(super) added_p50: Vec<f64>,
    /// Gateway p99 minus direct p99, ms.
    pub(super) added_p99: Vec<f64>,
    /// The last low-load repeat's latency, direct and through the gateway.
    pub(super) latencies: (Latency, Latency),
    /// Requests/s at zero service time, direct and through the gateway.
    pub(super) peaks: Vec<(f64, f64)>,
}

/// Measures [`PairedCosts`] with `run(url, workers, requests, id)` sending each run (the
/// overhead cell's embed, or another body); ids start with `tag`.
pub(super) fn paired_costs(
    nodes: &Nodes,
    settings: &Settings,
    low_load_requests: u64,
    tag: &str,
    run: impl Fn(&str, usize, u64, &str) -> anyhow::Result<Run>,
) -> anyhow::Result<PairedCosts> {
    let node0 = nodes.urls().first().cloned().unwrap_or_default();
    let paired = |workers: usize, requests: u64, r: usize, phase: &str| {
        let direct = || run(&node0, workers, requests, &format!("{tag}{phase}d{r}"));
        let through = || {
            let id = format!("{tag}{phase}g{r}");
            run(&settings.target, workers, requests, &id)
        };
        if r.is_multiple_of(2) {
            let d = direct()?;
            Ok::<_, anyhow::Error>((d, through()?))
        } else {
            let g = through()?;
            Ok((direct()?, g))
        }
    };
    let (mut added_p50, mut added_p99, mut latencies) = (vec![], vec![], None);
    for r in 0..settings.repeats {
        let (d, g) = paired(1, low_load_requests, r, "l")?;
        let (dl, gl) = (Latency::of(&d.latency), Latency::of(&g.latency));
        added_p50.push(gl.p50 - dl.p50);
        added_p99.push(gl.p99 - dl.p99);
        latencies = Some((dl, gl));
    }
    let instant = |_: &mock_ollama::NodeSettings| SettingsPatch {
        latency: Some(Duration::ZERO),
        ..SettingsPatch::default()
    };
    let peaks = while_patched(nodes, 0..nodes.len(), instant, || {
        (0..settings.repeats)
            .map(|r| paired(settings.workers, settings.requests, r, "p"))
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let latencies =
        latencies.ok_or_else(|| anyhow::anyhow!("a paired cell needs --repeats >= 1"))?;
    Ok(PairedCosts {
        added_p50,
        added_p99,
        latencies,
        peaks: peaks
            .iter()
            .map(|(d, g)| (d.throughput(), g.throughput()))
            .collect(),
    })
}

/// Measures the cell.
pub(super) fn overhead(
    engine: &Engine,
    nodes: &Nodes,
    settings: &Settings,
) -> anyhow::Result<Cell> {
    let run = |url: &str, workers, requests, id: &str| {
        run_once(engine, url, settings, workers, requests, id)
    };
    let costs = paired_costs(nodes, settings, LOW_LOAD_REQUESTS, "o", run)?;
    let (direct_latency, gateway_latency) = costs.latencies;
    let (direct_peak, gateway_peak): (Vec<f64>, Vec<f64>) = costs.peaks.into_iter().unzip();
    let report = OverheadReport {
        direct_latency,
        gateway_latency,
        added_p50_ms: Summary::of(costs.added_p50),
        added_p99_ms: Summary::of(costs.added_p99),
        direct_peak: Summary::of(direct_peak),
        gateway_peak: Summary::of(gateway_peak.clone()),
    };
    Ok(Cell {
        overhead: Some(report),
        ..Cell::new("overhead", Summary::of(gateway_peak), gateway_latency)
    })
}

/// The cell's verdict.
pub(super) fn verdict(cell: &Cell, service_ms: f64) -> Option<String> {
    let o = cell.overhead.as_ref()?;
    Some(format!(
        "overhead: at low load (1 worker, {service_ms} ms service) the gateway adds {:.3} ms at p50 and {:.3} ms at p99 ({}; direct p50 {:.3} ms); at zero service time it passes {:.0} req/s against {:.0} straight at one node ({}x).",
        o.added_p50_ms.median,
        o.added_p99_ms.median,
        crate::wording::medians_of(o.added_p50_ms.samples.len(), "paired run", "paired runs"),
        o.direct_latency.p50,
        o.gateway_peak.median,
        o.direct_peak.median,
        crate::wording::ratio(o.gateway_peak.median / o.direct_peak.median.max(1e-9)),
    ))
}

/// The `overhead` cell.
pub(super) struct Overhead;

impl super::CellSpec for Overhead {
    fn name(&self) -> &'static str {
        "overhead"
    }
    fn about(&self) -> &'static str {
        "Latency the gateway adds at low load, and its peak rate at zero service time."
    }
    fn measure(&self, cx: &super::cells::Context) -> anyhow::Result<Vec<Cell>> {
        Ok(vec![overhead(cx.engine, cx.nodes, cx.settings)?])
    }
}
