//! Command-line interface: `harness [run SCENARIO...] | report | gate | gateway`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use mock_ollama::duration::parse_duration;
use pool::Strategy;

mod client;

use crate::gate::{self, GateSettings};
use crate::printer::print_summary;
use crate::report;
use crate::results::{self, ScenarioResult};
use crate::scenarios::{Ctx, Options, SCENARIOS, Scenario};
use crate::spread::SpreadFile;
use crate::variant::Variant;

/// Measure, explain and guard the performance of Ollama load-balancing pools.
///
/// With no command, runs the plan's scenarios (two-node, scaling, plan-test1, stress, contention)
/// on embedded mock nodes with 3 repeats, so the whole job stays under five minutes; writes
/// results/ and prints the verdicts. `explain` and `open-loop` run with `harness run NAME`.
///
/// Each command takes only the flags it uses, after its name (`harness run peak --workers 4`).
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The main job's flags (those of `run`).
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the named scenarios, or all of them.
    Run {
        /// Scenario names, or `all`.
        #[arg(required = true, value_parser = parse_selection)]
        scenarios: Vec<Selection>,
        #[command(flatten)]
        common: Common,
    },
    /// Regenerate results/REPORT.md and the charts from the JSON files.
    Report {
        #[command(flatten)]
        output: Output,
    },
    /// Quick measurements judged against harness/gate-bounds.json and the spread of clean runs
    /// in results/gate-spread.json.
    Gate {
        /// Measure this variant where the atomic pool is normally measured (shows the gate failing).
        #[arg(long, value_enum)]
        candidate: Option<Variant>,
        /// The clean runs whose spread sets the statistical limits [default: OUT/gate-spread.json].
        #[arg(long)]
        spread: Option<PathBuf>,
        /// Record the spread instead: run the gate N times on this tree (keep it clean) and write
        /// OUT/gate-spread.json and OUT/gate-spread.md.
        #[arg(long, value_parser = clap::value_parser!(u16).range(2..), conflicts_with_all = ["candidate", "self_test"])]
        record_spread: Option<u16>,
        /// With --record-spread: this many more clean runs judged with the new limits, their
        /// false alarms counted in gate-spread.md.
        #[arg(long, requires = "record_spread", default_value_t = 0)]
        validate: u16,
        /// Prove the gate's sensitivity instead: build deliberately degraded pools (a lock held
        /// across requests, 1 ms more per attempt, no keep-alive, a slow path for one request
        /// in 50, a stuck round-robin) and pass only if the gate fails each on its metric and
        /// passes the clean pool.
        #[arg(long, conflicts_with = "candidate")]
        self_test: bool,
        /// Judge this `harness gateway` result (results/gateways/LABEL.json) against
        /// `--bounds` instead of measuring the pools.
        #[arg(long, requires = "bounds", conflicts_with_all = ["candidate", "record_spread", "self_test"])]
        gateway: Option<PathBuf>,
        /// The gateway bounds file (see examples/gateways/bounds.json).
        #[arg(long, requires = "gateway")]
        bounds: Option<PathBuf>,
        /// Measurements per figure [default: 3]; the self-test always takes 3, as its limits do.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        repeats: Option<u16>,
        /// Which HTTP client carries the pools' requests [default: per-caller].
        #[arg(long, value_enum)]
        http_client: Option<HttpClientArg>,
        #[command(flatten)]
        output: Output,
    },
    /// Drive any URL with the load engine, as oha or wrk would: closed loop with --workers
    /// connections, or open loop at --rate; prints requests/s, latency and CPU per request.
    Load(LoadArgs),
    /// Benchmark and audit an Ollama load balancer in front of mock nodes this command starts
    /// (node i on 127.0.0.1:PORT+i; point the gateway's upstreams at them).
    Gateway(Box<GatewayArgs>),
    /// Benchmark and audit a client library (a client-side pool) run by your driver program
    /// against mock nodes this command starts: the same cells and per-request audit as
    /// `gateway`, and the library's own statistics checked against the nodes.
    Client(Box<client::ClientArgs>),
    /// A driver for `harness client --cmd`: sends the OPB_* run's requests through one of our
    /// pool variants and writes its report (docs/clients.md), e.g. `--cmd 'harness drive
    /// --variant atomic'`.
    Drive {
        /// The pool variant.
        #[arg(long, value_enum, default_value = "atomic")]
        variant: Variant,
        /// Routing strategy: round_robin, least_loaded, latency_first, fairness, weighted.
        #[arg(long, default_value = "round_robin")]
        strategy: Strategy,
    },
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// The URL every request is POSTed to.
    #[arg(long)]
    url: String,
    /// Concurrent workers (= connections).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    workers: u32,
    /// Requests in total (default: 10,000 closed-loop, 1,000 open-loop; with --duration,
    /// until it ends; a trace sends its own).
    #[arg(long)]
    requests: Option<u64>,
    #[command(flatten)]
    workload: WorkloadArgs,
    /// The embed body; `{rid}` is replaced by each request's id
    /// [default: {"model":"all-minilm","input":"load {rid}"}].
    #[arg(long)]
    body: Option<String>,
    /// chat and trace: the dialect (ollama: /api/chat NDJSON; openai: /v1/chat/completions
    /// server-sent events).
    #[arg(long, value_enum, default_value = "ollama")]
    api: crate::workload::Api,
    /// trace: arrivals this many times as fast.
    #[arg(long, default_value_t = 1.0)]
    trace_speed: f64,
    /// The longest a request may take, stream included.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    timeout: Duration,
    /// Open loop at this many requests per second (closed loop without it).
    #[arg(long)]
    rate: Option<f64>,
    /// Stop sending after this long (closed loop).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Runtime threads of the engine (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Spacing of open-loop arrivals: even (what wrk2's -R intends; oha's -q measured burstier,
    /// see results/bench.md) or Poisson.
    #[arg(long, value_enum, default_value = "poisson")]
    arrivals: ArrivalKind,
    /// A new connection for every request instead of one kept per worker.
    #[arg(long)]
    no_keep_alive: bool,
    /// A header on every request, `Name: value` (repeatable); `{rid}` in the value is the
    /// request's id.
    #[arg(long = "header")]
    headers: Vec<String>,
}

