//! `harness gateway`'s audit against a small gateway written here, with switchable behaviours:
//! each misbehaviour must land in its accounting class, and the well-behaved gateway must come
//! out clean. No external programs, no timing assertions.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use harness::gateway::{self, Api, Audit, CellKind, Nodes, RemoteNode, Settings};
use mock_ollama::{FAULT_HEADER, MockCluster, NodeConfig};

/// The registered cell kind named `name`.
fn cell(name: &str) -> CellKind {
    gateway::cells::named(name).expect("a registered cell")
}

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

/// Streamed chat on either dialect's route, round-robin, read whole before answering (a
/// buffering proxy).
async fn chat(State(gw): State<Arc<Gateway>>, uri: Uri, body: Bytes) -> Response {
    let k = gw.next.fetch_add(1, Ordering::Relaxed) as usize;
    let url = format!("{}{}", gw.nodes[k % gw.nodes.len()], uri.path());
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
    common::serve(move || {
        let gw = Arc::new(Gateway {
            nodes,
            behaviour,
            next: AtomicU64::new(0),
            client: reqwest::Client::new(),
        });
        Router::new()
            .route(
                "/api/version",
                get(|| async { ([("server", "test-gateway/1")], r#"{"version":"test"}"#) }),
            )
            .route("/api/embed", post(embed))
            .route("/api/chat", post(chat))
            .route("/v1/chat/completions", post(chat))
            .with_state(gw)
    })
}

/// Every node's configuration now, to check that a cell put back what it changed.
fn configs(nodes: &MockCluster) -> Vec<NodeConfig> {
    nodes
        .nodes()
        .iter()
        .map(|n| (*n.config()).clone())
        .collect()
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
        stall: Duration::from_millis(200),
        headers: Default::default(),
        ready: gateway::Readiness::for_api(Api::Ollama),
        workload: Default::default(),
        system: gateway::System::Gateway,
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
            cell("distribution"),
        )
    };
    gateway::measure(&settings, &Nodes::Embedded(&nodes)).expect("measured")
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
    assert_eq!(
        quiet.server.as_deref(),
        Some("test-gateway/1"),
        "named by its Server header"
    );
    let chatty = measured(Behaviour::HealthCheckFirst).control_plane;
    let endpoints: Vec<(&str, u64)> = chatty
        .iter()
        .flatten()
        .map(|t| (t.endpoint.as_str(), t.requests))
        .collect();
    // One check per request through the gateway: the ceiling's 40 and the distribution cell's
    // 40 (the direct cell goes straight to the nodes).
    assert_eq!(endpoints, [("/api/tags", 80)]);
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
            cell("distribution"),
        )
    };
    let error = gateway::measure(&settings, &Nodes::Embedded(&nodes))
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
            cell("node-refuse"),
        )
    };
    let result = gateway::measure(&settings, &Nodes::Embedded(&nodes)).expect("measured");
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
        ..settings(target, "overhead", service, cell("overhead"))
    };
    let served = || -> u64 {
        nodes
            .counters()
            .iter()
            .map(|c| c.succeeded("/api/embed"))
            .sum()
    };
    let before = served();
    let result = gateway::measure(&settings, &Nodes::Embedded(&nodes)).expect("measured");
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
    // Per repeat: the direct cell (15 per node), the gateway's ceiling (30), 200 + 200
    // low-load requests and 30 + 30 at zero service time.
    assert_eq!(served() - before, 2 * (30 + 30 + 200 + 200 + 30 + 30));
    assert!(
        result.verdicts.iter().any(|v| v.starts_with("overhead:")),
        "{:?}",
        result.verdicts
    );
}

#[test]
fn the_streaming_cell_reads_every_stream_whole_and_restores_the_token_time() {
    streams_whole_through_a_buffering_gateway(Api::Ollama, "/api/chat");
}

#[test]
fn the_streaming_cell_reads_openai_event_streams_whole() {
    streams_whole_through_a_buffering_gateway(Api::Openai, "/v1/chat/completions");
}

