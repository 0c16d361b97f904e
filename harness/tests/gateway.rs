//! `harness gateway`'s audit against a small gateway written here, with switchable behaviours:
//! each misbehaviour must land in its accounting class, and the well-behaved gateway must come
//! out clean. No external programs, no timing assertions.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use harness::gateway::{self, Api, Audit, CellKind, Settings};
use mock_ollama::{FAULT_HEADER, MockCluster, NodeConfig};

/// What the test gateway does with request number k (counted from 0 on the embed route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Round-robin over the nodes.
    RoundRobin,
    /// Everything to node 0.
    FirstOnly,
    /// Forward to a node, then send the same request to the next one; answer the first.
    Twice,
    /// Every fourth request answered from a "cache" without any node.
    CacheEveryFourth,
    /// Every fifth request answered 502 without forwarding.
    DropEveryFifth,
    /// Round-robin, but a request sent to node 0 fails there (a forced 500) and is retried on
    /// node 1: good behaviour, served once after a failed attempt.
    RetryElsewhere,
    /// Round-robin, checking the node's `/api/tags` before each request (a chatty health check).
    HealthCheckFirst,
}

struct Gateway {
    nodes: Vec<String>,
    behaviour: Behaviour,
    next: AtomicU64,
    client: reqwest::Client,
}

impl Gateway {
    async fn forward(
        &self,
        node: usize,
        headers: &HeaderMap,
        body: Bytes,
        fault: bool,
    ) -> Option<(StatusCode, Bytes)> {
        let mut request = self
            .client
            .post(format!("{}/api/embed", self.nodes[node % self.nodes.len()]))
            .header("content-type", "application/json")
            .body(body);
        if let Some(id) = headers.get("x-request-id") {
            request = request.header("x-request-id", id);
        }
        if fault {
            request = request.header(FAULT_HEADER, "error");
        }
        let response = request.send().await.ok()?;
        let status = StatusCode::from_u16(response.status().as_u16()).ok()?;
        Some((status, response.bytes().await.ok()?))
    }
}

