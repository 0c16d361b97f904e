//! A real 503 from a mock node's full queue (not a scripted one) sent through the pool: the pool
//! fails over to the other node, books the 503 as a failed attempt on the busy node, and the
//! busy node counts the rejection. The node is kept busy with a hold ([`MockNode::hold`]), not a
//! long service time, so nothing here depends on timing.

use std::time::{Duration, Instant};

use mock_ollama::{CountersSnapshot, Held, MockCluster, NodeConfig, QueueMode};
use pool::{AtomicLedger, Ledger, LockScope, MutexLedger, Pool, PoolConfig, Strategy};

/// Node 0 with one slot and a bounded queue of one; node 1 plain.
fn nodes() -> MockCluster {
    let busy = NodeConfig {
        max_queue: 1,
        queue: QueueMode::Bounded,
        ..NodeConfig::with_latency(Duration::ZERO)
    };
    MockCluster::start(vec![busy, NodeConfig::with_latency(Duration::ZERO)]).unwrap()
}

/// Waits (bounded) until node 0's counters satisfy `condition`.
fn until(nodes: &MockCluster, what: &str, condition: impl Fn(&CountersSnapshot) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition(&nodes.nodes()[0].counters()) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            nodes.nodes()[0].counters()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn fails_over_from_a_full_queue(ledger: impl Into<Ledger>) {
    let nodes = nodes();
    let (busy, healthy) = (nodes.urls()[0].clone(), nodes.urls()[1].clone());
    // Load the model first: a request waiting for the load counts toward the bounded queue, so
    // with a cold model the second fill below could be refused while the first still waited for
    // the load (seen once in 30 runs: one in service, one 503, none queued).
    let warm = reqwest::blocking::Client::new()
        .post(format!("{busy}/api/embed"))
        .body(r#"{"model":"all-minilm","input":"load"}"#)
        .send()
        .map(|r| r.status().as_u16());
    assert_eq!(warm.ok(), Some(200), "the model loads");
    let hold = nodes.nodes()[0].hold(Held::Service);
    std::thread::scope(|s| {
        let fill: Vec<_> = (0..2)
            .map(|i| {
                let url = &busy;
                s.spawn(move || {
                    reqwest::blocking::Client::new()
                        .post(format!("{url}/api/embed"))
                        .body(format!(r#"{{"model":"all-minilm","input":"fill {i}"}}"#))
                        .send()
                        .map(|r| r.status().as_u16())
                })
            })
            .collect();
        until(&nodes, "node 0's slot taken and its queue full", |c| {
            c.in_service == 1 && c.queued == 1
        });
        let config = PoolConfig {
            strategy: Strategy::RoundRobin,
            ..PoolConfig::default()
        };
        let pool = Pool::new(ledger, config, &nodes.urls()).unwrap();
        let kind = pool.ledger().kind();
        let reply = pool
            .embed("all-minilm", "through the pool")
            .unwrap_or_else(|e| panic!("{kind}: no failover from the 503: {e}"));
        assert_eq!(
            reply.node.url(),
            healthy,
            "{kind}: answered by the other node"
        );
        let stats = pool.stats();
        let on = |url: &str| &stats.node_performance[url.trim_start_matches("http://")];
        assert_eq!(
            (on(&busy).total_requests, on(&busy).failed_requests),
            (1, 1),
            "{kind}: the 503 is a failed attempt on the busy node"
        );
        assert_eq!(on(&healthy).total_requests, 1, "{kind}");
        assert_eq!(
            (stats.successful_requests, stats.failed_requests),
            (1, 0),
            "{kind}: the request itself succeeded"
        );
        assert_eq!(nodes.nodes()[0].counters().rejected_busy, 1, "{kind}");
        drop(hold);
        for f in fill {
            assert_eq!(
                f.join().unwrap().unwrap(),
                200,
                "{kind}: held requests finish"
            );
        }
    });
}

#[test]
fn the_atomic_pool_fails_over_from_a_real_queue_503() {
    fails_over_from_a_full_queue(AtomicLedger::new());
}

#[test]
fn the_mutex_pool_fails_over_from_a_real_queue_503() {
    fails_over_from_a_full_queue(MutexLedger::new(LockScope::Counters));
}
