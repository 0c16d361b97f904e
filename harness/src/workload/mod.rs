//! What each request of an experiment asks: the workload axis, independent of who sends it
//! (the schedule) and where it goes (the system under test).
//!
//! - `embed`: short embedding calls with unique inputs (the gateway cells' and `harness load`'s
//!   default);
//! - `chat`: streamed chat with prompt and output lengths drawn per request ([`Lengths`]),
//!   optionally as conversations whose turns share a growing prefix ([`Chat`]);
//! - `trace`: a replayed serving trace ([`crate::trace`]): its arrival times as an open loop,
//!   its prompt and output lengths, and (Mooncake) its shared prefixes as shared prompt text.
//!
//! Each request asks for one of a mix of models ([`Models`]), drawn per request number.
//! A workload yields [`Requests`]: each request's body (with the `[rid:ID]` marker last in the
//! prompt, so shared prefixes stay shared and the served log can join it), how its answer is
//! read (whole, or line by line for the token metrics), and, for a trace, its arrival times.

mod chat;
mod leave;
mod models;
mod tokens;

pub use chat::Chat;
pub use leave::{Leave, LeaveAt, LeaveError, Share};
pub use models::{Models, ModelsError};
pub use tokens::{Slo, SloError, TokenMetrics};

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::engine::template::Render;
use crate::engine::{Bodies, Read, Template};
use crate::trace::{Trace, prompt};

/// Which dialect the load speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// Ollama's routes: `POST /api/embed`, streamed `/api/chat`.
    Ollama,
    /// OpenAI's: `POST /v1/embeddings`, streamed `/v1/chat/completions`.
    Openai,
}

impl Api {
    /// The embedding route.
    pub fn embed_path(self) -> &'static str {
        match self {
            Api::Ollama => "/api/embed",
            Api::Openai => "/v1/embeddings",
        }
    }

    /// The chat route.
    pub fn chat_path(self) -> &'static str {
        match self {
            Api::Ollama => "/api/chat",
            Api::Openai => "/v1/chat/completions",
        }
    }
}

/// Token counts drawn per request: one value, or uniform over `min..=max`, the draw a
/// function of the request's number only, so two runs of one workload ask the same lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lengths {
    /// Fewest tokens.
    pub min: u32,
    /// Most tokens.
    pub max: u32,
}

impl Lengths {
    /// Always `n`.
    pub fn fixed(n: u32) -> Self {
        Self { min: n, max: n }
    }

    /// The length of request `n`, `seed` telling two axes apart.
    pub fn of(self, n: u64, seed: u64) -> u32 {
        let span = u64::from(self.max - self.min) + 1;
        let draw = mock_ollama::embedding::splitmix64(n ^ seed.rotate_left(32)) % span;
        self.min + draw as u32
    }
}

/// Why a `--prompt-tokens` or `--output-tokens` value was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0:?}: expected a token count N or a range MIN..MAX (1 to 1,000,000, MIN <= MAX)")]
pub struct LengthsError(String);

impl FromStr for Lengths {
    type Err = LengthsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || LengthsError(text.to_owned());
        let count = |s: &str| {
            s.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))
        };
        let (min, max) = match text.split_once("..") {
            Some((a, b)) => (count(a).ok_or_else(bad)?, count(b).ok_or_else(bad)?),
            None => {
                let n = count(text).ok_or_else(bad)?;
                (n, n)
            }
        };
        if min > max {
            return Err(bad());
        }
        Ok(Self { min, max })
    }
}

/// What the requests ask.
#[derive(Debug, Clone)]
pub enum Workload {
    /// Embedding calls, one unique input each.
    Embed,
    /// Streamed chat.
    Chat(Chat),
    /// A replayed trace, already shaped (window, speed, context).
    Trace(Arc<Trace>),
}

