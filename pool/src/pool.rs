//! [`Pool`]: the request path SOLLOL's `_make_request` follows, over real HTTP, written once for
//! every ledger.
//!
//! Per request: count it; per attempt select a node, mark it active, send, record the outcome,
//! un-mark; on a node failure (connect error, timeout, 5xx, Ollama's 503) try the next node, each
//! at most once; on a 4xx stop, since another node would refuse the same request.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{
    ChatMessage, ChatRequest, ChatResponse, EmbedInput, EmbedRequest, EmbedResponse,
    GenerateRequest, GenerateResponse, Reply,
};
use crate::error::{NodeFailure, PoolError};
use crate::http::{AttemptError, Http, HttpConfig, Transport, healthy};
use crate::ledger::{ActiveGuard, Ledger, Outcome, Picked, RequestBody, Steps};
use crate::node::{NodeAddr, parse_node_url};
use crate::prober::{ProbeConfig, Prober};
use crate::stats::PoolStats;
use crate::strategy::Strategy;
use crate::wrap::{Plain, Wrap};

/// How a pool routes, talks HTTP and probes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolConfig {
    /// Node selection (a [`crate::BareLedger`] supports round-robin only).
    pub strategy: Strategy,
    /// The HTTP client's timeouts and connection reuse ([`Pool::new`] builds its [`Http`] from
    /// them; a pool given its own transport ignores them).
    pub http: HttpConfig,
    /// Background health probing; `None` disables it.
    pub probe: Option<ProbeConfig>,
}

/// A load-balancing pool over Ollama nodes.
///
/// The API is blocking, for OS threads, as SOLLOL's `ThreadPoolExecutor` callers use it; the
/// threads share one keep-alive HTTP client (`HttpConfig::clients` of them), or each call drives
/// its own I/O (`HttpClient::PerCaller`). Do not call it from inside an async runtime.
///
/// `X` carries each attempt and probe ([`Http`] unless given with [`Pool::with_parts`]); `W`
/// runs each request over the ledger ([`Plain`] in production; `crate::testing` has a worse one).
pub struct Pool<X: Transport = Http, W: Wrap = Plain> {
    ledger: Arc<Ledger>,
    transport: Arc<X>,
    wrap: W,
    config: PoolConfig,
    _prober: Option<Prober>,
}

impl<X: Transport, W: Wrap> std::fmt::Debug for Pool<X, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("ledger", &self.ledger.kind())
            .field("config", &self.config)
            .field("wrap", &self.wrap)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool over `nodes` (URLs such as `http://127.0.0.1:11434`) with `ledger`'s bookkeeping,
    /// talking HTTP as `config.http` says.
    pub fn new<U: AsRef<str>>(
        ledger: impl Into<Ledger>,
        config: PoolConfig,
        nodes: &[U],
    ) -> Result<Self, PoolError> {
        let http = Http::new(&config.http)?;
        Self::with_parts(ledger, config, nodes, http, Plain)
    }
}

impl<X: Transport, W: Wrap> Pool<X, W> {
    /// A pool whose attempts and probes go through `transport` and whose requests run through
    /// `wrap` (`config.http` is not used: the transport carries its own settings).
    pub fn with_parts<U: AsRef<str>>(
        ledger: impl Into<Ledger>,
        config: PoolConfig,
        nodes: &[U],
        transport: X,
        wrap: W,
    ) -> Result<Self, PoolError> {
        let ledger = ledger.into();
        if !ledger.supports(config.strategy) {
            return Err(PoolError::UnsupportedStrategy {
                ledger: ledger.kind(),
                strategy: config.strategy,
            });
        }
        let transport = Arc::new(transport);
        let ledger = Arc::new(ledger);
        for url in nodes {
            let (key, base) = parse_node_url(url.as_ref())?;
            ledger.add_node(&key, &base)?;
        }
        let prober = match (config.probe, &*ledger) {
            (Some(probe), Ledger::Mutex(_) | Ledger::Atomic(_)) => Some(Prober::spawn(
                Arc::clone(&ledger),
                Arc::clone(&transport),
                probe,
            )?),
            _ => None,
        };
        Ok(Self {
            ledger,
            transport,
            wrap,
            config,
            _prober: prober,
        })
    }

