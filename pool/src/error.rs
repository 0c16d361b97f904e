//! Typed errors: what went wrong with a request, naming each node that was tried and why.

use std::fmt;

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
    /// The node's `host:port`.
    pub node: String,
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
        /// The node's `host:port`.
        node: String,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_nodes_failed_names_each_node_and_reason() {
        let error = PoolError::AllNodesFailed {
            failures: vec![
                NodeFailure {
                    node: "a:1".into(),
                    reason: FailureReason::Timeout,
                },
                NodeFailure {
                    node: "b:2".into(),
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
