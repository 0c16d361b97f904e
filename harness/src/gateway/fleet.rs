//! The mock nodes behind the gateway: embedded in this process, or started elsewhere
//! (`mock-ollama --control-token T` on other hosts, `harness gateway --mock-node URL`) and driven
//! through their control API and served log over HTTP (`mock_ollama::ControlClient`).
//!
//! Every cell reaches the nodes only through [`Fleet`], so both kinds are measured and audited
//! alike, with two differences. A refusing node: an embedded node is taken down and brought back
//! by the harness; a remote one is told to refuse for the fault's length and comes back on its
//! own (it cannot be reached to be told). And clocks: the fault cells place a node's log entries
//! on the harness's wall clock through the node's reported start time, so a remote host's clock
//! offset shifts "until when the node got work" and "used again after" by that offset (the
//! audit's counts do not depend on it). Keep the hosts' clocks synchronised (NTP) for those two.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use mock_ollama::{
    Availability, ControlClient, MockCluster, MockNode, NodeSettings, ServedPage, SettingsPatch,
};

/// A mock node started elsewhere.
#[derive(Debug, Clone)]
pub struct RemoteNode {
    /// Its base URL.
    pub url: String,
    /// Its control token, if it has one.
    pub token: Option<String>,
}

/// The nodes a gateway run drives.
#[derive(Debug)]
pub enum Fleet<'a> {
    /// Nodes of this process.
    Embedded(&'a MockCluster),
    /// Nodes elsewhere, each through its control client.
    Remote(Vec<ControlClient>),
}

impl<'a> Fleet<'a> {
    /// Remote nodes, each checked for a readable control API now, so a wrong URL or token is
    /// an error before anything is measured.
    pub fn remote(nodes: Vec<RemoteNode>) -> anyhow::Result<Fleet<'a>> {
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
        Ok(Fleet::Remote(clients))
    }

    /// Every node's base URL.
    pub fn urls(&self) -> Vec<String> {
        match self {
            Fleet::Embedded(c) => c.urls(),
            Fleet::Remote(nodes) => nodes.iter().map(|n| n.url().to_owned()).collect(),
        }
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        match self {
            Fleet::Embedded(c) => c.nodes().len(),
            Fleet::Remote(nodes) => nodes.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn embedded(c: &MockCluster, i: usize) -> anyhow::Result<&MockNode> {
        c.nodes().get(i).with_context(|| format!("no node {i}"))
    }

    fn remote_node(nodes: &[ControlClient], i: usize) -> anyhow::Result<&ControlClient> {
        nodes.get(i).with_context(|| format!("no node {i}"))
    }

    /// Node `i`'s settings, as its control API reports them.
    pub fn settings(&self, i: usize) -> anyhow::Result<NodeSettings> {
        match self {
            Fleet::Embedded(c) => {
                let node = Self::embedded(c, i)?;
                Ok(NodeSettings::of(&node.config(), node.availability()))
            }
            Fleet::Remote(nodes) => Ok(Self::remote_node(nodes, i)?.settings()?),
        }
    }

    /// Changes node `i`'s settings (all of the patch or none of it).
    pub fn update(&self, i: usize, patch: &SettingsPatch) -> anyhow::Result<()> {
        match self {
            Fleet::Embedded(c) => Ok(Self::embedded(c, i)?.update(patch)?),
            Fleet::Remote(nodes) => Self::remote_node(nodes, i)?
                .update(patch)
                .map(drop)
                .map_err(Into::into),
        }
    }

    /// Sets node `i` up, busy or hanging.
    pub fn set_availability(&self, i: usize, availability: Availability) -> anyhow::Result<()> {
        match self {
            Fleet::Embedded(c) => {
                Self::embedded(c, i)?.set_availability(availability);
                Ok(())
            }
            Fleet::Remote(nodes) => {
                Ok(Self::remote_node(nodes, i)?.set_availability(availability)?)
            }
        }
    }

    /// Node `i` refuses connections; it is back after `down` once [`Fleet::resume`] is called
    /// (embedded), or by itself (remote).
    pub fn refuse(&self, i: usize, down: Duration) -> anyhow::Result<()> {
        match self {
            Fleet::Embedded(c) => {
                c.pause_node(i);
                Ok(())
            }
            Fleet::Remote(nodes) => Ok(Self::remote_node(nodes, i)?.refuse_for(down)?),
        }
    }

    /// Brings node `i` back after [`Fleet::refuse`]: an embedded node listens again now; a remote
    /// one is waited for (`ControlClient::wait_until_back`).
    pub fn resume(&self, i: usize) -> anyhow::Result<()> {
        match self {
            Fleet::Embedded(c) => Ok(c.resume_node(i)?),
            Fleet::Remote(nodes) => Ok(Self::remote_node(nodes, i)?.wait_until_back()?),
        }
    }

    /// Up to `limit` entries of node `i`'s served log from `since` on.
    pub fn served(&self, i: usize, since: u64, limit: usize) -> anyhow::Result<ServedPage> {
        match self {
            Fleet::Embedded(c) => Ok(Self::embedded(c, i)?.served(since, limit)),
            Fleet::Remote(nodes) => Ok(Self::remote_node(nodes, i)?.served(since, limit)?),
        }
    }

    /// Finished requests per node, by endpoint (every status together).
    pub fn counters(&self) -> anyhow::Result<Vec<BTreeMap<String, u64>>> {
        match self {
            Fleet::Embedded(c) => Ok(c
                .counters()
                .iter()
                .map(|snap| {
                    let mut out: BTreeMap<String, u64> = BTreeMap::new();
                    for ((endpoint, _status), n) in &snap.requests {
                        *out.entry(endpoint.clone()).or_default() += n;
                    }
                    out
                })
                .collect()),
            Fleet::Remote(nodes) => nodes
                .iter()
                .map(|n| Ok(n.requests_by_endpoint()?))
                .collect(),
        }
    }
}
