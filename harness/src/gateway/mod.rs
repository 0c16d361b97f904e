//! `harness gateway`: benchmark and audit any Ollama-compatible load balancer placed in front of
//! mock nodes the harness controls.
//!
//! The harness starts N embedded mock nodes on fixed ports (the gateway's configuration names
//! them), waits until the gateway answers, and measures cells with the load engine:
//! - `direct`: the same load straight at each node; each node's measured throughput is its
//!   capacity, and their sum is the capacity ideal of every other cell (measured, not configured);
//! - `distribution`: the load through the gateway: throughput against the ideal, each node's share
//!   of the served work against its share of the capacity, and the per-request audit
//!   ([`audit`]): served once, more than once, answered without a node, failed but served, never
//!   served, and the gateway's retries.
//!
//! Every request carries a unique id, so the audit joins the client's outcome of each request
//! with every node's served log. Results go to `results/gateways/<label>.json`.

pub mod audit;
pub mod bounds;
pub mod ceiling;
pub mod cells;
mod charts;
pub mod control_plane;
pub mod faults;
pub mod footprint;
pub mod open_loop;
pub mod overhead;
pub mod process;
pub mod ready;
pub mod scaling;
mod streamed;
pub mod streaming;
pub mod system;
mod table;
mod verdicts;

pub use table::{clients_section, glance, read as read_results, refresh_verdicts, report_section};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use mock_ollama::{MockCluster, NodeConfig, NodeSettings, NodeSpec, ServedEntry, SettingsPatch};
use serde::{Deserialize, Serialize};

use crate::client::Driver;
use crate::engine::{Engine, Headers, Run, Schedule, Target, Template};
use crate::machine::Machine;
use crate::summary::{Latency, Summary};
use crate::workload::TokenMetrics;
use streamed::{after_direct, even_share_tokens, token_metrics, workload_params};

pub use crate::nodes::{Nodes, RemoteNode};
pub use audit::{Audit, Class};
pub use cells::{CellKind, CellSpec};
pub use ready::Readiness;
pub use streamed::WorkloadSettings;
pub use system::System;

pub use crate::workload::Api;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The gateway's base URL.
    pub target: String,
    /// Mock nodes to start.
    pub nodes: usize,
    /// Port of node 0 (node i listens on `port + i`).
    pub port: u16,
    /// The dialect.
    pub api: Api,
    /// Name of the gateway in the results.
    pub label: String,
    /// Concurrent workers (= client connections).
    pub workers: usize,
    /// Requests per run.
    pub requests: u64,
    /// Service time per request on every node.
    pub service: Duration,
    /// Slots per node.
    pub slots: usize,
    /// Speed factor per node (missing ones are 1): a slow node shows what a strategy does with
    /// unequal capacity.
    pub speeds: Vec<f64>,
    /// Injected 500 rate per node (missing ones are 0): what the gateway does with a failing node.
    pub error_rates: Vec<f64>,
    /// Runs per cell.
    pub repeats: usize,
    /// How long to wait for the gateway to answer.
    pub ready_timeout: Duration,
    /// The cells through the gateway.
    pub cells: Vec<CellKind>,
    /// Length of each of a fault cell's three phases.
    pub phase: Duration,
    /// Send one input in every request (cache hits show as "answered without a node").
    pub repeat_inputs: bool,
    /// How long the `node-stall` cell holds each request.
    pub stall: Duration,
    /// The user's headers on every request sent through the gateway (keys, user ids); never
    /// sent straight to the nodes.
    pub headers: Headers,
    /// What the gateway answers when it is ready.
    pub ready: Readiness,
    /// What the requests ask (embed by default).
    pub workload: WorkloadSettings,
    /// What the load goes through: the gateway at `target`, or a client library's driver.
    pub system: System,
}

/// One cell's measurements.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    /// The cell's name.
    pub name: String,
    /// Requests per second, per repeat.
    pub throughput: Summary,
    /// Throughput over the capacity ideal, per repeat.
    pub efficiency: Option<Summary>,
    /// Latency of the last repeat, ms.
    pub latency: Latency,
    /// Per node: share of the served work, and share of the capacity (last repeat).
    pub shares: Vec<(f64, f64)>,
    /// The per-request audit, summed over repeats.
    pub audit: Option<Audit>,
    /// Fault cells: one report per repeat.
    #[serde(default)]
    pub faults: Vec<faults::FaultReport>,
    /// The overhead cell's figures.
    #[serde(default)]
    pub overhead: Option<overhead::OverheadReport>,
    /// The streaming cell's figures.
    #[serde(default)]
    pub streaming: Option<streaming::StreamingReport>,
    /// The scaling cell's figures.
    #[serde(default)]
    pub scaling: Option<scaling::ScalingReport>,
    /// The open-loop cell's figures.
    #[serde(default)]
    pub open_loop: Option<open_loop::OpenLoopReport>,
    /// Figures of a cell's own, by name ([`CellSpec::figures`]), each one a bound may name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub figures: BTreeMap<String, Summary>,
    /// Under a streamed workload: the token figures of the last repeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<TokenMetrics>,
}