/// A workload's requests, ready for the engine.
#[derive(Clone)]
pub struct Requests {
    /// The route, appended to the base URL.
    pub path: &'static str,
    /// Each request's body.
    pub bodies: Bodies,
    /// How answers are read.
    pub read: Read,
    /// A trace's arrival times (from its first request); `None` leaves the schedule to the
    /// caller.
    pub arrivals: Option<Arc<[Duration]>>,
}

impl Requests {
    /// Has the client leave `leave`'s share of the requests early; `false` (and nothing
    /// changed) when the answers are not streamed: an embedding has no tokens to leave after.
    pub fn leave(&mut self, leave: Leave) -> bool {
        let Read::Stream { api, .. } = self.read else {
            return false;
        };
        self.read = Read::Stream {
            api,
            leave: Some(leave),
        };
        true
    }
}

impl Workload {
    /// The workload's requests in `api`'s dialect, each asking for one of `models` (embed: the
    /// first).
    pub fn requests(&self, api: Api, models: &Models) -> Requests {
        let streamed = |render: Arc<Render>, arrivals| Requests {
            path: api.chat_path(),
            bodies: Bodies::Each(render),
            read: Read::stream(api),
            arrivals,
        };
        let models = models.clone();
        match self {
            Workload::Embed => Requests {
                path: api.embed_path(),
                bodies: Bodies::Same(embed_template(models.first())),
                read: Read::Whole,
                arrivals: None,
            },
            Workload::Chat(chat) => {
                let chat = *chat;
                let render = move |n: u64, id: &str| {
                    let prompt = chat.prompt_of(n, id);
                    chat_body(api, models.pick(n), prompt, chat.output_of(n))
                };
                streamed(Arc::new(render), None)
            }
            Workload::Trace(trace) => {
                let arrivals = trace.requests.iter().map(|r| r.at).collect();
                let trace = Arc::clone(trace);
                let render = move |n: u64, id: &str| {
                    trace_request(&trace, n).map_or_else(Bytes::new, |request| {
                        let prompt = prompt(request, trace.block_tokens, id);
                        chat_body(api, models.pick(n), prompt, output_tokens(request))
                    })
                };
                streamed(Arc::new(render), Some(arrivals))
            }
        }
    }

    /// The tokens request `n` asks for (`None`: an embedding asks for none).
    pub fn output_of(&self, n: u64) -> Option<u32> {
        match self {
            Workload::Embed => None,
            Workload::Chat(chat) => Some(chat.output_of(n)),
            Workload::Trace(trace) => trace_request(trace, n).map(output_tokens),
        }
    }

    /// The workload's name in results and bound names.
    pub fn name(&self) -> &'static str {
        match self {
            Workload::Embed => "embed",
            Workload::Chat(_) => "chat",
            Workload::Trace(_) => "trace",
        }
    }
}

/// The trace request that request `n` sends: a replay sends one per arrival, a closed loop on the
/// trace's mix goes round it again; `None` for an empty trace (the readers refuse one).
fn trace_request(trace: &Trace, n: u64) -> Option<&crate::trace::TraceRequest> {
    trace.requests.get(n as usize % trace.requests.len().max(1))
}

/// The answer length a trace request asks for.
fn output_tokens(request: &crate::trace::TraceRequest) -> u32 {
    u32::try_from(request.output_tokens).unwrap_or(u32::MAX)
}

fn embed_template(model: &str) -> Template {
    let body = json!({"model": model, "input": "load {rid} [rid:{rid}]"});
    Template::new(&body.to_string())
}

/// A streamed chat request with `prompt` as its one message and `output` tokens asked.
fn chat_body(api: Api, model: &str, prompt: String, output: u32) -> Bytes {
    let messages = json!([{"role": "user", "content": prompt}]);
    let body = match api {
        Api::Ollama => json!({
            "model": model, "messages": messages, "stream": true,
            "options": {"num_predict": output},
        }),
        Api::Openai => json!({
            "model": model, "messages": messages, "stream": true, "max_tokens": output,
        }),
    };
    Bytes::from(body.to_string())
}

#[cfg(test)]
mod tests;
