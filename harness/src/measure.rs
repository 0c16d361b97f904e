//! One measured run: build a fresh pool, drive it, and check that every request is accounted for
//! on both sides of the wire.

use pool::{LockTimingSummary, PoolStats};

use crate::cluster::Cluster;
use crate::load::{RunResult, Workload, closed_loop};
use crate::results::Accounting;
use crate::variant::{AnyPool, PoolOptions, Variant};

/// A run with what the pool and the nodes said about it.
#[derive(Debug)]
pub struct Measurement {
    /// The client's view.
    pub run: RunResult,
    /// The pool's statistics after the run.
    pub stats: PoolStats,
    /// Lock percentiles (instrumented mutex variants).
    pub lock: Option<LockTimingSummary>,
    /// What the nodes counted during the run (embedded nodes only).
    pub served: Option<crate::cluster::ServerTally>,
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
    let pool = AnyPool::build(variant, &cluster.urls(), options)?;
    let run = closed_loop(&pool, workload);
    let stats = pool.stats();
    let lock = pool.lock_timings();
    drop(pool);
    let served = cluster
        .tally()
        .zip(before)
        .map(|(after, before)| after - before);
    check(variant, &run, &stats, served, accounting);
    Ok(Measurement {
        run,
        stats,
        lock,
        served,
    })
}

/// Compares the client's tally with the pool's statistics and the nodes' counters.
pub fn check(
    variant: Variant,
    run: &RunResult,
    stats: &PoolStats,
    served: Option<crate::cluster::ServerTally>,
    accounting: &mut Accounting,
) {
    accounting.runs += 1;
    accounting.sent += run.ok + run.failed;
    accounting.succeeded += run.ok;
    accounting.failed += run.failed;
    let mut mismatch = |what: String| accounting.mismatches.push(format!("{variant}: {what}"));
    if variant.keeps_stats() {
        let pool = (
            stats.total_requests,
            stats.successful_requests,
            stats.failed_requests,
        );
        let client = (run.ok + run.failed, run.ok, run.failed);
        if pool != client {
            mismatch(format!(
                "pool (total, ok, failed) {pool:?} != client {client:?}"
            ));
        }
        if stats.active_total() != 0 {
            mismatch(format!(
                "{} requests still marked active after the run",
                stats.active_total()
            ));
        }
    }
    if let Some(served) = served {
        if served.ok != run.ok {
            mismatch(format!(
                "nodes answered {} requests, the client counted {} answers",
                served.ok, run.ok
            ));
        }
        if variant.keeps_stats() {
            let node_failures: u64 = stats
                .node_performance
                .values()
                .map(|n| n.failed_requests)
                .sum();
            if node_failures != served.failed {
                mismatch(format!(
                    "pool saw {node_failures} node failures, the nodes sent {} errors",
                    served.failed
                ));
            }
        }
    }
    accounting.checked_against_pool += u64::from(variant.keeps_stats());
    accounting.checked_against_server += u64::from(served.is_some());
}
