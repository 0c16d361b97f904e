//! The plan's Test 2 in memory: 100 threads x 1,000 requests through each ledger, exactly 100,000.

use std::sync::Barrier;

use super::{one_request, success};
use crate::ledger::LedgerCore;
use crate::strategy::Strategy;
use crate::tests::{StdAtomic, StdMutex};

pub(crate) const THREADS: usize = 100;
pub(crate) const PER_THREAD: usize = 1_000;

/// 100 threads released together, each doing 1,000 full request bookkeepings; returns the stats.
pub(crate) fn hammer<L: LedgerCore>(ledger: &L) -> crate::stats::PoolStats {
    let start = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            let start = &start;
            s.spawn(move || {
                start.wait();
                for _ in 0..PER_THREAD {
                    one_request(&mut ledger.steps(), Strategy::RoundRobin, success(1));
                }
            });
        }
    });
    ledger.snapshot(Strategy::RoundRobin)
}

fn exactly_100_000<L: LedgerCore>(ledger: L) {
    ledger.add_node("a:1", "http://a:1").unwrap();
    ledger.add_node("b:2", "http://b:2").unwrap();
    let stats = hammer(&ledger);
    let want = (THREADS * PER_THREAD) as u64;
    assert_eq!(
        (
            stats.total_requests,
            stats.successful_requests,
            stats.failed_requests
        ),
        (want, want, 0)
    );
    let per_node: Vec<u64> = stats
        .node_performance
        .values()
        .map(|n| n.total_requests)
        .collect();
    assert_eq!(
        per_node,
        [want / 2, want / 2],
        "round-robin over two nodes splits evenly"
    );
    assert_eq!(stats.active_total(), 0);
}

#[test]
fn atomic_ledger_100_threads_x_1000() {
    exactly_100_000(StdAtomic::default());
}

#[test]
fn mutex_ledger_100_threads_x_1000() {
    exactly_100_000(StdMutex::default());
}