/// What each request asks, for `load` and `gateway`.
#[derive(Debug, Args)]
struct WorkloadArgs {
    /// What each request asks: embed (short embedding calls), chat (streamed, --prompt-tokens
    /// and --output-tokens), or trace (--trace's lengths, and with `load` its arrivals). chat
    /// and trace read every answer line by line: time to first token, inter-token latency,
    /// time per output token, output tokens/s and goodput.
    #[arg(long, value_enum, default_value = "embed")]
    workload: WorkloadKind,
    /// chat and trace: the model asked for, or a mix drawn per request, e.g.
    /// llama3.2=3,qwen2.5:7b=1.
    #[arg(long, default_value = "llama3.2")]
    model: crate::workload::Models,
    /// chat: spread the requests over N conversations whose turns share a growing prefix
    /// (request n is turn n/N of session n%N), so a prompt cache can help.
    #[arg(long)]
    sessions: Option<std::num::NonZeroU32>,
    /// chat: prompt tokens per request, N or MIN..MAX (uniform, the same draw for the same
    /// request number in every run).
    #[arg(long, default_value = "64")]
    prompt_tokens: crate::workload::Lengths,
    /// chat: answer tokens per request (num_predict / max_tokens), N or MIN..MAX.
    #[arg(long, default_value = "32")]
    output_tokens: crate::workload::Lengths,
    /// trace: an Azure LLM inference trace CSV or Mooncake JSON lines (see data/traces/).
    #[arg(long, required_if_eq("workload", "trace"))]
    trace: Option<PathBuf>,
    /// trace: the requests that arrive within this much of the trace's start (before any
    /// speed-up).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    trace_window: Duration,
    /// The context the nodes run with (num_ctx). trace: token counts of a trace whose longest
    /// request would not fit are scaled down by one factor, prefix blocks with them; chat with
    /// --sessions: a conversation starts over when its next turn would not fit.
    #[arg(long, default_value_t = 4096)]
    context: u64,
    /// chat and trace: goodput counts whole answers within these limits, e.g.
    /// ttft=500ms,tpot=50ms (gateway default: 3x the p50s measured straight at the nodes).
    #[arg(long)]
    slo: Option<crate::workload::Slo>,
    /// chat and trace: the client leaves streams (a --leave-share of them) once this many
    /// tokens have arrived (5), or this long after the send (300ms: before the first token,
    /// during the prompt's evaluation), closing its connection.
    #[arg(long)]
    leave_after: Option<crate::workload::LeaveAt>,
    /// With --leave-after: the share of the requests whose client leaves (0.25), drawn by a
    /// hash of the request number: the same requests in every run.
    #[arg(long, default_value = "1", requires = "leave_after")]
    leave_share: crate::workload::Share,
}

impl WorkloadArgs {
    /// `--leave-after` with its share, refused for a workload that does not stream.
    fn leave(&self) -> anyhow::Result<Option<crate::workload::Leave>> {
        let Some(at) = self.leave_after else {
            return Ok(None);
        };
        anyhow::ensure!(
            self.workload != WorkloadKind::Embed,
            "--leave-after needs a streamed workload (--workload chat or trace): an embedding has no tokens to leave after"
        );
        Ok(Some(crate::workload::Leave {
            at,
            share: self.leave_share,
        }))
    }

    /// The workload, its trace read and shaped (arrivals `speed` times as fast).
    fn workload(&self, speed: f64) -> anyhow::Result<crate::workload::Workload> {
        use crate::workload::Workload;
        Ok(match self.workload {
            WorkloadKind::Embed => Workload::Embed,
            WorkloadKind::Chat => Workload::Chat(crate::workload::Chat {
                sessions: self.sessions,
                context: self.context,
                ..crate::workload::Chat::new(self.prompt_tokens, self.output_tokens)
            }),
            WorkloadKind::Trace => Workload::Trace(std::sync::Arc::new(self.trace(speed)?)),
        })
    }