async fn embed(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Bytes) -> Response {
    let k = gw.next.fetch_add(1, Ordering::Relaxed);
    let node = k as usize;
    let answer = match gw.behaviour {
        Behaviour::RoundRobin => gw.forward(node, &headers, body, false).await,
        Behaviour::HealthCheckFirst => {
            let tags = format!("{}/api/tags", gw.nodes[node % gw.nodes.len()]);
            let _ = gw.client.get(tags).send().await;
            gw.forward(node, &headers, body, false).await
        }
        Behaviour::FirstOnly => gw.forward(0, &headers, body, false).await,
        Behaviour::Twice => {
            let first = gw.forward(node, &headers, body.clone(), false).await;
            let _ = gw.forward(node + 1, &headers, body, false).await;
            first
        }
        Behaviour::CacheEveryFourth if k % 4 == 3 => Some((
            StatusCode::OK,
            Bytes::from_static(br#"{"model":"all-minilm","embeddings":[[0.0]]}"#),
        )),
        Behaviour::CacheEveryFourth => gw.forward(node, &headers, body, false).await,
        Behaviour::DropEveryFifth if k % 5 == 4 => None,
        Behaviour::DropEveryFifth => gw.forward(node, &headers, body, false).await,
        Behaviour::RetryElsewhere => {
            let first = gw
                .forward(node, &headers, body.clone(), node.is_multiple_of(2))
                .await;
            match first {
                Some((status, _)) if status.is_server_error() => {
                    gw.forward(node + 1, &headers, body, false).await
                }
                other => other,
            }
        }
    };
    match answer {
        Some((status, bytes)) => {
            (status, [("content-type", "application/json")], bytes).into_response()
        }
        None => (StatusCode::BAD_GATEWAY, "no upstream answer").into_response(),
    }
}

/// Streamed chat, round-robin, read whole before answering (a buffering proxy).
async fn chat(State(gw): State<Arc<Gateway>>, body: Bytes) -> Response {
    let k = gw.next.fetch_add(1, Ordering::Relaxed) as usize;
    let url = format!("{}/api/chat", gw.nodes[k % gw.nodes.len()]);
    let answer = gw.client.post(url).body(body).send().await;
    match answer {
        Ok(r) => match r.bytes().await {
            Ok(bytes) => (StatusCode::OK, bytes).into_response(),
            Err(_) => StatusCode::BAD_GATEWAY.into_response(),
        },
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// Starts the gateway on its own runtime thread; returns its URL.
fn start_gateway(nodes: Vec<String>, behaviour: Behaviour) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let gw = Arc::new(Gateway {
                nodes,
                behaviour,
                next: AtomicU64::new(0),
                client: reqwest::Client::new(),
            });
            let app = Router::new()
                .route("/api/version", get(|| async { r#"{"version":"test"}"# }))
                .route("/api/embed", post(embed))
                .route("/api/chat", post(chat))
                .with_state(gw);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(format!("http://{}", listener.local_addr().expect("addr")))
                .expect("send url");
            let _ = axum::serve(listener, app).await;
        });
    });
    rx.recv().expect("gateway url")
}

/// Settings for two one-slot nodes behind `target`: 4 workers, 40 requests, one repeat, one cell.
fn settings(target: String, label: &str, service: Duration, cell: CellKind) -> Settings {
    Settings {
        target,
        nodes: 2,
        port: 0,
        api: Api::Ollama,
        label: label.into(),
        workers: 4,
        requests: 40,
        service,
        slots: 1,
        speeds: Vec::new(),
        error_rates: Vec::new(),
        repeats: 1,
        ready_timeout: Duration::from_secs(10),
        cells: vec![cell],
        phase: Duration::from_secs(1),
        repeat_inputs: false,
    }
}

/// The distribution cell through a test gateway behaving as `behaviour`.
fn measured(behaviour: Behaviour) -> gateway::GatewayResult {
    measured_with(behaviour, false)
}

/// As [`measured`], with every request carrying the same input when `repeat_inputs`.
fn measured_with(behaviour: Behaviour, repeat_inputs: bool) -> gateway::GatewayResult {
    let nodes = MockCluster::start(vec![
        NodeConfig::with_latency(Duration::from_micros(100));
        2
    ])
    .expect("nodes");
    let target = start_gateway(nodes.urls(), behaviour);
    let settings = Settings {
        repeat_inputs,
        ..settings(
            target,
            &format!("{behaviour:?}"),
            Duration::from_micros(100),
            CellKind::Distribution,
        )
    };
    gateway::measure(&settings, &nodes).expect("measured")
}

fn audit_of(behaviour: Behaviour) -> Audit {
    audit_with(behaviour, false)
}

fn audit_with(behaviour: Behaviour, repeat_inputs: bool) -> Audit {
    let result = measured_with(behaviour, repeat_inputs);
    let cell = result
        .cells
        .iter()
        .find(|c| c.name == "distribution")
        .expect("cell");
    cell.audit.clone().expect("audited")
}

#[test]
fn a_round_robin_gateway_is_clean_and_spreads_the_work() {
    let audit = audit_of(Behaviour::RoundRobin);
    assert!(audit.clean(), "{audit:?}");
    assert_eq!((audit.nodes[0].served, audit.nodes[1].served), (20, 20));
    assert_eq!(audit.retries, 0);
}

#[test]
fn a_gateways_own_requests_to_the_nodes_are_reported_as_control_plane_traffic() {
    let quiet = measured(Behaviour::RoundRobin);
    assert_eq!(quiet.control_plane, Some(Vec::new()));
    let chatty = measured(Behaviour::HealthCheckFirst).control_plane;
    let endpoints: Vec<(&str, u64)> = chatty
        .iter()
        .flatten()
        .map(|t| (t.endpoint.as_str(), t.requests))
        .collect();
    // One check per request through the gateway: the distribution cell's 40 (the direct cell
    // goes straight to the nodes).
    assert_eq!(endpoints, [("/api/tags", 40)]);
}

#[test]
fn all_work_on_one_node_is_visible_per_node() {
    let audit = audit_of(Behaviour::FirstOnly);
    assert!(audit.clean());
    assert_eq!((audit.nodes[0].served, audit.nodes[1].served), (40, 0));
}

#[test]
fn a_request_sent_twice_is_served_more_than_once() {
    let audit = audit_of(Behaviour::Twice);
    assert_eq!(audit.served_more_than_once, 40, "{audit:?}");
    assert_eq!(audit.retries, 40);
}

#[test]
fn a_cached_answer_is_answered_without_a_node() {
    let audit = audit_of(Behaviour::CacheEveryFourth);
    assert_eq!(
        (audit.answered_without_node, audit.served_once),
        (10, 30),
        "{audit:?}"
    );
}

/// With one input for every request, requests are joined by their `x-request-id` alone: a plain
/// gateway still audits clean, and cache answers still show.
#[test]
fn repeated_inputs_are_audited_by_header_id() {
    let plain = audit_with(Behaviour::RoundRobin, true);
    assert!(plain.clean(), "{plain:?}");
    assert_eq!(plain.served_once, 40);
    let cached = audit_with(Behaviour::CacheEveryFourth, true);
    assert_eq!(
        (cached.answered_without_node, cached.served_once),
        (10, 30),
        "{cached:?}"
    );
}

#[test]
fn a_dropped_request_is_never_served() {
    let audit = audit_of(Behaviour::DropEveryFifth);
    assert_eq!(
        (audit.never_served, audit.served_once),
        (8, 32),
        "{audit:?}"
    );
}

#[test]
fn a_retry_elsewhere_is_served_once_with_the_failed_attempt_counted() {
    let audit = audit_of(Behaviour::RetryElsewhere);
    assert_eq!(audit.served_once, 40, "{audit:?}");
    assert_eq!((audit.recovered, audit.retries), (20, 20));
    assert_eq!((audit.nodes[0].attempts, audit.nodes[0].served), (20, 0));
    assert_eq!(audit.nodes[1].served, 40);
}

#[test]
fn a_gateway_that_never_answers_is_a_clear_error() {
    let nodes = MockCluster::start(vec![NodeConfig::default()]).expect("node");
    let settings = Settings {
        nodes: 1,
        workers: 1,
        requests: 1,
        ready_timeout: Duration::from_millis(300),
        ..settings(
            "http://127.0.0.1:9".into(),
            "none",
            Duration::ZERO,
            CellKind::Distribution,
        )
    };
    let error = gateway::measure(&settings, &nodes)
        .expect_err("no gateway there")
        .to_string();
    assert!(error.contains("did not answer GET /api/version"), "{error}");
}

#[test]
fn a_node_that_refuses_mid_run_shows_as_client_failures_and_comes_back_into_use() {
    let nodes = MockCluster::start(vec![
        NodeConfig::with_latency(Duration::from_micros(500));
        2
    ])
    .expect("nodes");
    let target = start_gateway(nodes.urls(), Behaviour::RoundRobin);
    let settings = Settings {
        phase: Duration::from_millis(300),
        ..settings(
            target,
            "refuse",
            Duration::from_micros(500),
            CellKind::NodeRefuse,
        )
    };
    let result = gateway::measure(&settings, &nodes).expect("measured");
    let cell = result
        .cells
        .iter()
        .find(|c| c.name == "node-refuse")
        .expect("cell");
    let report = &cell.faults[0];
    // Round-robin without retries sends every other request to the refusing node.
    assert!(report.client_failures > 0, "{report:?}");
    assert_eq!(
        report.audit.never_served, report.client_failures,
        "failed requests were not served"
    );
    assert!(
        report.back_in_use_after_ms.is_some(),
        "round-robin uses the node again"
    );
    assert!(nodes.nodes()[1].is_serving());
}

#[test]
fn the_overhead_cell_pairs_each_run_with_a_direct_one_and_restores_the_service_time() {
    let service = Duration::from_micros(700);
    let nodes = MockCluster::start(vec![NodeConfig::with_latency(service); 2]).expect("nodes");
    let target = start_gateway(nodes.urls(), Behaviour::RoundRobin);
    let settings = Settings {
        workers: 2,
        requests: 30,
        repeats: 2,
        ..settings(target, "overhead", service, CellKind::Overhead)
    };
    let served = || -> u64 {
        nodes
            .counters()
            .iter()
            .map(|c| c.succeeded("/api/embed"))
            .sum()
    };
    let before = served();
    let result = gateway::measure(&settings, &nodes).expect("measured");
    let o = result
        .cells
        .iter()
        .find_map(|c| c.overhead.clone())
        .expect("the overhead cell");
    assert_eq!(o.added_p50_ms.samples.len(), 2, "one figure per repeat");
    assert_eq!(o.gateway_peak.samples.len(), 2);
    assert!(o.direct_peak.median > 0.0 && o.gateway_peak.median > 0.0);
    for node in nodes.nodes() {
        assert_eq!(node.config().latency.base, service, "service time restored");
    }
    // Per repeat: the direct cell (15 per node), 200 + 200 low-load requests and 30 + 30 at
    // zero service time.
    assert_eq!(served() - before, 2 * (30 + 200 + 200 + 30 + 30));
    assert!(
        result.verdicts.iter().any(|v| v.starts_with("overhead:")),
        "{:?}",
        result.verdicts
    );
}

#[test]
fn the_streaming_cell_reads_every_stream_whole_and_restores_the_token_time() {
    let nodes =
        MockCluster::start(vec![NodeConfig::with_latency(Duration::ZERO); 2]).expect("nodes");
    let target = start_gateway(nodes.urls(), Behaviour::RoundRobin);
    let settings = settings(target, "streaming", Duration::ZERO, CellKind::Streaming);
    let result = gateway::measure(&settings, &nodes).expect("measured");
    let report = result
        .cells
        .iter()
        .find_map(|c| c.streaming.clone())
        .expect("the streaming cell");
    assert_eq!((report.streams, report.broken), (20, 0), "{report:?}");
    for node in nodes.nodes() {
        assert_eq!(
            node.config().latency.per_token,
            Duration::ZERO,
            "token time restored"
        );
    }
    // 20 streams straight at node 0 and 20 through the gateway, round-robin over both nodes.
    let chats: Vec<u64> = nodes
        .counters()
        .iter()
        .map(|c| c.succeeded("/api/chat"))
        .collect();
    assert_eq!(chats, [30, 10]);
    assert!(
        result.verdicts.iter().any(|v| v.starts_with("streaming:")),
        "{:?}",
        result.verdicts
    );
}
