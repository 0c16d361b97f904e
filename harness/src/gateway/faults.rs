//! Fault cells: the load through the gateway for three equal phases, with a fault during the
//! middle one, set through the nodes' control API without restarting the gateway: the last node
//! down the way real nodes fail (refusing connections, answering 503 busy, hanging, resetting
//! connections, stalling every request, answering 5% with 500), or every node's control plane
//! (`/api/tags`, `/api/ps`, `/v1/models`) taking a second to answer.
//!
//! Reported beside the audit: throughput in each phase (requests by send time), the requests that
//! failed at the client, how long after the fault began failures kept reaching the client (the
//! gateway's time to route around the node), and how long after the node came back the gateway
//! sent it work again (from the node's own log).
//!
//! Under a streamed workload the reset and the stall strike [`MID_STREAM_TOKENS`] tokens into
//! each answer, after the client has seen tokens: a gateway can then only pass the cut on or
//! retry the request and splice the second answer onto the first, which the client sees as more
//! tokens than it asked for (the report's `spliced_streams`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mock_ollama::{Availability, ServedOutcome, SettingsPatch};
use serde::{Deserialize, Serialize};

use super::audit::{self, Audit};
use super::streamed::token_metrics;
use super::system::{System, driven};
use super::{Nodes, Settings, log_heads, logs_since, settled_logs_since, target};
use crate::engine::{Engine, Run, Schedule};
use crate::workload::{TokenMetrics, Workload};

/// What fails during the middle phase (the last node, unless said otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeFault {
    /// Connections refused (the node stops listening), back on the same port after.
    Refuse,
    /// Every inference request answered 503 with Ollama's text.
    Busy,
    /// Requests read and never answered (until the client's timeout).
    Hang,
    /// Every inference request's connection aborted before any service (nothing served).
    Reset,
    /// Every inference request held this long before its service: a node that froze and came
    /// back. The harness cannot know the gateway's timeout, so the length is reported with what
    /// happened.
    Stall {
        /// The stall, ms.
        ms: u64,
    },
    /// 5% of inference requests answered 500 (drawn per request, seeded).
    Errors,
    /// Every node's control plane (`/api/tags`, `/api/ps`, `/v1/models`) answers after 1 s;
    /// inference is untouched. Shows whether the gateway's health checks or model lists sit in
    /// the request path.
    SlowControlPlane,
}

/// Tokens into a streamed answer at which the reset and stall faults strike under a streamed
/// workload.
pub const MID_STREAM_TOKENS: i64 = 2;

/// The injected 500 rate of [`NodeFault::Errors`].
pub const ERROR_RATE: f64 = 0.05;

/// The control-plane latency of [`NodeFault::SlowControlPlane`].
pub const SLOW_CONTROL_PLANE: Duration = Duration::from_secs(1);

impl NodeFault {
    /// The nodes it hits, out of `nodes`.
    fn nodes(self, nodes: usize) -> std::ops::Range<usize> {
        match self {
            NodeFault::SlowControlPlane => 0..nodes,
            _ => nodes.saturating_sub(1)..nodes,
        }
    }

    /// For faults set as node settings, the change (undone with [`SettingsPatch::undo`]);
    /// `mid_stream`: a reset or stall strikes [`MID_STREAM_TOKENS`] into each streamed answer.
    fn patch(self, mid_stream: bool) -> Option<SettingsPatch> {
        let at = mid_stream.then_some(MID_STREAM_TOKENS);
        let patch = match self {
            NodeFault::Refuse | NodeFault::Busy | NodeFault::Hang => return None,
            NodeFault::Reset => SettingsPatch {
                reset_rate: Some(1.0),
                fault_after_tokens: at,
                ..SettingsPatch::default()
            },
            NodeFault::Stall { ms } => SettingsPatch {
                stall_rate: Some(1.0),
                stall: Some(Duration::from_millis(ms)),
                fault_after_tokens: at,
                ..SettingsPatch::default()
            },
            NodeFault::Errors => SettingsPatch {
                error_rate: Some(ERROR_RATE),
                ..SettingsPatch::default()
            },
            NodeFault::SlowControlPlane => SettingsPatch {
                control_latency: Some(SLOW_CONTROL_PLANE),
                ..SettingsPatch::default()
            },
        };
        Some(patch)
    }
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
    /// Requests sent during the fault, and of those, failed at the client.
    #[serde(default)]
    pub during_fault: (u64, u64),
    /// From the fault's start to the send of the last request that failed at the client, ms
    /// (`None`: no request failed).
    pub failures_for_ms: Option<f64>,
    /// From the node's recovery to its first logged arrival, ms (`None`: no work came back).
    pub back_in_use_after_ms: Option<f64>,
    /// From the fault's start to the last request the last node logged during it, ms: how long
    /// the gateway kept sending it work (`None`: nothing logged, as for refused connections).
    #[serde(default)]
    pub sent_to_node_for_ms: Option<f64>,
    /// How long the gateway took, before this run, to send every node work again after what
    /// came before (`None`: it did not within the settle limit, or nothing was asked).
    #[serde(default)]
    pub settled_after_ms: Option<f64>,
    /// The system started afresh for this run (a client library's driver is a new process each
    /// run): nothing came before it to settle from, and `settled_after_ms` was not measured.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fresh_start: bool,
    /// The per-request audit.
    pub audit: Audit,
    /// Under a streamed workload, the run's token figures (streams cut after their first token
    /// among them); results from before read none.
    #[serde(default)]
    pub tokens: Option<TokenMetrics>,
    /// Under a streamed workload, whole answers that brought more tokens than were asked: the
    /// gateway retried a stream that had started and passed both attempts' tokens on.
    #[serde(default)]
    pub spliced_streams: Option<u64>,
}

