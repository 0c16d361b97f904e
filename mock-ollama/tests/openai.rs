//! The OpenAI-compatible routes with a real OpenAI client (`async-openai`) and over raw HTTP:
//! shapes, streams, usage, errors, and that they run on the native request path (counters,
//! faults, resets).

use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionRequestUserMessage, ChatCompletionStreamOptions, CreateChatCompletionRequest,
};
use async_openai::types::completions::CreateCompletionRequest;
use async_openai::types::embeddings::CreateEmbeddingRequest;
use base64::Engine;
use futures_util::StreamExt;
use mock_ollama::{FAULT_HEADER, MockNode, NodeConfig};
use serde_json::{Value, json};

async fn node() -> MockNode {
    MockNode::spawn(NodeConfig::with_latency(Duration::ZERO))
        .await
        .expect("node starts")
}

fn client(node: &MockNode) -> Client<OpenAIConfig> {
    Client::with_config(
        OpenAIConfig::new()
            .with_api_base(format!("{}/v1", node.url()))
            .with_api_key("unused"),
    )
}

async fn post(node: &MockNode, path: &str, body: Value) -> (u16, String, String) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", node.url()))
        .json(&body)
        .send()
        .await
        .expect("request sent");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.expect("body"))
}

fn openai_error(status: u16, kind: &str, message: &str) -> (u16, Value) {
    (
        status,
        json!({ "error": { "message": message, "type": kind, "param": null, "code": null } }),
    )
}

async fn error_of(node: &MockNode, path: &str, body: Value) -> (u16, Value) {
    let (status, content_type, text) = post(node, path, body).await;
    assert_eq!(content_type, "application/json", "{path}: {text}");
    (
        status,
        serde_json::from_str(&text).expect("an error body is JSON"),
    )
}

#[tokio::test]
async fn models_list_and_retrieve() {
    let node = node().await;
    let client = client(&node);
    let list = client.models().list().await.expect("list");
    let ids: Vec<&str> = list.data.iter().map(|m| m.id.as_str()).collect();
    assert!(ids.contains(&"all-minilm:latest"), "{ids:?}");
    assert!(
        list.data
            .iter()
            .all(|m| m.owned_by == "library" && m.object == "model")
    );
    let one = client
        .models()
        .retrieve("llama3.2")
        .await
        .expect("retrieve");
    assert_eq!(one.id, "llama3.2");
    let raw = reqwest::get(format!("{}/v1/models/nope", node.url()))
        .await
        .unwrap();
    assert_eq!(raw.status(), 404);
    let body: Value = raw.json().await.unwrap();
    assert_eq!(
        (404, body),
        openai_error(404, "api_error", "model 'nope' not found")
    );
}

#[tokio::test]
async fn embeddings_float_base64_dimensions_and_usage() {
    let node = node().await;
    let request: CreateEmbeddingRequest = serde_json::from_value(json!({
        "model": "all-minilm", "input": ["one", "two [rid:x]"]
    }))
    .unwrap();
    let answer = client(&node)
        .embeddings()
        .create(request)
        .await
        .expect("embeddings");
    assert_eq!(answer.data.len(), 2);
    assert_eq!(answer.data[1].index, 1);
    assert_eq!(answer.data[0].embedding.len(), 384);
    assert!(answer.usage.prompt_tokens > 0);
    assert_eq!(answer.usage.prompt_tokens, answer.usage.total_tokens);

    let (status, _, text) = post(
        &node,
        "/v1/embeddings",
        json!({ "model": "all-minilm", "input": "one", "encoding_format": "BASE64", "dimensions": 8 }),
    )
    .await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_str(&text).unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body["data"][0]["embedding"].as_str().expect("base64 text"))
        .unwrap();
    assert_eq!(bytes.len(), 8 * 4, "8 little-endian f32");
    let norm: f32 = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]).powi(2))
        .sum();
    assert!(
        (norm - 1.0).abs() < 1e-3,
        "renormalised after the cut: {norm}"
    );
    // The same vector as the native route gives for the same text and dimensions.
    let (_, _, native) = post(
        &node,
        "/api/embed",
        json!({ "model": "all-minilm", "input": "one", "dimensions": 8 }),
    )
    .await;
    let native: Value = serde_json::from_str(&native).unwrap();
    let first = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    assert!((first as f64 - native["embeddings"][0][0].as_f64().unwrap()).abs() < 1e-6);
}

