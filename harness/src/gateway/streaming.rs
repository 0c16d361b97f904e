//! The `streaming` cell: streamed chat through the gateway against straight at a node.
//!
//! The nodes are set through their control API to a per-token time (restored after), so a
//! 20-token answer streams for about 100 ms. One client at a time sends streamed chat requests
//! (`/api/chat`, or `/v1/chat/completions` with `--api openai`), alternately straight at node 0
//! and through the gateway, and reads each answer frame by frame with the load engine's reader
//! (`crate::engine::stream`): time to the first token, time to the last line, the longest gap
//! between two tokens, and whether the stream is whole (every line parsed, the final line last).
//! A proxy that buffers answers shows a first token that arrives with the last line.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use mock_ollama::SettingsPatch;
use serde::{Deserialize, Serialize};

use super::{Api, Cell, Nodes, Settings, while_patched};
use crate::engine::Headers;
use crate::engine::stream::StreamReader;
use crate::summary::{Latency, Summary};

/// Tokens per answer.
const TOKENS: u32 = 20;
/// Time per token on every node during the cell.
const PER_TOKEN: Duration = Duration::from_millis(5);
/// Streams per side per repeat.
const STREAMS: usize = 20;

/// What the streaming cell measured, medians over every stream of every repeat, ms.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamingReport {
    /// Straight at node 0: first line, last line, longest gap.
    pub direct: StreamTimes,
    /// Through the gateway.
    pub gateway: StreamTimes,
    /// Streams through the gateway that were not whole (a line not JSON, no final line, a line
    /// after it, or an error status).
    pub broken: u64,
    /// Streams sent through the gateway.
    pub streams: u64,
}

/// Median times of a set of streams, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StreamTimes {
    /// Send to the first token (the first line in results written before the cell read streams
    /// with the engine's reader; for these mock answers the same line).
    pub first_line_ms: f64,
    /// Send to the last line.
    pub last_line_ms: f64,
    /// The longest gap between two consecutive tokens (lines, in earlier results).
    pub max_gap_ms: f64,
}

/// One stream as read.
struct Stream {
    first: Duration,
    last: Duration,
    max_gap: Duration,
    whole: bool,
}

/// The route and body of a streamed chat request in `api`'s dialect.
fn chat_request(api: Api, id: &str) -> (&'static str, String) {
    let messages = format!(r#"[{{"role":"user","content":"gateway stream [rid:{id}]"}}]"#);
    match api {
        Api::Ollama => (
            "/api/chat",
            format!(
                r#"{{"model":"llama3.2","messages":{messages},"stream":true,"options":{{"num_predict":{TOKENS}}}}}"#
            ),
        ),
        Api::Openai => (
            "/v1/chat/completions",
            format!(
                r#"{{"model":"llama3.2","messages":{messages},"stream":true,"max_tokens":{TOKENS}}}"#
            ),
        ),
    }
}

/// Reads one streamed chat answer from `base` (`http://host:port`), sending `headers` too.
async fn stream_once(base: &str, api: Api, id: &str, headers: &Headers) -> anyhow::Result<Stream> {
    let addr = base.trim_start_matches("http://").to_owned();
    let (path, body) = chat_request(api, id);
    let started = Instant::now();
    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let mut request = hyper::Request::post(path)
        .header("host", &addr)
        .header("content-type", "application/json")
        .header("x-request-id", id);
    for header in headers.iter() {
        request = request.header(header.name(), header.value(id));
    }
    let request = request.body(Full::new(Bytes::from(body)))?;
    let response = sender.send_request(request).await?;
    let ok = response.status().is_success();
    let mut body = response.into_body();
    // The load engine's reader: every line parsed, token gaps kept, the stream whole or not.
    let (mut reader, mut gaps) = (StreamReader::new(api), crate::summary::new_histogram());
    let mut last = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let now = Instant::now();
        reader.feed(&data, now, &mut gaps);
        last = Some(now - started);
    }
    let at_end = || started.elapsed();
    Ok(Stream {
        first: reader.first_token.map_or_else(at_end, |t| t - started),
        last: last.unwrap_or_else(at_end),
        max_gap: Duration::from_micros(gaps.max()),
        whole: ok && reader.whole(),
    })
}