    /// `--trace`, shaped by `--trace-window`, `speed` and `--context`; says what it did.
    fn trace(&self, speed: f64) -> anyhow::Result<crate::trace::Trace> {
        let path = self
            .trace
            .as_deref()
            .context("--workload trace needs --trace FILE")?;
        anyhow::ensure!(
            speed.is_finite() && speed > 0.0,
            "--trace-speed must be a positive number"
        );
        let mut trace = crate::trace::Trace::load(path)?
            .window(self.trace_window)
            .at_speed(speed);
        anyhow::ensure!(
            !trace.requests.is_empty(),
            "{}: no request arrives within --trace-window {}",
            path.display(),
            humantime::format_duration(self.trace_window)
        );
        let scale = trace.fit_context(self.context);
        let span = trace.requests.last().map(|r| r.at).unwrap_or_default();
        eprintln!(
            "trace {}: {} requests over {:.1} s at {speed}x{}",
            path.display(),
            trace.requests.len(),
            span.as_secs_f64(),
            if scale < 1.0 {
                format!(
                    "; token counts and prefix blocks scaled by {scale:.3} to fit a context of {}",
                    self.context
                )
            } else {
                String::new()
            }
        );
        Ok(trace)
    }
}

/// `--workload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum WorkloadKind {
    /// Embedding calls with --body.
    Embed,
    /// Streamed chat.
    Chat,
    /// A replayed trace.
    Trace,
}

/// `--arrivals`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ArrivalKind {
    /// Evenly spaced.
    Constant,
    /// Exponential gaps (seed 1).
    Poisson,
}

#[derive(Debug, Args)]
struct GatewayArgs {
    /// The gateway's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    target: String,
    /// Port of mock node 0.
    #[arg(long, default_value_t = 21434)]
    port: u16,
    /// Which routes the load uses: ollama (/api/embed) or openai (/v1/embeddings).
    #[arg(long, value_enum, default_value = "ollama")]
    api: crate::gateway::Api,
    /// Name of the gateway in the results (results/gateways/LABEL.json).
    #[arg(long, default_value = "gateway")]
    label: String,
    /// How long to wait for the gateway to answer GET --ready-path.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    ready_timeout: Duration,
    /// The path the harness GETs until the gateway is ready (default: /api/version with
    /// --api ollama, /v1/models with --api openai, which an OpenAI-only proxy serves).
    #[arg(long)]
    ready_path: Option<String>,
    /// The status that counts as ready (default: any 2xx).
    #[arg(long)]
    ready_status: Option<u16>,
    /// A header on every request sent through the gateway, `Name: value` (repeatable): an API
    /// key (`Authorization: Bearer sk-…`) or a user header; `{rid}` in the value is the
    /// request's id. Values are redacted in results and printed output.
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Cells through the gateway, after `direct` (default: every cell run by default).
    #[arg(long, value_delimiter = ',', value_parser = crate::gateway::cells::named, long_help = crate::gateway::cells::help())]
    cells: Vec<crate::gateway::CellKind>,
    /// Length of each of a fault cell's three phases (before, during, after the fault).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    phase: Duration,
    /// Send the same input in every request, so a caching gateway can answer from its cache
    /// (counted as "answered without a node"); requests are then joined by x-request-id only.
    #[arg(long)]
    repeat_inputs: bool,
    /// How long the node-stall cell holds each request on the stalled node.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    stall: Duration,
    /// Speed factor of each node, e.g. 1,0.25 (missing ones are 1).
    #[arg(long, value_delimiter = ',')]
    speeds: Vec<f64>,
    /// Injected 500 rate of each node, e.g. 0,0.05 (missing ones are 0).
    #[arg(long, value_delimiter = ',')]
    error_rates: Vec<f64>,
    /// Run the gateway with this shell command (placeholders {dir}, {config}, {port},
    /// {node_urls}, {node_hostports}); it is stopped, with its whole process group, at the end.
    #[arg(long)]
    cmd: Option<String>,
    /// Render this file into {config} first (lines with {node_hostport}, {node_url} or
    /// {node_index} are repeated per node).
    #[arg(long, requires = "cmd")]
    config_template: Option<PathBuf>,
    /// A mock-ollama node started elsewhere (repeatable), driven through its control API and
    /// served log instead of starting nodes here; the gateway must route to these URLs. Start
    /// them with --force-embed-parallel for --slots above 1 and the scaling cell.
    #[arg(long = "mock-node")]
    mock_nodes: Vec<String>,
    /// The --mock-node's control token (Authorization: Bearer).
    #[arg(long, requires = "mock_nodes")]
    control_token: Option<String>,
    #[command(flatten)]
    workload: WorkloadArgs,
    /// chat and trace: each node's time per generated token.
    #[arg(long, default_value = "5ms", value_parser = parse_duration)]
    per_token: Duration,
    /// chat and trace: each node's prompt evaluation rate, tokens/s.
    #[arg(long, default_value_t = 2000.0)]
    prompt_rate: f64,
    /// Each node's slots keep a prompt cache, as Ollama's runner does (the mock's default is
    /// off): a prompt sharing a prefix with the slot's last one is evaluated only past it.
    #[arg(long)]
    prompt_cache: bool,
    /// Judge the result against this bounds file (gateway.CELL.MEASURE -> op, value) and exit 1
    /// when a bound fails: a gateway project's CI check (see examples/gateways/bounds.json).
    #[arg(long)]
    bounds: Option<PathBuf>,
    #[command(flatten)]
    sizes: Sizes,
    #[command(flatten)]
    output: Output,
}

