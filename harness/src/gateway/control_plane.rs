//! The control-plane traffic a gateway sends the nodes on its own (health checks, model lists,
//! `/api/show`, `/v1/models`): every request the nodes counted during the measurement on a route
//! that is not inference, per endpoint and per second. The load engine only sends inference
//! requests, and the harness reaches the nodes' control API in process, so whatever else the
//! nodes saw came from the gateway.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Routes the load itself uses (both dialects); everything else is control plane.
const INFERENCE: [&str; 6] = [
    "/api/embed",
    "/api/embeddings",
    "/api/chat",
    "/api/generate",
    "/v1/embeddings",
    "/v1/chat/completions",
];

/// Requests to one non-inference endpoint, summed over the nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointTraffic {
    /// The route, as the nodes counted it.
    pub endpoint: String,
    /// Requests during the measurement.
    pub requests: u64,
    /// Requests per second of the measurement.
    pub per_second: f64,
}

/// The non-inference requests between two snapshots of every node's counters, over `elapsed`.
pub(super) fn traffic(
    before: &[BTreeMap<String, u64>],
    after: &[BTreeMap<String, u64>],
    elapsed: Duration,
) -> Vec<EndpointTraffic> {
    let mut by_endpoint: BTreeMap<String, u64> = BTreeMap::new();
    for (b, a) in before.iter().zip(after) {
        for (endpoint, n) in a {
            // A remote node that restarted mid-run counts from 0 again: no growth, not a wrap.
            let grew = n.saturating_sub(b.get(endpoint).copied().unwrap_or(0));
            if grew > 0 && !INFERENCE.contains(&endpoint.as_str()) && !harness_own(endpoint) {
                *by_endpoint.entry(endpoint.clone()).or_default() += grew;
            }
        }
    }
    by_endpoint
        .into_iter()
        .map(|(endpoint, requests)| EndpointTraffic {
            endpoint,
            requests,
            per_second: requests as f64 / elapsed.as_secs_f64().max(1e-9),
        })
        .collect()
}

/// Routes the harness itself calls on remote nodes (`--mock-node`): the control API, the served
/// log and the metrics. Ollama has none of them, so no gateway's own traffic is lost.
fn harness_own(endpoint: &str) -> bool {
    endpoint.starts_with("/mock/") || endpoint == "/metrics"
}

/// One sentence on what the gateway asked the nodes by itself.
pub(super) fn verdict(traffic: &[EndpointTraffic]) -> String {
    if traffic.is_empty() {
        return "control plane: the gateway sent the nodes no request of its own (no health checks seen).".into();
    }
    let parts: Vec<String> = traffic
        .iter()
        .map(|t| format!("{} {} ({:.1}/s)", t.endpoint, t.requests, t.per_second))
        .collect();
    format!(
        "control plane: the gateway sent the nodes, on its own, {}.",
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per-endpoint totals, statuses summed as [`super::super::Nodes::counters`] sums them.
    fn snap(counts: &[(&str, &str, u64)]) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (endpoint, _status, n) in counts {
            *out.entry(endpoint.to_string()).or_default() += n;
        }
        out
    }

    #[test]
    fn only_new_non_inference_requests_count_summed_over_nodes_and_statuses() {
        let before = [
            snap(&[("/api/tags", "200", 5), ("/api/embed", "200", 10)]),
            snap(&[]),
        ];
        let after = [
            snap(&[
                ("/api/tags", "200", 9),
                ("/api/tags", "503", 1),
                ("/api/embed", "200", 99),
            ]),
            snap(&[
                ("/api/version", "200", 2),
                ("/v1/embeddings", "200", 7),
                ("/mock/served", "200", 4),
                ("/metrics", "200", 1),
            ]),
        ];
        let traffic = traffic(&before, &after, Duration::from_secs(2));
        assert_eq!(
            traffic,
            [
                EndpointTraffic {
                    endpoint: "/api/tags".into(),
                    requests: 5,
                    per_second: 2.5
                },
                EndpointTraffic {
                    endpoint: "/api/version".into(),
                    requests: 2,
                    per_second: 1.0
                },
            ]
        );
        assert!(verdict(&traffic).contains("/api/tags 5 (2.5/s)"));
        assert!(verdict(&[]).contains("no request of its own"));
    }
}
