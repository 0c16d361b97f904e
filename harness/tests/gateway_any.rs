//! `harness gateway` against gateways unlike nginx: one that speaks only OpenAI's dialect and
//! wants a key and a per-request caller header (as LLM proxies do), and one whose own ceiling is
//! far below the nodes' capacity (as a single-process proxy's is). The first must be driven
//! without a patch and refuse a wrong key at readiness; the second must be called gateway-bound,
//! not graded on its routing.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use harness::engine::Headers;
use harness::gateway::{self, Api, CellKind, Nodes, Readiness, Settings};
use mock_ollama::{MockCluster, NodeConfig};

/// The registered cell kind named `name`.
fn cell(name: &str) -> CellKind {
    gateway::cells::named(name).expect("a registered cell")
}

const KEY: &str = "Bearer sk-test-key-123";

struct Proxy {
    nodes: Vec<String>,
    next: AtomicU64,
    client: reqwest::Client,
    /// Held for this long by each request before it is forwarded: one request at a time, as a
    /// proxy whose single process spends that much CPU on each.
    serial_cost: Option<Duration>,
    serial: tokio::sync::Mutex<()>,
    /// Requests refused for a wrong key or caller header.
    refused: AtomicU64,
}

impl Proxy {
    /// The key must match, and `X-Caller` must be `c-` and the request's id (the harness's
    /// `{rid}` expanded per request).
    fn authorised(&self, headers: &HeaderMap) -> bool {
        let key = headers.get("authorization").and_then(|v| v.to_str().ok());
        let id = headers.get("x-request-id").and_then(|v| v.to_str().ok());
        let caller = headers.get("x-caller").and_then(|v| v.to_str().ok());
        key == Some(KEY) && id.is_some_and(|id| caller == Some(&format!("c-{id}")))
    }
}

async fn models(State(p): State<Arc<Proxy>>, headers: HeaderMap) -> Response {
    let key = headers.get("authorization").and_then(|v| v.to_str().ok());
    if key != Some(KEY) {
        p.refused.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::UNAUTHORIZED, "invalid api key").into_response();
    }
    (StatusCode::OK, r#"{"object":"list","data":[]}"#).into_response()
}