/// Whole answers of `run` with more tokens than `workload` asked for them (a request asking
/// none gets the node's default length, so it says nothing).
fn spliced_streams(run: &Run, workload: &Workload) -> u64 {
    let spliced = run.records.iter().filter(|r| {
        let asked = workload.output_of(r.n).filter(|&asked| asked > 0);
        r.ok() && asked.is_some_and(|asked| r.tokens > asked)
    });
    spliced.count() as u64
}

fn unix_ns(at: SystemTime) -> u128 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// Complete answers per second of each phase, by send time. Requests sent after the third phase
/// count in none: a driver asked for a number of requests runs past three phases when the fault
/// slowed it, and what it sends then is neither "after" the fault in the cell's sense nor inside
/// a phase's length.
fn phase_throughput(run: &Run, phase: Duration) -> [f64; 3] {
    let mut ok = [0u64; 3];
    for r in run.records.iter().filter(|r| r.ok()) {
        let i = (r.sent_us / phase.as_micros().max(1) as u64) as usize;
        if let Some(n) = ok.get_mut(i) {
            *n += 1;
        }
    }
    ok.map(|n| n as f64 / phase.as_secs_f64())
}

/// The longest [`settle`] waits: longer than nginx's default `fail_timeout` (10 s), the longest a
/// common gateway keeps a failed node out on its own.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(12);

/// How long each settling burst sends.
const SETTLE_BURST: Duration = Duration::from_millis(100);

/// Sends short bursts through the gateway until every node has served one of them, for up to
/// `limit`; returns how long that took (`None`: not within `limit`). A gateway that still avoids
/// a node because of the previous fault (a passive health mark, a connection pool that has not
/// recovered) would otherwise show that aftermath as the next fault's "before".
pub fn settle(
    engine: &Engine,
    nodes: &Nodes,
    settings: &Settings,
    limit: Duration,
    run_id: &str,
) -> anyhow::Result<Option<Duration>> {
    let started = std::time::Instant::now();
    let target = target(&settings.target, settings);
    let mut seen = vec![false; nodes.len()];
    for burst in 0.. {
        if started.elapsed() >= limit {
            return Ok(None);
        }
        let heads = log_heads(nodes)?;
        let schedule = Schedule::Closed {
            workers: settings.workers,
            requests: u64::MAX / 2,
            cap: Some(SETTLE_BURST),
        };
        engine.run(&target, schedule, &format!("{run_id}settle{burst}"))?;
        for (node, (entries, _)) in seen.iter_mut().zip(logs_since(nodes, &heads)?) {
            *node |= entries.iter().any(|e| e.outcome == ServedOutcome::Served);
        }
        if seen.iter().all(|s| *s) {
            return Ok(Some(started.elapsed()));
        }
    }
    Ok(None)
}

/// Requests sent in the middle phase, and of those, failed.
fn sent_and_failed_during(run: &Run, phase: Duration) -> (u64, u64) {
    let phase_us = phase.as_micros() as u64;
    let during: Vec<_> = run
        .records
        .iter()
        .filter(|r| (phase_us..2 * phase_us).contains(&r.sent_us))
        .collect();
    let failed = during.iter().filter(|r| !r.ok() && !r.left).count() as u64;
    (during.len() as u64, failed)
}