/// Where results go and how progress shows.
#[derive(Debug, Args)]
struct Output {
    /// Where results go.
    #[arg(long, default_value_os_t = default_results_dir())]
    out: PathBuf,
    /// Never draw progress bars.
    #[arg(long)]
    no_progress: bool,
}

/// The size of a measurement: load, nodes and repeats.
#[derive(Debug, Args)]
struct Sizes {
    /// Worker threads (scaling: measure 1 and this many).
    #[arg(long)]
    workers: Option<usize>,
    /// Requests per run (operations for in-memory scenarios).
    #[arg(long)]
    requests: Option<usize>,
    /// Base service time per embed input, e.g. 20ms.
    #[arg(long, value_parser = parse_duration)]
    service: Option<Duration>,
    /// Parallel slots per node.
    #[arg(long)]
    slots: Option<usize>,
    /// Nodes (where the scenario does not fix them).
    #[arg(long)]
    nodes: Option<usize>,
    /// Measurements per figure (default 5 for `run`, 3 for the full job and `gateway`).
    #[arg(long)]
    repeats: Option<usize>,
}

impl Sizes {
    /// `harness gateway` and `harness client`: workers, 8 by default.
    fn audit_workers(&self) -> usize {
        self.workers.unwrap_or(8)
    }

    /// Requests per run, 2,000 by default.
    fn audit_requests(&self) -> u64 {
        self.requests.unwrap_or(2_000) as u64
    }

    /// Service time per request, 5 ms by default.
    fn audit_service(&self) -> Duration {
        self.service.unwrap_or(Duration::from_millis(5))
    }
}

/// The flags of the scenarios (`run` and the main job).
#[derive(Debug, Args)]
struct Common {
    #[command(flatten)]
    sizes: Sizes,
    /// Routing strategy: round_robin, least_loaded, latency_first, fairness, weighted.
    #[arg(long, default_value = "round_robin")]
    strategy: Strategy,
    /// Variants to compare (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    variants: Option<Vec<Variant>>,
    /// Use this Ollama-compatible node instead of embedded mocks (repeatable).
    #[arg(long = "node")]
    nodes_external: Vec<String>,
    /// Stop sending new requests in a run after this long, e.g. 4s.
    #[arg(long, value_parser = parse_duration)]
    cap: Option<Duration>,
    /// Health-probe interval of pools with stats.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    probe_interval: Duration,
    /// With `--http-client blocking`: blocking HTTP clients per pool, each with its own I/O
    /// thread (see `run peak`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    http_clients: u16,
    /// Which HTTP client carries the pools' requests [default: per-caller; `run peak` measures
    /// both unless one is named].
    #[arg(long, value_enum)]
    http_client: Option<HttpClientArg>,
    #[command(flatten)]
    output: Output,
}

/// `--http-client`: `pool::HttpClient` (the pool crate does not depend on clap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum HttpClientArg {
    /// reqwest::blocking: every request through the client's one I/O thread.
    Blocking,
    /// Each calling thread drives its own request on a borrowed single-threaded runtime.
    PerCaller,
}

impl From<HttpClientArg> for pool::HttpClient {
    fn from(arg: HttpClientArg) -> Self {
        match arg {
            HttpClientArg::Blocking => pool::HttpClient::Blocking,
            HttpClientArg::PerCaller => pool::HttpClient::PerCaller,
        }
    }
}

/// A scenario named on the command line, or `all`.
#[derive(Debug, Clone, Copy)]
enum Selection {
    All,
    One(Scenario),
}

fn parse_selection(text: &str) -> Result<Selection, String> {
    if text == "all" {
        return Ok(Selection::All);
    }
    crate::scenarios::named(text)
        .map(Selection::One)
        .ok_or_else(|| {
            let names: Vec<&str> = SCENARIOS.iter().map(|s| s.name()).collect();
            format!(
                "unknown scenario {text:?}; expected one of {} or all",
                names.join(", ")
            )
        })
}

/// `results/` at the workspace root when run from the source tree, else `./results`.
fn default_results_dir() -> PathBuf {
    let in_tree = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../results"));
    in_tree
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("results"))
}

impl Sizes {
    /// The repeats, `default_repeats` unless given; a zero anywhere is an error naming its flag.
    fn checked_repeats(&self, default_repeats: usize) -> anyhow::Result<usize> {
        let repeats = self.repeats.unwrap_or(default_repeats);
        anyhow::ensure!(repeats >= 1, "--repeats must be at least 1");
        for (name, value) in [
            ("--workers", self.workers),
            ("--requests", self.requests),
            ("--slots", self.slots),
            ("--nodes", self.nodes),
        ] {
            anyhow::ensure!(value != Some(0), "{name} must be at least 1");
        }
        Ok(repeats)
    }
}

