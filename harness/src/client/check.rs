//! The library's own statistics checked against what the nodes logged.
//!
//! A driver may end its report with `{"stats": {...}}`. The keys read are SOLLOL's `get_stats()`
//! keys, which our `pool::PoolStats` keeps too: `total_requests`, `successful_requests`,
//! `failed_requests` and `nodes_used` (per node, `host:port` or a URL, the requests it got).
//! Each is set beside the harness's count of the same thing from the nodes' served logs, and
//! every unit apart is a difference: a library that loses an update under concurrency, counts a
//! retry as a request, or forgets a failure shows up as a count, not as a suspicion.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The statistics keys the check reads (`None`: the library did not report that key).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibraryStats {
    /// Requests the library started.
    pub total_requests: Option<u64>,
    /// Requests it answered.
    pub successful_requests: Option<u64>,
    /// Requests that failed.
    pub failed_requests: Option<u64>,
    /// Per node (`host:port`), what the library counted for it.
    pub nodes_used: Option<BTreeMap<String, u64>>,
}

impl LibraryStats {
    /// The keys read from a `get_stats()`-shaped object; others are ignored, and a key of the
    /// wrong type counts as missing.
    pub fn from_json(value: &serde_json::Value) -> Self {
        let count = |key: &str| value.get(key).and_then(serde_json::Value::as_u64);
        let nodes_used = value
            .get("nodes_used")
            .and_then(serde_json::Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((hostport(k).to_owned(), v.as_u64()?)))
                    .collect()
            });
        Self {
            total_requests: count("total_requests"),
            successful_requests: count("successful_requests"),
            failed_requests: count("failed_requests"),
            nodes_used,
        }
    }
}

/// `host:port` of a node URL or key.
pub fn hostport(url: &str) -> &str {
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
}

/// One node's count, the library's beside the nodes' log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCount {
    /// The node, `host:port`.
    pub node: String,
    /// What the library counted (`None`: not in its `nodes_used`).
    pub library: Option<u64>,
    /// This run's requests the node served (and the driver reported answered).
    pub served: u64,
}

/// The library's statistics beside the harness's counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsCheck {
    /// What the library said.
    pub library: LibraryStats,
    /// Requests sent: reported by the driver or logged by a node.
    pub sent: u64,
    /// Requests served by at least one node that the driver reported answered (any served, when
    /// it reported no lines).
    pub served: u64,
    /// Requests sent and served by no node.
    pub failed: u64,
    /// Per node, in node order.
    pub nodes: Vec<NodeCount>,
    /// Units apart over every key the library reported.
    pub differences: u64,
}

impl StatsCheck {
    /// `library` beside the counts: `sent` and `served` requests, and per node its URL and the
    /// run's requests it served.
    pub fn of(library: LibraryStats, sent: u64, served: u64, per_node: &[(String, u64)]) -> Self {
        let failed = sent.saturating_sub(served);
        let nodes: Vec<NodeCount> = per_node
            .iter()
            .map(|(url, served)| NodeCount {
                node: hostport(url).to_owned(),
                library: library
                    .nodes_used
                    .as_ref()
                    .map(|m| m.get(hostport(url)).copied().unwrap_or(0)),
                served: *served,
            })
            .collect();
        let apart = |lib: Option<u64>, ours: u64| lib.map_or(0, |l| l.abs_diff(ours));
        let differences = apart(library.total_requests, sent)
            + apart(library.successful_requests, served)
            + apart(library.failed_requests, failed)
            + nodes
                .iter()
                .map(|n| apart(n.library, n.served))
                .sum::<u64>();
        Self {
            library,
            sent,
            served,
            failed,
            nodes,
            differences,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_apart_is_a_difference_and_missing_keys_are_not() {
        let library = LibraryStats::from_json(&serde_json::json!({
            "total_requests": 10, "successful_requests": 8,
            "nodes_used": {"127.0.0.1:1": 5, "http://127.0.0.1:2/": 2},
            "failed_requests": "two",
        }));
        assert_eq!(library.failed_requests, None, "a wrong type is missing");
        let nodes = [
            ("http://127.0.0.1:1".to_owned(), 5),
            ("http://127.0.0.1:2".to_owned(), 4),
        ];
        let check = StatsCheck::of(library, 10, 9, &nodes);
        // successful 8 against 9 served, node 2's 2 against 4.
        assert_eq!(check.differences, 1 + 2);
        assert_eq!(check.nodes[1].library, Some(2));
        let silent = StatsCheck::of(LibraryStats::default(), 10, 9, &nodes);
        assert_eq!(silent.differences, 0);
        assert_eq!(silent.nodes[0].library, None);
    }
}