fn streams_whole_through_a_buffering_gateway(api: Api, route: &str) {
    let nodes =
        MockCluster::start(vec![NodeConfig::with_latency(Duration::ZERO); 2]).expect("nodes");
    let target = start_gateway(nodes.urls(), Behaviour::RoundRobin);
    let settings = Settings {
        api,
        ..settings(target, "streaming", Duration::ZERO, cell("streaming"))
    };
    let result = gateway::measure(&settings, &Nodes::Embedded(&nodes)).expect("measured");
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
        .map(|c| c.succeeded(route))
        .collect();
    assert_eq!(chats, [30, 10]);
    assert!(
        result.verdicts.iter().any(|v| v.starts_with("streaming:")),
        "{:?}",
        result.verdicts
    );
}

/// Each settings fault is set for the middle phase only and undone after: resets fail requests
/// the node never served, a stall and a slow control plane fail nothing, and every node's
/// settings are back as they were.
#[test]
fn the_settings_faults_land_in_their_classes_and_are_undone() {
    let service = Duration::from_micros(500);
    let nodes = MockCluster::start(vec![NodeConfig::with_latency(service); 2]).expect("nodes");
    let before = configs(&nodes);
    let target = start_gateway(nodes.urls(), Behaviour::RoundRobin);
    let settings = Settings {
        phase: Duration::from_millis(300),
        cells: vec![
            cell("node-reset"),
            cell("node-stall"),
            cell("node-errors"),
            cell("slow-control-plane"),
        ],
        ..settings(target, "settings-faults", service, cell("node-reset"))
    };
    let result = gateway::measure(&settings, &Nodes::Embedded(&nodes)).expect("measured");
    let report = |name: &str| {
        result
            .cells
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.faults[0].clone())
            .unwrap_or_else(|| panic!("no {name} cell"))
    };
    let reset = report("node-reset");
    assert!(reset.client_failures > 0, "{reset:?}");
    assert_eq!(reset.audit.never_served, reset.client_failures, "{reset:?}");
    assert_eq!(reset.audit.nodes[0].attempts, reset.audit.nodes[0].served);
    // Round-robin sends work to the stalled node and waits for it: late, never lost.
    let stall = report("node-stall");
    assert_eq!(stall.client_failures, 0, "{stall:?}");
    assert!(stall.audit.clean(), "{stall:?}");
    let stalled = nodes.nodes()[1]
        .served(0, usize::MAX)
        .entries
        .iter()
        .filter(|e| e.stalled)
        .count();
    assert!(
        stalled > 0,
        "the last node stalled requests during the fault"
    );
    // Inference never touches the control plane.
    let slow_control = report("slow-control-plane");
    assert_eq!(slow_control.client_failures, 0, "{slow_control:?}");
    // Hundreds of requests reach the failing node during the fault: a 5% rate shows.
    let errors = report("node-errors");
    assert!(errors.client_failures > 0, "{errors:?}");
    assert_eq!(
        errors.audit.never_served, errors.client_failures,
        "{errors:?}"
    );
    let after = configs(&nodes);
    assert_eq!(after, before, "every setting restored");
}

/// Workers 1, 2, 4 on nodes given a slot per worker: every request audited, the slots restored.
#[test]
fn the_scaling_cell_doubles_the_workers_on_spare_slots_and_restores_them() {
    let service = Duration::from_micros(300);
    let nodes = MockCluster::start(vec![NodeConfig::with_latency(service); 2]).expect("nodes");
    let target = start_gateway(nodes.urls(), Behaviour::RoundRobin);
    let settings = settings(target, "scaling", service, cell("scaling"));
    let result = gateway::measure(&settings, &Nodes::Embedded(&nodes)).expect("measured");
    let cell = result
        .cells
        .iter()
        .find(|c| c.name == "scaling")
        .expect("cell");
    let report = cell.scaling.clone().expect("report");
    let workers: Vec<usize> = report.steps.iter().map(|s| s.workers).collect();
    assert_eq!(workers, [1, 2, 4]);
    assert_eq!(report.slots, 2, "4 workers over 2 nodes");
    let audit = cell.audit.clone().expect("audited");
    // 40 requests / 4 workers = 10 per worker (at least 20): 20 x (1 + 2 + 4).
    assert_eq!(audit.requests, 140, "{audit:?}");
    assert!(audit.clean(), "{audit:?}");
    for node in nodes.nodes() {
        assert_eq!(node.config().slots.parallel, 1, "slots restored");
    }
}