impl Common {
    fn options(&self, default_repeats: usize) -> anyhow::Result<Options> {
        let repeats = self.sizes.checked_repeats(default_repeats)?;
        anyhow::ensure!(
            !self.probe_interval.is_zero(),
            "--probe-interval must be longer than 0 (0 would probe in a busy loop)"
        );
        anyhow::ensure!(
            self.cap != Some(std::time::Duration::ZERO),
            "--cap must be longer than 0"
        );
        let variants = match &self.variants {
            Some(chosen) => {
                anyhow::ensure!(
                    self.strategy == Strategy::RoundRobin || !chosen.contains(&Variant::Bare),
                    "--variants bare routes round-robin only; it cannot run with --strategy {}",
                    self.strategy.name()
                );
                chosen.clone()
            }
            // The bare client only knows round-robin: with another strategy it is left out
            // rather than measured as something it is not.
            None => Variant::ALL
                .into_iter()
                .filter(|v| self.strategy == Strategy::RoundRobin || *v != Variant::Bare)
                .collect(),
        };
        Ok(Options {
            workers: self.sizes.workers,
            requests: self.sizes.requests,
            service: self.sizes.service,
            slots: self.sizes.slots,
            nodes: self.sizes.nodes,
            repeats,
            strategy: self.strategy,
            variants,
            external: self.nodes_external.clone(),
            cap: self.cap,
            probe_interval: self.probe_interval,
            progress: !self.output.no_progress,
            http_clients: usize::from(self.http_clients),
            http_client: self.http_client.map(Into::into),
            ..Options::default()
        })
    }
}

fn run_scenarios(
    scenarios: &[Scenario],
    common: &Common,
    default_repeats: usize,
) -> anyhow::Result<Vec<ScenarioResult>> {
    let ctx = Ctx::new(common.options(default_repeats)?);
    if !ctx.machine.release_build {
        eprintln!("warning: debug build; timing figures are not comparable (use --release)");
    }
    let mut done = Vec::new();
    for scenario in scenarios {
        eprintln!("running {scenario} ...");
        let started = std::time::Instant::now();
        let result = crate::scenarios::run(*scenario, &ctx)?;
        let path = results::write(&common.output.out, &result)?;
        eprintln!(
            "  {scenario} done in {:.1} s -> {}",
            started.elapsed().as_secs_f64(),
            path.display()
        );
        done.push(result);
    }
    report::regenerate(&common.output.out)?;
    Ok(done)
}

/// The scenarios a selection names, in report order, each once.
fn selected(selection: &[Selection]) -> Vec<Scenario> {
    let chosen = |s: &Scenario| {
        selection.iter().any(|x| match x {
            Selection::All => true,
            Selection::One(one) => one.name() == s.name(),
        })
    };
    SCENARIOS.iter().copied().filter(chosen).collect()
}

/// Runs the command line; returns the process exit code (1 when the gate fails).
pub fn main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => {
            let main: Vec<Scenario> = SCENARIOS
                .iter()
                .copied()
                .filter(|s| s.in_main_job())
                .collect();
            let results = run_scenarios(&main, &cli.common, 3)?;
            print_summary(&results);
            println!(
                "\nWrote {}/REPORT.md, JSON and SVG charts.",
                cli.common.output.out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Run { scenarios, common }) => {
            let results = run_scenarios(&selected(&scenarios), &common, 5)?;
            print_summary(&results);
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Report { output }) => {
            let results = report::regenerate(&output.out)?;
            println!(
                "Rewrote {}/REPORT.md from {} scenario file(s).",
                output.out.display(),
                results.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Gate {
            gateway: Some(result),
            bounds: Some(bounds),
            ..
        }) => judge_gateway_file(&result, &bounds),
        Some(Command::Gate {
            record_spread: Some(runs),
            validate,
            repeats,
            http_client,
            output,
            ..
        }) => {
            let options = gate_options(repeats.map_or(3, usize::from), http_client, &output);
            let runs = crate::spread::record::Runs {
                recorded: usize::from(runs),
                validated: usize::from(validate),
            };
            crate::spread::record::record(options, runs, &output.out)
        }
        Some(Command::Gate {
            self_test,
            candidate,
            spread,
            repeats,
            http_client,
            output,
            ..
        }) => {
            // A path given on the command line must exist; the default may not yet.
            let required = spread.is_some();
            let spread_path = spread.unwrap_or_else(|| output.out.join("gate-spread.json"));
            let spread = crate::spread::SpreadFile::read(&spread_path, required)?;
            if self_test {
                let options = gate_options(repeats.map_or(1, usize::from), http_client, &output);
                return gate_self_test(options, spread.as_ref());
            }
            let options = gate_options(repeats.map_or(3, usize::from), http_client, &output);
            run_gate(options, &output.out, candidate, spread.as_ref())
        }
        Some(Command::Gateway(args)) => run_gateway(*args),
        Some(Command::Client(args)) => client::run(*args),
        Some(Command::Drive { variant, strategy }) => {
            let env = crate::client::pool_driver::DriverEnv::from_env()?;
            crate::client::pool_driver::drive(&env, variant, strategy)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Load(args)) => run_load(&args),
    }
}