#[tokio::test]
async fn embedding_errors_have_ollamas_shape_and_status() {
    let node = node().await;
    let cases = [
        (
            json!({ "model": "all-minilm" }),
            openai_error(400, "invalid_request_error", "invalid input"),
        ),
        (
            json!({ "model": "all-minilm", "input": [] }),
            openai_error(400, "invalid_request_error", "invalid input"),
        ),
        (
            json!({ "model": "all-minilm", "input": "x", "encoding_format": "hex" }),
            openai_error(
                400,
                "invalid_request_error",
                "Invalid value for 'encoding_format' = hex. Supported values: ['float', 'base64'].",
            ),
        ),
        (
            json!({ "model": "nope", "input": "x" }),
            openai_error(
                404,
                "api_error",
                "model \"nope\" not found, try pulling it first",
            ),
        ),
        (
            json!({ "model": "all-minilm", "input": [1, 2] }),
            openai_error(400, "api_error", "invalid input type"),
        ),
        (
            json!({ "model": 5, "input": "x" }),
            openai_error(
                400,
                "invalid_request_error",
                "json: cannot unmarshal number into Go struct field EmbedRequest.model of type string",
            ),
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(
            error_of(&node, "/v1/embeddings", body.clone()).await,
            expected,
            "{body}"
        );
    }
}

fn chat_request(stream: bool, usage: bool) -> CreateChatCompletionRequest {
    let mut request = CreateChatCompletionRequest {
        model: "llama3.2".into(),
        messages: vec![ChatCompletionRequestUserMessage::from("say hi").into()],
        max_completion_tokens: None,
        ..Default::default()
    };
    #[allow(deprecated)]
    {
        request.max_tokens = Some(5);
    }
    if stream {
        request.stream = Some(true);
        request.stream_options = Some(ChatCompletionStreamOptions {
            include_usage: Some(usage),
            ..Default::default()
        });
    }
    request
}

#[tokio::test]
async fn chat_completion_non_streamed() {
    let node = node().await;
    let answer = client(&node)
        .chat()
        .create(chat_request(false, false))
        .await
        .expect("chat");
    assert!(answer.id.starts_with("chatcmpl-"), "{}", answer.id);
    assert_eq!(answer.object, "chat.completion");
    #[allow(deprecated)]
    let fingerprint = answer.system_fingerprint.clone();
    assert_eq!(fingerprint.as_deref(), Some("fp_ollama"));
    assert_eq!(answer.choices.len(), 1);
    assert!(
        !answer.choices[0]
            .message
            .content
            .as_deref()
            .unwrap_or("")
            .is_empty()
    );
    let usage = answer.usage.expect("usage");
    assert_eq!(usage.completion_tokens, 5, "max_tokens became num_predict");
    assert_eq!(usage.total_tokens, usage.prompt_tokens + 5);
}

#[tokio::test]
async fn chat_completion_streamed_with_usage() {
    let node = node().await;
    let mut stream = client(&node)
        .chat()
        .create_stream(chat_request(true, true))
        .await
        .expect("stream");
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.next().await {
        chunks.push(chunk.expect("chunk"));
    }
    let ids: std::collections::HashSet<_> = chunks.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids.len(), 1, "one id per request");
    let (last, body) = chunks.split_last().expect("chunks");
    assert!(last.choices.is_empty(), "the usage chunk has no choices");
    assert_eq!(last.usage.as_ref().map(|u| u.completion_tokens), Some(5));
    let finish: Vec<_> = body
        .iter()
        .map(|c| c.choices[0].finish_reason.is_some())
        .collect();
    assert_eq!(finish.last(), Some(&true));
    assert!(
        finish[..finish.len() - 1].iter().all(|f| !f),
        "finish only on the last"
    );
    let text: String = body
        .iter()
        .filter_map(|c| c.choices[0].delta.content.clone())
        .collect();
    assert!(!text.is_empty());
}