    /// The bookkeeping (lock scope and lock timings).
    pub fn ledger(&self) -> &Ledger {
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

    /// The nodes, in pool order.
    pub fn nodes(&self) -> Vec<NodeAddr> {
        self.ledger.nodes()
    }

    /// SOLLOL's `get_stats()`.
    pub fn stats(&self) -> PoolStats {
        self.ledger.snapshot(self.config.strategy)
    }

    /// Runs one health-probe round now, on this thread (the background prober does the same
    /// every interval). Under [`crate::LockScope::Probe`] a mutex ledger holds its lock
    /// throughout.
    pub fn probe_now(&self) {
        let timeout = self
            .config
            .probe
            .map_or(Duration::from_secs(2), |p| p.timeout);
        self.ledger
            .probe(&mut |node| healthy(&*self.transport, node, timeout));
    }

    /// `POST /api/embed` with one input or a batch.
    pub fn embed(
        &self,
        model: &str,
        input: impl Into<EmbedInput>,
    ) -> Result<Reply<EmbedResponse>, PoolError> {
        let input = input.into();
        self.call(
            "/api/embed",
            &EmbedRequest {
                model,
                input: &input,
            },
        )
    }

    /// `POST /api/generate`, non-streaming.
    pub fn generate(
        &self,
        model: &str,
        prompt: &str,
    ) -> Result<Reply<GenerateResponse>, PoolError> {
        let body = GenerateRequest {
            model,
            prompt,
            stream: false,
        };
        self.call("/api/generate", &body)
    }

    /// `POST /api/chat`, non-streaming.
    pub fn chat(
        &self,
        model: &str,
        messages: &[ChatMessage],
    ) -> Result<Reply<ChatResponse>, PoolError> {
        let body = ChatRequest {
            model,
            messages,
            stream: false,
        };
        self.call("/api/chat", &body)
    }

    fn call<T: DeserializeOwned>(
        &self,
        path: &'static str,
        body: &impl Serialize,
    ) -> Result<Reply<T>, PoolError> {
        // The request types hold strings only, so this cannot fail; it is still an error, not a
        // panic, should a future field change that.
        let body = Bytes::from(serde_json::to_vec(body).map_err(PoolError::Encode)?);
        let exchange = Exchange::<T, X> {
            transport: &*self.transport,
            strategy: self.config.strategy,
            path,
            body,
            _answer: PhantomData,
        };
        self.wrap.run(&self.ledger, exchange)
    }
}

/// One request's attempts, generic over the ledger's steps and the transport (HTTP, or a fake in
/// the models).
pub(crate) struct Exchange<'a, T, X> {
    pub(crate) transport: &'a X,
    pub(crate) strategy: Strategy,
    pub(crate) path: &'static str,
    pub(crate) body: Bytes,
    pub(crate) _answer: PhantomData<T>,
}

impl<T: DeserializeOwned, X: Transport> RequestBody for Exchange<'_, T, X> {
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
            tried.push(pick.node().id);
            let Some(mut active) = ActiveGuard::mark(steps, pick) else {
                continue;
            };
            let node = active.node().clone();
            let started = Instant::now();
            match self
                .transport
                .post::<T>(&node, self.path, self.body.clone())
            {
                Ok(value) => {
                    active.record(Outcome::Success {
                        latency: started.elapsed(),
                    });
                    return Ok(Reply { value, node });
                }
                Err(AttemptError::Retry(reason)) => {
                    active.record(Outcome::NodeFault);
                    failures.push(NodeFailure { node, reason });
                }
                Err(AttemptError::Rejected { status, message }) => {
                    active.record(Outcome::ClientFault);
                    drop(active);
                    steps.fail();
                    return Err(PoolError::Rejected {
                        node,
                        status,
                        message,
                    });
                }
            }
        }
    }
}