/// `harness load`: one engine run, printed as oha would (requests/s, latency, errors) plus the
/// process's CPU time per request.
fn run_load(args: &LoadArgs) -> anyhow::Result<ExitCode> {
    use crate::engine::Engine;
    let (target, schedule) = load_plan(args)?;
    let engine = Engine {
        threads: args.threads.unwrap_or(Engine::default().threads),
        keep_alive: !args.no_keep_alive,
        timeout: args.timeout,
    };
    let cpu_before = crate::machine::cpu_time();
    let run = engine.run(&target, schedule, "load")?;
    let cpu = crate::machine::cpu_time().saturating_sub(cpu_before);
    let latency = crate::summary::Latency::of(&run.latency);
    let sent = run.records.len().max(1) as f64;
    println!(
        "{} requests in {:.2} s: {:.0} req/s; {} failed; latency p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; {} late; client CPU {:.1} us per request",
        run.records.len(),
        run.elapsed.as_secs_f64(),
        run.records.len() as f64 / run.elapsed.as_secs_f64().max(1e-9),
        run.failed(),
        latency.p50,
        latency.p99,
        latency.max,
        run.late,
        cpu.as_secs_f64() * 1e6 / sent,
    );
    if target.read != crate::engine::Read::Whole {
        let tokens = crate::workload::TokenMetrics::of(&run, args.workload.slo);
        println!("{}", tokens.describe(cpu));
    }
    Ok(ExitCode::SUCCESS)
}

