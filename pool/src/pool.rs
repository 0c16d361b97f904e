//! `Pool<L>`: the request path SOLLOL's `_make_request` follows, over real HTTP, written once for
//! every ledger.
//!
//! Per request: count it; per attempt select a node, mark it active, send, record the outcome,
//! un-mark; on a node failure (connect error, timeout, 5xx, Ollama's 503) try the next node, each
//! at most once; on a 4xx stop, since another node would refuse the same request. [`LockScope`]
//! decides what a mutex ledger's one lock also covers.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::blocking::Client;
use reqwest::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{FailureReason, NodeFailure, PoolError};
use crate::ledger::{ActiveGuard, Ledger, Outcome, RequestBody, Steps};
use crate::node::{NodeAddr, parse_node_url};
use crate::prober::{ProbeConfig, Prober, probe_node};
use crate::stats::PoolStats;
use crate::strategy::Strategy;

/// What the mutex ledger's global lock covers besides the bookkeeping itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockScope {
    /// Bookkeeping only; the lock is released before any I/O (what the plan's code shows).
    #[default]
    Counters,
    /// Also the background health/VRAM probe's HTTP calls, as SOLLOL's loops do.
    Probe,
    /// The whole HTTP exchange (the plan's thread diagram).
    Request,
}

/// How a pool routes, times out and probes.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// Node selection.
    pub strategy: Strategy,
    /// What the global lock covers (mutex ledger only).
    pub scope: LockScope,
    /// Per-attempt timeout, connect to last byte.
    pub timeout: Duration,
    /// Background health probing; `None` disables it.
    pub probe: Option<ProbeConfig>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::RoundRobin,
            scope: LockScope::Counters,
            timeout: Duration::from_secs(60),
            probe: None,
        }
    }
}

/// An answer and the node that gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply<T> {
    /// The decoded answer.
    pub value: T,
    /// `host:port` of the node that answered.
    pub node: Arc<str>,
}

/// `/api/embed`'s answer (the fields the pool needs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EmbedResponse {
    /// One vector per input.
    pub embeddings: Vec<Vec<f32>>,
}

/// `/api/generate`'s non-streaming answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GenerateResponse {
    /// The generated text.
    pub response: String,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// `/api/chat`'s non-streaming answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ChatResponse {
    /// The assistant's message.
    pub message: ChatMessage,
}

/// A load-balancing pool over Ollama nodes, generic over its bookkeeping.
///
/// The API is blocking, for OS threads, as SOLLOL's `ThreadPoolExecutor` callers use it; all
/// threads share one keep-alive HTTP client. Do not call it from inside an async runtime.
pub struct Pool<L: Ledger> {
    ledger: Arc<L>,
    client: Client,
    config: PoolConfig,
    _prober: Option<Prober>,
}

impl<L: Ledger> std::fmt::Debug for Pool<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("kind", &self.ledger.kind())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<L: Ledger> Pool<L> {
    /// A pool over `nodes` (URLs such as `http://127.0.0.1:11434`).
    pub fn new<U: AsRef<str>>(
        ledger: L,
        config: PoolConfig,
        nodes: &[U],
    ) -> Result<Self, PoolError> {
        let client = Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(PoolError::Client)?;
        let ledger = Arc::new(ledger);
        for url in nodes {
            let (key, base) = parse_node_url(url.as_ref())?;
            ledger.add_node(&key, &base)?;
        }
        let prober = config.probe.map(|probe| {
            Prober::spawn(
                Arc::clone(&ledger),
                client.clone(),
                probe,
                config.scope == LockScope::Probe,
            )
        });
        Ok(Self {
            ledger,
            client,
            config,
            _prober: prober,
        })
    }

    /// The ledger (for lock timings and direct inspection).
    pub fn ledger(&self) -> &L {
        &self.ledger
    }

    /// The configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Adds a node; it receives requests from the next selection on.
    pub fn add_node(&self, url: &str) -> Result<NodeAddr, PoolError> {
        let (key, base) = parse_node_url(url)?;
        self.ledger.add_node(&key, &base)
    }

    /// Removes a node. Returns once no request is in flight to it; none is sent to it after.
    pub fn remove_node(&self, url: &str) -> Result<NodeAddr, PoolError> {
        let (key, _) = parse_node_url(url)?;
        self.ledger.remove_node(&key)
    }

    /// SOLLOL's `get_stats()`.
    pub fn stats(&self) -> PoolStats {
        self.ledger.snapshot(self.config.strategy)
    }

    /// Runs one health-probe round now, on this thread (the background prober does the same
    /// every interval). Under [`LockScope::Probe`] a mutex ledger holds its lock throughout.
    pub fn probe_now(&self) {
        let timeout = self
            .config
            .probe
            .map_or(Duration::from_secs(2), |p| p.timeout);
        self.ledger
            .probe(self.config.scope == LockScope::Probe, &mut |node| {
                probe_node(&self.client, node, timeout)
            });
    }

