//! Faults inside an answer, over real HTTP: a stream cut or held after k tokens (forced per
//! request, or by rate with `fault_after_tokens`), on the native and the OpenAI routes, and what
//! the client and the served log see.

use std::time::Duration;

use futures_util::StreamExt;
use mock_ollama::{FAULT_HEADER, FaultConfig, MockNode, NodeConfig, ServedOutcome};
use serde_json::{Value, json};

async fn node(config: NodeConfig) -> MockNode {
    MockNode::spawn(config).await.expect("node starts")
}

/// What a client read of a streamed answer: the lines it got, and whether the body broke.
struct Read {
    lines: Vec<String>,
    broken: bool,
}

async fn stream(node: &MockNode, path: &str, body: Value, fault: Option<&str>) -> Read {
    let mut request = reqwest::Client::new()
        .post(format!("{}{path}", node.url()))
        .json(&body);
    if let Some(fault) = fault {
        request = request.header(FAULT_HEADER, fault);
    }
    let response = request.send().await.expect("headers arrive");
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let (mut text, mut broken) = (String::new(), false);
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(bytes) => text.push_str(&String::from_utf8_lossy(&bytes)),
            Err(_) => {
                broken = true;
                break;
            }
        }
    }
    let lines = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    Read { lines, broken }
}

fn ask(marker: &str) -> Value {
    json!({ "model": "llama3.2", "prompt": format!("go [rid:{marker}]"),
            "options": { "num_predict": 10 } })
}

fn outcome(node: &MockNode, marker: &str) -> (ServedOutcome, bool) {
    let entry = node
        .served(0, usize::MAX)
        .entries
        .into_iter()
        .find(|e| e.marker.as_deref() == Some(marker))
        .expect("logged");
    (entry.outcome, entry.stalled)
}

/// `reset-after:3` cuts a stream after three token lines; plain `reset` (the twin) cuts it
/// before the first. Both are logged as resets.
#[tokio::test]
async fn a_reset_after_k_tokens_cuts_the_stream_there() {
    let node = node(NodeConfig::with_latency(Duration::ZERO)).await;
    let cut = stream(&node, "/api/generate", ask("mid"), Some("reset-after:3")).await;
    assert!(cut.broken, "the body ends in an error, not a clean end");
    assert_eq!(cut.lines.len(), 3, "{:?}", cut.lines);
    assert!(cut.lines.iter().all(|l| l.contains("\"done\":false")));
    assert_eq!(outcome(&node, "mid"), (ServedOutcome::Reset, false));
    let before = reqwest::Client::new()
        .post(format!("{}/api/generate", node.url()))
        .header(FAULT_HEADER, "reset")
        .json(&ask("before"))
        .send()
        .await;
    let got_lines = match before {
        Err(_) => 0,
        Ok(response) => response
            .text()
            .await
            .map_or(0, |t| t.lines().filter(|l| !l.is_empty()).count()),
    };
    assert_eq!(got_lines, 0, "a plain reset strikes before the answer");
}

/// With `fault_after_tokens`, the node's reset rate strikes mid-stream; a k past the answer's
/// length cuts it before the final line.
#[tokio::test]
async fn the_reset_rate_strikes_after_the_configured_tokens() {
    let config = NodeConfig {
        faults: FaultConfig {
            reset_rate: 1.0,
            after_tokens: Some(50),
            ..FaultConfig::default()
        },
        ..NodeConfig::with_latency(Duration::ZERO)
    };
    let node = node(config).await;
    let cut = stream(&node, "/api/generate", ask("late"), None).await;
    assert!(cut.broken);
    assert_eq!(cut.lines.len(), 10, "every token, no final line");
    // An embedding is still struck before its answer.
    let embed = reqwest::Client::new()
        .post(format!("{}/api/embed", node.url()))
        .json(&json!({ "model": "all-minilm", "input": "x" }))
        .send()
        .await;
    let embed_ok = match embed {
        Ok(response) => response.json::<Value>().await.is_ok(),
        Err(_) => false,
    };
    assert!(!embed_ok, "the embedding was reset");
}

/// `stall-after:2` holds the stream and then finishes it: every line arrives, the log marks
/// it stalled and served.
#[tokio::test]
async fn a_stall_after_k_tokens_holds_the_stream_then_finishes() {
    let config = NodeConfig {
        faults: FaultConfig {
            stall: Duration::from_millis(5),
            ..FaultConfig::default()
        },
        ..NodeConfig::with_latency(Duration::ZERO)
    };
    let node = node(config).await;
    let read = stream(&node, "/api/generate", ask("held"), Some("stall-after:2")).await;
    assert!(!read.broken);
    assert_eq!(read.lines.len(), 11, "ten tokens and the final line");
    assert_eq!(outcome(&node, "held"), (ServedOutcome::Served, true));
}

/// The OpenAI route passes a mid-stream cut on as a cut, not as a clean end without `[DONE]`.
#[tokio::test]
async fn an_openai_stream_is_cut_where_the_native_one_is() {
    let node = node(NodeConfig::with_latency(Duration::ZERO)).await;
    let body = json!({
        "model": "llama3.2", "stream": true, "max_tokens": 10,
        "messages": [{ "role": "user", "content": "go [rid:sse]" }],
    });
    let cut = stream(&node, "/v1/chat/completions", body, Some("reset-after:2")).await;
    assert!(cut.broken);
    let data: Vec<_> = cut
        .lines
        .iter()
        .filter(|l| l.starts_with("data:"))
        .collect();
    assert!(data.iter().all(|l| !l.contains("[DONE]")), "{data:?}");
    assert_eq!(outcome(&node, "sse").0, ServedOutcome::Reset);
}

/// A non-streamed answer cut after k tokens: the client gets no answer, the log a reset.
#[tokio::test]
async fn a_non_streamed_answer_cut_mid_way_is_a_reset() {
    let node = node(NodeConfig::with_latency(Duration::ZERO)).await;
    let mut body = ask("whole");
    body["stream"] = json!(false);
    let answer = reqwest::Client::new()
        .post(format!("{}/api/generate", node.url()))
        .header(FAULT_HEADER, "reset-after:3")
        .json(&body)
        .send()
        .await;
    let answered = match answer {
        Ok(response) => response.json::<Value>().await.is_ok(),
        Err(_) => false,
    };
    assert!(!answered);
    assert_eq!(outcome(&node, "whole").0, ServedOutcome::Reset);
}