/// What `harness load` sends, and when.
fn load_plan(args: &LoadArgs) -> anyhow::Result<(crate::engine::Target, crate::engine::Schedule)> {
    use crate::engine::{Arrivals, Schedule, Target, Template};
    let embed = args.workload.workload == WorkloadKind::Embed;
    let workload = args.workload.workload(args.trace_speed)?;
    anyhow::ensure!(
        args.body.is_none() || embed,
        "--body is the embed workload's; chat and trace make their own bodies"
    );
    let mut requests = workload.requests(args.api, &args.workload.model);
    if let Some(leave) = args.workload.leave()? {
        if let crate::workload::LeaveAt::After(after) = leave.at {
            anyhow::ensure!(
                after < args.timeout,
                "--leave-after {} is not shorter than --timeout: the requests would time out instead",
                leave.at
            );
        }
        requests.leave(leave);
    }
    if let Some(body) = &args.body {
        requests.bodies = Template::new(body).into();
    } else if embed {
        requests.bodies = Template::new(r#"{"model":"all-minilm","input":"load {rid}"}"#).into();
    }
    let target = Target {
        url: args.url.clone(),
        bodies: requests.bodies,
        read: requests.read,
        decode: None,
        headers: crate::engine::Headers::parse(&args.headers)?,
    };
    let workers = args.workers as usize;
    let schedule = match (requests.arrivals, args.rate) {
        (Some(offsets), _) => {
            anyhow::ensure!(
                args.rate.is_none() && args.requests.is_none() && args.duration.is_none(),
                "a trace sets its own arrivals: --rate, --requests and --duration do not apply (use --trace-speed and --trace-window)"
            );
            Schedule::Replay {
                offsets,
                connections: workers,
            }
        }
        (None, Some(rate)) => Schedule::Open {
            rate,
            requests: args.requests.unwrap_or(1_000),
            connections: workers,
            arrivals: match args.arrivals {
                ArrivalKind::Constant => Arrivals::Constant,
                ArrivalKind::Poisson => Arrivals::Poisson { seed: 1 },
            },
        },
        (None, None) => Schedule::Closed {
            workers,
            requests: match (args.requests, args.duration) {
                (Some(n), _) => n,
                (None, Some(_)) => u64::MAX / 2,
                (None, None) => 10_000,
            },
            cap: args.duration,
        },
    };
    Ok((target, schedule))
}

/// `harness gateway`: measures the cells, writes the result and prints the verdicts.
fn run_gateway(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let sizes = &args.sizes;
    let repeats = sizes.checked_repeats(3)?;
    let out = &args.output.out;
    anyhow::ensure!(
        args.mock_nodes.is_empty() || sizes.nodes.is_none(),
        "--nodes and --mock-node exclude each other: the nodes are the --mock-node URLs"
    );
    // Refused before anything starts: a bad header would otherwise fail every request.
    let headers = crate::engine::Headers::parse(&args.headers)?;
    let ready = readiness(&args)?;
    let workload = args.workload.workload(1.0)?;
    let cells = match (args.cells.is_empty(), &workload) {
        (false, _) => args.cells.clone(),
        (true, crate::workload::Workload::Embed) => crate::gateway::cells::defaults(),
        (true, streamed) => crate::gateway::cells::streamed_defaults(streamed),
    };
    let settings = crate::gateway::Settings {
        headers,
        ready,
        target: args.target.trim_end_matches('/').to_owned(),
        nodes: match args.mock_nodes.len() {
            0 => sizes.nodes.unwrap_or(2),
            n => n,
        },
        port: args.port,
        api: args.api,
        label: args.label.clone(),
        workers: sizes.audit_workers(),
        requests: sizes.audit_requests(),
        service: sizes.audit_service(),
        slots: sizes.slots.unwrap_or(1),
        speeds: args.speeds.clone(),
        error_rates: args.error_rates.clone(),
        repeats,
        ready_timeout: args.ready_timeout,
        cells,
        phase: args.phase,
        repeat_inputs: args.repeat_inputs,
        stall: args.stall,
        system: crate::gateway::System::Gateway,
        workload: crate::gateway::WorkloadSettings {
            workload,
            models: args.workload.model.clone(),
            per_token: args.per_token,
            prompt_rate: args.prompt_rate,
            slo: args.workload.slo,
            prompt_cache: args.prompt_cache,
            leave: args.workload.leave()?,
        },
    };
    crate::gateway::check(&settings)?;
    // Read before measuring, so a bad bounds file costs nothing.
    let bounds = args
        .bounds
        .as_deref()
        .map(read_gateway_bounds)
        .transpose()?;
    let result = with_fleet(&settings, &args, |fleet| match &args.cmd {
        None => crate::gateway::measure(&settings, fleet),
        Some(cmd) => run_with_gateway(&settings, fleet, cmd, args.config_template.as_deref(), out),
    })?;
    let path = crate::gateway::write(out, &result)?;
    println!("== gateway {} ({})", result.label, result.target);
    for verdict in &result.verdicts {
        println!("  - {verdict}");
    }
    print!("{}", crate::gateway::glance(&result));
    println!("Wrote {}", path.display());
    if let Err(e) = report::regenerate(out) {
        eprintln!("REPORT.md not updated: {e:#}");
    }
    Ok(match bounds {
        Some(bounds) => judged_exit(&result, &bounds),
        None => ExitCode::SUCCESS,
    })
}

/// `--ready-path` and `--ready-status`, or the default for `--api`.
fn readiness(args: &GatewayArgs) -> anyhow::Result<crate::gateway::Readiness> {
    let default = crate::gateway::Readiness::for_api(args.api);
    let path = args.ready_path.clone().unwrap_or(default.path);
    anyhow::ensure!(
        path.starts_with('/'),
        "--ready-path {path:?} must start with / (a path on --target)"
    );
    if let Some(status) = args.ready_status {
        anyhow::ensure!(
            (100..=599).contains(&status),
            "--ready-status {status} is not an HTTP status"
        );
    }
    Ok(crate::gateway::Readiness {
        path,
        status: args.ready_status,
    })
}

fn read_gateway_bounds(path: &std::path::Path) -> anyhow::Result<crate::gateway::bounds::Bounds> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    crate::gateway::bounds::parse(&text).with_context(|| format!("in {}", path.display()))
}

