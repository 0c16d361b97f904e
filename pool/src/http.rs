//! One HTTP attempt on one node, and the client settings every attempt and probe uses.
//!
//! The split of answers into "try another node" and "stop" lives here: transport errors, 5xx and
//! undecodable bodies are the node's fault; a 4xx is the request's, so another node would refuse
//! it too.

use std::time::Duration;

use bytes::Bytes;
use reqwest::blocking::Client;
use reqwest::header::CONTENT_TYPE;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{FailureReason, PoolError};
use crate::node::NodeAddr;

/// The HTTP client's settings. Connection reuse is what a user tunes anyway, and what a
/// dependency bump can silently break, so it is explicit here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpConfig {
    /// Per-attempt timeout, connect to last byte.
    pub timeout: Duration,
    /// Connect timeout; `None` leaves it to `timeout`.
    pub connect_timeout: Option<Duration>,
    /// Idle keep-alive connections kept per node; 0 opens a new connection per request.
    pub max_idle_per_host: usize,
    /// How long an idle connection is kept; `None` keeps it until the node closes it.
    pub idle_timeout: Option<Duration>,
    /// Independent blocking clients, each with its own I/O thread and connections; each calling
    /// thread uses one. A `reqwest::blocking` client drives every request on one internal
    /// thread, which caps a pool at about 1 / (that thread's CPU per request) whatever the
    /// cores (`harness run peak` measures it); more clients remove that funnel.
    pub clients: usize,
}

impl Default for HttpConfig {
    /// reqwest's defaults, with a 60 s per-attempt timeout.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            connect_timeout: None,
            max_idle_per_host: usize::MAX,
            idle_timeout: Some(Duration::from_secs(90)),
            clients: 1,
        }
    }
}

impl HttpConfig {
    /// The blocking clients these settings describe (at least one).
    pub(crate) fn clients(&self) -> Result<Clients, PoolError> {
        let all = (0..self.clients.max(1))
            .map(|_| self.client())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Clients(all))
    }

    /// One blocking client with these settings.
    fn client(&self) -> Result<Client, PoolError> {
        let mut builder = Client::builder()
            .timeout(self.timeout)
            .pool_max_idle_per_host(self.max_idle_per_host)
            .pool_idle_timeout(self.idle_timeout);
        if let Some(connect) = self.connect_timeout {
            builder = builder.connect_timeout(connect);
        }
        builder.build().map_err(PoolError::Client)
    }
}

/// The pool's blocking clients; each calling thread keeps to one, so its connections stay warm.
#[derive(Debug, Clone)]
pub(crate) struct Clients(Vec<Client>);

impl Clients {
    /// The client of the calling thread: threads are numbered in the order they first ask, and
    /// take the clients in turn.
    pub(crate) fn for_this_thread(&self) -> &Client {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        thread_local! {
            static THREAD: usize = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.pick(THREAD.with(|n| *n))
    }

    /// The client of the `n`th thread to ask.
    fn pick(&self, n: usize) -> &Client {
        &self.0[n % self.0.len()]
    }
}

/// Why one attempt did not produce an answer.
pub(crate) enum AttemptError {
    /// The node's fault: try another.
    Retry(FailureReason),
    /// The request's fault (4xx): stop.
    Rejected { status: u16, message: String },
}

/// How an attempt reaches a node: HTTP in production; a scripted fake in the models that check
/// the request path without sockets (`src/tests/exchange.rs`).
pub(crate) trait Transport: Sync {
    /// `POST node.url + path` with a JSON body, decoded as `T` on 2xx.
    fn post<T: DeserializeOwned>(
        &self,
        node: &NodeAddr,
        path: &str,
        body: Bytes,
    ) -> Result<T, AttemptError>;
}

impl Transport for Client {
    fn post<T: DeserializeOwned>(
        &self,
        node: &NodeAddr,
        path: &str,
        body: Bytes,
    ) -> Result<T, AttemptError> {
        attempt(self, node, path, body)
    }
}

/// `POST node.url + path` with a JSON body, decoded as `T` on 2xx.
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

/// A transport error as a [`FailureReason`], with its whole chain of causes.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn clients(n: usize) -> Clients {
        let config = HttpConfig {
            clients: n,
            ..HttpConfig::default()
        };
        config.clients().unwrap()
    }

    #[test]
    fn threads_take_the_clients_in_turn() {
        let two = clients(2);
        assert!(!std::ptr::eq(two.pick(0), two.pick(1)));
        assert!(std::ptr::eq(two.pick(0), two.pick(2)));
        let one = clients(0);
        assert_eq!(one.0.len(), 1, "0 means one client");
        assert!(std::ptr::eq(one.pick(0), one.pick(1)));
    }

    #[test]
    fn a_thread_keeps_its_client() {
        let two = clients(2);
        let first: *const Client = two.for_this_thread();
        assert!(std::ptr::eq(first, two.for_this_thread()));
    }
}