/// Three load levels, each sending `rate x phase` requests, all audited clean.
#[test]
fn the_open_loop_cell_sends_each_rate_for_one_phase() {
    let service = Duration::from_micros(300);
    let nodes = MockCluster::start(vec![NodeConfig::with_latency(service); 2]).expect("nodes");
    let target = start_gateway(nodes.urls(), Behaviour::RoundRobin);
    let settings = Settings {
        phase: Duration::from_millis(200),
        ..settings(target, "open-loop", service, cell("open-loop"))
    };
    let result = gateway::measure(&settings, &Nodes::Embedded(&nodes)).expect("measured");
    let cell = result
        .cells
        .iter()
        .find(|c| c.name == "open-loop")
        .expect("cell");
    let report = cell.open_loop.clone().expect("report");
    let ideal: f64 = result.capacity.iter().sum();
    assert_eq!(report.ideal, ideal);
    let loads: Vec<f64> = report.steps.iter().map(|s| s.load).collect();
    assert_eq!(loads, [0.5, 0.8, 0.95]);
    let expected: u64 = report
        .steps
        .iter()
        .map(|s| (s.rate * 0.2).ceil() as u64)
        .sum();
    let audit = cell.audit.clone().expect("audited");
    assert_eq!(audit.requests, expected, "{audit:?}");
    assert!(audit.clean(), "{audit:?}");
}

/// The median service time, in us, of `node`'s requests whose id starts with `cell`.
fn median_service_us(node: &mock_ollama::MockNode, cell: &str) -> u64 {
    let mut times: Vec<u64> = node
        .served(0, usize::MAX)
        .entries
        .iter()
        .filter(|e| e.marker.as_deref().is_some_and(|m| m.starts_with(cell)))
        .filter_map(|e| Some(e.service_end_ns? - e.service_start_ns?))
        .map(|ns| ns / 1_000)
        .collect();
    assert!(!times.is_empty(), "{cell}: no requests served");
    times.sort_unstable();
    times[times.len() / 2]
}

/// The last node at 1/3 and then 1/7 speed: two cells, each with the capacity measured again,
/// and the speed restored.
#[test]
fn the_heterogeneous_cells_slow_the_last_node_and_restore_it() {
    let service = Duration::from_micros(300);
    let nodes = MockCluster::start(vec![NodeConfig::with_latency(service); 2]).expect("nodes");
    let target = start_gateway(nodes.urls(), Behaviour::RoundRobin);
    let settings = settings(target, "heterogeneous", service, cell("heterogeneous"));
    let result = gateway::measure(&settings, &Nodes::Embedded(&nodes)).expect("measured");
    let names: Vec<&str> = result.cells.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["direct", "slow-node-3x", "slow-node-7x"]);
    for (cell, slowdown) in result.cells[1..].iter().zip([3, 7]) {
        let audit = cell.audit.clone().expect("audited");
        assert!(audit.clean(), "{audit:?}");
        // Round-robin gives the slow node half the work whatever its capacity.
        assert_eq!(audit.nodes[0].served, audit.nodes[1].served);
        // The slowdown is read from the nodes' own service times, which the due-time handoff
        // keeps at their configured length whatever the machine's load (the measured capacity
        // shares, by contrast, moved with other tests running beside this one).
        let service = |node: usize| median_service_us(&nodes.nodes()[node], &cell.name);
        let (fast, slow) = (service(0), service(1));
        assert!(
            slow >= fast * (slowdown - 1),
            "{}: {slow} us against {fast} us",
            cell.name
        );
    }
    assert_eq!(nodes.nodes()[1].config().speed, 1.0, "speed restored");
}

