//! One measured run: build a fresh pool, drive it, and check that every request is accounted for
//! on both sides of the wire.

use pool::{LockTimingSummary, PoolStats};

use crate::load::{Run, Workload, closed_loop};
use crate::nodes::{NodeTallies, Nodes, ServerTally};
use crate::results::Accounting;
use crate::variant::{PoolOptions, PoolUnderTest, Variant};

/// A run with what the pool and the nodes said about it.
#[derive(Debug)]
pub struct Measurement {
    /// The client's view.
    pub run: Run,
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
    cluster: &Nodes,
    options: PoolOptions,
    workload: &Workload,
    accounting: &mut Accounting,
) -> anyhow::Result<Measurement> {
    measure_with(variant, cluster, options, accounting, |pool| {
        Ok(closed_loop(pool, workload)?)
    })
}

/// [`measure`], with `drive` sending the load while the pool is alive (a scenario that reads
/// something of the pool's own threads during the run wraps `closed_loop` in it).
pub fn measure_with(
    variant: Variant,
    cluster: &Nodes,
    options: PoolOptions,
    accounting: &mut Accounting,
    drive: impl FnOnce(&dyn PoolUnderTest) -> anyhow::Result<Run>,
) -> anyhow::Result<Measurement> {
    let before = cluster.tally();
    let pool = variant.build(&cluster.urls(), options)?;
    let run = drive(&*pool)?;
    let stats = pool.stats();
    let lock = pool.ledger().lock_timings();
    drop(pool);
    let served = cluster
        .tally()
        .zip(before)
        .map(|(after, before)| ServerTally::since(&after, &before));
    let lost = check(variant, &run, &stats, served.as_ref(), accounting);
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
    run: &Run,
    stats: &PoolStats,
    served: Option<&NodeTallies>,
    accounting: &mut Accounting,
) -> u64 {
    accounting.runs += 1;
    let (ok, failed) = (run.ok(), run.failed());
    accounting.sent += ok + failed;
    accounting.succeeded += ok;
    accounting.failed += failed;
    let mut lost = 0;
    let mut compare = |what: &str, ours: u64, theirs: u64| {
        if ours != theirs {
            lost += ours.abs_diff(theirs);
            accounting
                .mismatches
                .push(format!("{variant}: {what}: {ours} != {theirs}"));
        }
    };
    if variant.keeps_stats() {
        compare(
            "pool total vs client tally",
            stats.total_requests,
            ok + failed,
        );
        compare(
            "pool successes vs client answers",
            stats.successful_requests,
            ok,
        );
        compare(
            "pool failures vs client errors",
            stats.failed_requests,
            failed,
        );
    }
    if let Some(served) = served {
        compare(
            "nodes' answers vs client answers",
            ServerTally::sum(served).ok,
            ok,
        );
        // Per node: every attempt the pool recorded on a node is one the node counted, and the
        // failures agree too. Equal totals can hide a pool that books work on the wrong node.
        for (key, node) in served.iter().filter(|_| variant.keeps_stats()) {
            let pool_side = stats.node_performance.get(key);
            let attempts = pool_side.map_or(0, |n| n.total_requests);
            let failures = pool_side.map_or(0, |n| n.failed_requests);
            compare(
                &format!("{key}: pool's attempts vs node's answers"),
                attempts,
                node.ok + node.failed,
            );
            compare(
                &format!("{key}: pool's failures vs node's errors"),
                failures,
                node.failed,
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
    use crate::summary::new_histogram;
    use pool::NodePerformance;

    fn run(ok: u64, failed: u64) -> Run {
        let record = |n: u64| crate::load::Record {
            n,
            status: (n < ok).then_some(200),
            latency_us: 1,
            sent_us: 0,
            late_us: 0,
            ttft_us: None,
            tokens: 0,
            left: false,
        };
        Run {
            run_id: "t".into(),
            elapsed: std::time::Duration::from_secs(1),
            records: (0..ok + failed).map(record).collect(),
            latency: new_histogram(),
            ttft: new_histogram(),
            itl: new_histogram(),
            late: 0,
            window: None,
            capped: false,
        }
    }

    /// A node as the pool books it: `attempts`, `failed` of them failed, `active` in flight.
    fn booked(attempts: u64, failed: u64, active: u64) -> NodePerformance {
        NodePerformance {
            total_requests: attempts,
            failed_requests: failed,
            active_requests: active,
            latency_ms: 0.0,
            success_rate: 1.0,
            available: true,
        }
    }

    /// Pool stats with request totals and per-node bookings.
    fn stats(totals: (u64, u64, u64), nodes: &[(&str, NodePerformance)]) -> PoolStats {
        PoolStats {
            total_requests: totals.0,
            successful_requests: totals.1,
            failed_requests: totals.2,
            nodes_used: nodes
                .iter()
                .map(|(k, n)| ((*k).to_owned(), n.total_requests))
                .collect(),
            node_performance: nodes
                .iter()
                .map(|(k, n)| ((*k).to_owned(), n.clone()))
                .collect(),
            nodes_configured: nodes.len(),
            nodes: nodes.iter().map(|(k, _)| (*k).to_owned()).collect(),
            routing_strategy: "round_robin".into(),
        }
    }

    /// What the nodes counted: `(key, ok, failed)`.
    fn served(nodes: &[(&str, u64, u64)]) -> NodeTallies {
        nodes
            .iter()
            .map(|(k, ok, failed)| {
                (
                    (*k).to_owned(),
                    ServerTally {
                        ok: *ok,
                        failed: *failed,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn agreement_loses_nothing() {
        let mut acc = Accounting::default();
        // 10 requests to one node: 9 answered, 1 failed there; the pool booked the same.
        let served = served(&[("a:1", 9, 1)]);
        let stats = stats((10, 9, 1), &[("a:1", booked(10, 1, 0))]);
        assert_eq!(
            check(Variant::Atomic, &run(9, 1), &stats, Some(&served), &mut acc),
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
        let served = served(&[("a:1", 10, 2)]);
        let stats = stats((9, 8, 1), &[("a:1", booked(12, 2, 1))]);
        let lost = check(
            Variant::MutexCounters,
            &run(9, 1),
            &stats,
            Some(&served),
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
    fn work_booked_on_the_wrong_node_is_caught_though_totals_agree() {
        let mut acc = Accounting::default();
        // Both nodes served 2; the pool says a:1 did 3 and b:2 did 1. Every total agrees.
        let served = served(&[("a:1", 2, 0), ("b:2", 2, 0)]);
        let stats = stats(
            (4, 4, 0),
            &[("a:1", booked(3, 0, 0)), ("b:2", booked(1, 0, 0))],
        );
        let lost = check(Variant::Atomic, &run(4, 0), &stats, Some(&served), &mut acc);
        assert_eq!(lost, 2, "{:?}", acc.mismatches);
        assert!(
            acc.mismatches
                .iter()
                .all(|m| m.contains("pool's attempts vs node's answers")),
            "{:?}",
            acc.mismatches
        );
    }

    #[test]
    fn the_bare_client_is_checked_only_against_the_nodes() {
        let mut acc = Accounting::default();
        let served = served(&[("a:1", 5, 0)]);
        let stats = stats((0, 0, 0), &[("a:1", booked(0, 0, 0))]);
        assert_eq!(
            check(Variant::Bare, &run(5, 0), &stats, Some(&served), &mut acc),
            0
        );
        assert_eq!(
            (acc.checked_against_pool, acc.checked_against_server),
            (0, 1)
        );
    }
}
