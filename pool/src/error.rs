//! Typed errors: what went wrong with a request, naming each node that was tried and why.

use std::fmt;

use crate::node::NodeAddr;
use crate::strategy::Strategy;

/// Why one attempt on one node failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureReason {
    /// The TCP connection could not be made.
    Connect(String),
    /// No complete answer within the per-request timeout.
    Timeout,
    /// The node answered with a server error (5xx, including Ollama's 503 "server busy").
    Status {
        /// HTTP status.
        status: u16,
        /// Ollama's `error` text, or the raw body.
        message: String,
    },
    /// The answer was cut off or was not the JSON the endpoint promises.
    Body(String),
    /// Any other transport failure (connection reset, protocol error).
    Transport(String),
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureReason::Connect(e) => write!(f, "connect failed: {e}"),
            FailureReason::Timeout => f.write_str("timed out"),
            FailureReason::Status { status, message } => write!(f, "HTTP {status}: {message}"),
            FailureReason::Body(e) => write!(f, "bad response body: {e}"),
            FailureReason::Transport(e) => write!(f, "transport error: {e}"),
        }
    }
}

/// One failed attempt: the node and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFailure {
    /// The node.
    pub node: NodeAddr,
    /// What went wrong.
    pub reason: FailureReason,
}

/// Everything a pool operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The pool has no nodes to send to.
    #[error("the pool has no nodes")]
    NoNodes,
    /// Every node was tried once and each failed.
    #[error("all {} node(s) failed: {}", failures.len(), failures.iter().map(|f| format!("{} ({})", f.node, f.reason)).collect::<Vec<_>>().join("; "))]
    AllNodesFailed {
        /// One entry per node tried, in order.
        failures: Vec<NodeFailure>,
    },
    /// The node refused the request itself (4xx): retrying elsewhere would not help, so it is
    /// not retried.
    #[error("node {node} rejected the request with HTTP {status}: {message}")]
    Rejected {
        /// The node that answered.
        node: NodeAddr,
        /// HTTP status.
        status: u16,
        /// Ollama's `error` text.
        message: String,
    },
    /// A node URL could not be understood.
    #[error("invalid node URL {url:?}: {reason}")]
    InvalidUrl {
        /// What was given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// The node is already in the pool.
    #[error("node {0} is already in the pool")]
    DuplicateNode(String),
    /// No node with that address is in the pool.
    #[error("node {0} is not in the pool")]
    UnknownNode(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The ledger cannot route by this strategy (the bare ledger is round-robin only).
    #[error("the {ledger} ledger cannot route by {}", strategy.name())]
    UnsupportedStrategy {
        /// The ledger's kind.
        ledger: &'static str,
        /// The strategy asked for.
        strategy: Strategy,
    },
    /// The request body could not be encoded as JSON.
    #[error("cannot encode the request: {0}")]
    Encode(#[source] serde_json::Error),
    /// The prober's thread could not be started.
    #[error("cannot start the prober thread: {0}")]
    Spawn(#[source] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_nodes_failed_names_each_node_and_reason() {
        let error = PoolError::AllNodesFailed {
            failures: vec![
                NodeFailure {
                    node: NodeAddr::new(0, "a:1", "http://a:1"),
                    reason: FailureReason::Timeout,
                },
                NodeFailure {
                    node: NodeAddr::new(1, "b:2", "http://b:2"),
                    reason: FailureReason::Status {
                        status: 503,
                        message: "server busy".into(),
                    },
                },
            ],
        };
        assert_eq!(
            error.to_string(),
            "all 2 node(s) failed: a:1 (timed out); b:2 (HTTP 503: server busy)"
        );
    }
}