/// `harness gate --gateway RESULT --bounds FILE` fails a gateway that serves requests twice and
/// passes a plain one; a typo in the bounds is an error before anything is judged.
#[test]
fn gateway_bounds_fail_a_gateway_that_serves_twice() {
    let dir = std::env::temp_dir().join(format!("gateway-bounds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let bounds = dir.join("bounds.json");
    std::fs::write(
        &bounds,
        r#"{"metrics": {
            "gateway.distribution.served_more_than_once": {"op": "==", "value": 0, "reason": "a retry after the work"},
            "gateway.distribution.never_served": {"op": "==", "value": 0}
        }}"#,
    )
    .expect("bounds");
    let judge = |behaviour: Behaviour| {
        let path = dir.join(format!("{behaviour:?}.json"));
        let result = serde_json::to_vec(&measured(behaviour)).expect("json");
        std::fs::write(&path, result).expect("result");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_harness"))
            .args(["gate", "--gateway", path.to_str().expect("utf-8")])
            .args(["--bounds", bounds.to_str().expect("utf-8")])
            .output()
            .expect("harness runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = judge(Behaviour::Twice);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("FAIL  gateway.distribution.served_more_than_once"),
        "{text}"
    );
    assert!(
        text.contains("pass  gateway.distribution.never_served"),
        "{text}"
    );
    let (code, text) = judge(Behaviour::RoundRobin);
    assert_eq!(code, Some(0), "{text}");
    std::fs::write(
        &bounds,
        r#"{"metrics": {"gateway.distribution.served_twice": {"op": "==", "value": 0}}}"#,
    )
    .expect("bounds");
    let (code, _) = judge(Behaviour::RoundRobin);
    assert_eq!(code, Some(2), "a bad bounds file is an error");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Nodes reached only over HTTP (`--mock-node`, with a control token): the audit, the slow node
/// and a refusing node work as with embedded nodes, every setting is restored, and a wrong
/// token is a clear error before anything is measured.
#[test]
fn remote_nodes_are_driven_and_audited_through_their_control_api() {
    let service = Duration::from_micros(300);
    let config = NodeConfig {
        control: mock_ollama::ControlAccess::Token("secret".into()),
        ..NodeConfig::with_latency(service)
    };
    let nodes = MockCluster::start(vec![config; 2]).expect("nodes");
    let remote = |token: &str| {
        nodes
            .urls()
            .into_iter()
            .map(|url| RemoteNode {
                url,
                token: Some(token.into()),
            })
            .collect::<Vec<_>>()
    };
    let wrong = Nodes::remote(remote("guess"))
        .expect_err("wrong token")
        .to_string();
    assert!(wrong.contains("control API"), "{wrong}");
    let fleet = Nodes::remote(remote("secret")).expect("remote fleet");
    // A node left changed by an earlier run is set back to the run's settings.
    nodes.nodes()[1]
        .update(&mock_ollama::SettingsPatch {
            reset_rate: Some(0.5),
            ..mock_ollama::SettingsPatch::default()
        })
        .expect("patched");
    let target = start_gateway(nodes.urls(), Behaviour::RoundRobin);
    let settings = Settings {
        phase: Duration::from_millis(300),
        cells: vec![
            cell("distribution"),
            cell("heterogeneous"),
            cell("node-refuse"),
            cell("slow-control-plane"),
        ],
        ..settings(target, "remote", service, cell("distribution"))
    };
    gateway::configure_remote(&fleet, &settings).expect("configured");
    assert_eq!(nodes.nodes()[1].config().faults.reset_rate, 0.0);
    let before = configs(&nodes);
    let result = gateway::measure(&settings, &fleet).expect("measured");
    let cell = |name: &str| {
        result
            .cells
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no {name} cell"))
    };
    let audit = cell("distribution").audit.clone().expect("audited");
    assert!(audit.clean(), "{audit:?}");
    assert_eq!((audit.nodes[0].served, audit.nodes[1].served), (20, 20));
    // Slowed through the control API: the node's own service times say so (see the
    // heterogeneous test for why not the measured capacity shares).
    let (fast, slow) = (
        median_service_us(&nodes.nodes()[0], "slow-node-7x"),
        median_service_us(&nodes.nodes()[1], "slow-node-7x"),
    );
    assert!(slow >= fast * 6, "{slow} us against {fast} us");
    let refuse = &cell("node-refuse").faults[0];
    assert!(refuse.client_failures > 0, "{refuse:?}");
    assert_eq!(refuse.audit.never_served, refuse.client_failures);
    assert!(nodes.nodes()[1].is_serving(), "back after refusing");
    let after = configs(&nodes);
    assert_eq!(after, before, "every setting restored");
    assert_eq!(result.params["remote_nodes"], true);
    // The harness's own calls (control API, served log, metrics) are not the gateway's.
    assert_eq!(result.control_plane, Some(Vec::new()));
}

/// Settling before a fault run ends once every node has served a burst's request, and gives up
/// (rather than waiting forever) on a gateway that never sends a node anything.
#[test]
fn settling_waits_for_every_node_and_gives_up_on_a_gateway_that_never_uses_one() {
    let service = Duration::from_micros(100);
    let nodes = MockCluster::start(vec![NodeConfig::with_latency(service); 2]).expect("nodes");
    let fleet = Nodes::Embedded(&nodes);
    let engine = harness::engine::Engine::default();
    let round_robin = start_gateway(nodes.urls(), Behaviour::RoundRobin);
    let settings_rr = settings(round_robin, "settle", service, cell("node-busy"));
    let settled =
        gateway::faults::settle(&engine, &fleet, &settings_rr, Duration::from_secs(10), "a")
            .expect("settled");
    assert!(settled.is_some());
    let first_only = start_gateway(nodes.urls(), Behaviour::FirstOnly);
    let settings_first = settings(first_only, "settle", service, cell("node-busy"));
    let gave_up = gateway::faults::settle(
        &engine,
        &fleet,
        &settings_first,
        Duration::from_millis(300),
        "b",
    )
    .expect("measured");
    assert_eq!(gave_up, None, "node 1 never gets work through this gateway");
}

/// A gateway that never uses the node that fails has nothing to show about the fault, and the
/// verdict says so; one that does use it gets no such remark (the twin).
#[test]
fn a_fault_on_a_node_the_gateway_never_used_is_called_out() {
    let service = Duration::from_micros(300);
    let verdict = |behaviour: Behaviour| {
        let nodes = MockCluster::start(vec![NodeConfig::with_latency(service); 2]).expect("nodes");
        let target = start_gateway(nodes.urls(), behaviour);
        let settings = Settings {
            phase: Duration::from_millis(200),
            ..settings(target, "unused", service, cell("node-busy"))
        };
        let result = gateway::measure(&settings, &Nodes::Embedded(&nodes)).expect("measured");
        result
            .verdicts
            .into_iter()
            .find(|v| v.starts_with("node-busy:"))
            .expect("the fault verdict")
    };
    let unused = verdict(Behaviour::FirstOnly);
    assert!(
        unused.contains("sent the failing node no request in any run"),
        "{unused}"
    );
    let used = verdict(Behaviour::RoundRobin);
    assert!(!used.contains("no request in any run"), "{used}");
}

/// `harness report` rewords gateway verdicts from the figures: a result with stale verdicts is
/// rewritten with the ones its numbers give, and a fresh one is left alone.
#[test]
fn stale_gateway_verdicts_are_refreshed_from_the_figures() {
    let mut result = measured(Behaviour::RoundRobin);
    let fresh = result.verdicts.clone();
    assert_eq!(
        gateway::verdicts_of(&result),
        fresh,
        "measured verdicts are current"
    );
    let dir = std::env::temp_dir().join(format!("harness-refresh-{}", std::process::id()));
    result.verdicts = vec!["distribution: an old wording.".into()];
    gateway::write(&dir, &result).expect("written");
    assert_eq!(gateway::refresh_verdicts(&dir).expect("refreshed"), 1);
    let read = gateway::read_results(&dir).expect("read");
    assert_eq!(read[0].verdicts, fresh);
    assert_eq!(
        gateway::refresh_verdicts(&dir).expect("again"),
        0,
        "nothing left to change"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The cell added as one file and one registration line (`gateway/large_answers.rs`): answers of
/// about 64 KiB through the gateway and straight at node 0, its own figures in the result and
/// boundable by name, the service time restored, every request counted.
#[test]
fn the_large_answers_cell_measures_64_kib_answers_and_its_figures_are_boundable() {
    let service = Duration::from_micros(100);
    let nodes = MockCluster::start(vec![NodeConfig::with_latency(service); 2]).expect("nodes");
    let target = start_gateway(nodes.urls(), Behaviour::RoundRobin);
    let settings = settings(target, "large", service, cell("large-answers"));
    let served = || -> u64 {
        let embeds = nodes
            .counters()
            .into_iter()
            .map(|c| c.succeeded("/api/embed"));
        embeds.sum()
    };
    let before = served();
    let result = gateway::measure(&settings, &Nodes::Embedded(&nodes)).expect("measured");
    let large = result
        .cells
        .iter()
        .find(|c| c.name == "large-answers")
        .expect("the cell");
    let figure = |name: &str| large.figures.get(name).map(|s| s.median).expect(name);
    let kib = figure("answer_kib");
    assert!((60.0..96.0).contains(&kib), "answers of {kib} KiB");
    assert!(figure("peak_ratio") > 0.0 && figure("added_p50_ms").is_finite());
    for node in nodes.nodes() {
        assert_eq!(node.config().latency.base, service, "service time restored");
    }
    // The direct cell (20 per node), the ceiling (40), two probes, 100 + 100 at low load and
    // 40 + 40 at zero service time.
    assert_eq!(served() - before, 40 + 40 + 2 + 200 + 80);
    assert!(
        result
            .verdicts
            .iter()
            .any(|v| v.starts_with("large-answers: with answers of")),
        "{:?}",
        result.verdicts
    );
    let bounds = gateway::bounds::parse(
        r#"{"metrics": {"gateway.large-answers.answer_kib": {"op": ">=", "value": 60},
                        "gateway.large-answers.peak_ratio": {"op": ">", "value": 0}}}"#,
    );
    assert!(bounds.is_err(), "'>' is not an op");
    // Its own figures, `peak_ratio` and `added_p50_ms` included although the overhead cell has
    // measures of the same names, are read from this cell.
    let bounds = gateway::bounds::parse(
        r#"{"metrics": {"gateway.large-answers.answer_kib": {"op": ">=", "value": 60},
                        "gateway.large-answers.peak_ratio": {"op": ">=", "value": 0},
                        "gateway.large-answers.added_p50_ms": {"op": "report", "value": 0}}}"#,
    )
    .expect("the cell's own figures are boundable");
    let judged = gateway::bounds::judge(&result, &bounds);
    assert_eq!(judged.len(), 3);
    assert!(
        judged.iter().all(|j| j.pass && j.value.is_some()),
        "{judged:?}"
    );
    let typo = "gateway.large-answers.peek_ratio"
        .parse::<gateway::bounds::Metric>()
        .expect_err("a typo");
    assert!(typo.contains("peak_ratio"), "{typo}");
}
