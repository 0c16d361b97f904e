//! Starting and stopping nodes: one in the caller's runtime ([`MockNode`]) or a whole cluster on a
//! runtime of its own ([`MockCluster`]) for blocking callers.
//!
//! Blocking clients (the pool under test uses `reqwest::blocking`) must not run inside a tokio
//! runtime, so the cluster owns its runtime and its worker threads; callers just read URLs.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api::{NodeState, router};
use crate::config::{ConfigError, NodeConfig};
use crate::metrics::{CountersSnapshot, Metrics};
use crate::scheduler::Scheduler;

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
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl MockNode {
    /// Binds and starts a node on the current tokio runtime.
    pub async fn spawn(config: NodeConfig) -> Result<Self, MockError> {
        config.validate()?;
        let wanted = SocketAddr::new(config.host, config.port);
        let listener = tokio::net::TcpListener::bind(wanted)
            .await
            .map_err(|source| MockError::Bind {
                addr: wanted,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| MockError::Bind {
            addr: wanted,
            source,
        })?;
        let state = Arc::new(NodeState {
            scheduler: Scheduler::new(Arc::new(config)),
            metrics: Metrics::default(),
        });
        let app = router(Arc::clone(&state));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = served.await {
                tracing::error!(%addr, "mock node stopped with an error: {e}");
            }
        });
        Ok(Self {
            addr,
            state,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The bound address (with the real port when the config asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://host:port`, no trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        self.state.scheduler.config()
    }

    /// The node's server-side counters, read without HTTP.
    pub fn counters(&self) -> CountersSnapshot {
        self.state.metrics.snapshot()
    }

    /// Stops accepting connections and waits for open ones to finish.
    pub async fn shutdown(mut self) {
        self.stop();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for MockNode {
    fn drop(&mut self) {
        self.stop();
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
    /// Starts one node per config on a new two-thread runtime (the machine this project targets
    /// has two cores; the pool under test needs the rest of the CPU).
    pub fn start(configs: Vec<NodeConfig>) -> Result<Self, MockError> {
        Self::start_with_threads(configs, 2)
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