fn judged_exit(
    result: &crate::gateway::GatewayResult,
    bounds: &crate::gateway::bounds::Bounds,
) -> ExitCode {
    let judged = crate::gateway::bounds::judge(result, bounds);
    if crate::bounds::print(&result.label, &judged) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `harness gate --gateway RESULT --bounds FILE`: judges a result already written.
fn judge_gateway_file(
    result: &std::path::Path,
    bounds: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let bounds = read_gateway_bounds(bounds)?;
    let text =
        std::fs::read_to_string(result).with_context(|| format!("reading {}", result.display()))?;
    let result: crate::gateway::GatewayResult =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", result.display()))?;
    Ok(judged_exit(&result, &bounds))
}

/// Runs `measure` on the nodes: embedded ones started here (and stopped after), or the
/// `--mock-node`s, set to the run's service time, slots, speeds and error rates.
fn with_fleet(
    settings: &crate::gateway::Settings,
    args: &GatewayArgs,
    measure: impl FnOnce(&crate::gateway::Nodes) -> anyhow::Result<crate::gateway::GatewayResult>,
) -> anyhow::Result<crate::gateway::GatewayResult> {
    use crate::gateway::{Nodes, RemoteNode};
    if args.mock_nodes.is_empty() {
        let nodes = crate::gateway::start_nodes(settings)?;
        eprintln!("mock nodes: {}", nodes.urls().join(" "));
        let result = measure(&Nodes::Embedded(&nodes));
        nodes.shutdown();
        return result;
    }
    let remote = args
        .mock_nodes
        .iter()
        .map(|url| RemoteNode {
            url: url.trim_end_matches('/').to_owned(),
            token: args.control_token.clone(),
        })
        .collect();
    let fleet = Nodes::remote(remote)?;
    crate::gateway::configure_remote(&fleet, settings)?;
    eprintln!("mock nodes (remote): {}", fleet.urls().join(" "));
    measure(&fleet)
}

/// Starts the gateway from `cmd` in front of `nodes`, measures, and stops it; an error carries
/// the gateway's last output.
fn run_with_gateway(
    settings: &crate::gateway::Settings,
    nodes: &crate::gateway::Nodes,
    cmd: &str,
    template: Option<&std::path::Path>,
    out: &std::path::Path,
) -> anyhow::Result<crate::gateway::GatewayResult> {
    use crate::gateway::process::{Bindings, Gateway};
    let port = reqwest::Url::parse(&settings.target)
        .ok()
        .and_then(|u| u.port_or_known_default())
        .with_context(|| format!("--target {} has no port", settings.target))?;
    let bindings = Bindings {
        dir: out.join("gateways").join(format!("{}.run", settings.label)),
        port,
        node_urls: nodes.urls(),
    };
    let mut gateway = Gateway::start(cmd, template, &bindings)?;
    gateway.stop_on_ctrl_c();
    let redact = |text: &str| settings.headers.redact(text);
    eprintln!(
        "gateway started ({}; output in {})",
        redact(&bindings.render(cmd)),
        gateway.log_path().display()
    );
    let result = crate::gateway::measure_process(settings, nodes, Some(gateway.group()))
        .with_context(|| {
            format!(
                "the gateway's last output:\n{}",
                redact(&gateway.last_output(20))
            )
        });
    let alive = gateway
        .check_alive()
        .map_err(|e| anyhow::anyhow!(redact(&format!("{e:#}"))));
    drop(gateway);
    let result = result?;
    alive.context("the gateway died during the run")?;
    Ok(result)
}

/// `harness gate`: measures, writes `gate.json` (or `gate-candidate.json`).
/// `harness gate --self-test`: every injected regression must fail the gate on its metric and
/// the clean pool must pass ([`crate::self_test`]).
fn gate_self_test(options: Options, spread: Option<&SpreadFile>) -> anyhow::Result<ExitCode> {
    use crate::self_test::{Injection, Sizes, run_case};
    let base = Options {
        progress: false,
        ..options
    };
    let sizes = Sizes::measure(&base, spread)?;
    println!("self-test sizes: {sizes}");
    let mut problems = Vec::new();
    let mut clean = None;
    for injection in Injection::ALL {
        println!("== self-test: {injection}");
        let case = run_case(&base, injection, &sizes, spread)?;
        let failures = case.report.failures();
        println!(
            "   gate failed on: {}",
            if failures.is_empty() {
                "nothing".to_owned()
            } else {
                failures.join(", ")
            }
        );
        problems.extend(case.problems.iter().map(|p| format!("{injection}: {p}")));
        print_realized(&case, &mut clean);
    }
    if problems.is_empty() {
        println!("gate self-test: PASS (every injected regression caught, the clean pool passed)");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("gate self-test: FAIL: {}", problems.join("; "));
        Ok(ExitCode::FAILURE)
    }
}

/// After the extra-work case, how far it moved the CPU figure from the clean case of the same
/// self-test (the injection is sized in absolute time, which the figure's ratio does not cancel).
fn print_realized(case: &crate::self_test::CaseOutcome, clean: &mut Option<f64>) {
    use crate::self_test::Injection;
    let name = gate::Metric::CpuPerRequest(Variant::Atomic).to_string();
    let value = case.report.metrics.get(&name).map(|m| m.value);
    match case.injection {
        Injection::Clean => *clean = value,
        Injection::AnswerWork => {
            if let (Some(clean), Some(value)) = (*clean, value) {
                println!(
                    "   {name}: {value:.3} against the clean pool's {clean:.3} in this self-test ({:+.1}%)",
                    100.0 * (value / clean - 1.0)
                );
            }
        }
        _ => {}
    }
}

/// The pools' options of a gate run: the defaults, with the gate's repeats and HTTP client.
fn gate_options(repeats: usize, http_client: Option<HttpClientArg>, output: &Output) -> Options {
    Options {
        repeats,
        http_client: http_client.map(Into::into),
        progress: !output.no_progress,
        ..Options::default()
    }
}

fn run_gate(
    options: Options,
    out: &std::path::Path,
    candidate: Option<Variant>,
    spread: Option<&SpreadFile>,
) -> anyhow::Result<ExitCode> {
    let ctx = Ctx::new(options);
    let settings = GateSettings {
        repeats: ctx.opts.repeats,
        ..GateSettings::default()
    };
    let report = gate::run(&ctx, candidate, settings, spread)?;
    let file = if candidate.is_some_and(|c| c != Variant::Atomic) {
        "gate-candidate.json"
    } else {
        "gate.json"
    };
    std::fs::create_dir_all(out)?;
    let path = out.join(file);
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    if !report.pass {
        for name in report.failures() {
            let m = &report.metrics[name];
            eprintln!("gate: FAIL {name} = {:.3}, bound {}", m.value, m.bound);
        }
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "gate: PASS ({} metrics) -> {}",
        report.metrics.len(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