fn times(streams: &[Stream]) -> StreamTimes {
    let median = |f: fn(&Stream) -> Duration| {
        Summary::of(streams.iter().map(|s| f(s).as_secs_f64() * 1e3).collect()).median
    };
    StreamTimes {
        first_line_ms: median(|s| s.first),
        last_line_ms: median(|s| s.last),
        max_gap_ms: median(|s| s.max_gap),
    }
}

/// Measures the cell.
pub(super) fn streaming(nodes: &Nodes, settings: &Settings) -> anyhow::Result<Cell> {
    let node0 = nodes.urls().first().cloned().context("no node")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let per_token = |per_token: Duration| SettingsPatch {
        per_token: Some(per_token),
        ..SettingsPatch::default()
    };
    let streams = || {
        runtime.block_on(async {
            let (mut direct, mut gateway) = (Vec::new(), Vec::new());
            for r in 0..settings.repeats {
                for i in 0..STREAMS {
                    let id = format!("s{r}-{i}");
                    let api = settings.api;
                    let (d, g) = (format!("{id}d"), format!("{id}g"));
                    direct.push(stream_once(&node0, api, &d, &Headers::default()).await?);
                    gateway.push(stream_once(&settings.target, api, &g, &settings.headers).await?);
                }
            }
            Ok::<_, anyhow::Error>((direct, gateway))
        })
    };
    let (direct, gateway) =
        while_patched(nodes, 0..nodes.len(), |_| per_token(PER_TOKEN), streams)?;
    let report = StreamingReport {
        direct: times(&direct),
        gateway: times(&gateway),
        broken: gateway.iter().filter(|s| !s.whole).count() as u64,
        streams: gateway.len() as u64,
    };
    // One client sends the streams one after another: its rate is one over a stream's length,
    // and the cell's latency is the whole answer's.
    let mut histogram = crate::summary::new_histogram();
    for s in &gateway {
        histogram.saturating_record(s.last.as_micros() as u64);
    }
    let rates = gateway
        .iter()
        .map(|s| 1.0 / s.last.as_secs_f64().max(1e-9))
        .collect();
    Ok(Cell {
        streaming: Some(report),
        ..Cell::new("streaming", Summary::of(rates), Latency::of(&histogram))
    })
}

/// The cell's verdict.
pub(super) fn verdict(cell: &Cell) -> Option<String> {
    let s = cell.streaming.as_ref()?;
    let buffered = s.gateway.first_line_ms > 0.8 * s.gateway.last_line_ms;
    Some(format!(
        "streaming: first line after {:.1} ms through the gateway against {:.1} ms direct, last after {:.1} against {:.1} ms, longest gap {:.1} against {:.1} ms ({} of {TOKENS} tokens at {PER_TOKEN:?} each){}; {} of {} streams broken.",
        s.gateway.first_line_ms,
        s.direct.first_line_ms,
        s.gateway.last_line_ms,
        s.direct.last_line_ms,
        s.gateway.max_gap_ms,
        s.direct.max_gap_ms,
        crate::wording::medians_of(s.streams as usize, "stream", "streams"),
        if buffered {
            ": the first line arrived with the last (the answer reached this client in one piece)"
        } else {
            ""
        },
        s.broken,
        s.streams,
    ))
}

/// The `streaming` cell (not by default: the gateway must route `/api/chat`).
pub(super) struct Streaming;

impl super::CellSpec for Streaming {
    fn name(&self) -> &'static str {
        "streaming"
    }
    fn about(&self) -> &'static str {
        "Streamed chat: time to the first line and gaps against direct, and whole streams (the gateway must route /api/chat)."
    }
    fn by_default(&self) -> bool {
        false
    }
    fn measure(&self, cx: &super::cells::Context) -> anyhow::Result<Vec<Cell>> {
        Ok(vec![streaming(cx.nodes, cx.settings)?])
    }
}
