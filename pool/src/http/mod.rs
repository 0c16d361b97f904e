//! One HTTP attempt on one node, and the client settings every attempt and probe uses.
//!
//! The split of answers into "try another node" and "stop" lives here: transport errors, 5xx and
//! undecodable bodies are the node's fault; a 4xx is the request's, so another node would refuse
//! it too. Two clients carry the attempts ([`HttpClient`]): `reqwest::blocking` ([`blocking`])
//! and a per-caller async core ([`per_caller`]); both end in [`decode`], so they classify an
//! answer the same way, and each also carries the health probes ([`Transport::get`], judged by
//! [`healthy`]).

mod blocking;
mod per_caller;

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{FailureReason, PoolError};
use crate::node::NodeAddr;
use blocking::Clients;
use per_caller::Cores;

/// Which HTTP client carries the pool's requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HttpClient {
    /// `reqwest::blocking`: each client hands every request to its one internal I/O thread and
    /// waits for the answer, so one client's requests all pass through that thread
    /// ([`HttpConfig::clients`] of them).
    Blocking,
    /// The calling thread does its own I/O, as Python's `requests` under SOLLOL does: each call
    /// borrows a single-threaded tokio runtime with its own keep-alive connections (one per
    /// node) and drives the exchange on hyper's HTTP/1.1 connection API. No hand-off to another
    /// thread; callers share only the list of idle runtimes. `clients` is ignored. The default:
    /// `harness run peak` measured it using less client CPU per request than `Blocking`.
    #[default]
    PerCaller,
}

impl HttpClient {
    /// The name the harness and results use.
    pub fn name(self) -> &'static str {
        match self {
            HttpClient::Blocking => "blocking",
            HttpClient::PerCaller => "per-caller",
        }
    }
}

/// The HTTP client's settings. Connection reuse is what a user tunes anyway, and what a
/// dependency bump can silently break, so it is explicit here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpConfig {
    /// Which client carries the requests.
    pub client: HttpClient,
    /// Per-attempt timeout, connect to last byte.
    pub timeout: Duration,
    /// Connect timeout; `None` leaves it to `timeout`.
    pub connect_timeout: Option<Duration>,
    /// Idle keep-alive connections kept per node; 0 opens a new connection per request. The
    /// per-caller client takes any value above 0 as "reuse": each of its runtimes keeps one
    /// connection per node (a runtime serves one call at a time, so it never needs two), so a
    /// node sees at most as many as calls were ever in flight at once.
    pub max_idle_per_host: usize,
    /// How long an idle connection is kept; `None` keeps it until the node closes it. The
    /// per-caller client closes a connection idle past it at the next call its runtime serves.
    pub idle_timeout: Option<Duration>,
    /// Independent blocking clients, each with its own I/O thread and connections; each calling
    /// thread uses one. A `reqwest::blocking` client drives every request on one internal
    /// thread, which caps a pool at about 1 / (that thread's CPU per request) whatever the
    /// cores (`harness run peak` measures it); more clients remove that funnel.
    pub clients: usize,
}

impl Default for HttpConfig {
    /// The per-caller client with reqwest's connection defaults and a 60 s per-attempt timeout.
    fn default() -> Self {
        Self {
            client: HttpClient::default(),
            timeout: Duration::from_secs(60),
            connect_timeout: None,
            max_idle_per_host: usize::MAX,
            idle_timeout: Some(Duration::from_secs(90)),
            clients: 1,
        }
    }
}

/// The pool's HTTP side, built from an [`HttpConfig`]: the client that carries its requests and
/// its health probes. The default [`Transport`] of a [`crate::Pool`].
#[derive(Debug)]
pub struct Http(Inner);

#[derive(Debug)]
enum Inner {
    /// `reqwest::blocking`: every request through a client's I/O thread.
    Blocking(Clients),
    /// The calling thread's own exchange on a borrowed runtime (boxed: the idle queue is
    /// cache-padded, ten times the size of the other variant).
    PerCaller(Box<Cores>),
}

impl Http {
    /// The client `config` describes.
    pub fn new(config: &HttpConfig) -> Result<Self, PoolError> {
        Ok(Self(match config.client {
            HttpClient::Blocking => Inner::Blocking(Clients::new(config, config.clients)?),
            HttpClient::PerCaller => Inner::PerCaller(Box::new(Cores::new(*config))),
        }))
    }
}

impl Transport for Http {
    fn post<T: DeserializeOwned>(
        &self,
        node: &NodeAddr,
        path: &str,
        body: Bytes,
    ) -> Result<T, AttemptError> {
        match &self.0 {
            Inner::PerCaller(cores) => cores.post(node, path, body),
            Inner::Blocking(clients) => {
                Transport::post(clients.for_this_thread(), node, path, body)
            }
        }
    }

    fn get(&self, node: &NodeAddr, path: &str, timeout: Duration) -> Option<u16> {
        match &self.0 {
            Inner::Blocking(clients) => {
                Transport::get(clients.for_this_thread(), node, path, timeout)
            }
            Inner::PerCaller(cores) => cores.get(node, path, timeout),
        }
    }
}

/// Why one attempt did not produce an answer.
#[derive(Debug)]
pub enum AttemptError {
    /// The node's fault: try another.
    Retry(FailureReason),
    /// The request's fault (4xx): stop.
    Rejected {
        /// The node's status code.
        status: u16,
        /// Ollama's error text, or the body.
        message: String,
    },
}

/// How an attempt reaches a node: [`Http`] in production; a scripted fake in the models that
/// check the request path without sockets (`src/tests/exchange.rs`), and a deliberately worse
/// wrapper in [`crate::testing`].
pub trait Transport: Send + Sync + 'static {
    /// `POST node.url + path` with a JSON body, decoded as `T` on 2xx.
    fn post<T: DeserializeOwned>(
        &self,
        node: &NodeAddr,
        path: &str,
        body: Bytes,
    ) -> Result<T, AttemptError>;

    /// `GET node.url + path`: the status of a complete answer within `timeout`, or `None`
    /// (the health probe's request).
    fn get(&self, node: &NodeAddr, path: &str, timeout: Duration) -> Option<u16>;
}

/// Whether `node` answers `GET /api/ps` and `GET /api/tags`, each completely, within `timeout`
/// and with a 2xx: the health probe SOLLOL's loops run.
pub(crate) fn healthy(transport: &impl Transport, node: &NodeAddr, timeout: Duration) -> bool {
    ["/api/ps", "/api/tags"].iter().all(|path| {
        transport
            .get(node, path, timeout)
            .is_some_and(|s| (200..300).contains(&s))
    })
}

/// A complete answer as the pool sees it: `T` on 2xx, the node's fault on 5xx or an
/// undecodable 2xx body, the request's on 4xx.
fn decode<T: DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, AttemptError> {
    if (200..300).contains(&status) {
        return serde_json::from_slice(body)
            .map_err(|e| AttemptError::Retry(FailureReason::Body(e.to_string())));
    }
    let message = ollama_error_text(body);
    if (400..500).contains(&status) {
        Err(AttemptError::Rejected { status, message })
    } else {
        Err(AttemptError::Retry(FailureReason::Status {
            status,
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

/// An error and its whole chain of causes, as one line.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