impl Cell {
    /// A cell with only its name, throughput and latency; the other fields are set by the cells
    /// that measure them (`Cell { audit: …, ..Cell::new(…) }`).
    pub(crate) fn new(name: &str, throughput: Summary, latency: Latency) -> Cell {
        Cell {
            name: name.into(),
            throughput,
            efficiency: None,
            latency,
            shares: Vec::new(),
            audit: None,
            faults: Vec::new(),
            overhead: None,
            streaming: None,
            scaling: None,
            open_loop: None,
            figures: BTreeMap::new(),
            tokens: None,
        }
    }
}

/// The figures every cell is judged against: the capacity ideal (the nodes' throughput measured
/// straight at them, summed) and the gateway's own ceiling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// The gateway's closed-loop rate at zero service time (median), if measured.
    pub ceiling: Option<f64>,
    /// The capacity ideal, requests/s.
    pub ideal: f64,
}

impl Limits {
    /// The most the gateway can be asked to pass: the ideal, or its own ceiling if lower.
    pub fn reachable(&self) -> f64 {
        self.ceiling.map_or(self.ideal, |c| c.min(self.ideal))
    }

    /// The limits `result` was measured against.
    pub fn of(result: &GatewayResult) -> Self {
        Self {
            ceiling: result.ceiling.as_ref().map(|c| c.median),
            ideal: result.capacity.iter().sum(),
        }
    }
}

/// The whole result, as written to `gateways/<label>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatewayResult {
    /// The gateway's name.
    pub label: String,
    /// Its URL.
    pub target: String,
    /// Dialect.
    pub api: Api,
    /// The `Server` header the gateway answered with, if any (nginx names itself and its
    /// version; HAProxy sends none by default).
    #[serde(default)]
    pub server: Option<String>,
    /// Where and when.
    pub machine: Machine,
    /// Nodes, workers, requests, service, slots, repeats.
    pub params: serde_json::Value,
    /// Each node's capacity measured directly (median requests/s).
    pub capacity: Vec<f64>,
    /// The cells.
    pub cells: Vec<Cell>,
    /// The gateway's closed-loop rate at zero service time, `--workers` connections, per
    /// repeat: its own ceiling on this machine (`None` in results from before it was measured).
    #[serde(default)]
    pub ceiling: Option<Summary>,
    /// Memory and CPU of the gateway's processes, when the harness ran it (`--cmd`).
    #[serde(default)]
    pub footprint: Option<footprint::Footprint>,
    /// Requests the gateway sent the nodes on its own (health checks, model lists), per
    /// endpoint, over the whole measurement (`None` in results from before it was measured).
    #[serde(default)]
    pub control_plane: Option<Vec<control_plane::EndpointTraffic>>,
    /// Verdicts computed from the numbers.
    pub verdicts: Vec<String>,
    /// `harness client`: every run of the driver program (how it ended, its report's lines,
    /// the library's statistics against the nodes, CPU).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub driver_runs: Vec<crate::client::DriverRun>,
}

fn node_configs(settings: &Settings) -> Vec<NodeConfig> {
    (0..settings.nodes)
        .map(|i| {
            let spec = NodeSpec {
                speed: settings.speeds.get(i).copied().unwrap_or(1.0),
                error_rate: settings.error_rates.get(i).copied().unwrap_or(0.0),
                ..NodeSpec::new(settings.service, settings.slots)
            };
            let mut config = NodeConfig {
                // Port 0: each node on a free port of the system's choosing.
                port: match settings.port {
                    0 => 0,
                    first => first.saturating_add(i as u16),
                },
                ..spec.config(i)
            };
            if settings.workload.streams() {
                config.latency.per_token = settings.workload.per_token;
                config.latency.prompt_rate = Some(settings.workload.prompt_rate);
                config.leave = node_leave(settings);
            }
            config.prompt_cache = settings.workload.prompt_cache;
            config
        })
        .collect()
}

