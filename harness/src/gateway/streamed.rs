//! What a streamed workload (`--workload chat|trace`) adds to the gateway cells: the workload's
//! settings, each cell's token figures, the baseline straight at a node carrying its even share
//! of the workers, the default SLO derived from it, and what a result says about its workload.

use std::time::Duration;

use super::{Cell, Engine, Nodes, Run, Settings, run_once};
use crate::workload::{Leave, Models, Slo, TokenMetrics, Workload};

/// What the requests ask, and how the nodes answer a streamed one.
#[derive(Debug, Clone)]
pub struct WorkloadSettings {
    /// The workload.
    pub workload: Workload,
    /// The models a streamed workload asks for (the embed cells ask for `all-minilm`).
    pub models: Models,
    /// Each node's time per generated token under a streamed workload.
    pub per_token: Duration,
    /// Each node's prompt evaluation rate under a streamed workload, tokens/s.
    pub prompt_rate: f64,
    /// What goodput counts; `None`: 3x the baseline's TTFT and TPOT p50s (`default_slo`).
    pub slo: Option<Slo>,
    /// Whether each node's slots keep a prompt cache (Ollama's runner does; the mock's
    /// default is off, so prompts are evaluated whole).
    pub prompt_cache: bool,
    /// Streams the client leaves early (`--leave-after`), through the gateway and straight
    /// at the nodes alike.
    pub leave: Option<Leave>,
}

impl Default for WorkloadSettings {
    fn default() -> Self {
        Self {
            workload: Workload::Embed,
            models: Models::one("llama3.2"),
            // 5 ms a token keeps a 32-token stream near 0.2 s, so a capped 5 s run holds 25;
            // prompts at the gpu16 preset's 2,000 tokens/s (mock-ollama's preset.rs, sourced).
            per_token: Duration::from_millis(5),
            prompt_rate: 2_000.0,
            slo: None,
            prompt_cache: false,
            leave: None,
        }
    }
}

impl WorkloadSettings {
    /// Whether answers stream (chat, trace).
    pub fn streams(&self) -> bool {
        !matches!(self.workload, Workload::Embed)
    }
}

/// The token figures of `run` under a streamed workload, goodput against the settings' SLO.
pub(super) fn token_metrics(run: &Run, settings: &Settings) -> Option<TokenMetrics> {
    let load = &settings.workload;
    load.streams().then(|| TokenMetrics::of(run, load.slo))
}

/// The token figures straight at node 0 under the load a perfectly even gateway would give it
/// (`--workers` over the nodes, rounded up): the baseline time to first token and between
/// tokens. The capacity runs put every worker on one node, so their streams queue for slots
/// that a gateway spreading the same workers would find free. The last repeat's figures.
pub(super) fn even_share_tokens(
    engine: &Engine,
    nodes: &Nodes,
    settings: &Settings,
) -> anyhow::Result<Option<TokenMetrics>> {
    let Some(node0) = nodes.urls().first().cloned() else {
        return Ok(None);
    };
    let share = settings.workers.div_ceil(nodes.len().max(1));
    let requests = (settings.requests / nodes.len().max(1) as u64).max(1);
    let mut tokens = None;
    for r in 0..settings.repeats {
        let run = run_once(engine, &node0, settings, share, requests, &format!("dt{r}"))?;
        tokens = token_metrics(&run, settings);
    }
    Ok(tokens)
}

/// The SLO a run without `--slo` judges goodput by: 3x the time to first token and the time per
/// output token measured straight at a node under its even share of the workers (the `direct`
/// cell's token p50s), in whole milliseconds so it reads as typed; `None` when the direct runs
/// had no token figures.
fn default_slo(direct: &Cell) -> Option<Slo> {
    let tokens = direct.tokens.as_ref()?;
    // A baseline with no tokens has a p50 of 0: no limit from it.
    let three_times = |ms: f64| {
        (ms.is_finite() && ms > 0.0)
            .then(|| Duration::from_millis((3.0 * ms).round().max(1.0) as u64))
    };
    let slo = Slo {
        ttft: three_times(tokens.ttft.p50),
        tpot: three_times(tokens.tpot.p50),
    };
    (slo.ttft.is_some() || slo.tpot.is_some()).then_some(slo)
}

/// How many median streams a fault cell's phase holds at least under a streamed workload.
pub const STREAMS_PER_PHASE: f64 = 5.0;

/// `settings` as the cells after the direct one run them under a streamed workload: goodput
/// judged against what the nodes do without the gateway (the default SLO when none was given),
/// and each fault phase at least [`STREAMS_PER_PHASE`] streams long, a stream taken as the
/// direct TTFT p50 plus the TPOT p50 for each token after the first of the mean answer the
/// workload asks for, so a phase holds whole streams rather than a part of one.
pub(super) fn after_direct(settings: &Settings, direct: &Cell) -> Settings {
    let mut settings = settings.clone();
    if settings.workload.slo.is_none() {
        settings.workload.slo = default_slo(direct);
    }
    if let Some(tokens) = direct.tokens.as_ref() {
        let workload = &settings.workload.workload;
        let asked = (0..settings.requests).filter_map(|n| workload.output_of(n));
        let per_stream = asked.map(f64::from).sum::<f64>() / settings.requests.max(1) as f64;
        let stream_ms = tokens.ttft.p50 + tokens.tpot.p50 * (per_stream - 1.0).max(0.0);
        let least = STREAMS_PER_PHASE * stream_ms / 1e3;
        if least.is_finite() && least > settings.phase.as_secs_f64() {
            settings.phase = Duration::from_secs_f64(least);
        }
    }
    settings
}

/// What a result says about its workload: its name, and for a streamed one the model, the
/// nodes' token times, the SLO goodput was judged by, and a trace's source and shaping.
pub(super) fn workload_params(load: &WorkloadSettings) -> serde_json::Value {
    let mut params = serde_json::json!({ "name": load.workload.name() });
    if load.streams() {
        params["models"] = load.models.to_string().into();
        params["per_token_ms"] = (load.per_token.as_secs_f64() * 1e3).into();
        params["prompt_rate"] = load.prompt_rate.into();
        params["slo"] = serde_json::to_value(load.slo).unwrap_or_default();
        params["prompt_cache"] = load.prompt_cache.into();
        params["leave"] = load.leave.map_or(serde_json::Value::Null, |leave| {
            serde_json::json!({ "after": leave.at.to_string(), "share": leave.share.fraction() })
        });
    }
    match &load.workload {
        Workload::Chat(chat) => {
            params["prompt_tokens"] = serde_json::to_value(chat.prompt).unwrap_or_default();
            params["output_tokens"] = serde_json::to_value(chat.output).unwrap_or_default();
            params["sessions"] = chat.sessions.map(|s| s.get()).into();
            params["context"] = chat.context.into();
        }
        Workload::Trace(trace) => {
            params["trace"] = trace.source.display().to_string().into();
            params["trace_requests"] = trace.requests.len().into();
            params["token_scale"] = trace.token_scale.into();
        }
        Workload::Embed => {}
    }
    params
}
