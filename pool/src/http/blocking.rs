//! The `reqwest::blocking` client: every request is handed to the client's one internal I/O
//! thread and the caller waits for the answer.

use std::time::Duration;

use bytes::Bytes;
use reqwest::blocking::Client;
use reqwest::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;

use super::{AttemptError, HttpConfig, Transport, decode, with_causes};
use crate::error::{FailureReason, PoolError};
use crate::node::NodeAddr;

/// The pool's blocking clients; each calling thread keeps to one, so its connections stay warm.
#[derive(Debug, Clone)]
pub(crate) struct Clients(Vec<Client>);

impl Clients {
    /// `n` clients with `config`'s settings (at least one).
    pub(super) fn new(config: &HttpConfig, n: usize) -> Result<Self, PoolError> {
        let all = (0..n.max(1))
            .map(|_| client(config))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(all))
    }

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

/// One blocking client with `config`'s settings.
fn client(config: &HttpConfig) -> Result<Client, PoolError> {
    let mut builder = Client::builder()
        .timeout(config.timeout)
        .pool_max_idle_per_host(config.max_idle_per_host)
        .pool_idle_timeout(config.idle_timeout);
    if let Some(connect) = config.connect_timeout {
        builder = builder.connect_timeout(connect);
    }
    builder.build().map_err(PoolError::Client)
}

impl Transport for Client {
    fn post<T: DeserializeOwned>(
        &self,
        node: &NodeAddr,
        path: &str,
        body: Bytes,
    ) -> Result<T, AttemptError> {
        let response = self
            .post(format!("{}{path}", node.url))
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .map_err(|e| AttemptError::Retry(transport_reason(&e)))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .map_err(|e| AttemptError::Retry(transport_reason(&e)))?;
        decode(status, &bytes)
    }

    /// `GET node.url + path` within `timeout`: the status of a complete answer, or `None`.
    fn get(&self, node: &NodeAddr, path: &str, timeout: Duration) -> Option<u16> {
        let response = reqwest::blocking::Client::get(self, format!("{}{path}", node.url))
            .timeout(timeout)
            .send()
            .ok()?;
        let status = response.status().as_u16();
        response.bytes().ok().map(|_| status)
    }
}

/// A transport error as a [`FailureReason`], with its whole chain of causes.
fn transport_reason(error: &reqwest::Error) -> FailureReason {
    if error.is_timeout() {
        return FailureReason::Timeout;
    }
    let text = with_causes(error);
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
        Clients::new(&HttpConfig::default(), n).unwrap()
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
