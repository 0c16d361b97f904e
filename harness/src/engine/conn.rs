//! One HTTP/1.1 keep-alive connection per worker, on hyper's connection API directly (as oha
//! does): no client pool, no per-request lookup of an idle connection, no shared state between
//! workers. A connection that fails is dropped and the next request opens a new one; without
//! keep-alive every request does.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use super::stream::StreamReader;
use super::{Decoder, EngineError, Headers, Read};
use crate::load::Answer;
use crate::workload::LeaveAt;

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
    read: Read,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// Gaps between the tokens of every streamed answer read on this connection, us (taken
    /// out while an exchange feeds it).
    gaps: Option<Histogram<u64>>,
}

/// Settings of a connection besides where it goes.
pub(super) struct Options {
    pub(super) timeout: Duration,
    pub(super) keep_alive: bool,
    pub(super) decode: Option<Decoder>,
    pub(super) headers: Headers,
    pub(super) read: Read,
}

impl Conn {
    pub(super) fn new(endpoint: Endpoint, options: Options) -> Self {
        let Options {
            timeout,
            keep_alive,
            decode,
            headers,
            read,
        } = options;
        Self {
            endpoint,
            timeout,
            keep_alive,
            decode,
            headers,
            read,
            sender: None,
            gaps: None,
        }
    }

    /// The gaps between tokens of every stream read so far, us.
    pub(super) fn take_gaps(&mut self) -> Histogram<u64> {
        self.gaps
            .take()
            .unwrap_or_else(crate::summary::new_histogram)
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

    /// POSTs `body` as request `n` and reads the answer: its status, or `None` when no complete
    /// answer arrived within the timeout (for a stream: no whole one), and a stream's first
    /// token and tokens (kept when it broke off). A request the workload leaves early is dropped
    /// at its point, with its connection, and comes back `left`.
    /// A 2xx answer the decoder refuses has no status either, but its connection is kept: the
    /// exchange itself completed.
    pub(super) async fn post(&mut self, id: &str, n: u64, body: Bytes) -> Answer {
        let (mut stream, leave) = match self.read {
            Read::Whole => (None, None),
            Read::Stream { api, leave } => {
                (Some(StreamReader::new(api)), leave.and_then(|l| l.of(n)))
            }
        };
        let (limit, after_tokens) = match leave {
            Some(LeaveAt::After(after)) => (self.timeout.min(after), None),
            Some(LeaveAt::Tokens(k)) => (self.timeout, Some(k.get())),
            None => (self.timeout, None),
        };
        let mut gaps = self.take_gaps();
        let exchange = self.exchange(id, body, stream.as_mut(), after_tokens, &mut gaps);
        let outcome = tokio::time::timeout(limit, exchange).await;
        self.gaps = Some(gaps);
        let (first_token, tokens) = stream
            .as_ref()
            .map_or((None, 0), |s| (s.first_token, s.tokens));
        let answer = |status, left| Answer {
            status,
            first_token,
            tokens,
            left,
        };
        let ended = match outcome {
            Ok(Some(ended)) => ended,
            // The time to leave came first: a leaver, not a timeout.
            Err(_) if limit < self.timeout => Ended::Left,
            _ => Ended::Broken,
        };
        let (status, body) = match ended {
            Ended::Answer(status, body) => (status, body),
            Ended::Left | Ended::Broken => {
                // A failed, timed-out or abandoned exchange leaves the connection in an
                // unknown state; dropping it closes it, which is how a node hears a client left.
                self.sender = None;
                return answer(None, matches!(ended, Ended::Left));
            }
        };
        if !self.keep_alive {
            // The connection's task closes it once its sender is gone.
            self.sender = None;
        }
        let complete = match (&stream, self.decode) {
            (Some(stream), _) => stream.whole() || !(200..300).contains(&status),
            (None, Some(decode)) if (200..300).contains(&status) => decode(&body),
            (None, _) => true,
        };
        answer(complete.then_some(status), false)
    }

    /// The status and the whole body, or for a stream the status with the body fed to `stream`
    /// as it arrives; `Left` once `leave_after` tokens have arrived. `None`: the exchange broke.
    async fn exchange(
        &mut self,
        id: &str,
        body: Bytes,
        stream: Option<&mut StreamReader>,
        leave_after: Option<u32>,
        gaps: &mut Histogram<u64>,
    ) -> Option<Ended> {
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
        let mut body = response.into_body();
        let Some(stream) = stream.filter(|_| (200..300).contains(&status)) else {
            let whole = body.collect().await.ok()?.to_bytes();
            return Some(Ended::Answer(status, whole));
        };
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.ok()?.into_data() {
                stream.feed(&data, Instant::now(), gaps);
                if stream.overflowed {
                    // Dropping the body closes the connection mid-answer.
                    return None;
                }
                // A stream whose last line came in the same frame is whole: nothing to leave.
                if leave_after.is_some_and(|k| stream.tokens >= k) && !stream.whole() {
                    return Some(Ended::Left);
                }
            }
        }
        Some(Ended::Answer(status, Bytes::new()))
    }
}

/// How an exchange ended.
enum Ended {
    /// The status and, unless streamed, the body.
    Answer(u16, Bytes),
    /// The client left on purpose.
    Left,
    /// It broke, or the timeout passed.
    Broken,
}
