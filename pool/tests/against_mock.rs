//! Both variants against in-process `mock-ollama` nodes: the pool's counts agree exactly with
//! what the nodes served, the stats JSON has one shape, and membership changes under load are safe.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use mock_ollama::{FaultConfig, MockCluster, NodeConfig};
use pool::{
    AtomicLedger, BareLedger, ChatMessage, HttpClient, HttpConfig, Ledger, LockScope, MutexLedger,
    Pool, PoolConfig, Strategy,
};

fn cluster(n: usize, latency: Duration) -> MockCluster {
    MockCluster::start(vec![NodeConfig::with_latency(latency); n]).unwrap()
}

fn key(url: &str) -> &str {
    url.trim_start_matches("http://")
}

fn hammer(pool: &Pool, threads: usize, per_thread: usize) -> (u64, u64) {
    let ok = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (ok, failed) = (&ok, &failed);
            s.spawn(move || {
                for i in 0..per_thread {
                    match pool.embed("all-minilm", format!("text {t} {i}")) {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            });
        }
    });
    (ok.into_inner(), failed.into_inner())
}

/// The default configuration, on `client`.
fn on(client: HttpClient) -> PoolConfig {
    PoolConfig {
        http: HttpConfig {
            client,
            ..HttpConfig::default()
        },
        ..PoolConfig::default()
    }
}

fn agrees_with_servers(ledger: impl Into<Ledger>, client: HttpClient) {
    let nodes = MockCluster::start(vec![
        NodeConfig {
            faults: FaultConfig {
                error_rate: 0.05,
                ..FaultConfig::default()
            },
            ..NodeConfig::with_latency(Duration::from_millis(1))
        };
        2
    ])
    .unwrap();
    let pool = Pool::new(ledger, on(client), &nodes.urls()).unwrap();
    let (ok, failed) = hammer(&pool, 8, 40);
    let stats = pool.stats();
    let kind = format!("{}/{}", pool.ledger().kind(), client.name());
    assert_eq!(ok + failed, 320, "{kind}: every request accounted for");
    assert_eq!(
        (
            stats.total_requests,
            stats.successful_requests,
            stats.failed_requests
        ),
        (320, ok, failed),
        "{kind}"
    );
    for (url, counters) in nodes.urls().iter().zip(nodes.counters()) {
        let node = &stats.node_performance[key(url)];
        assert_eq!(
            node.total_requests,
            counters.total("/api/embed"),
            "{kind} {url}: attempts"
        );
        assert_eq!(
            node.failed_requests,
            counters.failed("/api/embed"),
            "{kind} {url}: failures"
        );
        assert_eq!(node.active_requests, 0, "{kind} {url}");
    }
    let served: u64 = nodes
        .counters()
        .iter()
        .map(|c| c.succeeded("/api/embed"))
        .sum();
    assert_eq!(served, ok, "{kind}: successes = 200s served");
}

#[test]
fn atomic_counts_agree_with_server_side_counters() {
    agrees_with_servers(AtomicLedger::new(), HttpClient::Blocking);
    agrees_with_servers(AtomicLedger::new(), HttpClient::PerCaller);
}

#[test]
fn mutex_counts_agree_with_server_side_counters() {
    for client in [HttpClient::Blocking, HttpClient::PerCaller] {
        agrees_with_servers(MutexLedger::new(LockScope::Counters), client);
        agrees_with_servers(MutexLedger::new(LockScope::Request), client);
    }
}

fn key_set(value: &serde_json::Value) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    fn walk(prefix: &str, v: &serde_json::Value, keys: &mut BTreeSet<String>) {
        if let serde_json::Value::Object(map) = v {
            for (k, child) in map {
                // Node keys vary by port; name them by position-independent placeholder.
                let k = if k.contains(':') {
                    "<node>"
                } else {
                    k.as_str()
                };
                let path = format!("{prefix}/{k}");
                keys.insert(path.clone());
                walk(&path, child, keys);
            }
        }
    }
    walk("", value, &mut keys);
    keys
}

#[test]
fn stats_json_has_one_shape_for_all_variants() {
    let nodes = cluster(2, Duration::ZERO);
    let shapes: Vec<BTreeSet<String>> = [
        serde_json::to_value(run_some(AtomicLedger::new(), &nodes)).unwrap(),
        serde_json::to_value(run_some(MutexLedger::new(LockScope::Counters), &nodes)).unwrap(),
        serde_json::to_value(run_some(BareLedger::new(), &nodes)).unwrap(),
    ]
    .iter()
    .map(key_set)
    .collect();
    assert!(
        shapes[0].contains("/node_performance/<node>/latency_ms"),
        "{:?}",
        shapes[0]
    );
    assert_eq!(shapes[0], shapes[1]);
    // The bare client keeps no counts, so `nodes_used` is empty, but the keys are the same.
    assert_eq!(
        shapes[0]
            .iter()
            .filter(|k| !k.starts_with("/nodes_used/"))
            .collect::<Vec<_>>(),
        shapes[2].iter().collect::<Vec<_>>()
    );
}

