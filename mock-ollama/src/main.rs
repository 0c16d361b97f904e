//! `mock-ollama`: start one or more simulated Ollama nodes on consecutive ports.
//!
//! Every simulation setting of [`mock_ollama::NodeConfig`] is a flag; `--speed` takes one value or
//! one per node, so a heterogeneous cluster is one command.

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use mock_ollama::duration::parse_duration;
use mock_ollama::{
    ControlAccess, FaultConfig, Jitter, LatencyModel, MockNode, ModelSpec, NodeConfig, QueueMode,
    SlotPolicy, Timer,
};

/// A speed factor: positive and finite.
fn speed(text: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(format!("{value} is not a positive, finite speed"))
    }
}

/// A probability in [0, 1].
fn probability(text: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not a probability in [0, 1]"))
    }
}

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Simulated Ollama nodes for load-balancer benchmarks.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "Example: mock-ollama --port 11434 --nodes 2 --latency 20ms --speed 1,0.25"
)]
struct Args {
    /// First port; node i listens on PORT + i.
    #[arg(long, default_value_t = 11434)]
    port: u16,
    /// Number of nodes.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    nodes: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Base service time per request (per input for embed batches).
    #[arg(long, default_value = "20ms", value_parser = parse_duration)]
    latency: Duration,
    /// Extra service time per token.
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    per_token: Duration,
    /// Prompt evaluation's own rate, tokens/s [default: PER_TOKEN per prompt token, as for
    /// generated ones].
    #[arg(long)]
    prompt_rate: Option<f64>,
    /// Spread: fixed, uniform[:SPREAD] or lognormal[:SIGMA].
    #[arg(long, default_value = "fixed")]
    jitter: Jitter,
    /// Seed for jitter and fault draws (node i uses SEED + i).
    #[arg(long, default_value_t = 0x5eed)]
    seed: u64,
    /// Speed factor: one value for all nodes, or a comma-separated list with one per node.
    #[arg(long, value_delimiter = ',', default_value = "1", value_parser = speed, allow_negative_numbers = true)]
    speed: Vec<f64>,
    /// Parallel slots per model (OLLAMA_NUM_PARALLEL); embedding models get 1 unless forced.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    parallel: u32,
    /// Give embedding models PARALLEL slots too (Ollama itself pins them to 1).
    #[arg(long)]
    force_embed_parallel: bool,
    /// Waiting requests allowed before new ones get 503 (OLLAMA_MAX_QUEUE; which waits count is
    /// --queue's choice).
    #[arg(long, default_value_t = 512)]
    max_queue: usize,
    /// Which waits count toward --max-queue: `ollama` (only waits for a model load, as Ollama
    /// does; slot waits are unbounded) or `bounded` (every wait, an idealised queue).
    #[arg(long, default_value = "ollama")]
    queue: QueueMode,
    /// What a stream does when its client leaves: `at-once` (stop) or `at-next-token` (Ollama's
    /// runner to v0.24.0: prompt evaluation runs to its end, generation stops at the next token).
    #[arg(long, default_value = "at-once")]
    leave: mock_ollama::Leave,
    /// How service times are timed: `precise` (a timer thread, microseconds) or `tokio`
    /// (tokio's 1 ms timer).
    #[arg(long, default_value = "precise")]
    timer: Timer,
    /// Entries the served-request log (`GET /mock/served`) keeps; older ones are dropped and
    /// counted; 0 turns the log off.
    #[arg(long, default_value_t = mock_ollama::served::DEFAULT_CAPACITY)]
    served_log: usize,
    /// Require this token (`Authorization: Bearer TOKEN`) on the `/mock/` control API; needed
    /// to keep the control API on a non-loopback --host.
    #[arg(long, conflicts_with = "no_control")]
    control_token: Option<String>,
    /// Turn the `/mock/` control API off (the served log stays readable).
    #[arg(long)]
    no_control: bool,
    /// Cold-start time of a model's first request.
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    load_time: Duration,
    /// Bytes/s a model loads at, added to --load-time per model size [default: none, every
    /// model loads in --load-time].
    #[arg(long)]
    load_rate: Option<f64>,
    /// One model load at a time per node, as Ollama's scheduler on one GPU [default: models
    /// load in parallel].
    #[arg(long)]
    serial_loads: bool,
    /// Idle time before a model unloads.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    keep_alive: Duration,
    /// Runners the node holds at once (OLLAMA_MAX_LOADED_MODELS; Ollama's default is 3 per
    /// GPU); one more model evicts one [default: no limit].
    #[arg(long, value_parser = at_least_one)]
    max_loaded_models: Option<usize>,
    /// Memory the node's runners may take (a GPU's VRAM), bytes or with a unit (`16GiB`,
    /// `8GB`); a model that does not fit evicts one [default: no limit].
    #[arg(long, value_parser = mock_ollama::residency::parse_bytes)]
    vram: Option<u64>,
    /// Each slot keeps the prompt it last processed; a prompt sharing its prefix is evaluated
    /// only past it, as Ollama's runner does [default: every prompt evaluated whole].
    #[arg(long)]
    prompt_cache: bool,
    /// Latency of /api/tags and /api/ps.
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    control_latency: Duration,
    /// Probability of answering 500.
    #[arg(long, default_value_t = 0.0, value_parser = probability, allow_negative_numbers = true)]
    error_rate: f64,
    /// Probability of stalling a request for --stall.
    #[arg(long, default_value_t = 0.0, value_parser = probability, allow_negative_numbers = true)]
    stall_rate: f64,
    /// How long a stalled request is held.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    stall: Duration,
    /// Probability of aborting the connection.
    #[arg(long, default_value_t = 0.0, value_parser = probability, allow_negative_numbers = true)]
    reset_rate: f64,
    /// For generations: stalls and resets strike after this many tokens of the answer (a
    /// stream held or cut mid-way) [default: before the answer].
    #[arg(long)]
    fault_after_tokens: Option<u32>,
    /// Extra model: NAME (chat), NAME=chat or NAME=embed:DIM, optionally followed by
    /// `,size=BYTES,kv=BYTES,ctx=TOKENS` (weights, KV cache per token, training context).
    /// Repeatable.
    #[arg(long = "model", value_parser = ModelSpec::parse_flag)]
    models: Vec<ModelSpec>,
    /// A whole node profile, applied over the other flags: `gpu16` (one 16 GiB GPU, four 3B-8B
    /// chat models at Q4, Ollama's scheduler and runner defaults; sources in docs/mock-ollama.md).
    #[arg(long, conflicts_with_all = ["models", "per_token", "prompt_rate", "load_time", "load_rate", "vram", "max_loaded_models"])]
    preset: Option<mock_ollama::preset::Preset>,
}

