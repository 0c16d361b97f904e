//! The nodes an experiment runs against, one type whatever they are ([`Nodes`]): mock nodes of
//! this process, mock nodes elsewhere driven through their control API and served log over HTTP
//! (`mock-ollama --control-token T` on other hosts, `harness gateway --mock-node URL`, through
//! `mock_ollama::ControlClient`), or a user's own Ollama nodes (`--node URL`), which have no
//! counters and no control API; and the shape of an embedded cluster ([`ClusterSpec`]), whose
//! nodes `mock_ollama::NodeSpec` configures.
//!
//! Every cell reaches the nodes only through [`Nodes`], so embedded and remote mocks are measured
//! and audited alike, with two differences. A refusing node: an embedded node is taken down and
//! brought back by the harness; a remote one is told to refuse for the fault's length and comes
//! back on its own (it cannot be reached to be told). And clocks: the fault cells place a node's
//! log entries on the harness's wall clock through the node's reported start time, so a remote
//! host's clock offset shifts "until when the node got work" and "used again after" by that
//! offset (the audit's counts do not depend on it). Keep the hosts' clocks synchronised (NTP).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use mock_ollama::{
    Availability, ControlClient, MockCluster, MockNode, NodeSettings, NodeSpec, ServedPage,
    SettingsPatch,
};
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

    /// Each node as `mock-ollama` describes it.
    pub fn node_specs(&self) -> Vec<NodeSpec> {
        let spec = |speed: f64| NodeSpec {
            speed,
            error_rate: self.error_rate,
            control_latency: self.control_latency,
            ..NodeSpec::new(self.service, self.slots)
        };
        self.speeds.iter().map(|&s| spec(s)).collect()
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

/// A mock node started elsewhere.
#[derive(Debug, Clone)]
pub struct RemoteNode {
    /// Its base URL.
    pub url: String,
    /// Its control token, if it has one.
    pub token: Option<String>,
}

/// The nodes an experiment runs against.
#[derive(Debug)]
pub enum Nodes<'a> {
    /// Mock nodes of this process, started for the experiment.
    Owned(MockCluster),
    /// Mock nodes of this process that the caller started and keeps (a test that also holds
    /// them, `harness gateway`'s embedded nodes).
    Embedded(&'a MockCluster),
    /// Mock nodes elsewhere, each through its control client.
    Remote(Vec<ControlClient>),
    /// Ollama-compatible nodes at these URLs (real Ollama): no counters, no control, no log.
    Ollama(Vec<String>),
}

impl Nodes<'static> {
    /// Starts `spec` as mock nodes of this process, or takes the first `spec.speeds.len()` of
    /// `external` (`--node`).
    pub fn start(spec: &ClusterSpec, external: &[String]) -> anyhow::Result<Self> {
        if external.is_empty() {
            let specs = spec.node_specs();
            let configs = specs.iter().enumerate().map(|(i, s)| s.config(i)).collect();
            return Ok(Nodes::Owned(MockCluster::start(configs)?));
        }
        let wanted = spec.speeds.len();
        anyhow::ensure!(
            external.len() >= wanted,
            "this scenario needs {wanted} node(s), --node gave {}",
            external.len()
        );
        Ok(Nodes::Ollama(external[..wanted].to_vec()))
    }

    /// Mock nodes elsewhere, each checked for a readable control API now, so a wrong URL or
    /// token is an error before anything is measured.
    pub fn remote(nodes: Vec<RemoteNode>) -> anyhow::Result<Self> {
        anyhow::ensure!(!nodes.is_empty(), "no --mock-node given");
        let clients = nodes
            .into_iter()
            .map(|n| ControlClient::new(n.url, n.token))
            .collect::<Result<Vec<_>, _>>()?;
        for client in &clients {
            client.settings().with_context(|| {
                format!(
                    "{} does not answer as a mock-ollama node with its control API on (start it with --control-token, and pass the same token)",
                    client.url()
                )
            })?;
        }
        Ok(Nodes::Remote(clients))
    }
}

/// One node, as the calls that reach a single node see it.
enum One<'n> {
    Mock(&'n MockCluster, &'n MockNode),
    Remote(&'n ControlClient),
}

