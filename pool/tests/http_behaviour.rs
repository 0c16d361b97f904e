//! Failover, timeouts and error accounting against scripted HTTP nodes (`wiremock`).

use std::time::Duration;

use pool::{
    AtomicLedger, FailureReason, HttpClient, HttpConfig, LockScope, MutexLedger, Pool, PoolConfig,
    PoolError, Transport, Wrap,
    testing::{Degradation, degraded_pool},
};
use serde_json::json;
use tokio::runtime::Runtime;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Scripted nodes on a runtime of their own (the pool is blocking and must not run inside it).
struct Nodes {
    runtime: Runtime,
    servers: Vec<MockServer>,
}

impl Nodes {
    fn start(responses: Vec<ResponseTemplate>) -> Self {
        let runtime = Runtime::new().unwrap();
        let servers = runtime.block_on(async {
            let mut servers = Vec::new();
            for response in responses {
                let server = MockServer::start().await;
                Mock::given(method("POST"))
                    .and(path("/api/embed"))
                    .respond_with(response)
                    .mount(&server)
                    .await;
                servers.push(server);
            }
            servers
        });
        Self { runtime, servers }
    }

    fn urls(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.uri()).collect()
    }

    fn hits(&self) -> Vec<usize> {
        self.runtime.block_on(async {
            let mut hits = Vec::new();
            for s in &self.servers {
                hits.push(s.received_requests().await.unwrap_or_default().len());
            }
            hits
        })
    }
}

fn ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({ "model": "m", "embeddings": [[0.6, 0.8]] }))
}

/// A pool whose per-attempt timeout is `timeout`.
fn config_with(timeout: Duration) -> PoolConfig {
    PoolConfig {
        http: HttpConfig {
            timeout,
            ..HttpConfig::default()
        },
        ..PoolConfig::default()
    }
}

/// Long enough that no answer of these local scripted nodes reaches it, however slow the machine.
fn config() -> PoolConfig {
    config_with(Duration::from_secs(30))
}

/// For the timeout tests: 200 times shorter than the delay of a node that must time out
/// ([`NEVER`]), so only a structural margin decides, not the machine's speed.
const SHORT: Duration = Duration::from_millis(300);
/// The delay of a node that must time out.
const NEVER: Duration = Duration::from_secs(60);

/// Both HTTP clients, so each behaviour below is checked for both.
const CLIENTS: [HttpClient; 2] = [HttpClient::Blocking, HttpClient::PerCaller];

/// `config` carried by `client`.
fn on(client: HttpClient, mut config: PoolConfig) -> PoolConfig {
    config.http.client = client;
    config
}

/// Runs `check` for every ledger and lock scope that keeps per-request stats, on each client.
fn each_variant(check: impl Fn(&str, &dyn Fn(&[String]) -> Pool)) {
    each_variant_with(config(), check);
}

fn each_variant_with(config: PoolConfig, check: impl Fn(&str, &dyn Fn(&[String]) -> Pool)) {
    for client in CLIENTS {
        let config = on(client, config.clone());
        let atomic_config = config.clone();
        check(&format!("atomic/{}", client.name()), &move |urls| {
            Pool::new(AtomicLedger::new(), atomic_config.clone(), urls).unwrap()
        });
        for scope in [LockScope::Counters, LockScope::Request] {
            let name = format!("mutex-{scope:?}/{}", client.name());
            let config = config.clone();
            check(&name, &move |urls| {
                Pool::new(MutexLedger::new(scope), config.clone(), urls).unwrap()
            });
        }
    }
}

/// One embed; the `host:port` of the node that answered.
fn embed_once(pool: &Pool) -> Result<String, PoolError> {
    pool.embed("m", "text").map(|r| r.node.to_string())
}

#[test]
fn fails_over_on_500_and_503() {
    for status in [500, 503] {
        each_variant(|name, make| {
            let nodes = Nodes::start(vec![
                ResponseTemplate::new(status).set_body_json(json!({ "error": "server busy" })),
                ok(),
            ]);
            let pool = make(&nodes.urls());
            // Round-robin starts at the failing node, so every request fails over once.
            let answered_by = embed_once(&pool).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                answered_by,
                nodes.urls()[1].trim_start_matches("http://"),
                "{name}"
            );
            let stats = pool.stats();
            assert_eq!(
                (
                    stats.total_requests,
                    stats.successful_requests,
                    stats.failed_requests
                ),
                (1, 1, 0),
                "{name}"
            );
            let first = &stats.node_performance[nodes.urls()[0].trim_start_matches("http://")];
            assert_eq!(
                (
                    first.total_requests,
                    first.failed_requests,
                    first.active_requests
                ),
                (1, 1, 0),
                "{name}"
            );
            assert_eq!(nodes.hits(), [1, 1], "{name}: each node tried once");
        });
    }
}