async fn embeddings(State(p): State<Arc<Proxy>>, headers: HeaderMap, body: Bytes) -> Response {
    if !p.authorised(&headers) {
        p.refused.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::UNAUTHORIZED, "invalid api key").into_response();
    }
    if let Some(cost) = p.serial_cost {
        let _one_at_a_time = p.serial.lock().await;
        tokio::time::sleep(cost).await;
    }
    let k = p.next.fetch_add(1, Ordering::Relaxed) as usize;
    let url = format!("{}/v1/embeddings", p.nodes[k % p.nodes.len()]);
    let answer = p
        .client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    match answer {
        Ok(r) => {
            let status = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::OK);
            match r.bytes().await {
                Ok(bytes) => {
                    (status, [("content-type", "application/json")], bytes).into_response()
                }
                Err(_) => StatusCode::BAD_GATEWAY.into_response(),
            }
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// Starts the proxy on its own runtime thread: only `/v1/models` and `/v1/embeddings` (no
/// `/api/version`). Returns its URL and state.
fn start_proxy(nodes: Vec<String>, serial_cost: Option<Duration>) -> (String, Arc<Proxy>) {
    let proxy = Arc::new(Proxy {
        nodes,
        next: AtomicU64::new(0),
        client: reqwest::Client::new(),
        serial_cost,
        serial: tokio::sync::Mutex::new(()),
        refused: AtomicU64::new(0),
    });
    let state = Arc::clone(&proxy);
    let url = common::serve(move || {
        Router::new()
            .route("/v1/models", get(models))
            .route("/v1/embeddings", post(embeddings))
            .with_state(state)
    });
    (url, proxy)
}

fn settings(target: String, headers: &[&str], cells: Vec<CellKind>) -> Settings {
    Settings {
        target,
        nodes: 2,
        port: 0,
        api: Api::Openai,
        label: "any".into(),
        workers: 4,
        requests: 40,
        service: Duration::from_millis(5),
        slots: 1,
        speeds: Vec::new(),
        error_rates: Vec::new(),
        repeats: 1,
        ready_timeout: Duration::from_secs(10),
        cells,
        phase: Duration::from_millis(300),
        repeat_inputs: false,
        stall: Duration::from_millis(200),
        headers: Headers::parse(headers).expect("headers"),
        ready: Readiness::for_api(Api::Openai),
        workload: Default::default(),
        system: Default::default(),
    }
}

fn nodes() -> MockCluster {
    MockCluster::start(vec![NodeConfig::with_latency(Duration::from_millis(5)); 2]).expect("nodes")
}

#[test]
fn an_openai_only_gateway_with_a_key_is_driven_by_flags_alone() {
    let nodes = nodes();
    let (target, proxy) = start_proxy(nodes.urls(), None);
    let settings = settings(
        target,
        &[&format!("Authorization: {KEY}"), "X-Caller: c-{rid}"],
        vec![cell("distribution")],
    );
    let result = gateway::measure(&settings, &Nodes::Embedded(&nodes)).expect("measured");
    let cell = result
        .cells
        .iter()
        .find(|c| c.name == "distribution")
        .expect("cell");
    let audit = cell.audit.clone().expect("audited");
    assert!(audit.clean(), "{audit:?}");
    assert_eq!(audit.served_once, 40, "{audit:?}");
    assert_eq!(
        proxy.refused.load(Ordering::Relaxed),
        0,
        "every request carried the key and its own caller id"
    );
    // The result names the headers and keeps no value.
    let params = result.params.to_string();
    assert!(params.contains("authorization: <redacted>"), "{params}");
    assert!(params.contains("x-caller: <redacted>"), "{params}");
    let whole = serde_json::to_string(&result).expect("json");
    assert!(
        !whole.contains("sk-test-key-123"),
        "the key is nowhere in the result"
    );
}

#[test]
fn a_wrong_key_is_a_clear_failure_at_readiness() {
    let nodes = nodes();
    let (target, proxy) = start_proxy(nodes.urls(), None);
    let settings = settings(
        target,
        &["Authorization: Bearer sk-wrong-key-456"],
        vec![cell("distribution")],
    );
    let error = gateway::measure(&settings, &Nodes::Embedded(&nodes))
        .expect_err("a wrong key fails")
        .to_string();
    assert!(error.contains("refused GET /v1/models"), "{error}");
    assert!(error.contains("401"), "{error}");
    assert!(error.contains("authorization: <redacted>"), "{error}");
    assert!(!error.contains("sk-wrong-key-456"), "{error}");
    // Refused once, at readiness: no run of errors, nothing sent to the nodes.
    assert_eq!(proxy.refused.load(Ordering::Relaxed), 1);
    assert!(
        nodes
            .nodes()
            .iter()
            .all(|n| n.served(0, 10).entries.is_empty())
    );
}

#[test]
fn without_its_ready_path_an_openai_only_gateway_is_not_ready() {
    let nodes = nodes();
    let (target, _proxy) = start_proxy(nodes.urls(), None);
    let settings = Settings {
        ready: Readiness::for_api(Api::Ollama),
        ready_timeout: Duration::from_millis(300),
        ..settings(
            target,
            &[&format!("Authorization: {KEY}")],
            vec![cell("distribution")],
        )
    };
    let error = gateway::measure(&settings, &Nodes::Embedded(&nodes))
        .expect_err("/api/version is not served")
        .to_string();
    assert!(
        error.contains("did not answer GET /api/version with 2xx") && error.contains("404"),
        "{error}"
    );
    assert!(
        error.contains("--ready-path"),
        "the error names the flag: {error}"
    );
}

/// A proxy that handles one request at a time for 10 ms passes about 100 req/s whatever the
/// nodes' 400: its cells run at its own ceiling, and the verdicts say so instead of grading
/// the routing; the open-loop levels are fractions of that ceiling.
#[test]
fn a_gateway_at_its_own_ceiling_is_called_gateway_bound() {
    let nodes = nodes();
    let (target, _proxy) = start_proxy(nodes.urls(), Some(Duration::from_millis(10)));
    let settings = settings(
        target,
        &[&format!("Authorization: {KEY}"), "X-Caller: c-{rid}"],
        vec![cell("distribution"), cell("open-loop")],
    );
    let result = gateway::measure(&settings, &Nodes::Embedded(&nodes)).expect("measured");
    let ideal: f64 = result.capacity.iter().sum();
    let ceiling = result.ceiling.clone().expect("measured").median;
    assert!(ceiling < 0.5 * ideal, "ceiling {ceiling} vs ideal {ideal}");
    let verdicts = result.verdicts.join("\n");
    assert!(
        verdicts.contains("distribution:") && verdicts.contains("gateway-bound"),
        "{verdicts}"
    );
    let open = result
        .cells
        .iter()
        .find_map(|c| c.open_loop.clone())
        .expect("open loop");
    assert_eq!(open.base, Some(ceiling), "levels from the ceiling");
    assert!(
        verdicts.contains("ceiling (the capacity ideal"),
        "{verdicts}"
    );
}

/// The same cells through the proxy without its serial cost: the ceiling is above the ideal
/// and nothing is called gateway-bound (the twin that shows the check can pass).
#[test]
fn a_gateway_above_the_ideal_is_graded_on_its_routing() {
    let nodes = nodes();
    let (target, _proxy) = start_proxy(nodes.urls(), None);
    let settings = settings(
        target,
        &[&format!("Authorization: {KEY}"), "X-Caller: c-{rid}"],
        vec![cell("distribution")],
    );
    let result = gateway::measure(&settings, &Nodes::Embedded(&nodes)).expect("measured");
    let verdicts = result.verdicts.join("\n");
    assert!(!verdicts.contains("gateway-bound"), "{verdicts}");
    assert!(result.ceiling.is_some());
    // Graded on real traffic: every request went through and was served once.
    let audit = result
        .cells
        .iter()
        .find_map(|c| c.audit.clone())
        .expect("audited");
    assert_eq!(audit.served_once, 40, "{audit:?}");
}