/// Starts `fault` on its nodes for `phase`, pushing onto `undo` the settings that undo each
/// change made (so a failure halfway still leaves what was changed to be undone).
fn start_fault(
    nodes: &Nodes,
    (fault, mid_stream): (NodeFault, bool),
    phase: Duration,
    undo: &mut Vec<(usize, SettingsPatch)>,
) -> anyhow::Result<()> {
    for i in fault.nodes(nodes.len()) {
        // A refusing node cannot be asked for its settings: availability faults change nothing
        // else.
        match fault {
            NodeFault::Refuse => nodes.refuse(i, phase)?,
            NodeFault::Busy => nodes.set_availability(i, Availability::Busy)?,
            NodeFault::Hang => nodes.set_availability(i, Availability::Hang)?,
            _ => {
                if let Some(on) = fault.patch(mid_stream) {
                    let before = nodes.settings(i)?;
                    nodes.update(i, &on)?;
                    undo.push((i, on.undo(&before)));
                }
            }
        }
    }
    Ok(())
}

/// Ends `fault` on every node it hit and undoes every setting, trying each even when one fails;
/// returns the first error.
fn end_fault(
    nodes: &Nodes,
    fault: NodeFault,
    undo: &[(usize, SettingsPatch)],
) -> anyhow::Result<()> {
    let ended = fault.nodes(nodes.len()).map(|i| match fault {
        NodeFault::Refuse => nodes.resume(i),
        NodeFault::Busy | NodeFault::Hang => nodes.set_availability(i, Availability::Up),
        _ => Ok(()),
    });
    let undone = undo.iter().map(|(i, off)| nodes.update(*i, off));
    let errors: Vec<anyhow::Error> = ended.chain(undone).filter_map(Result::err).collect();
    errors.into_iter().next().map_or(Ok(()), Err)
}

