//! The plan's 10,000-request check over real HTTP: 100 threads through each pool to in-process
//! `mock-ollama` nodes that inject failures. The pool's stats, the nodes' server-side counters and
//! the client's own tally must agree exactly, and every active gauge must end at zero.

use std::sync::Barrier;
use std::time::Duration;

use mock_ollama::{FaultConfig, MockCluster, NodeConfig, SlotPolicy};
use pool::{AtomicLedger, Ledger, LockScope, MutexLedger, Pool, PoolConfig};

const THREADS: usize = 100;
const REQUESTS: usize = 10_000;

fn ten_thousand_requests(ledger: impl Into<Ledger>) {
    let nodes = MockCluster::start(vec![
        NodeConfig {
            faults: FaultConfig {
                error_rate: 0.02,
                ..FaultConfig::default()
            },
            slots: SlotPolicy {
                parallel: 64,
                force_embed_parallel: true
            },
            ..NodeConfig::with_latency(Duration::ZERO)
        };
        2
    ])
    .unwrap();
    let pool = Pool::new(ledger, PoolConfig::default(), &nodes.urls()).unwrap();
    let start = Barrier::new(THREADS);
    let tallies: Vec<(u64, u64)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (pool, start) = (&pool, &start);
                s.spawn(move || {
                    start.wait();
                    let (mut ok, mut failed) = (0, 0);
                    for i in 0..REQUESTS / THREADS {
                        match pool.embed("all-minilm", format!("{t}/{i}")) {
                            Ok(_) => ok += 1,
                            Err(_) => failed += 1,
                        }
                    }
                    (ok, failed)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let ok: u64 = tallies.iter().map(|t| t.0).sum();
    let failed: u64 = tallies.iter().map(|t| t.1).sum();
    let kind = pool.ledger().kind();
    assert_eq!(
        ok + failed,
        REQUESTS as u64,
        "{kind}: every request is accounted for"
    );
    let stats = pool.stats();
    assert_eq!(
        (
            stats.total_requests,
            stats.successful_requests,
            stats.failed_requests
        ),
        (REQUESTS as u64, ok, failed),
        "{kind}: pool stats = client tally"
    );
    let counters = nodes.counters();
    let served: u64 = counters.iter().map(|c| c.succeeded("/api/embed")).sum();
    let errors: u64 = counters.iter().map(|c| c.failed("/api/embed")).sum();
    assert_eq!(
        served, ok,
        "{kind}: server-side successes = client successes"
    );
    let node_failures: u64 = stats
        .node_performance
        .values()
        .map(|n| n.failed_requests)
        .sum();
    assert_eq!(
        node_failures, errors,
        "{kind}: pool's per-node failures = server-side errors"
    );
    assert!(
        errors > 0,
        "{kind}: the injected failure rate must have fired"
    );
    assert_eq!(
        stats.active_total(),
        0,
        "{kind}: every active gauge ends at zero"
    );
    assert!(counters.iter().all(|c| c.in_flight == 0 && c.queued == 0));
}

#[test]
fn atomic_pool_10_000_requests_from_100_threads() {
    ten_thousand_requests(AtomicLedger::new());
}

#[test]
fn mutex_pool_10_000_requests_from_100_threads() {
    ten_thousand_requests(MutexLedger::new(LockScope::Counters));
}