/// What a node does when a stream's client leaves: under a streamed workload, finish the
/// token or prompt in progress, as Ollama's runner does (ollama/ollama#11889; mock-ollama's
/// `Leave::AtNextToken`), so the work done after a client left is measured; else stop at once.
fn node_leave(settings: &Settings) -> mock_ollama::Leave {
    if settings.workload.streams() {
        mock_ollama::Leave::AtNextToken
    } else {
        mock_ollama::Leave::AtOnce
    }
}

/// Every node's log entries after `since[i]`, and whether each is not exact: entries dropped,
/// or requests still open on the node when it was read.
fn logs_since(nodes: &Nodes, since: &[u64]) -> anyhow::Result<Vec<(Vec<ServedEntry>, bool)>> {
    since
        .iter()
        .enumerate()
        .map(|(i, from)| {
            let page = nodes.served(i, *from, usize::MAX)?;
            Ok((page.entries, page.dropped > 0 || page.open > 0))
        })
        .collect()
}

/// Why `settings` cannot be measured, if they cannot: cells that do not send the workload, a
/// phase or stall of nothing, or clients that leave in a way the cells cannot measure.
pub fn check(settings: &Settings) -> anyhow::Result<()> {
    cells::check_workload(settings)?;
    check_system(settings)?;
    anyhow::ensure!(!settings.phase.is_zero(), "--phase must be longer than 0");
    anyhow::ensure!(
        settings.stall >= Duration::from_millis(1),
        "--stall must be at least 1ms"
    );
    let Some(leave) = settings.workload.leave else {
        return Ok(());
    };
    anyhow::ensure!(
        leave.share != crate::workload::Share::ALL,
        "--leave-share must be below 1 for harness gateway: capacity, throughput and the fault cells' settling count whole answers, and with every stream left there are none"
    );
    // The fault cells time their requests out after two phases.
    if let crate::workload::LeaveAt::After(after) = leave.at {
        anyhow::ensure!(
            after < settings.phase * 2,
            "--leave-after {} is not shorter than the fault cells' request timeout (2 x --phase): their requests would time out instead",
            leave.at
        );
    }
    Ok(())
}

/// Refuses cells the system under test cannot go through.
fn check_system(settings: &Settings) -> anyhow::Result<()> {
    match settings.system {
        System::Gateway => anyhow::ensure!(
            !settings.cells.iter().any(|c| c.name() == "two-node"),
            system::NOT_A_GATEWAY_CELL
        ),
        System::Driver(_) => {
            let refused: Vec<&str> = settings
                .cells
                .iter()
                .filter(|c| !c.for_clients())
                .map(|c| c.name())
                .collect();
            anyhow::ensure!(
                refused.is_empty(),
                "harness client runs the cells {}; not {}",
                cells::for_clients(),
                refused.join(", ")
            );
            anyhow::ensure!(
                !settings.workload.streams(),
                "harness client sends embeddings only, for now (the driver protocol's requests)"
            );
        }
    }
    Ok(())
}

/// The longest [`settled_logs_since`] waits for the nodes to log what they still work on.
const LOG_SETTLE: Duration = Duration::from_secs(60);

/// [`logs_since`] once every request the nodes received is logged: after a run, a node may still
/// be generating an answer whose client left, or one a gateway kept going for nobody, and its
/// entry would be missing from an audit read at once. "Received" is as the node's served log
/// counts it (`open`: requests its handler took up), so it takes two reads 50 ms apart with
/// nothing open, for a request a gateway forwards a moment after the run. A node still working
/// after [`LOG_SETTLE`] marks its log as not exact.
fn settled_logs_since(
    nodes: &Nodes,
    since: &[u64],
) -> anyhow::Result<Vec<(Vec<ServedEntry>, bool)>> {
    let deadline = std::time::Instant::now() + LOG_SETTLE;
    let open = |i: usize| Ok::<_, anyhow::Error>(nodes.served(i, u64::MAX, 0)?.open);
    let mut quiet = 0;
    while quiet < 2 && std::time::Instant::now() < deadline {
        let busy = (0..nodes.len()).map(open).sum::<anyhow::Result<u64>>()? > 0;
        quiet = if busy { 0 } else { quiet + 1 };
        if quiet < 2 {
            std::thread::sleep(Duration::from_millis(if busy { 10 } else { 50 }));
        }
    }
    logs_since(nodes, since)
}

fn log_heads(nodes: &Nodes) -> anyhow::Result<Vec<u64>> {
    (0..nodes.len())
        .map(|i| Ok(nodes.served(i, u64::MAX, 0)?.next))
        .collect()
}

