//! The statistics both variants report, in the shape of SOLLOL's `get_stats()`.
//!
//! One type for every ledger, assembled by one function from per-node readings, so "same
//! workload, same JSON shape" holds by construction and the key set is tested once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::strategy::{NodeReading, Strategy};

/// Per-node figures, keyed by `host:port` in [`PoolStats::node_performance`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodePerformance {
    /// Attempts the node finished.
    pub total_requests: u64,
    /// Attempts that failed on the node.
    pub failed_requests: u64,
    /// Requests in flight now.
    pub active_requests: u64,
    /// Mean latency of successful attempts, milliseconds (0 before the first).
    pub latency_ms: f64,
    /// Fraction of finished attempts that succeeded.
    pub success_rate: f64,
    /// Last health probe's verdict.
    pub available: bool,
}

/// A pool's statistics (SOLLOL's `get_stats()` keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolStats {
    /// Requests started.
    pub total_requests: u64,
    /// Requests that got an answer.
    pub successful_requests: u64,
    /// Requests that ended in an error (all nodes failed, or the request was rejected).
    pub failed_requests: u64,
    /// Answers per node (its attempts that succeeded), for nodes that answered: SOLLOL adds
    /// one here only on a 200 (`pool.py`, 0.9.66), unlike `node_performance.total_requests`,
    /// which counts every attempt.
    pub nodes_used: BTreeMap<String, u64>,
    /// Per-node figures.
    pub node_performance: BTreeMap<String, NodePerformance>,
    /// Number of nodes in the pool.
    pub nodes_configured: usize,
    /// The nodes' `host:port`, in pool order.
    pub nodes: Vec<String>,
    /// The routing strategy's name.
    pub routing_strategy: String,
}

/// Global request counters, as read together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Requests started.
    pub total: u64,
    /// Requests answered.
    pub successful: u64,
    /// Requests failed.
    pub failed: u64,
}

impl PoolStats {
    /// Builds the stats from global totals and each node's reading, in pool order.
    pub fn assemble<'a>(
        strategy: Strategy,
        totals: Totals,
        nodes: impl IntoIterator<Item = (&'a str, NodeReading)>,
    ) -> Self {
        let mut stats = PoolStats {
            total_requests: totals.total,
            successful_requests: totals.successful,
            failed_requests: totals.failed,
            nodes_used: BTreeMap::new(),
            node_performance: BTreeMap::new(),
            nodes_configured: 0,
            nodes: Vec::new(),
            routing_strategy: strategy.name().to_owned(),
        };
        for (key, r) in nodes {
            stats.nodes.push(key.to_owned());
            let answered = r.total.saturating_sub(r.failed);
            if answered > 0 {
                stats.nodes_used.insert(key.to_owned(), answered);
            }
            stats.node_performance.insert(
                key.to_owned(),
                NodePerformance {
                    total_requests: r.total,
                    failed_requests: r.failed,
                    active_requests: r.active,
                    latency_ms: r.mean_latency_us().unwrap_or(0.0) / 1000.0,
                    success_rate: r.success_rate(),
                    available: r.available,
                },
            );
        }
        stats.nodes_configured = stats.nodes.len();
        stats
    }

    /// Sum of every node's active gauge.
    pub fn active_total(&self) -> u64 {
        self.node_performance
            .values()
            .map(|n| n.active_requests)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_sollols_keys() {
        let reading = NodeReading {
            total: 2,
            failed: 1,
            latency_sum_us: 3000,
            latency_count: 1,
            available: true,
            active: 0,
        };
        let stats = PoolStats::assemble(
            Strategy::LeastLoaded,
            Totals {
                total: 2,
                successful: 1,
                failed: 1,
            },
            [
                ("a:1", reading),
                (
                    "b:2",
                    NodeReading {
                        available: true,
                        ..NodeReading::default()
                    },
                ),
            ],
        );
        let json = serde_json::to_value(&stats).unwrap();
        // Sorted: with serde_json's `preserve_order` (enabled by other crates in a workspace build)
        // map keys keep insertion order.
        let mut keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "failed_requests",
                "node_performance",
                "nodes",
                "nodes_configured",
                "nodes_used",
                "routing_strategy",
                "successful_requests",
                "total_requests"
            ]
        );
        let node = json["node_performance"]["a:1"].as_object().unwrap();
        let mut node_keys: Vec<_> = node.keys().cloned().collect();
        node_keys.sort();
        assert_eq!(
            node_keys,
            [
                "active_requests",
                "available",
                "failed_requests",
                "latency_ms",
                "success_rate",
                "total_requests"
            ]
        );
        assert_eq!(json["node_performance"]["a:1"]["latency_ms"], 3.0);
        // Two attempts, one failed: one answer, as SOLLOL counts it.
        assert_eq!(json["nodes_used"], serde_json::json!({ "a:1": 1 }));
        assert_eq!(json["routing_strategy"], "least_loaded");
        assert_eq!(stats.nodes_configured, 2);
    }
}
