//! One HTTP/1.1 keep-alive connection per worker, on hyper's connection API directly (as oha
//! does): no client pool, no per-request lookup of an idle connection, no shared state between
//! workers. A connection that fails is dropped and the next request opens a new one; without
//! keep-alive every request does.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use super::{Decoder, EngineError, Headers};

/// Where requests go, parsed once.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    /// `host:port` to connect to.
    addr: String,
    /// The `Host` header.
    authority: hyper::header::HeaderValue,
    /// Path and query.
    path: hyper::Uri,
}

impl Endpoint {
    pub(super) fn parse(url: &str) -> Result<Self, EngineError> {
        let bad = |why: &str| EngineError::Start(format!("{url}: {why}"));
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if parsed.scheme() != "http" {
            return Err(bad("only http:// is supported (the engine has no TLS)"));
        }
        let host = parsed.host_str().ok_or_else(|| bad("no host"))?;
        let port = parsed.port_or_known_default().unwrap_or(80);
        let addr = format!("{host}:{port}");
        let mut path = parsed.path().to_owned();
        if let Some(query) = parsed.query() {
            path = format!("{path}?{query}");
        }
        Ok(Self {
            authority: addr.parse().map_err(|_| bad("bad host"))?,
            path: path.parse().map_err(|_| bad("bad path"))?,
            addr,
        })
    }
}

/// A worker's connection.
pub(super) struct Conn {
    endpoint: Endpoint,
    timeout: Duration,
    keep_alive: bool,
    decode: Option<Decoder>,
    headers: Headers,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    pub(super) fn new(
        endpoint: Endpoint,
        timeout: Duration,
        keep_alive: bool,
        decode: Option<Decoder>,
        headers: Headers,
    ) -> Self {
        Self {
            endpoint,
            timeout,
            keep_alive,
            decode,
            headers,
            sender: None,
        }
    }

    async fn connect(&self) -> Option<SendRequest<Full<Bytes>>> {
        let stream = tokio::net::TcpStream::connect(&self.endpoint.addr)
            .await
            .ok()?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(connection);
        Some(sender)
    }

    /// POSTs `body` and reads the whole answer; the status, or `None` when no complete answer
    /// arrived within the timeout.
    /// A 2xx answer the decoder refuses is `None` too, but its connection is kept: the exchange
    /// itself completed.
    pub(super) async fn post(&mut self, id: &str, body: Bytes) -> Option<u16> {
        let Ok(Some((status, body))) =
            tokio::time::timeout(self.timeout, self.exchange(id, body)).await
        else {
            // A failed or timed-out exchange leaves the connection in an unknown state.
            self.sender = None;
            return None;
        };
        if !self.keep_alive {
            // The connection's task closes it once its sender is gone.
            self.sender = None;
        }
        match self.decode {
            Some(decode) if (200..300).contains(&status) => decode(&body).then_some(status),
            _ => Some(status),
        }
    }

    /// The status and the whole body.
    async fn exchange(&mut self, id: &str, body: Bytes) -> Option<(u16, Bytes)> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            self.sender = Some(self.connect().await?);
        }
        let sender = self.sender.as_mut()?;
        sender.ready().await.ok()?;
        let mut request = hyper::Request::post(self.endpoint.path.clone())
            .header(hyper::header::HOST, self.endpoint.authority.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header("x-request-id", id);
        for header in self.headers.iter() {
            request = request.header(header.name(), header.value(id));
        }
        let request = request.body(Full::new(body)).ok()?;
        let response = sender.send_request(request).await.ok()?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.ok()?;
        Some((status, body.to_bytes()))
    }
}
