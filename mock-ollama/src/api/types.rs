//! Request and response bodies with Ollama's field names.
//!
//! Durations are integer nanoseconds and zero-valued metrics are omitted, as in Ollama's
//! `api.Metrics`; the final chunk of a generation always carries all six metrics (non-zero),
//! because `ollama-rs` reads them only when all six are present.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::validate::GoType::{self, Any, Bool, Int, IntList, Map, Messages, Str};

/// `POST /api/embed`.
#[derive(Debug, Deserialize)]
pub struct EmbedRequest {
    /// Model name as sent.
    #[serde(default)]
    pub model: Option<String>,
    /// A string, an array of strings, or absent.
    #[serde(default)]
    pub input: Value,
    /// Accepted and ignored: the mock never truncates.
    #[serde(default)]
    pub truncate: Option<bool>,
    /// Cut each vector to this many components and normalise again (when `0 < d < len`).
    #[serde(default)]
    pub dimensions: Option<i64>,
    /// Checked as Ollama checks it; otherwise ignored.
    #[serde(default)]
    pub keep_alive: Option<Value>,
    /// Checked as Ollama's `FromMap` checks it; otherwise ignored.
    #[serde(default)]
    pub options: Option<Value>,
}

impl EmbedRequest {
    /// Field types checked at binding.
    pub const FIELDS: &[(&str, GoType)] = &[
        ("model", Str),
        ("input", Any),
        ("truncate", Bool),
        ("dimensions", Int),
        ("options", Map),
    ];
}

/// `POST /api/embeddings` (legacy).
#[derive(Debug, Deserialize)]
pub struct EmbeddingsRequest {
    /// Model name as sent.
    #[serde(default)]
    pub model: Option<String>,
    /// The text to embed.
    #[serde(default)]
    pub prompt: Option<String>,
    /// Checked as Ollama's `FromMap` checks it; otherwise ignored.
    #[serde(default)]
    pub options: Option<Value>,
    /// Checked as Ollama checks it; otherwise ignored.
    #[serde(default)]
    pub keep_alive: Option<Value>,
}

impl EmbeddingsRequest {
    /// Field types checked at binding (Go's `api.EmbeddingRequest`).
    pub const FIELDS: &[(&str, GoType)] = &[("model", Str), ("prompt", Str), ("options", Map)];
}

/// `POST /api/embeddings` answer.
#[derive(Debug, Serialize)]
pub struct EmbeddingsResponse {
    /// One vector (double precision on the wire, as in Ollama).
    pub embedding: Vec<f64>,
}

/// `POST /api/generate`.
#[derive(Debug, Deserialize)]
pub struct GenerateRequest {
    /// Model name as sent.
    #[serde(default)]
    pub model: Option<String>,
    /// The prompt; empty means "load the model".
    #[serde(default)]
    pub prompt: Option<String>,
    /// Streaming NDJSON unless `false`.
    #[serde(default)]
    pub stream: Option<bool>,
    /// `0` with an empty prompt unloads the model.
    #[serde(default)]
    pub keep_alive: Option<Value>,
    /// Sampling options; `num_predict` and `num_ctx` set the output length.
    #[serde(default)]
    pub options: Option<Value>,
    /// Accepted and ignored.
    #[serde(default)]
    pub system: Option<String>,
}

impl GenerateRequest {
    /// Field types checked at binding.
    pub const FIELDS: &[(&str, GoType)] = &[
        ("model", Str),
        ("prompt", Str),
        ("suffix", Str),
        ("system", Str),
        ("template", Str),
        ("stream", Bool),
        ("raw", Bool),
        ("options", Map),
        ("context", IntList),
        ("top_logprobs", Int),
    ];
}

/// One chat message.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool` (empty when absent or null, as in Go).
    #[serde(default)]
    pub role: Option<String>,
    /// Text content (empty when absent or null).
    #[serde(default)]
    pub content: Option<String>,
}

/// `POST /api/chat`.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    /// Model name as sent.
    #[serde(default)]
    pub model: Option<String>,
    /// The conversation; empty means "load the model".
    #[serde(default)]
    pub messages: Option<Vec<Message>>,
    /// Streaming NDJSON unless `false`.
    #[serde(default)]
    pub stream: Option<bool>,
    /// `0` with no messages unloads the model.
    #[serde(default)]
    pub keep_alive: Option<Value>,
    /// Sampling options; `num_predict` and `num_ctx` set the output length.
    #[serde(default)]
    pub options: Option<Value>,
    /// Accepted and ignored.
    #[serde(default)]
    pub tools: Option<Value>,
}

impl ChatRequest {
    /// Field types checked at binding.
    pub const FIELDS: &[(&str, GoType)] = &[
        ("model", Str),
        ("messages", Messages),
        ("stream", Bool),
        ("options", Map),
        ("top_logprobs", Int),
    ];
}

/// The six timing metrics of a finished generation, all in ns except the counts.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Metrics {
    /// Handler start to end.
    pub total_duration: u64,
    /// Wait for the model (queue + load).
    pub load_duration: u64,
    /// Prompt tokens.
    pub prompt_eval_count: u64,
    /// Prompt processing time.
    pub prompt_eval_duration: u64,
    /// Generated tokens.
    pub eval_count: u64,
    /// Generation time.
    pub eval_duration: u64,
}

/// `POST /api/show`.
#[derive(Debug, Deserialize)]
pub struct ShowRequest {
    /// Model name (current clients).
    #[serde(default)]
    pub model: Option<String>,
    /// Model name (older clients such as `ollama-rs`).
    #[serde(default)]
    pub name: Option<String>,
    /// Accepted and ignored.
    #[serde(default)]
    pub verbose: Option<bool>,
}

impl ShowRequest {
    /// Field types checked at binding.
    pub const FIELDS: &[(&str, GoType)] = &[("model", Str), ("name", Str), ("verbose", Bool)];
}
