//! The mock nodes behind the gateway: embedded in this process, or started elsewhere
//! (`mock-ollama --control-token T` on other hosts, `harness gateway --mock-node URL`) and driven
//! through their control API and served log over HTTP.
//!
//! Every cell reaches the nodes only through [`Fleet`], so both kinds are measured and audited
//! alike, with two differences. A refusing node: an embedded node is taken down and brought back
//! by the harness; a remote one is told to refuse for the fault's length and comes back on its
//! own (it cannot be reached to be told). And clocks: the fault cells place a node's log entries
//! on the harness's wall clock through the node's reported start time, so a remote host's clock
//! offset shifts "until when the node got work" and "used again after" by that offset (the
//! audit's counts do not depend on it). Keep the hosts' clocks synchronised (NTP) for those two.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use mock_ollama::{
    Availability, MockCluster, NodeSettings, ServedEntry, ServedPage, SettingsPatch,
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
    /// Nodes elsewhere, with the client that reaches their control API.
    Remote(Vec<RemoteNode>, reqwest::blocking::Client),
}

/// How long a control call to a remote node may take.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

impl<'a> Fleet<'a> {
    /// Remote nodes, each checked for a readable control API now, so a wrong URL or token is
    /// an error before anything is measured.
    pub fn remote(nodes: Vec<RemoteNode>) -> anyhow::Result<Fleet<'a>> {
        anyhow::ensure!(!nodes.is_empty(), "no --mock-node given");
        let client = reqwest::blocking::Client::builder()
            .timeout(CONTROL_TIMEOUT)
            .build()?;
        let fleet = Fleet::Remote(nodes, client);
        for i in 0..fleet.len() {
            fleet.settings(i).with_context(|| {
                format!(
                    "{} does not answer as a mock-ollama node with its control API on (start it with --control-token, and pass the same token)",
                    fleet.urls()[i]
                )
            })?;
        }
        Ok(fleet)
    }

    /// Every node's base URL.
    pub fn urls(&self) -> Vec<String> {
        match self {
            Fleet::Embedded(c) => c.urls(),
            Fleet::Remote(nodes, _) => nodes.iter().map(|n| n.url.clone()).collect(),
        }
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        match self {
            Fleet::Embedded(c) => c.nodes().len(),
            Fleet::Remote(nodes, _) => nodes.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn call(
        &self,
        i: usize,
        method: reqwest::Method,
        path: &str,
    ) -> anyhow::Result<reqwest::blocking::RequestBuilder> {
        let Fleet::Remote(nodes, client) = self else {
            anyhow::bail!("not a remote fleet");
        };
        let node = nodes.get(i).with_context(|| format!("no node {i}"))?;
        let request = client.request(method, format!("{}{path}", node.url));
        Ok(match &node.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        })
    }

    fn send(
        request: reqwest::blocking::RequestBuilder,
    ) -> anyhow::Result<reqwest::blocking::Response> {
        let response = request.send()?;
        let status = response.status();
        if status.is_success() {
            Ok(response)
        } else {
            let text = response.text().unwrap_or_default();
            anyhow::bail!("{status}: {}", text.trim())
        }
    }

    /// Node `i`'s settings, as its control API reports them.
    pub fn settings(&self, i: usize) -> anyhow::Result<NodeSettings> {
        match self {
            Fleet::Embedded(c) => {
                let node = c.nodes().get(i).with_context(|| format!("no node {i}"))?;
                Ok(NodeSettings::of(&node.config(), node.availability()))
            }
            Fleet::Remote(..) => {
                let response = Self::send(self.call(i, reqwest::Method::GET, "/mock/config")?)?;
                Ok(response.json()?)
            }
        }
    }

    /// Changes node `i`'s settings (all of the patch or none of it).
    pub fn update(&self, i: usize, patch: &SettingsPatch) -> anyhow::Result<()> {
        match self {
            Fleet::Embedded(c) => {
                let node = c.nodes().get(i).with_context(|| format!("no node {i}"))?;
                Ok(node.update(patch)?)
            }
            Fleet::Remote(..) => {
                let request = self.call(i, reqwest::Method::PATCH, "/mock/config")?;
                Self::send(request.json(patch)).map(drop)
            }
        }
    }

    /// Sets node `i` up, busy or hanging.
    pub fn set_availability(&self, i: usize, availability: Availability) -> anyhow::Result<()> {
        match self {
            Fleet::Embedded(c) => {
                let node = c.nodes().get(i).with_context(|| format!("no node {i}"))?;
                node.set_availability(availability);
                Ok(())
            }
            Fleet::Remote(..) => {
                let state = match availability {
                    Availability::Up => "up",
                    Availability::Busy => "busy",
                    Availability::Hang => "hang",
                };
                let request = self.call(i, reqwest::Method::POST, "/mock/availability")?;
                Self::send(request.json(&serde_json::json!({ "state": state }))).map(drop)
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
            Fleet::Remote(..) => {
                let request = self.call(i, reqwest::Method::POST, "/mock/availability")?;
                let body = serde_json::json!({ "state": "refuse", "for": format!("{}ms", down.as_millis()) });
                Self::send(request.json(&body)).map(drop)
            }
        }
    }

    /// Brings node `i` back after [`Fleet::refuse`]: an embedded node listens again now; a remote
    /// one is waited for (its control API answering, a route no gateway's traffic is counted
    /// under) for up to `CONTROL_TIMEOUT`.
    pub fn resume(&self, i: usize) -> anyhow::Result<()> {
        match self {
            Fleet::Embedded(c) => Ok(c.resume_node(i)?),
            Fleet::Remote(..) => {
                let started = Instant::now();
                loop {
                    let probe = self.call(i, reqwest::Method::GET, "/mock/config")?;
                    if probe.send().is_ok_and(|r| r.status().is_success()) {
                        return Ok(());
                    }
                    anyhow::ensure!(
                        started.elapsed() < CONTROL_TIMEOUT,
                        "{} did not come back after refusing connections",
                        self.urls()[i]
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }

    /// Up to `limit` entries of node `i`'s served log from `since` on.
    pub fn served(&self, i: usize, since: u64, limit: usize) -> anyhow::Result<ServedPage> {
        match self {
            Fleet::Embedded(c) => {
                let node = c.nodes().get(i).with_context(|| format!("no node {i}"))?;
                Ok(node.served(since, limit))
            }
            Fleet::Remote(..) => self.served_remote(i, since, limit),
        }
    }

    /// Pages through `GET /mock/served` (each page at most the node's own page limit).
    fn served_remote(&self, i: usize, since: u64, limit: usize) -> anyhow::Result<ServedPage> {
        let header = |r: &reqwest::blocking::Response, name: &str| -> anyhow::Result<u128> {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("no {name} header in the served log's answer"))
        };
        let mut page = ServedPage {
            entries: Vec::new(),
            next: since,
            dropped: 0,
            started_unix_ns: 0,
        };
        loop {
            let left = limit.saturating_sub(page.entries.len());
            let path = format!(
                "/mock/served?since={}&limit={}",
                page.next,
                left.min(100_000)
            );
            let response = Self::send(self.call(i, reqwest::Method::GET, &path)?)?;
            let next = header(&response, "x-mock-next")? as u64;
            page.dropped = header(&response, "x-mock-dropped")? as u64;
            page.started_unix_ns = header(&response, "x-mock-started-unix-ns")?;
            let body = response.text()?;
            let before = page.entries.len();
            for line in body.lines().filter(|l| !l.is_empty()) {
                let entry: ServedEntry = serde_json::from_str(line)
                    .with_context(|| format!("a served-log line of {}", self.urls()[i]))?;
                page.entries.push(entry);
            }
            let read = page.entries.len() - before;
            page.next = next;
            if read == 0 || page.entries.len() >= limit {
                return Ok(page);
            }
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
            Fleet::Remote(..) => (0..self.len())
                .map(|i| {
                    let response = Self::send(self.call(i, reqwest::Method::GET, "/metrics")?)?;
                    Ok(requests_by_endpoint(&response.text()?))
                })
                .collect(),
        }
    }
}

/// Sums `mock_ollama_requests_total{endpoint="E",status="S"} N` lines by endpoint.
fn requests_by_endpoint(metrics: &str) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("mock_ollama_requests_total{endpoint=\"") else {
            continue;
        };
        let Some((endpoint, rest)) = rest.split_once('"') else {
            continue;
        };
        if let Some(n) = rest
            .rsplit_once(' ')
            .and_then(|(_, n)| n.trim().parse::<u64>().ok())
        {
            *out.entry(endpoint.to_owned()).or_default() += n;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_counters_are_summed_by_endpoint_from_the_metrics_text() {
        let text = "# HELP mock_ollama_requests_total x\n\
                    mock_ollama_requests_total{endpoint=\"/api/embed\",status=\"200\"} 7\n\
                    mock_ollama_requests_total{endpoint=\"/api/embed\",status=\"503\"} 2\n\
                    mock_ollama_requests_total{endpoint=\"/api/tags\",status=\"200\"} 3\n\
                    mock_ollama_in_flight 1\n";
        let counts = requests_by_endpoint(text);
        assert_eq!(counts.get("/api/embed"), Some(&9));
        assert_eq!(counts.get("/api/tags"), Some(&3));
        assert_eq!(counts.len(), 2);
    }
}
