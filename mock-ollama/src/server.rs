//! Starting and stopping nodes: one in the caller's runtime ([`MockNode`]) or a whole cluster on a
//! runtime of its own ([`MockCluster`]) for blocking callers.
//!
//! Blocking clients (the pool under test uses `reqwest::blocking`) must not run inside a tokio
//! runtime, so the cluster owns its runtime and its worker threads; callers just read URLs.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api::{NodeState, router};
use crate::config::{ConfigError, NodeConfig};
use crate::connections::CountingListener;
use crate::control::{Availability, AvailabilityCell, PatchError, SettingsPatch};
use crate::metrics::{CountersSnapshot, Metrics};
use crate::scheduler::Scheduler;
use crate::served::{Page, ServedLog};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// The configuration is invalid.
    #[error("invalid node configuration: {0}")]
    Config(#[from] ConfigError),
    /// Binding the listening socket failed.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Building the cluster's runtime failed.
    #[error("cannot start the cluster runtime: {0}")]
    Runtime(std::io::Error),
}

/// One running simulated node.
#[derive(Debug)]
pub struct MockNode {
    addr: SocketAddr,
    state: Arc<NodeState>,
    lifecycle: Arc<Lifecycle>,
}

/// Starting and stopping a node's accept loop, shared by the node's owner and its control API
/// (which holds it weakly: the loop's router holds the state, so a strong reference would keep
/// the node alive forever).
#[derive(Debug)]
pub(crate) struct Lifecycle {
    addr: SocketAddr,
    state: Arc<NodeState>,
    /// The accept loop while the node serves; `None` while it is down.
    serving: Mutex<Option<Serving>>,
}

impl Lifecycle {
    /// Tells the accept loop to stop (and hung requests to end); returns its task to await.
    fn signal_stop(&self) -> Option<JoinHandle<()>> {
        let serving = self
            .serving
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        let _ = serving.shutdown.send(());
        self.state.stops.send_modify(|n| *n += 1);
        Some(serving.task)
    }

    pub(crate) async fn pause(&self) {
        if let Some(task) = self.signal_stop() {
            let _ = task.await;
        }
    }

    pub(crate) async fn resume(&self) -> Result<(), MockError> {
        if self.is_serving() {
            return Ok(());
        }
        let listener = bind(self.addr).await?;
        let serving = serve(listener, &self.state, self.addr);
        *self.serving.lock().unwrap_or_else(PoisonError::into_inner) = Some(serving);
        Ok(())
    }

    fn is_serving(&self) -> bool {
        self.serving
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Refuses connections for `down`, then serves again on the same port.
    pub(crate) async fn refuse_for(&self, down: std::time::Duration) -> Result<(), MockError> {
        self.pause().await;
        crate::timer::sleep(self.state.scheduler.current().timer, down).await;
        self.resume().await
    }
}

/// A running accept loop and the signal that stops it.
#[derive(Debug)]
struct Serving {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// Binds `wanted`, reporting the address in the error.
async fn bind(wanted: SocketAddr) -> Result<tokio::net::TcpListener, MockError> {
    tokio::net::TcpListener::bind(wanted)
        .await
        .map_err(|source| MockError::Bind {
            addr: wanted,
            source,
        })
}

/// Serves `state` on `listener` until the returned signal fires (then finishes open requests).
fn serve(listener: tokio::net::TcpListener, state: &Arc<NodeState>, addr: SocketAddr) -> Serving {
    let app = router(Arc::clone(state));
    let listener = CountingListener::new(listener, state.metrics.connections());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = rx.await;
        });
        if let Err(e) = served.await {
            tracing::error!(%addr, "mock node stopped with an error: {e}");
        }
    });
    Serving { shutdown: tx, task }
}

impl MockNode {
    /// Binds and starts a node on the current tokio runtime.
    pub async fn spawn(config: NodeConfig) -> Result<Self, MockError> {
        config.validate()?;
        if config.timer == crate::config::Timer::Precise {
            crate::timer::start();
        }
        let wanted = SocketAddr::new(config.host, config.port);
        let listener = bind(wanted).await?;
        let addr = listener.local_addr().map_err(|source| MockError::Bind {
            addr: wanted,
            source,
        })?;
        let served = Arc::new(ServedLog::new(config.served_log_capacity));
        let state = Arc::new(NodeState {
            scheduler: Scheduler::new(Arc::new(config), served.started()),
            metrics: Metrics::default(),
            served,
            availability: AvailabilityCell::default(),
            lifecycle: std::sync::OnceLock::new(),
            stops: tokio::sync::watch::Sender::new(0),
        });
        let serving = serve(listener, &state, addr);
        let lifecycle = Arc::new(Lifecycle {
            addr,
            state: Arc::clone(&state),
            serving: Mutex::new(Some(serving)),
        });
        let _ = state.lifecycle.set(Arc::downgrade(&lifecycle));
        Ok(Self {
            addr,
            state,
            lifecycle,
        })
    }

    /// Changes the node's settings for requests that arrive from now on (see
    /// [`crate::control`]); nothing changes when the patch is refused.
    pub fn update(&self, patch: &SettingsPatch) -> Result<(), PatchError> {
        self.state.update(patch)
    }