/// Waits until a node has taken up a request since `heads`, the load has `finished` (a driver
/// that exited without sending), or `limit` has passed.
fn first_arrival(
    nodes: &Nodes,
    heads: &[u64],
    limit: Duration,
    finished: &dyn Fn() -> bool,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    while started.elapsed() < limit && !finished() {
        for (i, head) in heads.iter().enumerate() {
            let page = nodes.served(i, u64::MAX, 0)?;
            if page.open > 0 || page.next > *head {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// From the faulty node's log (its clock started at `started_ns` since the epoch): how long
/// after the fault's start at `fault_at` it was still sent work, and how long after its
/// recovery at `back_at` it got work again, ms.
fn faulty_node_use(
    entries: &[mock_ollama::ServedEntry],
    started_ns: u128,
    fault_at: SystemTime,
    back_at: SystemTime,
) -> (Option<f64>, Option<f64>) {
    let back_ns = unix_ns(back_at).saturating_sub(started_ns) as u64;
    let fault_ns = unix_ns(fault_at).saturating_sub(started_ns) as u64;
    let sent_for = entries
        .iter()
        .filter(|e| (fault_ns..back_ns).contains(&e.arrival_ns))
        .map(|e| (e.arrival_ns - fault_ns) as f64 / 1e6)
        .reduce(f64::max);
    let back_after = entries
        .iter()
        .filter(|e| e.arrival_ns >= back_ns)
        .map(|e| (e.arrival_ns - back_ns) as f64 / 1e6)
        .reduce(f64::min);
    (sent_for, back_after)
}

/// One run with `fault` during the middle of three `phase`s.
pub fn run(
    engine: &Engine,
    nodes: &Nodes,
    settings: &Settings,
    fault: NodeFault,
    phase: Duration,
    run_id: &str,
) -> anyhow::Result<FaultReport> {
    let last = nodes.len() - 1;
    let heads = log_heads(nodes)?;
    let target = target(&settings.target, settings);
    let schedule = Schedule::Closed {
        workers: settings.workers,
        requests: u64::MAX / 2,
        cap: Some(phase * 3),
    };
    let (run, fault_at, back_at) = std::thread::scope(|scope| {
        let load = scope.spawn(|| match &settings.system {
            System::Gateway => Ok(engine.run(&target, schedule, run_id)?),
            System::Driver(driver) => {
                let (workers, requests) = (settings.workers, driver.fault_requests);
                driven(driver, nodes, nodes.len(), workers, requests, run_id)
            }
        });
        if let System::Driver(driver) = &settings.system {
            // A driver starts its interpreter and library before its first request, and its
            // requests' send times count from that request: the phases do too.
            first_arrival(nodes, &heads, driver.timeout, &|| load.is_finished())?;
        }
        std::thread::sleep(phase);
        let (fault_at, fault_wall) = (std::time::Instant::now(), SystemTime::now());
        let mut undo = Vec::new();
        let streams = settings.workload.streams();
        let started = start_fault(nodes, (fault, streams), phase, &mut undo);
        std::thread::sleep(phase.saturating_sub(fault_at.elapsed()));
        let ended = started.and(end_fault(nodes, fault, &undo));
        let back_at = SystemTime::now();
        let run = load
            .join()
            .map_err(|_| anyhow::anyhow!("the load thread panicked"))?;
        ended?;
        anyhow::Ok((run?, fault_wall, back_at))
    })?;
    // The fault starts one phase after the load's clock does: the engine's from its thread's
    // start (its own start-up, a runtime and its clients, well under a millisecond, makes it lag
    // by that much), a driver's from its first send, which `first_arrival` waited for.
    let fault_offset_us = phase.as_micros() as u64;
    // The fault has ended (a hung node is up again and lets its requests go): wait for what the
    // nodes still work on, such as a stream a gateway keeps going after its client left.
    let logs = settled_logs_since(nodes, &heads)?;
    let started_ns = nodes.served(last, u64::MAX, 0)?.started_unix_ns;
    let (sent_to_node_for_ms, back_in_use_after_ms) =
        faulty_node_use(&logs[last].0, started_ns, fault_at, back_at);
    let failures_for_ms = run
        .records
        .iter()
        .filter(|r| !r.ok() && !r.left && r.sent_us >= fault_offset_us)
        .map(|r| (r.sent_us - fault_offset_us) as f64 / 1e3)
        .reduce(f64::max);
    Ok(FaultReport {
        fault,
        phase_ms: phase.as_millis() as u64,
        throughput: phase_throughput(&run, phase),
        client_failures: run.failed(),
        during_fault: sent_and_failed_during(&run, phase),
        failures_for_ms,
        back_in_use_after_ms,
        sent_to_node_for_ms,
        settled_after_ms: None,
        fresh_start: matches!(settings.system, System::Driver(_)),
        audit: audit::audit(&run, &logs),
        tokens: token_metrics(&run, settings),
        spliced_streams: settings
            .workload
            .streams()
            .then(|| spliced_streams(&run, &settings.workload.workload)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mock_ollama::NodeSettings;

    /// A driver's run that went on past the third phase counts what it sent then in no phase:
    /// with `.min(2)` instead, phase 3 here read 4 answers a second, not 1.
    #[test]
    fn requests_sent_after_the_third_phase_count_in_none() {
        let phase = Duration::from_secs(1);
        let record = |sent_s: u64| crate::engine::Record {
            n: sent_s,
            status: Some(200),
            latency_us: 1,
            sent_us: sent_s * 1_000_000,
            late_us: 0,
            ttft_us: None,
            tokens: 0,
            left: false,
        };
        let run = Run {
            run_id: "r".into(),
            elapsed: phase * 6,
            records: [0, 0, 1, 2, 3, 4, 5].map(record).to_vec(),
            latency: crate::summary::new_histogram(),
            ttft: crate::summary::new_histogram(),
            itl: crate::summary::new_histogram(),
            late: 0,
            window: None,
            capped: false,
        };
        assert_eq!(phase_throughput(&run, phase), [2.0, 1.0, 1.0]);
    }

    /// Each settings fault changes its field, and its undo restores the value it found.
    #[test]
    fn settings_faults_set_their_field_and_restore_what_they_found() {
        let config = mock_ollama::NodeConfig::default();
        let before = NodeSettings::of(&config, Availability::Up);
        let on = NodeFault::SlowControlPlane
            .patch(false)
            .expect("a settings fault");
        let slow = on.apply(&config).expect("valid");
        assert_eq!(slow.control_latency, SLOW_CONTROL_PLANE);
        assert_eq!(on.undo(&before).apply(&slow).expect("valid"), config);
        let on = NodeFault::Stall { ms: 250 }
            .patch(false)
            .expect("a settings fault");
        let stalled = on.apply(&config).expect("valid");
        assert_eq!(
            (stalled.faults.stall_rate, stalled.faults.stall),
            (1.0, Duration::from_millis(250))
        );
        assert_eq!(on.undo(&before).apply(&stalled).expect("valid"), config);
        assert!(
            NodeFault::Hang.patch(true).is_none(),
            "availability, not settings"
        );
    }

    /// Under a streamed workload a reset and a stall strike mid-stream, and undoing them puts
    /// the node's own setting back.
    #[test]
    fn mid_stream_faults_strike_after_the_first_tokens_and_are_undone() {
        let config = mock_ollama::NodeConfig::default();
        let before = NodeSettings::of(&config, Availability::Up);
        for fault in [NodeFault::Reset, NodeFault::Stall { ms: 250 }] {
            let on = fault.patch(true).expect("a settings fault");
            let applied = on.apply(&config).expect("valid");
            assert_eq!(
                applied.faults.after_tokens,
                Some(MID_STREAM_TOKENS as u32),
                "{fault:?}"
            );
            assert_eq!(on.undo(&before).apply(&applied).expect("valid"), config);
            let whole = fault.patch(false).expect("a settings fault");
            assert_eq!(
                whole.apply(&config).expect("valid").faults.after_tokens,
                None
            );
        }
    }
}