fn run_some(ledger: impl Into<Ledger>, nodes: &MockCluster) -> pool::PoolStats {
    let pool = Pool::new(ledger, PoolConfig::default(), &nodes.urls()).unwrap();
    for _ in 0..4 {
        pool.embed("all-minilm", "x").unwrap();
    }
    pool.stats()
}

#[test]
fn generate_and_chat_go_through_the_pool() {
    let nodes = cluster(1, Duration::ZERO);
    let pool = Pool::new(AtomicLedger::new(), PoolConfig::default(), &nodes.urls()).unwrap();
    assert!(
        !pool
            .generate("llama3.2", "hello")
            .unwrap()
            .value
            .response
            .is_empty()
    );
    let reply = pool
        .chat(
            "llama3.2",
            &[ChatMessage {
                role: "user".into(),
                content: "hi".into(),
            }],
        )
        .unwrap();
    assert_eq!(reply.value.message.role, "assistant");
    assert_eq!(pool.stats().successful_requests, 2);
}

#[test]
fn strategies_route_as_documented() {
    let nodes = cluster(2, Duration::ZERO);
    for strategy in Strategy::ALL {
        let pool = Pool::new(
            AtomicLedger::new(),
            PoolConfig {
                strategy,
                ..PoolConfig::default()
            },
            &nodes.urls(),
        )
        .unwrap();
        for _ in 0..10 {
            pool.embed("all-minilm", "x").unwrap();
        }
        let stats = pool.stats();
        assert_eq!(stats.routing_strategy, strategy.name());
        assert_eq!(stats.successful_requests, 10, "{strategy}");
        if strategy == Strategy::RoundRobin || strategy == Strategy::Fairness {
            assert!(
                stats
                    .node_performance
                    .values()
                    .all(|n| n.total_requests == 5),
                "{strategy}: {stats:?}"
            );
        }
    }
}

fn membership_under_load(ledger: impl Into<Ledger>, strategy: Strategy) {
    let nodes = cluster(4, Duration::from_millis(1));
    let urls = nodes.urls();
    let pool = Pool::new(
        ledger,
        PoolConfig {
            strategy,
            ..PoolConfig::default()
        },
        &urls[..2],
    )
    .unwrap();
    let done = AtomicBool::new(false);
    let (ok, failed) = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|s| {
        for t in 0..15 {
            let (pool, done, ok, failed) = (&pool, &done, &ok, &failed);
            s.spawn(move || {
                let mut i = 0;
                while !done.load(Ordering::Relaxed) {
                    match pool.embed("all-minilm", format!("{t}-{i}")) {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    i += 1;
                }
            });
        }
        // The 16th thread changes membership while the others send. The workers stop when it
        // is done, and also when its check fails (a panic must not leave them running).
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&done);
        let mut served_at_removal = Vec::new();
        for round in 0..6 {
            let (add, remove) = if round % 2 == 0 {
                (&urls[2], &urls[0])
            } else {
                (&urls[0], &urls[2])
            };
            pool.add_node(add).unwrap();
            pool.remove_node(remove).unwrap();
            let index = urls.iter().position(|u| u == remove).unwrap();
            served_at_removal.push((index, nodes.counters()[index].total("/api/embed")));
            // Observed progress, not a sleep: the other nodes answer 50 more requests while the
            // removed one must stay silent.
            let progress = || ok.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed);
            let at_removal = progress();
            while progress() < at_removal + 50 {
                std::thread::yield_now();
            }
            // A removed node may be added back in a later round; until then it must see nothing.
            let now = nodes.counters()[index].total("/api/embed");
            assert_eq!(
                now,
                served_at_removal.last().unwrap().1,
                "node {index} got a request after its removal completed"
            );
        }
    });
    let stats = pool.stats();
    let (ok, failed) = (ok.into_inner(), failed.into_inner());
    assert_eq!(
        failed,
        0,
        "{}: membership changes must not fail requests",
        pool.ledger().kind()
    );
    assert_eq!(stats.total_requests, ok + failed);
    assert_eq!(stats.successful_requests, ok);
    let served: u64 = nodes
        .counters()
        .iter()
        .map(|c| c.succeeded("/api/embed"))
        .sum();
    assert_eq!(
        served, ok,
        "every success was served by some node exactly once"
    );
    assert_eq!(stats.active_total(), 0);
}

#[test]
fn atomic_membership_changes_under_16_threads() {
    membership_under_load(AtomicLedger::new(), Strategy::LeastLoaded);
}

#[test]
fn mutex_membership_changes_under_16_threads() {
    membership_under_load(MutexLedger::new(LockScope::Counters), Strategy::LeastLoaded);
}

/// The broken twin: the bare ledger's `remove_node` returns without waiting for requests in
/// flight to the node, so the check above must see the removed node answer afterwards (15
/// threads keep about seven requests queued on each one-slot node; six removals).
#[test]
fn the_membership_check_catches_a_removal_that_does_not_drain() {
    let caught = std::panic::catch_unwind(|| {
        membership_under_load(BareLedger::new(), Strategy::RoundRobin);
    });
    let message = caught
        .err()
        .and_then(|p| p.downcast_ref::<String>().cloned())
        .expect("the bare ledger's removal passed the check");
    assert!(
        message.contains("got a request after its removal completed"),
        "{message}"
    );
}