/// The body of every request: it fits both dialects' embedding routes, and the id makes every
/// input distinct, so no cache can answer two requests with one computation. With
/// `repeat_inputs` every request has the same input, so a cache can answer all but the first:
/// the requests are then joined with the nodes' logs by their `x-request-id` header alone.
fn embed_template(repeat_inputs: bool) -> Template {
    if repeat_inputs {
        Template::new(r#"{"model":"all-minilm","input":"gateway audit, one input for all"}"#)
    } else {
        Template::new(r#"{"model":"all-minilm","input":"gateway audit {rid} [rid:{rid}]"}"#)
    }
}

/// The load's target at `url` (a node or the gateway) with the settings' workload; the user's
/// headers go to the gateway only.
fn target(url: &str, settings: &Settings) -> Target {
    let load = &settings.workload;
    if !load.streams() {
        return target_with(url, settings, embed_template(settings.repeat_inputs));
    }
    let mut requests = load.workload.requests(settings.api, &load.models);
    if let Some(leave) = load.leave {
        requests.leave(leave);
    }
    Target {
        url: format!("{url}{}", requests.path),
        bodies: requests.bodies,
        read: requests.read,
        ..target_with(url, settings, Template::new(""))
    }
}

/// [`target`] with another body for the embed route.
fn target_with(url: &str, settings: &Settings, template: Template) -> Target {
    Target {
        url: format!("{url}{}", settings.api.embed_path()),
        bodies: template.into(),
        read: crate::engine::Read::Whole,
        decode: None,
        headers: if url == settings.target {
            settings.headers.clone()
        } else {
            Headers::default()
        },
    }
}

/// The longest a closed-loop run keeps sending: a node made 7x slower would otherwise stretch a
/// fixed request count into minutes. Throughput is complete answers over the run's time, so a
/// capped run measures the same rate on fewer requests.
const RUN_CAP: Duration = Duration::from_secs(5);

fn run_once(
    engine: &Engine,
    url: &str,
    settings: &Settings,
    workers: usize,
    requests: u64,
    run_id: &str,
) -> anyhow::Result<Run> {
    run_target(engine, &target(url, settings), workers, requests, run_id)
}

/// A capped closed loop of `workers` against `target`.
fn run_target(
    engine: &Engine,
    target: &Target,
    workers: usize,
    requests: u64,
    run_id: &str,
) -> anyhow::Result<Run> {
    let schedule = Schedule::Closed {
        workers,
        requests,
        cap: Some(RUN_CAP),
    };
    Ok(engine.run(target, schedule, run_id)?)
}

/// Each node's throughput measured straight at it, median over repeats.
fn direct(engine: &Engine, nodes: &Nodes, settings: &Settings) -> anyhow::Result<(Cell, Vec<f64>)> {
    let per_node = (settings.requests / nodes.len().max(1) as u64).max(1);
    let mut capacity = Vec::new();
    let mut totals = vec![0.0; settings.repeats];
    let (mut latency, mut tokens) = (None, None);
    for (i, url) in nodes.urls().iter().enumerate() {
        let mut samples = Vec::new();
        for (r, total) in totals.iter_mut().enumerate() {
            let run = run_once(
                engine,
                url,
                settings,
                settings.workers,
                per_node,
                &format!("d{i}r{r}"),
            )?;
            // Injected errors fail some requests even straight at a node; the capacity counts
            // complete answers only.
            *total += run.throughput();
            samples.push(run.throughput());
            latency = Some(Latency::of(&run.latency));
            tokens = token_metrics(&run, settings);
        }
        capacity.push(Summary::of(samples).median);
    }
    if settings.workload.streams() {
        tokens = even_share_tokens(engine, nodes, settings)?;
    }
    let cell = Cell {
        tokens,
        ..Cell::new(
            "direct",
            Summary::of(totals),
            latency.unwrap_or_else(no_latency),
        )
    };
    Ok((cell, capacity))
}

/// The load through the gateway, audited request by request.
fn distribution(
    name: &str,
    engine: &Engine,
    nodes: &Nodes,
    settings: &Settings,
    capacity: &[f64],
) -> anyhow::Result<Cell> {
    let ideal: f64 = capacity.iter().sum();
    let audited = audited_repeats(nodes, settings, capacity, |r| {
        let (workers, requests) = (settings.workers, settings.requests);
        let id = format!("{name}{r}");
        system::through(engine, nodes, settings, workers, requests, &id)
    })?;
    let efficiency = audited.throughputs.iter().map(|t| t / ideal.max(1e-9));
    Ok(Cell {
        efficiency: Some(Summary::of(efficiency.collect())),
        ..audited.cell(name)
    })
}

/// What the repeats of an audited run through the gateway gave: each repeat's throughput and
/// goodput, the audit summed over them, and the last repeat's shares, latency and tokens.
struct Audited {
    throughputs: Vec<f64>,
    goodputs: Vec<f64>,
    audit: Audit,
    shares: Vec<(f64, f64)>,
    latency: Option<Latency>,
    tokens: Option<TokenMetrics>,
}

impl Audited {
    /// The cell named `name` with these figures.
    fn cell(self, name: &str) -> Cell {
        Cell {
            shares: self.shares,
            audit: Some(self.audit),
            tokens: self.tokens,
            ..Cell::new(
                name,
                Summary::of(self.throughputs),
                self.latency.unwrap_or_else(no_latency),
            )
        }
    }
}

/// `run(r)` for each repeat `r`, each joined with the nodes' logs of what it sent.
fn audited_repeats(
    nodes: &Nodes,
    settings: &Settings,
    capacity: &[f64],
    mut run: impl FnMut(usize) -> anyhow::Result<Run>,
) -> anyhow::Result<Audited> {
    let mut out = Audited {
        throughputs: Vec::new(),
        goodputs: Vec::new(),
        audit: Audit::default(),
        shares: Vec::new(),
        latency: None,
        tokens: None,
    };
    for r in 0..settings.repeats {
        let heads = log_heads(nodes)?;
        let run = run(r)?;
        let audit = audit::audit(&run, &settled_logs_since(nodes, &heads)?);
        out.throughputs.push(run.throughput());
        out.shares = shares_of(&audit, capacity);
        out.latency = Some(Latency::of(&run.latency));
        out.tokens = token_metrics(&run, settings);
        out.goodputs
            .extend(out.tokens.as_ref().and_then(|t| t.goodput));
        merge(&mut out.audit, audit);
    }
    Ok(out)
}

/// Per node: its share of the work `audit` saw served, and its share of the `capacity`.
fn shares_of(audit: &Audit, capacity: &[f64]) -> Vec<(f64, f64)> {
    let ideal: f64 = capacity.iter().sum();
    let served: u64 = audit.nodes.iter().map(|n| n.served).sum();
    audit
        .nodes
        .iter()
        .zip(capacity)
        .map(|(n, c)| (n.served as f64 / served.max(1) as f64, c / ideal.max(1e-9)))
        .collect()
}

/// The cell of the last node `slowdown` times slower.
fn slow_node_name(slowdown: u32) -> String {
    format!("slow-node-{slowdown}x")
}

/// How many times slower the last node is in the `heterogeneous` cells.
const SLOWDOWNS: [u32; 2] = [3, 7];

/// The last node `slowdown` times slower, changed through its control API; the capacity ideal is
/// measured again at the new settings, and the speed restored after.
fn slow_node(
    engine: &Engine,
    nodes: &Nodes,
    settings: &Settings,
    slowdown: u32,
) -> anyhow::Result<Cell> {
    let speed = |speed: f64| SettingsPatch {
        speed: Some(speed),
        ..SettingsPatch::default()
    };
    while_patched(
        nodes,
        nodes.len() - 1..nodes.len(),
        |c| speed(c.speed / f64::from(slowdown)),
        || {
            let (_, capacity) = direct(engine, nodes, settings)?;
            distribution(
                &slow_node_name(slowdown),
                engine,
                nodes,
                settings,
                &capacity,
            )
        },
    )
}

/// Runs `run` with each of `targets` changed by `patch` (made from its settings) through the
/// control API, then puts back what the patch changed ([`SettingsPatch::undo`]), whether `run`
/// succeeded or not.
fn while_patched<R>(
    nodes: &Nodes,
    targets: std::ops::Range<usize>,
    patch: impl Fn(&NodeSettings) -> SettingsPatch,
    run: impl FnOnce() -> anyhow::Result<R>,
) -> anyhow::Result<R> {
    let mut changed = Vec::new();
    let mut result = Ok(());
    for i in targets {
        let before = match nodes.settings(i) {
            Ok(before) => before,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        let change = patch(&before);
        result = nodes.update(i, &change);
        if result.is_err() {
            break;
        }
        changed.push((i, change.undo(&before)));
    }
    let result = result.and_then(|()| run());
    // Every node is put back even when one fails; the run's own error comes first.
    let restored: Vec<anyhow::Error> = changed
        .iter()
        .filter_map(|(i, back)| nodes.update(*i, back).err())
        .collect();
    with_restore_errors(result, restored)
}

/// `result`, with the errors of restoring node settings added: the run's own error stays first
/// (wrapped in them as context), and a run that succeeded fails with the restore errors.
fn with_restore_errors<R>(
    result: anyhow::Result<R>,
    restored: Vec<anyhow::Error>,
) -> anyhow::Result<R> {
    if restored.is_empty() {
        return result;
    }
    let text: Vec<String> = restored.iter().map(|e| format!("{e:#}")).collect();
    let failed = format!("restoring node settings failed: {}", text.join("; "));
    match result {
        Ok(_) => Err(anyhow::anyhow!(failed)),
        Err(e) => Err(e.context(failed)),
    }
}

/// The last node failing as `fault` in the middle of each repeat.
fn fault_cell(
    engine: &Engine,
    nodes: &Nodes,
    settings: &Settings,
    name: &str,
    fault: faults::NodeFault,
) -> anyhow::Result<Cell> {
    // A hung request ends at the client's timeout: two phases, so the run ends soon after.
    let engine = Engine {
        timeout: settings.phase * 2,
        ..engine.clone()
    };
    let mut reports = Vec::new();
    let mut total = Audit::default();
    // A gateway that does not settle once will not the next time either: stop asking.
    let mut settle_limit = faults::SETTLE_LIMIT;
    for r in 0..settings.repeats {
        let id = format!("{name}{r}");
        // A driver starts afresh each run: nothing came before it to settle from.
        let settled = match settings.system {
            System::Gateway => faults::settle(&engine, nodes, settings, settle_limit, &id)?,
            System::Driver(_) => None,
        };
        if settled.is_none() {
            settle_limit = Duration::ZERO;
        }
        let report = faults::run(&engine, nodes, settings, fault, settings.phase, &id)?;
        merge(&mut total, report.audit.clone());
        reports.push(faults::FaultReport {
            settled_after_ms: settled.map(|d| d.as_secs_f64() * 1e3),
            ..report
        });
    }
    let during = Summary::of(reports.iter().map(|r| r.throughput[1]).collect());
    Ok(Cell {
        audit: Some(total),
        tokens: reports.last().and_then(|r| r.tokens.clone()),
        faults: reports,
        ..Cell::new(name, during, no_latency())
    })
}

/// A stepped cell's headline figures: its last step's (the most workers, the highest load).
/// Steps are never empty, so the fallback only keeps this total.
fn last_step_figures(last: Option<(&Summary, Latency)>) -> (Summary, Latency) {
    last.map_or_else(
        || (Summary::of(Vec::new()), no_latency()),
        |(throughput, latency)| (throughput.clone(), latency),
    )
}

/// The latency of a cell that has none to report.
fn no_latency() -> Latency {
    Latency::of(&crate::summary::new_histogram())
}

pub(crate) fn merge(total: &mut Audit, one: Audit) {
    total.requests += one.requests;
    total.served_once += one.served_once;
    total.served_more_than_once += one.served_more_than_once;
    total.answered_without_node += one.answered_without_node;
    total.failed_but_served += one.failed_but_served;
    total.never_served += one.never_served;
    total.left += one.left;
    total.left_but_served += one.left_but_served;
    total.recovered += one.recovered;
    total.retries += one.retries;
    total.incomplete |= one.incomplete;
    total.work.merge(one.work);
    total.ttft_by_view.merge(one.ttft_by_view);
    if total.nodes.len() < one.nodes.len() {
        total
            .nodes
            .resize(one.nodes.len(), audit::NodeAudit::default());
    }
    for (t, n) in total.nodes.iter_mut().zip(one.nodes) {
        t.attempts += n.attempts;
        t.served += n.served;
        t.foreign += n.foreign;
    }
}

/// Sets remote nodes as embedded ones start: up, the settings' service time, slots, speeds and
/// error rates, a streamed workload's token times (else none), the prompt cache on or off as
/// set, and no stalls, resets or control-plane latency (a node left changed by an interrupted
/// run would otherwise be measured as it was left).
pub fn configure_remote(nodes: &Nodes, settings: &Settings) -> anyhow::Result<()> {
    let streams = settings.workload.streams();
    for i in 0..nodes.len() {
        let patch = SettingsPatch {
            latency: Some(settings.service),
            per_token: Some(if streams {
                settings.workload.per_token
            } else {
                Duration::ZERO
            }),
            // 0 charges prompt tokens the per-token time, as a node started without a rate does.
            prompt_rate: Some(if streams {
                settings.workload.prompt_rate
            } else {
                0.0
            }),
            parallel: Some(settings.slots),
            speed: Some(settings.speeds.get(i).copied().unwrap_or(1.0)),
            error_rate: Some(settings.error_rates.get(i).copied().unwrap_or(0.0)),
            stall_rate: Some(0.0),
            reset_rate: Some(0.0),
            control_latency: Some(Duration::ZERO),
            prompt_cache: Some(settings.workload.prompt_cache),
            leave: Some(node_leave(settings)),
            ..SettingsPatch::default()
        };
        let url = &nodes.urls()[i];
        nodes
            .set_availability(i, mock_ollama::Availability::Up)
            .and_then(|()| nodes.update(i, &patch))
            .with_context(|| format!("setting up {url}"))?;
    }
    Ok(())
}

/// The settings' mock nodes, node i on `port + i`.
pub fn start_nodes(settings: &Settings) -> anyhow::Result<MockCluster> {
    anyhow::ensure!(
        settings.nodes >= 1 && settings.workers >= 1 && settings.repeats >= 1,
        "--nodes, --workers and --repeats must be at least 1"
    );
    MockCluster::start(node_configs(settings)).with_context(|| {
        format!(
            "starting {} mock nodes from port {}",
            settings.nodes, settings.port
        )
    })
}

/// Waits for the gateway in front of `nodes`, then measures the cells.
pub fn measure(settings: &Settings, nodes: &Nodes) -> anyhow::Result<GatewayResult> {
    measure_process(settings, nodes, None)
}

/// [`measure`], sampling the footprint of the gateway's process group `group` when given (the
/// gateway the harness started).
pub fn measure_process(
    settings: &Settings,
    nodes: &Nodes,
    group: Option<u32>,
) -> anyhow::Result<GatewayResult> {
    anyhow::ensure!(
        !nodes.is_empty() && settings.workers >= 1 && settings.repeats >= 1,
        "at least one node, one worker and one repeat are needed"
    );
    let server = match settings.system {
        System::Gateway => ready::wait(
            &settings.target,
            &settings.ready,
            &settings.headers,
            settings.ready_timeout,
        )?,
        System::Driver(_) => None,
    };
    let sampler = group.and_then(footprint::Sampler::start);
    let (counted_from, started) = (nodes.counters()?, Instant::now());
    let engine = Engine::default();
    let (direct_cell, capacity) = direct(&engine, nodes, settings)?;
    let settings = &after_direct(settings, &direct_cell);
    let ideal: f64 = capacity.iter().sum();
    let (ceiling, ceiling_cpu) = ceiling_of(&engine, nodes, settings, sampler.as_ref())?;
    let settings = &with_fault_requests(settings, ideal);
    if let System::Driver(driver) = &settings.system {
        start_up(driver, nodes, settings)?;
    }
    let limits = Limits {
        ceiling: ceiling.as_ref().map(|c| c.median),
        ideal,
    };
    let mut cells = vec![direct_cell];
    let cx = cells::Context {
        engine: &engine,
        nodes,
        settings,
        capacity: &capacity,
        limits,
    };
    for kind in &settings.cells {
        eprintln!("  cell {}", kind.name());
        cells.extend(kind.measure(&cx)?);
    }
    let control_plane =
        control_plane::traffic(&counted_from, &nodes.counters()?, started.elapsed());
    let footprint = sampler.and_then(|s| s.finish(ceiling_cpu));
    let mut result = GatewayResult {
        label: settings.label.clone(),
        target: settings.target.clone(),
        api: settings.api,
        server,
        machine: Machine::detect(),
        params: params_of(settings, nodes),
        capacity,
        ceiling,
        footprint,
        control_plane: Some(control_plane),
        verdicts: Vec::new(),
        driver_runs: settings
            .system
            .driver()
            .map(Driver::runs)
            .unwrap_or_default(),
        cells,
    };
    result.verdicts = verdicts_of(&result);
    Ok(result)
}

/// What a result says about how it was measured.
fn params_of(settings: &Settings, nodes: &Nodes) -> serde_json::Value {
    serde_json::json!({
        "nodes": nodes.len(), "remote_nodes": matches!(nodes, Nodes::Remote(..)), "workers": settings.workers, "requests": settings.requests,
        "service_ms": settings.service.as_secs_f64() * 1e3, "slots": settings.slots,
        "repeats": settings.repeats, "repeat_inputs": settings.repeat_inputs, "first_port": settings.port, "speeds": settings.speeds, "error_rates": settings.error_rates,
        "phase_ms": settings.phase.as_millis() as u64, "stall_ms": settings.stall.as_millis() as u64,
        "headers": settings.headers.redacted(), "ready": settings.ready,
        "workload": workload_params(&settings.workload),
        "driver": settings.system.driver().map(|d| serde_json::json!({
            "command": settings.headers.redact(&d.command),
            "timeout_ms": d.timeout.as_millis() as u64,
            "fault_requests": d.fault_requests,
        })),
    })
}

/// The CPU the gateway's processes spent on its ceiling's requests, and how many there were.
type CeilingCpu = (Duration, u64);

/// The gateway's ceiling and the CPU its processes spent on it (`None`s for a client library,
/// which has no address to measure a ceiling at: its own cost shows in the driver's CPU).
fn ceiling_of(
    engine: &Engine,
    nodes: &Nodes,
    settings: &Settings,
    sampler: Option<&footprint::Sampler>,
) -> anyhow::Result<(Option<Summary>, Option<CeilingCpu>)> {
    if let System::Driver(_) = settings.system {
        return Ok((None, None));
    }
    eprintln!("  the gateway's ceiling");
    let before = sampler.and_then(footprint::Sampler::now);
    let (ceiling, sent) = ceiling::measure(engine, nodes, settings)?;
    let cpu = before
        .zip(sampler.and_then(footprint::Sampler::now))
        .map(|(b, a)| (a.cpu.saturating_sub(b.cpu), sent));
    Ok((Some(ceiling), cpu))
}

/// A run of no requests: the driver's start-up alone (an interpreter, a library's imports). A
/// driver that cannot start would fail every run after its timeout: it stops the measurement.
fn start_up(driver: &Driver, nodes: &Nodes, settings: &Settings) -> anyhow::Result<()> {
    eprintln!("  the driver's start-up");
    system::driven(driver, nodes, nodes.len(), settings.workers, 0, STARTUP_RUN)?;
    if let Some(run) = driver.runs().last().filter(|r| !r.exit.clean()) {
        anyhow::bail!(
            "the driver's start-up run (no requests) did not end cleanly ({:?}); its last output:\n{}",
            run.exit,
            run.output_tail
        );
    }
    Ok(())
}

/// The id of a driver's run of no requests.
pub const STARTUP_RUN: &str = "startup";

/// `settings` with a driver's fault runs sized to last the fault cells' three phases at the
/// capacity `ideal` (a driver is asked for a number of requests, not a time).
fn with_fault_requests(settings: &Settings, ideal: f64) -> Settings {
    let mut settings = settings.clone();
    if let System::Driver(driver) = &mut settings.system {
        let requests = ideal * settings.phase.as_secs_f64() * 3.0;
        driver.fault_requests = (requests.ceil() as u64).max(settings.workers as u64);
    }
    settings
}

/// The verdicts of `result`, computed from its figures alone, so a rewording reaches results
/// already measured (`harness report` refreshes them) without a re-run.
pub fn verdicts_of(result: &GatewayResult) -> Vec<String> {
    let service_ms = result.params["service_ms"].as_f64().unwrap_or(f64::NAN);
    let mut out = verdicts::all(&result.cells, service_ms, Limits::of(result));
    out.extend(result.control_plane.as_deref().map(control_plane::verdict));
    out.extend(result.footprint.as_ref().map(footprint::verdict));
    if !result.driver_runs.is_empty() {
        // The cells' sentences are a gateway's; through a client library the same figures
        // describe the library.
        out = out
            .iter()
            .map(|v| v.replace("the gateway", "the library"))
            .collect();
    }
    out.extend(crate::client::verdicts(&result.driver_runs));
    out
}

/// `label` as a file name: characters other than ASCII letters, digits, `-` and `_` become `_`.
pub fn safe_label(label: &str) -> String {
    let keep = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    label
        .chars()
        .map(|c| if keep(c) { c } else { '_' })
        .collect()
}

/// Writes `result` to `dir/gateways/<label>.json`.
pub fn write(dir: &Path, result: &GatewayResult) -> anyhow::Result<PathBuf> {
    write_under(dir, "gateways", result)
}

/// Writes `result` to `dir/sub/<label>.json` (`clients` for a client library's).
pub fn write_under(dir: &Path, sub: &str, result: &GatewayResult) -> anyhow::Result<PathBuf> {
    let dir = dir.join(sub);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{}.json", safe_label(&result.label)));
    std::fs::write(&path, serde_json::to_vec_pretty(result)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
