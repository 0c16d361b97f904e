//! Fault cells: the load through the gateway for three equal phases, with the last node taken
//! down the way real nodes fail (refusing connections, answering 503 busy, or hanging) during
//! the middle one, through the node's control API and without restarting the gateway.
//!
//! Reported beside the audit: throughput in each phase (requests by send time), the requests that
//! failed at the client, how long after the fault began failures kept reaching the client (the
//! gateway's time to route around the node), and how long after the node came back the gateway
//! sent it work again (from the node's own log).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mock_ollama::{Availability, MockCluster};
use serde::{Deserialize, Serialize};

use super::audit::{self, Audit};
use super::{Settings, log_heads, logs_since, target};
use crate::engine::{Engine, EngineRun, Schedule};

/// How the last node fails during the middle phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeFault {
    /// Connections refused (the node stops listening), back on the same port after.
    Refuse,
    /// Every inference request answered 503 with Ollama's text.
    Busy,
    /// Requests read and never answered (until the client's timeout).
    Hang,
}

/// What one fault run showed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultReport {
    /// The fault.
    pub fault: NodeFault,
    /// Length of each phase, ms.
    pub phase_ms: u64,
    /// Complete answers per second before, during and after the fault (by send time).
    pub throughput: [f64; 3],
    /// Requests that failed at the client.
    pub client_failures: u64,
    /// From the fault's start to the send of the last request that failed at the client, ms
    /// (`None`: no request failed).
    pub failures_for_ms: Option<f64>,
    /// From the node's recovery to its first logged arrival, ms (`None`: no work came back).
    pub back_in_use_after_ms: Option<f64>,
    /// The per-request audit.
    pub audit: Audit,
}

fn unix_ns(at: SystemTime) -> u128 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

fn phase_throughput(run: &EngineRun, phase: Duration) -> [f64; 3] {
    let mut ok = [0u64; 3];
    for r in run.records.iter().filter(|r| r.ok()) {
        let i = (r.sent_us / phase.as_micros().max(1) as u64).min(2) as usize;
        ok[i] += 1;
    }
    ok.map(|n| n as f64 / phase.as_secs_f64())
}

fn start_fault(nodes: &MockCluster, last: usize, fault: NodeFault) {
    match fault {
        NodeFault::Refuse => nodes.pause_node(last),
        NodeFault::Busy => nodes.nodes()[last].set_availability(Availability::Busy),
        NodeFault::Hang => nodes.nodes()[last].set_availability(Availability::Hang),
    }
}

fn end_fault(nodes: &MockCluster, last: usize, fault: NodeFault) -> anyhow::Result<()> {
    match fault {
        NodeFault::Refuse => nodes.resume_node(last)?,
        NodeFault::Busy | NodeFault::Hang => nodes.nodes()[last].set_availability(Availability::Up),
    }
    Ok(())
}

/// One run with the last node failing as `fault` during the middle of three `phase`s.
pub fn run(
    engine: &Engine,
    nodes: &MockCluster,
    settings: &Settings,
    fault: NodeFault,
    phase: Duration,
    run_id: &str,
) -> anyhow::Result<FaultReport> {
    let last = nodes.nodes().len() - 1;
    let heads = log_heads(nodes);
    let target = target(&settings.target, settings);
    let schedule = Schedule::Closed {
        workers: settings.workers,
        requests: u64::MAX / 2,
        cap: Some(phase * 3),
    };
    let (run, back_at) = std::thread::scope(|scope| {
        let load = scope.spawn(|| engine.run(&target, schedule, run_id));
        std::thread::sleep(phase);
        let fault_at = std::time::Instant::now();
        start_fault(nodes, last, fault);
        std::thread::sleep(phase.saturating_sub(fault_at.elapsed()));
        let ended = end_fault(nodes, last, fault);
        let back_at = SystemTime::now();
        let run = load
            .join()
            .map_err(|_| anyhow::anyhow!("the load thread panicked"))?;
        ended?;
        anyhow::Ok((run?, back_at))
    })?;
    // The fault starts one phase after the load thread starts; the engine's own start-up (a
    // runtime and its clients, well under a millisecond) makes its clock lag by that much.
    let fault_offset_us = phase.as_micros() as u64;
    let logs = logs_since(nodes, &heads);
    let page = nodes.nodes()[last].served(u64::MAX, 0);
    let back_ns = unix_ns(back_at).saturating_sub(page.started_unix_ns) as u64;
    let back_in_use_after_ms = logs[last]
        .0
        .iter()
        .filter(|e| e.arrival_ns >= back_ns)
        .map(|e| (e.arrival_ns - back_ns) as f64 / 1e6)
        .reduce(f64::min);
    let failures_for_ms = run
        .records
        .iter()
        .filter(|r| !r.ok() && r.sent_us >= fault_offset_us)
        .map(|r| (r.sent_us - fault_offset_us) as f64 / 1e3)
        .reduce(f64::max);
    Ok(FaultReport {
        fault,
        phase_ms: phase.as_millis() as u64,
        throughput: phase_throughput(&run, phase),
        client_failures: run.failed(),
        failures_for_ms,
        back_in_use_after_ms,
        audit: audit::audit(&run, &logs),
    })
}