    /// `POST /api/embed` with one input or a batch.
    pub fn embed(
        &self,
        model: &str,
        input: impl Serialize,
    ) -> Result<Reply<EmbedResponse>, PoolError> {
        self.call(
            "/api/embed",
            &serde_json::json!({ "model": model, "input": input }),
        )
    }

    /// `POST /api/generate`, non-streaming.
    pub fn generate(
        &self,
        model: &str,
        prompt: &str,
    ) -> Result<Reply<GenerateResponse>, PoolError> {
        self.call(
            "/api/generate",
            &serde_json::json!({ "model": model, "prompt": prompt, "stream": false }),
        )
    }

    /// `POST /api/chat`, non-streaming.
    pub fn chat(
        &self,
        model: &str,
        messages: &[ChatMessage],
    ) -> Result<Reply<ChatResponse>, PoolError> {
        self.call(
            "/api/chat",
            &serde_json::json!({ "model": model, "messages": messages, "stream": false }),
        )
    }

    fn call<T: DeserializeOwned>(
        &self,
        path: &'static str,
        body: &serde_json::Value,
    ) -> Result<Reply<T>, PoolError> {
        let body = Bytes::from(serde_json::to_vec(body).expect("a JSON value always serialises"));
        let exchange = Exchange::<T> {
            client: &self.client,
            strategy: self.config.strategy,
            path,
            body,
            _answer: PhantomData,
        };
        self.ledger
            .run(self.config.scope == LockScope::Request, exchange)
    }
}

/// One request's attempts, generic over the ledger's steps.
struct Exchange<'a, T> {
    client: &'a Client,
    strategy: Strategy,
    path: &'static str,
    body: Bytes,
    _answer: PhantomData<T>,
}

impl<T: DeserializeOwned> RequestBody for Exchange<'_, T> {
    type Output = Result<Reply<T>, PoolError>;

    fn run<S: Steps>(self, steps: &mut S) -> Self::Output {
        steps.begin();
        let mut tried = Vec::new();
        let mut failures = Vec::new();
        loop {
            let Some(pick) = steps.select(self.strategy, &tried) else {
                steps.fail();
                return Err(if failures.is_empty() {
                    PoolError::NoNodes
                } else {
                    PoolError::AllNodesFailed { failures }
                });
            };
            tried.push(crate::ledger::Picked::node(&pick).id);
            let Some(mut active) = ActiveGuard::mark(steps, pick) else {
                continue;
            };
            let node = active.node().clone();
            let started = Instant::now();
            match attempt::<T>(self.client, &node, self.path, self.body.clone()) {
                Ok(value) => {
                    active.record(Outcome::Success {
                        latency: started.elapsed(),
                    });
                    return Ok(Reply {
                        value,
                        node: node.key,
                    });
                }
                Err(AttemptError::Retry(reason)) => {
                    active.record(Outcome::NodeFault);
                    failures.push(NodeFailure {
                        node: node.key.to_string(),
                        reason,
                    });
                }
                Err(AttemptError::Rejected { status, message }) => {
                    active.record(Outcome::ClientFault);
                    drop(active);
                    steps.fail();
                    return Err(PoolError::Rejected {
                        node: node.key.to_string(),
                        status,
                        message,
                    });
                }
            }
        }
    }
}

/// Why one attempt did not produce an answer.
enum AttemptError {
    /// The node's fault: try another.
    Retry(FailureReason),
    /// The request's fault (4xx): stop.
    Rejected { status: u16, message: String },
}

fn attempt<T: DeserializeOwned>(
    client: &Client,
    node: &NodeAddr,
    path: &str,
    body: Bytes,
) -> Result<T, AttemptError> {
    let response = client
        .post(format!("{}{path}", node.url))
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .map_err(|e| AttemptError::Retry(transport_reason(&e)))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .map_err(|e| AttemptError::Retry(transport_reason(&e)))?;
    if status.is_success() {
        return serde_json::from_slice(&bytes)
            .map_err(|e| AttemptError::Retry(FailureReason::Body(e.to_string())));
    }
    let message = ollama_error_text(&bytes);
    if status.is_client_error() {
        Err(AttemptError::Rejected {
            status: status.as_u16(),
            message,
        })
    } else {
        Err(AttemptError::Retry(FailureReason::Status {
            status: status.as_u16(),
            message,
        }))
    }
}

/// Ollama's `{"error": "..."}` text, or the body itself.
fn ollama_error_text(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct OllamaError {
        error: String,
    }
    serde_json::from_slice::<OllamaError>(body)
        .map(|e| e.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned())
}

pub(crate) fn transport_reason(error: &reqwest::Error) -> FailureReason {
    if error.is_timeout() {
        return FailureReason::Timeout;
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if error.is_connect() {
        FailureReason::Connect(text)
    } else if error.is_body() || error.is_decode() {
        FailureReason::Body(text)
    } else {
        FailureReason::Transport(text)
    }
}