#[tokio::test]
async fn streams_frame_as_server_sent_events() {
    let node = node().await;
    let body = json!({
        "model": "llama3.2", "prompt": "hello", "max_tokens": 3, "stream": true,
        "stream_options": { "include_usage": true },
    });
    let (status, content_type, text) = post(&node, "/v1/completions", body).await;
    assert_eq!((status, content_type.as_str()), (200, "text/event-stream"));
    let events: Vec<&str> = text.split_terminator("\n\n").collect();
    assert_eq!(events.last(), Some(&"data: [DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").expect("data line")).unwrap())
        .collect();
    // 3 tokens, the done line, and the usage chunk.
    assert_eq!(chunks.len(), 5, "{text}");
    for chunk in &chunks[..4] {
        assert_eq!(chunk["object"], "text_completion");
        assert_eq!(
            chunk["usage"]["total_tokens"], 0,
            "completions put zero usage on each chunk"
        );
    }
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[4]["choices"], json!([]));
    assert_eq!(chunks[4]["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn completion_with_a_real_client_and_chat_errors() {
    let node = node().await;
    let request: CreateCompletionRequest =
        serde_json::from_value(json!({ "model": "llama3.2", "prompt": "hi", "max_tokens": 2 }))
            .unwrap();
    let answer = client(&node)
        .completions()
        .create(request)
        .await
        .expect("completion");
    assert!(answer.id.starts_with("cmpl-"));
    assert_eq!(answer.object, "text_completion");
    assert_eq!(answer.usage.map(|u| u.completion_tokens), Some(2));

    let cases = [
        (
            "/v1/chat/completions",
            json!({ "model": "llama3.2", "messages": [] }),
            openai_error(400, "invalid_request_error", "[] is too short - 'messages'"),
        ),
        (
            "/v1/chat/completions",
            json!({ "model": "llama3.2", "messages": [{ "role": "user", "content": 1.5 }] }),
            openai_error(
                400,
                "invalid_request_error",
                "invalid message content type: float64",
            ),
        ),
        (
            "/v1/chat/completions",
            json!({ "model": "all-minilm", "messages": [{ "role": "user", "content": "x" }] }),
            openai_error(
                400,
                "api_error",
                "\"all-minilm:latest\" does not support chat",
            ),
        ),
        (
            "/v1/completions",
            json!({ "model": "llama3.2", "prompt": ["a"] }),
            openai_error(
                400,
                "invalid_request_error",
                "json: cannot unmarshal array into Go struct field CompletionRequest.prompt of type string",
            ),
        ),
    ];
    for (path, body, expected) in cases {
        assert_eq!(
            error_of(&node, path, body.clone()).await,
            expected,
            "{path} {body}"
        );
    }
}

#[tokio::test]
async fn openai_routes_share_the_native_path_faults_and_counters() {
    let node = node().await;
    let http = reqwest::Client::new();
    let busy = http
        .post(format!("{}/v1/embeddings", node.url()))
        .header(FAULT_HEADER, "error")
        .json(&json!({ "model": "all-minilm", "input": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(busy.status(), 500);
    let body: Value = busy.json().await.unwrap();
    assert_eq!(body["error"]["type"], "api_error");
    let reset = http
        .post(format!("{}/v1/chat/completions", node.url()))
        .header(FAULT_HEADER, "reset")
        .json(&json!({ "model": "llama3.2", "messages": [{ "role": "user", "content": "x" }] }))
        .send()
        .await;
    let broke = match reset {
        Err(_) => true,
        Ok(response) => response.bytes().await.is_err(),
    };
    assert!(
        broke,
        "an injected reset breaks the connection on the OpenAI route too"
    );
    let (status, _, _) = post(
        &node,
        "/v1/embeddings",
        json!({ "model": "all-minilm", "input": "y" }),
    )
    .await;
    assert_eq!(status, 200);
    let counters = node.counters();
    assert_eq!(counters.succeeded("/v1/embeddings"), 1);
    assert_eq!(counters.count("/v1/embeddings", |s| s == "500"), 1);
    assert_eq!(counters.count("/v1/chat/completions", |s| s == "reset"), 1);
    assert_eq!(
        counters.items_served, 1,
        "one item served, by the native scheduler"
    );
}
