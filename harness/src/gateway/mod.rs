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
pub mod control_plane;
pub mod faults;
pub mod overhead;
pub mod process;
pub mod streaming;
mod table;

pub use table::report_section;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use mock_ollama::{
    LatencyModel, MockCluster, MockNode, NodeConfig, ServedEntry, SettingsPatch, SlotPolicy,
};
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, EngineRun, Schedule, Target, Template};
use crate::machine::Machine;
use crate::summary::{Latency, Summary};

pub use audit::{Audit, Class};

/// Which dialect the load speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// `POST /api/embed`.
    Ollama,
    /// `POST /v1/embeddings`.
    Openai,
}

impl Api {
    fn path(self) -> &'static str {
        match self {
            Api::Ollama => "/api/embed",
            Api::Openai => "/v1/embeddings",
        }
    }
}

/// The cells measured through the gateway (the `direct` cell always runs first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CellKind {
    /// Equal nodes, closed loop: efficiency, shares, audit.
    Distribution,
    /// The last node at 1/4 speed (set through its control API, capacity re-measured).
    SlowNode,
    /// The last node refusing connections for the middle third of the run.
    NodeRefuse,
    /// The last node answering 503 busy for the middle third.
    NodeBusy,
    /// The last node hanging for the middle third.
    NodeHang,
    /// Latency the gateway adds at low load, and its peak rate at zero service time.
    Overhead,
    /// Streamed chat: time to the first line and gaps against direct, and whole streams (on
    /// request: the gateway must route `/api/chat`).
    Streaming,
}

impl CellKind {
    /// The default set.
    pub const DEFAULT: [CellKind; 5] = [
        CellKind::Distribution,
        CellKind::Overhead,
        CellKind::SlowNode,
        CellKind::NodeRefuse,
        CellKind::NodeBusy,
    ];

    fn name(self) -> &'static str {
        match self {
            CellKind::Distribution => "distribution",
            CellKind::SlowNode => "slow-node",
            CellKind::NodeRefuse => "node-refuse",
            CellKind::NodeBusy => "node-busy",
            CellKind::NodeHang => "node-hang",
            CellKind::Overhead => "overhead",
            CellKind::Streaming => "streaming",
        }
    }
}

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
    /// Where and when.
    pub machine: Machine,
    /// Nodes, workers, requests, service, slots, repeats.
    pub params: serde_json::Value,
    /// Each node's capacity measured directly (median requests/s).
    pub capacity: Vec<f64>,
    /// The cells.
    pub cells: Vec<Cell>,
    /// Requests the gateway sent the nodes on its own (health checks, model lists), per
    /// endpoint, over the whole measurement (`None` in results from before it was measured).
    #[serde(default)]
    pub control_plane: Option<Vec<control_plane::EndpointTraffic>>,
    /// Verdicts computed from the numbers.
    pub verdicts: Vec<String>,
}

fn node_configs(settings: &Settings) -> Vec<NodeConfig> {
    (0..settings.nodes)
        .map(|i| NodeConfig {
            port: settings.port.saturating_add(i as u16),
            latency: LatencyModel {
                base: settings.service,
                ..LatencyModel::default()
            },
            slots: SlotPolicy {
                parallel: settings.slots,
                force_embed_parallel: settings.slots > 1,
            },
            seed: 0x5eed + i as u64,
            speed: settings.speeds.get(i).copied().unwrap_or(1.0),
            faults: mock_ollama::FaultConfig {
                error_rate: settings.error_rates.get(i).copied().unwrap_or(0.0),
                ..mock_ollama::FaultConfig::default()
            },
            ..NodeConfig::default()
        })
        .collect()
}