#[test]
fn probe_marks_unreachable_nodes_unavailable() {
    let nodes = cluster(1, Duration::ZERO);
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    for scope in [LockScope::Counters, LockScope::Probe] {
        let pool = Pool::new(
            MutexLedger::new(scope),
            PoolConfig::default(),
            &[nodes.urls()[0].clone(), dead.clone()],
        )
        .unwrap();
        pool.probe_now();
        let stats = pool.stats();
        assert!(stats.node_performance[key(&nodes.urls()[0])].available);
        assert!(!stats.node_performance[key(&dead)].available, "{scope:?}");
        // The unavailable node is avoided, so no request fails over.
        for _ in 0..4 {
            pool.embed("all-minilm", "x").unwrap();
        }
        assert_eq!(pool.stats().node_performance[key(&dead)].total_requests, 0);
    }
    let atomic = Pool::new(
        AtomicLedger::new(),
        PoolConfig::default(),
        std::slice::from_ref(&dead),
    )
    .unwrap();
    atomic.probe_now();
    assert!(!atomic.stats().node_performance[key(&dead)].available);
    let counters = nodes.counters()[0].clone();
    assert_eq!(
        (counters.total("/api/ps"), counters.total("/api/tags")),
        (2, 2),
        "each probe asks /api/ps and /api/tags"
    );
}

#[test]
fn the_bare_ledger_refuses_strategies_it_cannot_follow() {
    let config = PoolConfig {
        strategy: Strategy::LeastLoaded,
        ..PoolConfig::default()
    };
    let refused = Pool::new(BareLedger::new(), config, &["http://127.0.0.1:1"]);
    assert!(
        matches!(
            refused,
            Err(pool::PoolError::UnsupportedStrategy { ledger: "bare", .. })
        ),
        "{refused:?}"
    );
}

#[test]
fn a_stuck_round_robin_sends_everything_to_the_first_node() {
    let nodes = cluster(2, Duration::ZERO);
    let stuck = pool::testing::Degradation {
        stuck_round_robin: true,
        ..Default::default()
    };
    let ledgers: [Ledger; 3] = [
        AtomicLedger::new().into(),
        MutexLedger::new(LockScope::Counters).into(),
        BareLedger::new().into(),
    ];
    for ledger in ledgers {
        let kind = ledger.kind();
        let before: Vec<u64> = nodes
            .counters()
            .iter()
            .map(|c| c.total("/api/embed"))
            .collect();
        let config = PoolConfig::default();
        let pool = pool::testing::degraded_pool(ledger, config, &nodes.urls(), stuck).unwrap();
        for i in 0..6 {
            pool.embed("all-minilm", format!("{i}")).unwrap();
        }
        let served: Vec<u64> = nodes
            .counters()
            .iter()
            .zip(&before)
            .map(|(c, b)| c.total("/api/embed") - b)
            .collect();
        assert_eq!(served, [6, 0], "{kind}: every request to the first node");
    }
}

/// 10,000 requests through the pool, each with its id in its text: every node's served log, its
/// `/metrics` counters, the pool's stats and the client's tally agree exactly, per node.
#[test]
fn ten_thousand_requests_agree_with_the_served_logs_id_by_id() {
    for client in [HttpClient::Blocking, HttpClient::PerCaller] {
        id_by_id(client);
    }
}

fn id_by_id(client: HttpClient) {
    let nodes = cluster(2, Duration::ZERO);
    let pool = Pool::new(AtomicLedger::new(), on(client), &nodes.urls()).unwrap();
    let sent: Vec<String> = (0..10_000).map(|i| format!("r{i}")).collect();
    std::thread::scope(|s| {
        for chunk in sent.chunks(1_250) {
            let pool = &pool;
            s.spawn(move || {
                for id in chunk {
                    pool.embed("all-minilm", format!("text [rid:{id}]"))
                        .expect("answered");
                }
            });
        }
    });
    let stats = pool.stats();
    assert_eq!(
        (stats.total_requests, stats.successful_requests),
        (10_000, 10_000)
    );
    let mut logged = BTreeSet::new();
    for (node, url) in nodes.nodes().iter().zip(nodes.urls()) {
        let page = node.served(0, usize::MAX);
        assert_eq!(page.dropped, 0);
        let served: Vec<_> = page
            .entries
            .iter()
            .filter(|e| e.outcome == mock_ollama::ServedOutcome::Served)
            .collect();
        assert_eq!(served.len(), page.entries.len(), "nothing but served");
        assert_eq!(served.len() as u64, node.counters().succeeded("/api/embed"));
        assert_eq!(served.len() as u64, stats.nodes_used[key(&url)], "per node");
        for e in served {
            assert!(
                logged.insert(e.marker.clone().expect("marked")),
                "served twice"
            );
        }
    }
    assert_eq!(
        logged,
        sent.into_iter().collect(),
        "every id served exactly once"
    );
}
