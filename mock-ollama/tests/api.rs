//! Every endpoint and every error case over real HTTP, with Ollama's exact statuses and texts.

use std::time::Duration;

use mock_ollama::{MockNode, NodeConfig};
use serde_json::{Value, json};

async fn node() -> MockNode {
    MockNode::spawn(NodeConfig::with_latency(Duration::ZERO))
        .await
        .expect("node starts")
}

/// `GET path` on `node`, as JSON.
async fn get_json(node: &MockNode, path: &str) -> Value {
    reqwest::get(format!("{}{path}", node.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn post(node: &MockNode, path: &str, body: &str) -> (u16, String, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", node.url()))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("request sent");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, content_type, value)
}

fn error(message: &str) -> Value {
    json!({ "error": message })
}

#[tokio::test]
async fn root_version_and_unknown_routes() {
    let node = node().await;
    let client = reqwest::Client::new();
    let root = client.get(node.url()).send().await.unwrap();
    assert_eq!(root.status(), 200);
    assert_eq!(root.text().await.unwrap(), "Ollama is running");
    let head = client.head(node.url()).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let version: Value = client
        .get(format!("{}/api/version", node.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(version["version"].is_string());
    let missing = client
        .get(format!("{}/api/nope", node.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.text().await.unwrap(), "404 page not found");
    let wrong = client
        .get(format!("{}/api/embed", node.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 405);
    assert_eq!(wrong.text().await.unwrap(), "405 method not allowed");
}

#[tokio::test]
async fn tags_lists_models_with_name_and_model() {
    let node = node().await;
    let tags: Value = get_json(&node, "/api/tags").await;
    let models = tags["models"].as_array().unwrap();
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "mxbai-embed-large:latest",
            "nomic-embed-text:latest",
            "all-minilm:latest",
            "llama3.2:latest"
        ]
    );
    for m in models {
        assert_eq!(m["name"], m["model"]);
        assert!(m["size"].as_u64().unwrap() > 0);
        assert_eq!(m["digest"].as_str().unwrap().len(), 64);
        assert!(m["modified_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(m["details"]["format"], "gguf");
    }
}

#[tokio::test]
async fn ps_lists_models_once_used() {
    let node = node().await;
    let ps: Value = get_json(&node, "/api/ps").await;
    assert_eq!(ps, json!({ "models": [] }));
    let (status, _, _) = post(&node, "/api/embed", r#"{"model":"all-minilm","input":"x"}"#).await;
    assert_eq!(status, 200);
    let ps: Value = get_json(&node, "/api/ps").await;
    assert_eq!(ps["models"][0]["name"], "all-minilm:latest");
    assert!(ps["models"][0]["expires_at"].is_string());
}

#[tokio::test]
async fn show_accepts_model_or_name() {
    let node = node().await;
    let (status, content_type, body) =
        post(&node, "/api/show", r#"{"model":"mxbai-embed-large"}"#).await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/json; charset=utf-8")
    );
    assert_eq!(body["capabilities"], json!(["embedding"]));
    assert_eq!(body["model_info"]["bert.embedding_length"], 1024);
    let (status, _, body) = post(&node, "/api/show", r#"{"name":"llama3.2:latest"}"#).await;
    assert_eq!(status, 200);
    assert_eq!(body["capabilities"], json!(["completion"]));
    assert_eq!(
        post(&node, "/api/show", "{}").await.2,
        error("model is required")
    );
    let (status, _, body) = post(&node, "/api/show", r#"{"model":"ghost"}"#).await;
    assert_eq!((status, body), (404, error("model 'ghost' not found")));
}

#[tokio::test]
async fn embed_returns_ordered_unit_vectors() {
    let node = node().await;
    let (status, content_type, body) = post(
        &node,
        "/api/embed",
        r#"{"model":"mxbai-embed-large","input":["alpha","beta","alpha"]}"#,
    )
    .await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/json; charset=utf-8")
    );
    assert_eq!(body["model"], "mxbai-embed-large");
    let vectors = body["embeddings"].as_array().unwrap();
    assert_eq!(vectors.len(), 3);
    assert_eq!(vectors[0], vectors[2], "same input, same vector");
    assert_ne!(vectors[0], vectors[1]);
    for v in vectors {
        let v = v.as_array().unwrap();
        assert_eq!(v.len(), 1024);
        let norm: f64 = v
            .iter()
            .map(|x| x.as_f64().unwrap().powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
    assert_eq!(
        body["prompt_eval_count"], 5,
        "alpha 2 + beta 1 + alpha 2 tokens"
    );
    assert!(body["total_duration"].as_u64().unwrap() > 0);
    assert!(body["load_duration"].as_u64().unwrap() > 0);
    let (_, _, single) = post(
        &node,
        "/api/embed",
        r#"{"model":"nomic-embed-text:latest","input":"alpha"}"#,
    )
    .await;
    assert_eq!(single["embeddings"][0].as_array().unwrap().len(), 768);
}

#[tokio::test]
async fn embed_error_cases_match_ollama() {
    let node = node().await;
    let cases: &[(&str, u16, Value)] = &[
        ("", 400, error("missing request body")),
        (
            r#"{"model":"all-minilm","input":[]}"#,
            200,
            json!({ "model": "all-minilm", "embeddings": [] }),
        ),
        (
            r#"{"model":"all-minilm","input":""}"#,
            200,
            json!({ "model": "all-minilm", "embeddings": [] }),
        ),
        (
            r#"{"model":"all-minilm"}"#,
            200,
            json!({ "model": "all-minilm", "embeddings": [] }),
        ),
        (
            r#"{"model":"all-minilm","input":5}"#,
            400,
            error("invalid input type"),
        ),
        (
            r#"{"model":"all-minilm","input":["a",5]}"#,
            400,
            error("invalid input type"),
        ),
        (r#"{"input":"x"}"#, 404, error("model '' not found")),
        (
            r#"{"model":"ghost","input":"x"}"#,
            404,
            error("model \"ghost\" not found, try pulling it first"),
        ),
        (
            r#"{"model":"llama3.2","input":"x"}"#,
            501,
            error("this model does not support embeddings"),
        ),
    ];
    for (body, want_status, want_body) in cases {
        let (status, _, got) = post(&node, "/api/embed", body).await;
        let got = if *want_status == 200 {
            json!({ "model": got["model"], "embeddings": got["embeddings"] })
        } else {
            got
        };
        assert_eq!((status, &got), (*want_status, want_body), "body {body:?}");
    }
    let (status, _, got) = post(&node, "/api/embed", "{not json").await;
    assert_eq!(status, 400);
    assert!(
        got["error"]
            .as_str()
            .unwrap()
            .contains("key must be a string"),
        "{got}"
    );
    let (status, _, got) = post(&node, "/api/embed", r#"{"model":7,"input":"x"}"#).await;
    assert_eq!(
        (status, got),
        (
            400,
            error(
                "json: cannot unmarshal number into Go struct field EmbedRequest.model of type string"
            )
        )
    );
}

#[tokio::test]
async fn oversized_body_gets_413() {
    let node = MockNode::spawn(NodeConfig {
        max_body_bytes: 1024,
        ..NodeConfig::with_latency(Duration::ZERO)
    })
    .await
    .unwrap();
    let big = format!(r#"{{"model":"all-minilm","input":"{}"}}"#, "x".repeat(4096));
    let (status, _, body) = post(&node, "/api/embed", &big).await;
    assert_eq!((status, body), (413, error("request body too large")));
}

#[tokio::test]
async fn legacy_embeddings_endpoint() {
    let node = node().await;
    let (status, _, body) = post(
        &node,
        "/api/embeddings",
        r#"{"model":"all-minilm","prompt":"hello"}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["embedding"].as_array().unwrap().len(), 384);
    assert_eq!(
        post(
            &node,
            "/api/embeddings",
            r#"{"model":"all-minilm","prompt":""}"#
        )
        .await
        .2,
        json!({ "embedding": [] })
    );
    assert_eq!(
        post(&node, "/api/embeddings", r#"{"prompt":"x"}"#).await.2,
        error("model is required")
    );
    assert_eq!(
        post(&node, "/api/embeddings", "").await.2,
        error("missing request body")
    );
}

fn assert_final_metrics(line: &Value) {
    assert_eq!(line["done"], true);
    assert_eq!(line["done_reason"], "stop");
    for field in [
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    ] {
        assert!(
            line[field].as_u64().unwrap_or(0) > 0,
            "{field} must be non-zero in {line}"
        );
    }
}

#[tokio::test]
async fn generate_non_streaming_and_errors() {
    let node = node().await;
    let (status, _, body) = post(
        &node,
        "/api/generate",
        r#"{"model":"llama3.2","prompt":"why is the sky blue","stream":false,"options":{"num_predict":5}}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_final_metrics(&body);
    assert_eq!(body["eval_count"], 5);
    assert_eq!(body["response"].as_str().unwrap().split(' ').count(), 5);
    let (_, _, load) = post(&node, "/api/generate", r#"{"model":"llama3.2"}"#).await;
    assert_eq!(
        (load["done"].clone(), load["done_reason"].clone()),
        (json!(true), json!("load"))
    );
    let (_, _, unload) = post(
        &node,
        "/api/generate",
        r#"{"model":"llama3.2","keep_alive":0}"#,
    )
    .await;
    assert_eq!(unload["done_reason"], "unload");
    assert_eq!(
        post(&node, "/api/generate", r#"{"prompt":"x"}"#).await.2,
        error("model '' not found")
    );
    assert_eq!(
        post(&node, "/api/generate", r#"{"model":"ghost","prompt":"x"}"#)
            .await
            .2,
        error("model 'ghost' not found")
    );
    let (status, _, body) = post(
        &node,
        "/api/generate",
        r#"{"model":"all-minilm","prompt":"x"}"#,
    )
    .await;
    assert_eq!(
        (status, body),
        (
            400,
            error("\"all-minilm:latest\" does not support generate")
        )
    );
}

#[tokio::test]
async fn generate_streams_one_complete_line_per_chunk() {
    use futures_util::StreamExt as _;
    let node = MockNode::spawn(NodeConfig {
        latency: mock_ollama::LatencyModel {
            base: Duration::from_millis(1),
            per_token: Duration::from_millis(1),
            prompt_rate: None,
            jitter: mock_ollama::Jitter::Fixed,
        },
        ..NodeConfig::default()
    })
    .await
    .unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/api/generate", node.url()))
        .json(&json!({ "model": "llama3.2", "prompt": "count", "options": { "num_predict": 4 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let mut chunks = response.bytes_stream();
    let mut lines = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.unwrap();
        let text = std::str::from_utf8(&chunk).unwrap();
        assert!(
            text.ends_with('\n') && text.matches('\n').count() == 1,
            "chunk {text:?} is not one line"
        );
        lines.push(serde_json::from_str::<Value>(text.trim_end()).unwrap());
    }
    assert_eq!(lines.len(), 5, "4 tokens and the final line");
    assert!(
        lines[..4]
            .iter()
            .all(|l| l["done"] == false && l["response"].is_string())
    );
    assert_final_metrics(&lines[4]);
    assert_eq!(lines[4]["response"], "");
}

#[tokio::test]
async fn chat_streaming_default_and_errors() {
    let node = node().await;
    let (status, content_type, body) = post(
        &node,
        "/api/chat",
        r#"{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/x-ndjson")
    );
    let text = body.as_str().expect("ndjson is not one JSON value");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().all(|l| l["message"]["role"] == "assistant"));
    assert_final_metrics(lines.last().unwrap());
    let (_, _, single) = post(
        &node,
        "/api/chat",
        r#"{"model":"llama3.2","stream":false,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_final_metrics(&single);
    assert!(!single["message"]["content"].as_str().unwrap().is_empty());
    let (_, _, load) = post(&node, "/api/chat", r#"{"model":"llama3.2","messages":[]}"#).await;
    assert_eq!(load["done_reason"], "load");
    assert_eq!(
        post(&node, "/api/chat", r#"{"messages":[]}"#).await.2,
        error("model is required")
    );
    let (status, _, body) = post(&node, "/api/chat", r#"{"model":"ghost","messages":[]}"#).await;
    assert_eq!((status, body), (404, error("model 'ghost' not found")));
    let (status, _, body) = post(
        &node,
        "/api/chat",
        r#"{"model":"mxbai-embed-large","messages":[]}"#,
    )
    .await;
    assert_eq!(
        (status, body),
        (
            400,
            error("\"mxbai-embed-large:latest\" does not support chat")
        )
    );
}

#[tokio::test]
async fn metrics_endpoint_agrees_with_counters() {
    let node = node().await;
    for _ in 0..3 {
        post(&node, "/api/embed", r#"{"model":"all-minilm","input":"x"}"#).await;
    }
    post(&node, "/api/embed", r#"{"model":"ghost","input":"x"}"#).await;
    let counters = node.counters();
    assert_eq!(counters.succeeded("/api/embed"), 3);
    assert_eq!(counters.count("/api/embed", |s| s == "404"), 1);
    assert_eq!(counters.items_served, 3);
    let text = reqwest::get(format!("{}/metrics", node.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("mock_ollama_requests_total{endpoint=\"/api/embed\",status=\"200\"} 3"),
        "{text}"
    );
    assert!(text.contains("mock_ollama_requests_total{endpoint=\"/api/embed\",status=\"404\"} 1"));
    assert!(text.contains("mock_ollama_service_seconds_count 3"));
}

/// Prompt evaluation has its own rate when one is set: 100 prompt tokens at 4,000 tokens/s
/// report 25 ms of prompt evaluation where `per_token` (1 ms) would charge 100 ms, and
/// generation keeps `per_token`. The reported durations are the drawn nominal ones (fixed
/// jitter, speed 1), so no clock is read to check them.
#[tokio::test]
async fn the_prompt_rate_prices_prompt_tokens_and_leaves_generation_alone() {
    let node = MockNode::spawn(NodeConfig {
        latency: mock_ollama::LatencyModel {
            base: Duration::ZERO,
            per_token: Duration::from_millis(1),
            prompt_rate: Some(4_000.0),
            jitter: mock_ollama::Jitter::Fixed,
        },
        ..NodeConfig::default()
    })
    .await
    .unwrap();
    // 400 characters: 100 tokens at Ollama's four characters a token.
    let body = json!({ "model": "llama3.2", "prompt": "word".repeat(100), "stream": false,
        "options": { "num_predict": 2 } })
    .to_string();
    let durations = |answer: &Value| {
        (
            answer["prompt_eval_count"].as_u64().unwrap(),
            answer["prompt_eval_duration"].as_u64().unwrap(),
            answer["eval_duration"].as_u64().unwrap(),
        )
    };
    let (status, _, answer) = post(&node, "/api/generate", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(durations(&answer), (100, 25_000_000, 2_000_000));
    // `0` on the control API puts prompt tokens back on `per_token`: the broken twin of the
    // rate, which a check that never read the rate would not tell apart.
    let back = mock_ollama::SettingsPatch {
        prompt_rate: Some(0.0),
        ..Default::default()
    };
    node.update(&back).unwrap();
    let (_, _, answer) = post(&node, "/api/generate", &body).await;
    assert_eq!(durations(&answer), (100, 100_000_000, 2_000_000));
    for bad in [-1.0, f64::NAN, f64::INFINITY] {
        let patch = mock_ollama::SettingsPatch {
            prompt_rate: Some(bad),
            ..Default::default()
        };
        assert!(
            node.update(&patch).is_err(),
            "{bad} tokens/s must be refused"
        );
    }
}

/// `/api/ps` shows a request's keep-alive: "-1m" (negative: forever; a bare "-1" is a 400, as in
/// Go) puts `expires_at` decades away, where the node's default would put it within minutes; a
/// later embed with "1h" moves it back to within the hour.
#[tokio::test]
async fn ps_shows_the_keep_alive_a_request_gave_its_model() {
    let node = node().await;
    let remaining = || async {
        let ps: Value = get_json(&node, "/api/ps").await;
        let at = ps["models"][0]["expires_at"].as_str().unwrap().to_owned();
        let at = humantime::parse_rfc3339(&at).unwrap();
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default()
    };
    let embed = |keep_alive: &str| {
        format!(r#"{{"model":"all-minilm","input":"x","keep_alive":"{keep_alive}"}}"#)
    };
    let (status, _, _) = post(&node, "/api/embed", &embed("-1m")).await;
    assert_eq!(status, 200);
    assert!(
        remaining().await > Duration::from_secs(86_400 * 365 * 20),
        "forever"
    );
    let (status, _, _) = post(&node, "/api/embed", &embed("1h")).await;
    assert_eq!(status, 200);
    let left = remaining().await;
    assert!(
        left > Duration::from_secs(3_000) && left <= Duration::from_secs(3_600),
        "{left:?}"
    );
}