/// Waits until `GET {target}/api/version` answers 2xx.
fn wait_ready(target: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let url = format!("{target}/api/version");
    let started = Instant::now();
    let mut last = String::from("no answer yet");
    while started.elapsed() < timeout {
        match client.get(&url).send() {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("status {}", r.status()),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!(
        "the gateway at {target} did not answer GET /api/version with 2xx within {timeout:?} (last: {last})"
    )
}

/// Every node's log entries after `since[i]`, and whether entries were dropped.
fn logs_since(nodes: &MockCluster, since: &[u64]) -> Vec<(Vec<ServedEntry>, bool)> {
    nodes
        .nodes()
        .iter()
        .zip(since)
        .map(|(node, from)| {
            let page = node.served(*from, usize::MAX);
            (page.entries, page.dropped > 0)
        })
        .collect()
}

fn log_heads(nodes: &MockCluster) -> Vec<u64> {
    nodes
        .nodes()
        .iter()
        .map(|n| n.served(u64::MAX, 0).next)
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

/// The load's target at `url` (a node or the gateway).
fn target(url: &str, settings: &Settings) -> Target {
    Target {
        url: format!("{url}{}", settings.api.path()),
        template: embed_template(settings.repeat_inputs),
    }
}

fn run_once(
    engine: &Engine,
    url: &str,
    settings: &Settings,
    workers: usize,
    requests: u64,
    run_id: &str,
) -> anyhow::Result<EngineRun> {
    let target = target(url, settings);
    let schedule = Schedule::Closed {
        workers,
        requests,
        cap: None,
    };
    Ok(engine.run(&target, schedule, run_id)?)
}

/// Each node's throughput measured straight at it, median over repeats.
fn direct(
    engine: &Engine,
    nodes: &MockCluster,
    settings: &Settings,
) -> anyhow::Result<(Cell, Vec<f64>)> {
    let per_node = (settings.requests / nodes.urls().len().max(1) as u64).max(1);
    let mut capacity = Vec::new();
    let mut totals = vec![0.0; settings.repeats];
    let mut latency = None;
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
        }
        capacity.push(Summary::of(samples).median);
    }
    let cell = Cell {
        name: "direct".into(),
        throughput: Summary::of(totals),
        efficiency: None,
        latency: latency.unwrap_or_else(|| Latency::of(&crate::summary::new_histogram())),
        shares: Vec::new(),
        audit: None,
        faults: Vec::new(),
        overhead: None,
        streaming: None,
    };
    Ok((cell, capacity))
}

/// The load through the gateway, audited request by request.
fn distribution(
    name: &str,
    engine: &Engine,
    nodes: &MockCluster,
    settings: &Settings,
    capacity: &[f64],
) -> anyhow::Result<Cell> {
    let ideal: f64 = capacity.iter().sum();
    let (mut throughput, mut efficiency) = (Vec::new(), Vec::new());
    let mut total = Audit::default();
    let (mut shares, mut latency) = (Vec::new(), None);
    for r in 0..settings.repeats {
        let heads = log_heads(nodes);
        let run = run_once(
            engine,
            &settings.target,
            settings,
            settings.workers,
            settings.requests,
            &format!("{name}{r}"),
        )?;
        let audit = audit::audit(&run, &logs_since(nodes, &heads));
        throughput.push(run.throughput());
        efficiency.push(run.throughput() / ideal.max(1e-9));
        let served: u64 = audit.nodes.iter().map(|n| n.served).sum();
        shares = audit
            .nodes
            .iter()
            .zip(capacity)
            .map(|(n, c)| (n.served as f64 / served.max(1) as f64, c / ideal.max(1e-9)))
            .collect();
        latency = Some(Latency::of(&run.latency));
        merge(&mut total, audit);
    }
    Ok(Cell {
        name: name.into(),
        throughput: Summary::of(throughput),
        efficiency: Some(Summary::of(efficiency)),
        latency: latency.unwrap_or_else(|| Latency::of(&crate::summary::new_histogram())),
        shares,
        audit: Some(total),
        faults: Vec::new(),
        overhead: None,
        streaming: None,
    })
}

/// The last node at 1/4 speed, changed through its control API; the capacity ideal is measured
/// again at the new settings, and the speed restored after.
fn slow_node(engine: &Engine, nodes: &MockCluster, settings: &Settings) -> anyhow::Result<Cell> {
    let last = &nodes.nodes()[nodes.nodes().len() - 1..];
    let speed = |speed: f64| SettingsPatch {
        speed: Some(speed),
        ..SettingsPatch::default()
    };
    while_patched(
        last,
        |c| speed(c.speed / 4.0),
        |c| speed(c.speed),
        || {
            let (_, capacity) = direct(engine, nodes, settings)?;
            distribution("slow-node", engine, nodes, settings, &capacity)
        },
    )
}

/// Runs `run` with each of `targets` changed by `patch` (made from its settings) through the
/// control API, then puts each back with `restore` (made from its settings before the change),
/// whether `run` succeeded or not.
fn while_patched<R>(
    targets: &[MockNode],
    patch: impl Fn(&NodeConfig) -> SettingsPatch,
    restore: impl Fn(&NodeConfig) -> SettingsPatch,
    run: impl FnOnce() -> anyhow::Result<R>,
) -> anyhow::Result<R> {
    let saved: Vec<SettingsPatch> = targets.iter().map(|n| restore(&n.config())).collect();
    for node in targets {
        node.update(&patch(&node.config()))?;
    }
    let result = run();
    for (node, back) in targets.iter().zip(&saved) {
        node.update(back)?;
    }
    result
}

/// The last node failing as `fault` in the middle of each repeat.
fn fault_cell(
    engine: &Engine,
    nodes: &MockCluster,
    settings: &Settings,
    kind: CellKind,
    fault: faults::NodeFault,
) -> anyhow::Result<Cell> {
    // A hung request ends at the client's timeout: two phases, so the run ends soon after.
    let engine = Engine {
        timeout: settings.phase * 2,
        ..engine.clone()
    };
    let mut reports = Vec::new();
    let mut total = Audit::default();
    for r in 0..settings.repeats {
        let report = faults::run(
            &engine,
            nodes,
            settings,
            fault,
            settings.phase,
            &format!("{}{r}", kind.name()),
        )?;
        merge(&mut total, report.audit.clone());
        reports.push(report);
    }
    Ok(Cell {
        name: kind.name().into(),
        throughput: Summary::of(reports.iter().map(|r| r.throughput[1]).collect()),
        efficiency: None,
        latency: Latency::of(&crate::summary::new_histogram()),
        shares: Vec::new(),
        audit: Some(total),
        faults: reports,
        overhead: None,
        streaming: None,
    })
}

fn merge(total: &mut Audit, one: Audit) {
    total.requests += one.requests;
    total.served_once += one.served_once;
    total.served_more_than_once += one.served_more_than_once;
    total.answered_without_node += one.answered_without_node;
    total.failed_but_served += one.failed_but_served;
    total.never_served += one.never_served;
    total.recovered += one.recovered;
    total.retries += one.retries;
    total.incomplete |= one.incomplete;
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

fn fault_verdict(cell: &Cell) -> Option<String> {
    let reports = &cell.faults;
    if reports.is_empty() {
        return None;
    }
    let median = |f: &dyn Fn(&faults::FaultReport) -> f64| {
        Summary::of(reports.iter().map(f).collect()).median
    };
    let during = median(&|r| r.throughput[1] / r.throughput[0].max(1e-9));
    let after = median(&|r| r.throughput[2] / r.throughput[0].max(1e-9));
    let failures = median(&|r| r.client_failures as f64);
    let failed = if failures == 0.0 {
        "no request failed at the client".to_owned()
    } else {
        let until = median(&|r| r.failures_for_ms.unwrap_or(0.0));
        format!(
            "{failures:.0} requests failed at the client, the last sent {until:.0} ms into the fault"
        )
    };
    let back = reports
        .iter()
        .filter_map(|r| r.back_in_use_after_ms)
        .collect::<Vec<_>>();
    let back = if back.is_empty() {
        "the node got no work after it came back".to_owned()
    } else {
        format!(
            "work reached the recovered node {:.0} ms after it came back",
            Summary::of(back).median
        )
    };
    Some(format!(
        "{}: throughput during the fault {during:.2} and after it {after:.2} of before; {failed}; {back} (medians of {} runs of 3 x {} ms).",
        cell.name,
        reports.len(),
        reports[0].phase_ms
    ))
}

fn verdicts(cells: &[Cell], service_ms: f64) -> Vec<String> {
    let mut out: Vec<String> = cells.iter().filter_map(fault_verdict).collect();
    out.extend(
        cells
            .iter()
            .filter_map(|c| overhead::verdict(c, service_ms)),
    );
    out.extend(cells.iter().filter_map(streaming::verdict));
    for cell in cells.iter().filter(|c| c.audit.is_some()) {
        if let (Some(eff), Some(a)) = (&cell.efficiency, &cell.audit) {
            out.push(format!(
                "{}: {:.0} req/s through the gateway, {:.2} of the capacity ideal (median of {}; range {:.2}-{:.2}).",
                cell.name, cell.throughput.median, eff.median, eff.samples.len(), eff.min, eff.max
            ));
            let shares: Vec<String> = cell
                .shares
                .iter()
                .enumerate()
                .map(|(i, (work, cap))| {
                    format!(
                        "node {i} {:.0}% of the work for {:.0}% of the capacity",
                        work * 100.0,
                        cap * 100.0
                    )
                })
                .collect();
            out.push(format!("{}: {}.", cell.name, shares.join("; ")));
            out.push(format!(
                "{}: of {} requests, {} served once, {} served more than once, {} answered without a node, {} failed but served, {} never served; {} retries, {} recovered after a failed attempt{}.",
                cell.name, a.requests, a.served_once, a.served_more_than_once, a.answered_without_node,
                a.failed_but_served, a.never_served, a.retries, a.recovered,
                if a.incomplete { " (a node's log dropped entries: not exact)" } else { "" }
            ));
        }
    }
    out
}

/// Starts the nodes on their fixed ports, measures the cells, and stops the nodes.
pub fn run(settings: &Settings) -> anyhow::Result<GatewayResult> {
    let nodes = start_nodes(settings)?;
    eprintln!("mock nodes: {}", nodes.urls().join(" "));
    let result = measure(settings, &nodes);
    nodes.shutdown();
    result
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
pub fn measure(settings: &Settings, nodes: &MockCluster) -> anyhow::Result<GatewayResult> {
    wait_ready(&settings.target, settings.ready_timeout)?;
    let (counted_from, started) = (nodes.counters(), Instant::now());
    let engine = Engine::default();
    let (direct_cell, capacity) = direct(&engine, nodes, settings)?;
    let mut cells = vec![direct_cell];
    for kind in &settings.cells {
        use faults::NodeFault;
        eprintln!("  cell {}", kind.name());
        cells.push(match kind {
            CellKind::Distribution => {
                distribution("distribution", &engine, nodes, settings, &capacity)?
            }
            CellKind::SlowNode => slow_node(&engine, nodes, settings)?,
            CellKind::NodeRefuse => fault_cell(&engine, nodes, settings, *kind, NodeFault::Refuse)?,
            CellKind::NodeBusy => fault_cell(&engine, nodes, settings, *kind, NodeFault::Busy)?,
            CellKind::NodeHang => fault_cell(&engine, nodes, settings, *kind, NodeFault::Hang)?,
            CellKind::Overhead => overhead::overhead(&engine, nodes, settings)?,
            CellKind::Streaming => streaming::streaming(nodes, settings)?,
        });
    }
    let control_plane = control_plane::traffic(&counted_from, &nodes.counters(), started.elapsed());
    let mut verdicts = verdicts(&cells, settings.service.as_secs_f64() * 1e3);
    verdicts.push(control_plane::verdict(&control_plane));
    Ok(GatewayResult {
        label: settings.label.clone(),
        target: settings.target.clone(),
        api: settings.api,
        machine: Machine::detect(),
        params: serde_json::json!({
            "nodes": nodes.urls().len(), "workers": settings.workers, "requests": settings.requests,
            "service_ms": settings.service.as_secs_f64() * 1e3, "slots": settings.slots,
            "repeats": settings.repeats, "repeat_inputs": settings.repeat_inputs, "first_port": settings.port, "speeds": settings.speeds, "error_rates": settings.error_rates,
        }),
        capacity,
        control_plane: Some(control_plane),
        verdicts,
        cells,
    })
}

/// Writes `result` to `dir/gateways/<label>.json`.
pub fn write(dir: &Path, result: &GatewayResult) -> anyhow::Result<PathBuf> {
    let dir = dir.join("gateways");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let safe: String = result
        .label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = dir.join(format!("{safe}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(result)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