    /// Makes the node answer normally, busy (503) or not at all (hang), from now on.
    pub fn set_availability(&self, availability: Availability) {
        self.state.availability.set(availability);
    }

    /// Whether the node answers normally, busy or not at all.
    pub fn availability(&self) -> Availability {
        self.state.availability.get()
    }

    /// Keeps every piece of work of kind `what` from finishing until the guard drops: a test
    /// observes a busy node for as long as it needs, with no service time to outlast
    /// ([`crate::hold`]).
    pub fn hold(&self, what: crate::hold::Held) -> crate::hold::HoldGuard {
        self.state.scheduler.holds().hold(what)
    }

    /// Takes the node down: it stops accepting connections (new connects are refused), finishes
    /// the requests in flight, and keeps its models and counters for [`MockNode::resume`].
    pub async fn pause(&self) {
        self.lifecycle.pause().await;
    }

    /// Brings a paused node back on the same address, with the same models and counters.
    /// Does nothing if it is serving.
    pub async fn resume(&self) -> Result<(), MockError> {
        self.lifecycle.resume().await
    }

    /// Whether the node accepts connections.
    pub fn is_serving(&self) -> bool {
        self.lifecycle.is_serving()
    }

    /// The bound address (with the real port when the config asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://host:port`, no trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The node's settings now (the control API may have changed them since it started).
    pub fn config(&self) -> Arc<NodeConfig> {
        self.state.scheduler.current()
    }

    /// The node's server-side counters, read without HTTP.
    pub fn counters(&self) -> CountersSnapshot {
        self.state.metrics.snapshot()
    }

    /// The `q` quantile of how long embed items really held their slot (service start to the end
    /// of their service time); `None` before the first timed item.
    pub fn served_quantile(&self, q: f64) -> Option<std::time::Duration> {
        self.state.metrics.served_quantile(q)
    }

    /// Up to `limit` entries of the served-request log from `since` on (see [`crate::served`]).
    pub fn served(&self, since: u64, limit: usize) -> Page {
        self.state.served.read(since, limit)
    }

    /// Stops accepting connections and waits for open ones to finish.
    pub async fn shutdown(self) {
        self.pause().await;
    }
}

impl Drop for MockNode {
    fn drop(&mut self) {
        // Not awaited: a drop cannot wait; the loop finishes its requests on the runtime.
        let _ = self.lifecycle.signal_stop();
    }
}

/// Several nodes on a runtime of their own, for blocking callers.
#[derive(Debug)]
pub struct MockCluster {
    nodes: Vec<MockNode>,
    // Declared last so the nodes' shutdown signals are sent before the runtime stops.
    runtime: tokio::runtime::Runtime,
}

impl MockCluster {
    /// Starts one node per config on a new runtime with one worker thread per core (a fixed two
    /// threads capped the nodes' rate on larger machines; the harness's `peak` scenario shows
    /// each layer's ceiling; [`MockCluster::start_with_threads`] picks the count). Configs are
    /// used as given:
    /// nodes with the same `seed` draw the same jitter and faults for their k-th request, so give
    /// each node its own seed when their faults should be independent.
    pub fn start(configs: Vec<NodeConfig>) -> Result<Self, MockError> {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Self::start_with_threads(configs, cores)
    }

    /// Starts one node per config on a new runtime with `threads` worker threads.
    pub fn start_with_threads(configs: Vec<NodeConfig>, threads: usize) -> Result<Self, MockError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("mock-ollama")
            .enable_all()
            .build()
            .map_err(MockError::Runtime)?;
        let nodes = runtime.block_on(async {
            let mut nodes = Vec::with_capacity(configs.len());
            for config in configs {
                nodes.push(MockNode::spawn(config).await?);
            }
            Ok::<_, MockError>(nodes)
        })?;
        Ok(Self { nodes, runtime })
    }

    /// The nodes' URLs, in config order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(MockNode::url).collect()
    }

    /// The nodes, in config order.
    pub fn nodes(&self) -> &[MockNode] {
        &self.nodes
    }

    /// Each node's counters, in config order.
    pub fn counters(&self) -> Vec<CountersSnapshot> {
        self.nodes.iter().map(MockNode::counters).collect()
    }

    /// Takes node `i` down (see [`MockNode::pause`]); blocks until its requests in flight finish.
    /// Does nothing for an index past the last node.
    pub fn pause_node(&self, i: usize) {
        if let Some(node) = self.nodes.get(i) {
            self.runtime.block_on(node.pause());
        }
    }

    /// Brings node `i` back on its address (see [`MockNode::resume`]).
    pub fn resume_node(&self, i: usize) -> Result<(), MockError> {
        match self.nodes.get(i) {
            Some(node) => self.runtime.block_on(node.resume()),
            None => Ok(()),
        }
    }

    /// Stops every node and waits for them.
    pub fn shutdown(mut self) {
        let nodes = std::mem::take(&mut self.nodes);
        self.runtime.block_on(async {
            for node in nodes {
                node.shutdown().await;
            }
        });
    }
}