#[test]
fn fails_over_on_timeout() {
    each_variant_with(config_with(SHORT), |name, make| {
        let nodes = Nodes::start(vec![ok().set_delay(NEVER), ok()]);
        let pool = make(&nodes.urls());
        assert!(embed_once(&pool).is_ok(), "{name}");
        let stats = pool.stats();
        let slow = &stats.node_performance[nodes.urls()[0].trim_start_matches("http://")];
        assert_eq!(slow.failed_requests, 1, "{name}");
        assert_eq!(stats.active_total(), 0, "{name}");
    });
}

#[test]
fn all_nodes_failing_names_each_node_once() {
    each_variant_with(config_with(SHORT), |name, make| {
        let nodes = Nodes::start(vec![
            ResponseTemplate::new(500).set_body_json(json!({ "error": "boom" })),
            ok().set_delay(NEVER),
        ]);
        let pool = make(&nodes.urls());
        match embed_once(&pool) {
            Err(PoolError::AllNodesFailed { failures }) => {
                assert_eq!(failures.len(), 2, "{name}");
                assert_eq!(
                    failures[0].reason,
                    FailureReason::Status {
                        status: 500,
                        message: "boom".into()
                    },
                    "{name}"
                );
                assert_eq!(failures[1].reason, FailureReason::Timeout, "{name}");
            }
            other => panic!("{name}: expected AllNodesFailed, got {other:?}"),
        }
        let stats = pool.stats();
        assert_eq!(
            (
                stats.total_requests,
                stats.successful_requests,
                stats.failed_requests
            ),
            (1, 0, 1),
            "{name}"
        );
        assert_eq!(stats.active_total(), 0, "{name}");
    });
}

#[test]
fn client_errors_are_not_retried() {
    each_variant(|name, make| {
        let nodes = Nodes::start(vec![
            ResponseTemplate::new(400).set_body_json(json!({ "error": "invalid input type" })),
            ok(),
        ]);
        let pool = make(&nodes.urls());
        match embed_once(&pool) {
            Err(PoolError::Rejected {
                status: 400,
                message,
                ..
            }) => assert_eq!(message, "invalid input type", "{name}"),
            other => panic!("{name}: expected Rejected, got {other:?}"),
        }
        assert_eq!(
            nodes.hits(),
            [1, 0],
            "{name}: the second node is never asked"
        );
        let stats = pool.stats();
        assert_eq!(
            (stats.total_requests, stats.failed_requests),
            (1, 1),
            "{name}"
        );
        let node = &stats.node_performance[nodes.urls()[0].trim_start_matches("http://")];
        assert_eq!(
            (node.total_requests, node.failed_requests),
            (1, 0),
            "{name}: not the node's fault"
        );
    });
}

#[test]
fn a_malformed_answer_is_a_node_failure() {
    each_variant(|name, make| {
        let nodes = Nodes::start(vec![
            ResponseTemplate::new(200).set_body_string("not json"),
            ok(),
        ]);
        let pool = make(&nodes.urls());
        assert!(embed_once(&pool).is_ok(), "{name}");
        assert_eq!(nodes.hits(), [1, 1], "{name}");
    });
}

#[test]
fn every_request_counted_once() {
    each_variant(|name, make| {
        let nodes = Nodes::start(vec![
            ok(),
            ResponseTemplate::new(500).set_body_json(json!({ "error": "x" })),
        ]);
        let pool = make(&nodes.urls());
        for _ in 0..20 {
            embed_once(&pool).unwrap();
        }
        let stats = pool.stats();
        assert_eq!(
            (
                stats.total_requests,
                stats.successful_requests,
                stats.failed_requests
            ),
            (20, 20, 0),
            "{name}"
        );
        let attempts: u64 = stats
            .node_performance
            .values()
            .map(|n| n.total_requests)
            .sum();
        let hits: usize = nodes.hits().iter().sum();
        assert_eq!(
            attempts, hits as u64,
            "{name}: pool attempts = requests the nodes saw"
        );
    });
}

#[test]
fn connection_refused_is_a_node_failure() {
    let nodes = Nodes::start(vec![ok()]);
    // A port that was bound and released: nothing listens there now.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    for client in CLIENTS {
        let config = on(client, config());
        let pool = Pool::new(
            AtomicLedger::new(),
            config.clone(),
            &[dead.clone(), nodes.urls()[0].clone()],
        )
        .unwrap();
        pool.embed("m", "x").unwrap();
        let stats = pool.stats();
        assert_eq!(
            stats.node_performance[dead.trim_start_matches("http://")].failed_requests,
            1,
            "{client:?}"
        );
        assert!(
            matches!(
                Pool::new(AtomicLedger::new(), config, std::slice::from_ref(&dead)).unwrap().embed("m", "x"),
                Err(PoolError::AllNodesFailed { failures }) if matches!(failures[0].reason, FailureReason::Connect(_))
            ),
            "{client:?}"
        );
    }
}