impl Nodes<'_> {
    /// The mock nodes of this process, if these are.
    pub fn embedded(&self) -> Option<&MockCluster> {
        match self {
            Nodes::Owned(c) => Some(c),
            Nodes::Embedded(c) => Some(c),
            Nodes::Remote(_) | Nodes::Ollama(_) => None,
        }
    }

    /// Every node's base URL.
    pub fn urls(&self) -> Vec<String> {
        match self {
            Nodes::Owned(c) => c.urls(),
            Nodes::Embedded(c) => c.urls(),
            Nodes::Remote(nodes) => nodes.iter().map(|n| n.url().to_owned()).collect(),
            Nodes::Ollama(urls) => urls.clone(),
        }
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        match self {
            Nodes::Owned(c) => c.nodes().len(),
            Nodes::Embedded(c) => c.nodes().len(),
            Nodes::Remote(nodes) => nodes.len(),
            Nodes::Ollama(urls) => urls.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Node `i`, for the calls that need its control API.
    fn one(&self, i: usize) -> anyhow::Result<One<'_>> {
        let missing = || format!("no node {i}");
        match self {
            Nodes::Remote(nodes) => Ok(One::Remote(nodes.get(i).with_context(missing)?)),
            Nodes::Ollama(_) => {
                anyhow::bail!(
                    "Ollama nodes (--node) have no control API or served log: use mock nodes"
                )
            }
            _ => {
                let cluster = self.embedded().context("mock nodes")?;
                Ok(One::Mock(
                    cluster,
                    cluster.nodes().get(i).with_context(missing)?,
                ))
            }
        }
    }

    /// Node `i`'s settings, as its control API reports them.
    pub fn settings(&self, i: usize) -> anyhow::Result<NodeSettings> {
        match self.one(i)? {
            One::Mock(_, node) => Ok(NodeSettings::of(&node.config(), node.availability())),
            One::Remote(client) => Ok(client.settings()?),
        }
    }

    /// Changes node `i`'s settings (all of the patch or none of it).
    pub fn update(&self, i: usize, patch: &SettingsPatch) -> anyhow::Result<()> {
        match self.one(i)? {
            One::Mock(_, node) => Ok(node.update(patch)?),
            One::Remote(client) => Ok(client.update(patch).map(drop)?),
        }
    }

    /// Sets node `i` up, busy or hanging.
    pub fn set_availability(&self, i: usize, availability: Availability) -> anyhow::Result<()> {
        match self.one(i)? {
            One::Mock(_, node) => {
                node.set_availability(availability);
                Ok(())
            }
            One::Remote(client) => Ok(client.set_availability(availability)?),
        }
    }

    /// Node `i` refuses connections; it is back after `down` once [`Nodes::resume`] is called
    /// (embedded), or by itself (remote).
    pub fn refuse(&self, i: usize, down: Duration) -> anyhow::Result<()> {
        match self.one(i)? {
            One::Mock(cluster, _) => {
                cluster.pause_node(i);
                Ok(())
            }
            One::Remote(client) => Ok(client.refuse_for(down)?),
        }
    }

    /// Brings node `i` back after [`Nodes::refuse`]: an embedded node listens again now; a remote
    /// one is waited for (`ControlClient::wait_until_back`).
    pub fn resume(&self, i: usize) -> anyhow::Result<()> {
        match self.one(i)? {
            One::Mock(cluster, _) => Ok(cluster.resume_node(i)?),
            One::Remote(client) => Ok(client.wait_until_back()?),
        }
    }

    /// Up to `limit` entries of node `i`'s served log from `since` on.
    pub fn served(&self, i: usize, since: u64, limit: usize) -> anyhow::Result<ServedPage> {
        match self.one(i)? {
            One::Mock(_, node) => Ok(node.served(since, limit)),
            One::Remote(client) => Ok(client.served(since, limit)?),
        }
    }

    /// Finished requests per node, by endpoint (every status together).
    pub fn counters(&self) -> anyhow::Result<Vec<BTreeMap<String, u64>>> {
        let by_endpoint = |snap: mock_ollama::CountersSnapshot| {
            let mut out: BTreeMap<String, u64> = BTreeMap::new();
            for ((endpoint, _status), n) in snap.requests {
                *out.entry(endpoint).or_default() += n;
            }
            out
        };
        (0..self.len())
            .map(|i| match self.one(i)? {
                One::Mock(_, node) => Ok(by_endpoint(node.counters())),
                One::Remote(client) => Ok(client.requests_by_endpoint()?),
            })
            .collect()
    }

    /// Server-side counts of embed answers per node, when the nodes are this process's.
    pub fn tally(&self) -> Option<NodeTallies> {
        let cluster = self.embedded()?;
        let tallies = cluster.nodes().iter().map(|node| {
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
