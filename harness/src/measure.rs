//! One measured run: build a fresh pool, drive it, and check that every request is accounted for
//! on both sides of the wire.

use pool::{LockTimingSummary, PoolStats};

use crate::cluster::Cluster;
use crate::load::{RunResult, Workload, closed_loop};
use crate::results::Accounting;
use crate::variant::{PoolOptions, Variant};

/// A run with what the pool and the nodes said about it.
#[derive(Debug)]
pub struct Measurement {
    /// The client's view.
    pub run: RunResult,
    /// The pool's statistics after the run.
    pub stats: PoolStats,
    /// Lock percentiles (instrumented mutex variants).
    pub lock: Option<LockTimingSummary>,
    /// Lost updates found by [`check`] (0 when client, pool and nodes agree).
    pub lost: u64,
}

/// Runs `workload` through a fresh `variant` pool on `cluster`, recording the accounting.
pub fn measure(
    variant: Variant,
    cluster: &Cluster,
    options: PoolOptions,
    workload: &Workload,
    accounting: &mut Accounting,
) -> anyhow::Result<Measurement> {
    let before = cluster.tally();
    let pool = variant.build(&cluster.urls(), options)?;
    let run = closed_loop(&pool, workload);
    let stats = pool.stats();
    let lock = pool.ledger().lock_timings();
    drop(pool);
    let served = cluster
        .tally()
        .zip(before)
        .map(|(after, before)| after - before);
    let lost = check(variant, &run, &stats, served, accounting);
    Ok(Measurement {
        run,
        stats,
        lock,
        lost,
    })
}

/// Compares the client's tally with the pool's statistics and the nodes' counters, records every
/// disagreement in `accounting`, and returns the lost updates: the sum of the absolute differences
/// between the counts that must agree (a leftover active gauge is reported, not counted here).
pub fn check(
    variant: Variant,
    run: &RunResult,
    stats: &PoolStats,
    served: Option<crate::cluster::ServerTally>,
    accounting: &mut Accounting,
) -> u64 {
    accounting.runs += 1;
    accounting.sent += run.ok + run.failed;
    accounting.succeeded += run.ok;
    accounting.failed += run.failed;
    let mut lost = 0;
    let mut compare = |what: &str, ours: u64, theirs: u64| {
        if ours != theirs {
            lost += ours.abs_diff(theirs);
            accounting
                .mismatches
                .push(format!("{variant}: {what}: {ours} != {theirs}"));
        }
    };
    let node_failures: u64 = stats
        .node_performance
        .values()
        .map(|n| n.failed_requests)
        .sum();
    if variant.keeps_stats() {
        compare(
            "pool total vs client tally",
            stats.total_requests,
            run.ok + run.failed,
        );
        compare(
            "pool successes vs client answers",
            stats.successful_requests,
            run.ok,
        );
        compare(
            "pool failures vs client errors",
            stats.failed_requests,
            run.failed,
        );
    }
    if let Some(served) = served {
        compare("nodes' answers vs client answers", served.ok, run.ok);
        if variant.keeps_stats() {
            compare(
                "pool's node failures vs nodes' errors",
                node_failures,
                served.failed,
            );
        }
    }
    if variant.keeps_stats() && stats.active_total() != 0 {
        accounting.mismatches.push(format!(
            "{variant}: {} requests still marked active after the run",
            stats.active_total()
        ));
    }
    accounting.checked_against_pool += u64::from(variant.keeps_stats());
    accounting.checked_against_server += u64::from(served.is_some());
    lost
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ServerTally;
    use crate::summary::new_histogram;
    use pool::NodePerformance;

    fn run(ok: u64, failed: u64) -> RunResult {
        RunResult {
            elapsed: std::time::Duration::from_secs(1),
            ok,
            failed,
            latency: new_histogram(),
            capped: false,
            window: None,
            window_ok: ok,
        }
    }

    /// One node `a:1` that finished `total` attempts, `node_failed` of them failed.
    fn stats(total: u64, successful: u64, failed: u64, node_failed: u64, active: u64) -> PoolStats {
        let node = NodePerformance {
            total_requests: total,
            failed_requests: node_failed,
            active_requests: active,
            latency_ms: 0.0,
            success_rate: 1.0,
            available: true,
        };
        PoolStats {
            total_requests: total,
            successful_requests: successful,
            failed_requests: failed,
            nodes_used: [("a:1".to_owned(), total)].into(),
            node_performance: [("a:1".to_owned(), node)].into(),
            nodes_configured: 1,
            nodes: vec!["a:1".into()],
            routing_strategy: "round_robin".into(),
        }
    }

    #[test]
    fn agreement_loses_nothing() {
        let mut acc = Accounting::default();
        let served = Some(ServerTally { ok: 9, failed: 2 });
        assert_eq!(
            check(
                Variant::Atomic,
                &run(9, 1),
                &stats(10, 9, 1, 2, 0),
                served,
                &mut acc
            ),
            0
        );
        assert!(acc.mismatches.is_empty(), "{:?}", acc.mismatches);
        assert_eq!(
            (
                acc.sent,
                acc.checked_against_pool,
                acc.checked_against_server
            ),
            (10, 1, 1)
        );
    }

    #[test]
    fn every_disagreement_is_counted_and_named() {
        let mut acc = Accounting::default();
        // The pool lost one success, the nodes served one more than the client saw, one request
        // is still marked active.
        let served = Some(ServerTally { ok: 10, failed: 2 });
        let lost = check(
            Variant::MutexCounters,
            &run(9, 1),
            &stats(9, 8, 1, 2, 1),
            served,
            &mut acc,
        );
        assert_eq!(lost, 3, "total 1 + successes 1 + nodes' answers 1");
        assert_eq!(acc.mismatches.len(), 4, "{:?}", acc.mismatches);
        assert!(
            acc.mismatches
                .iter()
                .any(|m| m.contains("still marked active"))
        );
    }

    #[test]
    fn the_bare_client_is_checked_only_against_the_nodes() {
        let mut acc = Accounting::default();
        let served = Some(ServerTally { ok: 5, failed: 0 });
        assert_eq!(
            check(
                Variant::Bare,
                &run(5, 0),
                &stats(0, 0, 0, 0, 0),
                served,
                &mut acc
            ),
            0
        );
        assert_eq!(
            (acc.checked_against_pool, acc.checked_against_server),
            (0, 1)
        );
    }
}
