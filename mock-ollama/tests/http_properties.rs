//! Property test over the HTTP API (native and OpenAI-compatible routes): whatever body a client sends to any route, the node answers
//! with a status from Ollama's documented set, never panics, counts the request exactly once, and
//! stays within a memory bound.
//!
//! Bodies are drawn from four families: random bytes, random JSON values (deep, long strings,
//! huge numbers), objects with the routes' own keys holding values of random types, and valid
//! requests with one field replaced. Sizes and case counts are capped so the suite stays within
//! a few seconds in a debug build. A binary of its own: the panic hook is process-wide.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mock_ollama::{MockNode, NodeConfig};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

static PANICS: AtomicU64 = AtomicU64::new(0);

const ROUTES: [&str; 8] = [
    "/api/embed",
    "/api/embeddings",
    "/api/generate",
    "/api/chat",
    "/api/show",
    "/v1/embeddings",
    "/v1/chat/completions",
    "/v1/completions",
];

/// Statuses Ollama answers these routes with (docs/api/errors and `server/routes.go`), plus 413
/// for the mock's body limit.
const DOCUMENTED: [u16; 8] = [200, 400, 404, 405, 413, 500, 501, 503];

const KEYS: [&str; 17] = [
    "model",
    "input",
    "prompt",
    "messages",
    "stream",
    "options",
    "keep_alive",
    "dimensions",
    "truncate",
    "name",
    "system",
    "context",
    "role",
    "content",
    "max_tokens",
    "stream_options",
    "encoding_format",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        Just(json!(u64::MAX)),
        Just(json!(1e300)),
        ".{0,64}".prop_map(Value::String),
        Just(Value::String("x".repeat(10_000))),
        prop::sample::select(vec![
            "all-minilm",
            "llama3.2",
            "ghost",
            "",
            "5m",
            "-1",
            "zzz"
        ])
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn keyed_object() -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(KEYS.to_vec()), json_value()), 0..6).prop_map(
        |pairs| {
            let map: Map<String, Value> =
                pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            Value::Object(map)
        },
    )
}

fn valid_with_one_field_replaced() -> impl Strategy<Value = Value> {
    let valid = prop::sample::select(vec![
        json!({"model": "all-minilm", "input": ["a", "b"]}),
        json!({"model": "all-minilm", "prompt": "a"}),
        json!({"model": "llama3.2", "prompt": "hi", "stream": false, "options": {"num_predict": 3}}),
        json!({"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": false}),
        json!({"model": "llama3.2"}),
        json!({"model": "all-minilm", "input": "a", "encoding_format": "base64", "dimensions": 4}),
        json!({"model": "llama3.2", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], "max_tokens": 3, "stream": true, "stream_options": {"include_usage": true}}),
    ]);
    (valid, prop::sample::select(KEYS.to_vec()), json_value()).prop_map(|(mut v, key, value)| {
        v[key] = value;
        v
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        keyed_object().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        valid_with_one_field_replaced().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
    ]
}

fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[test]
fn any_body_on_any_route_gets_a_documented_answer() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let node = runtime
        .block_on(MockNode::spawn(NodeConfig::with_latency(Duration::ZERO)))
        .expect("node starts");
    let client = reqwest::Client::new();
    let sent = AtomicU64::new(0);
    let config = ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(route in prop::sample::select(ROUTES.to_vec()), body in body())| {
        let url = format!("{}{route}", node.url());
        let (status, text) = runtime.block_on(async {
            let response = client.post(&url).body(body.clone()).send().await.expect("an answer");
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        });
        sent.fetch_add(1, Ordering::Relaxed);
        prop_assert!(DOCUMENTED.contains(&status), "{route} answered {status}: {text:.300}");
        if status != 200 {
            let error: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            // Native routes answer {"error": "..."}; the OpenAI ones {"error": {"message": ...}}.
            let message = if route.starts_with("/v1/") { &error["error"]["message"] } else { &error["error"] };
            prop_assert!(message.is_string(), "{route} {status} without Ollama's error shape: {text:.300}");
        }
    });
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "no handler may panic");
    let counted: u64 = node.counters().requests.values().sum();
    assert_eq!(
        counted,
        sent.into_inner(),
        "every request counted exactly once"
    );
    let peak = peak_rss_bytes().unwrap_or(0);
    assert!(peak < 512 << 20, "peak resident memory {} MiB", peak >> 20);
}