impl Args {
    fn node_configs(&self) -> anyhow::Result<Vec<NodeConfig>> {
        let nodes = usize::from(self.nodes);
        if self.speed.len() != 1 && self.speed.len() != nodes {
            bail!(
                "--speed takes one value or one per node ({} nodes, {} speeds)",
                self.nodes,
                self.speed.len()
            );
        }
        let mut models = mock_ollama::models::default_models();
        models.extend(self.models.iter().cloned());
        if usize::from(self.port) + nodes - 1 > usize::from(u16::MAX) {
            bail!(
                "--port {} with --nodes {} needs ports past 65535",
                self.port,
                self.nodes
            );
        }
        (0..nodes)
            .map(|i| {
                let port = u16::try_from(usize::from(self.port) + i)
                    .context("--port with --nodes needs ports past 65535")?;
                let config = NodeConfig {
                    host: self.host,
                    port,
                    latency: LatencyModel {
                        base: self.latency,
                        per_token: self.per_token,
                        prompt_rate: self.prompt_rate,
                        jitter: self.jitter,
                    },
                    speed: *self.speed.get(i).unwrap_or(&self.speed[0]),
                    seed: self.seed.wrapping_add(i as u64),
                    slots: SlotPolicy {
                        parallel: self.parallel as usize,
                        force_embed_parallel: self.force_embed_parallel,
                    },
                    max_queue: self.max_queue,
                    queue: self.queue,
                    served_log_capacity: self.served_log,
                    timer: self.timer,
                    leave: self.leave,
                    load_time: self.load_time,
                    load_rate: self.load_rate,
                    serial_loads: self.serial_loads,
                    keep_alive: self.keep_alive,
                    residency: mock_ollama::residency::Limits {
                        max_loaded: self.max_loaded_models,
                        memory: self.vram,
                    },
                    prompt_cache: self.prompt_cache,
                    control_latency: self.control_latency,
                    faults: FaultConfig {
                        error_rate: self.error_rate,
                        stall_rate: self.stall_rate,
                        stall: self.stall,
                        reset_rate: self.reset_rate,
                        after_tokens: self.fault_after_tokens,
                    },
                    models: models.clone(),
                    control: match (&self.control_token, self.no_control) {
                        (_, true) => ControlAccess::Off,
                        (Some(token), false) => ControlAccess::Token(token.clone()),
                        (None, false) => ControlAccess::Open,
                    },
                    ..NodeConfig::default()
                };
                let config = match self.preset {
                    Some(preset) => preset.apply(config),
                    None => config,
                };
                config.validate().with_context(|| format!("node {i}"))?;
                Ok(config)
            })
            .collect()
    }
}

/// Exit codes: 2 for a command line the nodes cannot run with (as clap uses for its own parse
/// errors), 1 when a node fails to start or stop.
#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let configs = match args.node_configs() {
        Ok(configs) => configs,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    match serve(configs).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the nodes and serves until Ctrl-C.
async fn serve(configs: Vec<NodeConfig>) -> anyhow::Result<()> {
    let mut nodes = Vec::with_capacity(configs.len());
    for config in configs {
        let node = MockNode::spawn(config).await?;
        let c = node.config();
        tracing::info!(
            "node {} speed={} latency={:?} per_token={:?} jitter={:?} parallel={} max_queue={} control_latency={:?} faults(error={}, stall={}@{:?}, reset={})",
            node.url(),
            c.speed,
            c.latency.base,
            c.latency.per_token,
            c.latency.jitter,
            c.slots.parallel,
            c.max_queue,
            c.control_latency,
            c.faults.error_rate,
            c.faults.stall_rate,
            c.faults.stall,
            c.faults.reset_rate
        );
        nodes.push(node);
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    tracing::info!("shutting down {} node(s)", nodes.len());
    for node in nodes {
        node.shutdown().await;
    }
    Ok(())
}
