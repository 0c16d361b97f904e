//! The nodes a scenario runs against: embedded `mock-ollama` nodes by default, or a user's own
//! Ollama-compatible nodes given with `--node`.

use std::time::Duration;

use mock_ollama::{FaultConfig, LatencyModel, MockCluster, NodeConfig, SlotPolicy};
use serde::{Deserialize, Serialize};

/// The shape of an embedded cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterSpec {
    /// One speed factor per node (1.0 = the base service time).
    pub speeds: Vec<f64>,
    /// Parallel slots per node for embedding models (Ollama's own default is 1).
    pub slots: usize,
    /// Base service time of one embed input at speed 1.0.
    #[serde(with = "duration_ms")]
    pub service: Duration,
    /// Latency of `/api/tags` and `/api/ps`.
    #[serde(with = "duration_ms")]
    pub control_latency: Duration,
    /// Injected 500s per attempt.
    pub error_rate: f64,
}

impl ClusterSpec {
    /// `nodes` identical nodes with `slots` slots and a `service` time.
    pub fn uniform(nodes: usize, slots: usize, service: Duration) -> Self {
        Self {
            speeds: vec![1.0; nodes],
            slots,
            service,
            control_latency: Duration::ZERO,
            error_rate: 0.0,
        }
    }

    /// Requests per second the cluster can serve at most: sum of speed x slots / service time.
    pub fn capacity(&self) -> f64 {
        let per_slot = 1.0 / self.service.as_secs_f64().max(1e-9);
        self.speeds
            .iter()
            .map(|s| s * self.slots as f64 * per_slot)
            .sum()
    }

    fn node_configs(&self) -> Vec<NodeConfig> {
        self.speeds
            .iter()
            .enumerate()
            .map(|(i, speed)| NodeConfig {
                latency: LatencyModel {
                    base: self.service,
                    ..LatencyModel::default()
                },
                speed: *speed,
                seed: 0x5eed + i as u64,
                slots: SlotPolicy {
                    parallel: self.slots,
                    force_embed_parallel: self.slots > 1,
                },
                // A closed loop never has more waiting than workers; keep Ollama's bound anyway.
                max_queue: 512,
                control_latency: self.control_latency,
                faults: FaultConfig {
                    error_rate: self.error_rate,
                    ..FaultConfig::default()
                },
                ..NodeConfig::default()
            })
            .collect()
    }
}

/// Successful and failed `/api/embed` answers as the nodes counted them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerTally {
    /// 2xx answers.
    pub ok: u64,
    /// Everything else (errors, resets, cancellations).
    pub failed: u64,
}

/// Each node's [`ServerTally`], keyed by `host:port` (the pool's key for a node).
pub type NodeTallies = std::collections::BTreeMap<String, ServerTally>;

impl ServerTally {
    /// The sum over nodes.
    pub fn sum(nodes: &NodeTallies) -> ServerTally {
        nodes
            .values()
            .fold(ServerTally::default(), |t, n| ServerTally {
                ok: t.ok + n.ok,
                failed: t.failed + n.failed,
            })
    }

    /// What each node counted between `before` and `after`.
    pub fn since(after: &NodeTallies, before: &NodeTallies) -> NodeTallies {
        after
            .iter()
            .map(|(key, a)| {
                (
                    key.clone(),
                    *a - before.get(key).copied().unwrap_or_default(),
                )
            })
            .collect()
    }
}

impl std::ops::Sub for ServerTally {
    type Output = ServerTally;
    fn sub(self, earlier: ServerTally) -> ServerTally {
        ServerTally {
            ok: self.ok - earlier.ok,
            failed: self.failed - earlier.failed,
        }
    }
}

/// Running nodes.
#[derive(Debug)]
pub enum Cluster {
    /// In-process mock nodes (server-side counters available).
    Embedded(MockCluster),
    /// The user's nodes (no server-side counters).
    External(Vec<String>),
}

impl Cluster {
    /// Starts `spec` as embedded mocks, or takes the first `spec.speeds.len()` of `external`.
    pub fn start(spec: &ClusterSpec, external: &[String]) -> anyhow::Result<Self> {
        if external.is_empty() {
            return Ok(Cluster::Embedded(MockCluster::start(spec.node_configs())?));
        }
        let wanted = spec.speeds.len();
        anyhow::ensure!(
            external.len() >= wanted,
            "this scenario needs {wanted} node(s), --node gave {}",
            external.len()
        );
        Ok(Cluster::External(external[..wanted].to_vec()))
    }

    /// The nodes' URLs.
    pub fn urls(&self) -> Vec<String> {
        match self {
            Cluster::Embedded(c) => c.urls(),
            Cluster::External(urls) => urls.clone(),
        }
    }

    /// Server-side counts of embed answers per node, when the nodes are ours.
    pub fn tally(&self) -> Option<NodeTallies> {
        let Cluster::Embedded(c) = self else {
            return None;
        };
        let tallies = c.nodes().iter().map(|node| {
            let counters = node.counters();
            let tally = ServerTally {
                ok: counters.succeeded("/api/embed"),
                failed: counters.failed("/api/embed"),
            };
            (node.addr().to_string(), tally)
        });
        Some(tallies.collect())
    }
}

mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        Duration::try_from_secs_f64(ms / 1000.0).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_adds_speed_times_slots() {
        let mut spec = ClusterSpec::uniform(2, 1, Duration::from_millis(20));
        assert!((spec.capacity() - 100.0).abs() < 1e-9);
        spec.speeds = vec![1.0, 1.0 / 7.0];
        assert!((spec.capacity() - 50.0 * 8.0 / 7.0).abs() < 1e-9);
    }
}