#[test]
fn an_empty_pool_and_bad_urls_are_errors() {
    let pool = Pool::new(AtomicLedger::new(), PoolConfig::default(), &[] as &[&str]).unwrap();
    assert!(matches!(pool.embed("m", "x"), Err(PoolError::NoNodes)));
    assert_eq!(pool.stats().failed_requests, 1);
    assert!(matches!(
        Pool::new(
            MutexLedger::new(LockScope::Counters),
            PoolConfig::default(),
            &["ftp://x:1"]
        ),
        Err(PoolError::InvalidUrl { .. })
    ));
    assert!(matches!(
        Pool::new(
            MutexLedger::new(LockScope::Counters),
            PoolConfig::default(),
            &["http://a:1", "a:1"]
        ),
        Err(PoolError::DuplicateNode(_))
    ));
    assert!(matches!(
        pool.remove_node("http://nowhere:1"),
        Err(PoolError::UnknownNode(_))
    ));
}

/// Mounts `/api/ps` answering `ps` and `/api/tags` answering 200 on `server`.
async fn control_plane(server: &MockServer, ps: ResponseTemplate) {
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/api/ps"))
        .respond_with(ps)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/tags"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "models": [] })))
        .mount(server)
        .await;
}

/// One probe cycle per client, ledger and scope: healthy, a 500, recovered, too slow; panics
/// naming the step whose verdict was wrong.
fn probe_cycle(degradation: Degradation) {
    for client in CLIENTS {
        probe_cycle_on(client, degradation);
    }
}

fn probe_cycle_on(client: HttpClient, degradation: Degradation) {
    if degradation.is_none() {
        probe_cycle_with(client, |ledger, config, urls| {
            Pool::new(ledger, config, urls)
        });
    } else {
        probe_cycle_with(client, |ledger, config, urls| {
            degraded_pool(ledger, config, urls, degradation)
        });
    }
}

fn probe_cycle_with<X: Transport, W: Wrap>(
    client: HttpClient,
    build: impl Fn(pool::Ledger, PoolConfig, &[String]) -> Result<Pool<X, W>, PoolError>,
) {
    let runtime = Runtime::new().unwrap();
    let server = runtime.block_on(MockServer::start());
    let key = server.uri().trim_start_matches("http://").to_owned();
    let ledgers: [pool::Ledger; 3] = [
        AtomicLedger::new().into(),
        MutexLedger::new(LockScope::Counters).into(),
        MutexLedger::new(LockScope::Probe).into(),
    ];
    for ledger in ledgers {
        let kind = format!(
            "{} {:?} on {}",
            ledger.kind(),
            ledger.lock_scope(),
            client.name()
        );
        runtime.block_on(control_plane(&server, ResponseTemplate::new(200)));
        // No background prober (it would race the rounds this test drives); `probe_now` then
        // uses a 2 s probe timeout, 30 times shorter than the slow answer below.
        let pool = build(ledger, on(client, config()), &[server.uri()]).unwrap();
        let available = |pool: &Pool<X, W>| pool.stats().node_performance[&key].available;
        pool.probe_now();
        assert!(available(&pool), "{kind}: healthy");
        runtime.block_on(control_plane(&server, ResponseTemplate::new(500)));
        pool.probe_now();
        assert!(!available(&pool), "{kind}: a 500 from /api/ps");
        runtime.block_on(control_plane(&server, ResponseTemplate::new(200)));
        pool.probe_now();
        assert!(available(&pool), "{kind}: recovered");
        let slow = ResponseTemplate::new(200).set_delay(NEVER);
        runtime.block_on(control_plane(&server, slow));
        pool.probe_now();
        assert!(
            !available(&pool),
            "{kind}: /api/ps slower than the probe timeout"
        );
    }
}

#[test]
fn probes_mark_a_node_unavailable_on_errors_and_slowness_and_back_when_it_recovers() {
    probe_cycle(Degradation::default());
}

/// The broken twin: a probe that counts a 500 as healthy must fail the cycle at the 500.
#[test]
fn the_probe_test_catches_a_probe_that_ignores_errors() {
    let lenient = Degradation {
        lenient_probe: true,
        ..Degradation::default()
    };
    let caught = std::panic::catch_unwind(|| probe_cycle(lenient))
        .expect_err("a probe that ignores 500s passed the probe test");
    let message = caught.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("a 500 from /api/ps"),
        "failed for another reason: {message}"
    );
}
