//! A node's identity: the `host:port` key SOLLOL's stats use, and the base URL requests go to.

use std::sync::Arc;

use crate::error::PoolError;

/// One Ollama node as the pool knows it; displays as its `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeAddr {
    /// Unique within one ledger for its lifetime; a node removed and added again gets a new id,
    /// so a request's "already tried" list never confuses the two.
    pub(crate) id: u64,
    /// `host:port`, the key of `node_performance` in the stats.
    pub(crate) key: Arc<str>,
    /// `http://host:port`, without a trailing slash.
    pub(crate) url: Arc<str>,
}

impl NodeAddr {
    pub(crate) fn new(id: u64, key: &str, url: &str) -> Self {
        Self {
            id,
            key: key.into(),
            url: url.into(),
        }
    }

    /// The pool's id for this node: unique for the pool's lifetime, never reused.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// `host:port`, the key of [`crate::PoolStats::node_performance`].
    pub fn key(&self) -> &str {
        &self.key
    }

    /// `http://host:port`, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl std::fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key)
    }
}

/// Splits a user-supplied node URL into its `host:port` key and base URL.
///
/// Accepts `http://host:port`, `http://host` (port 80), and a bare `host:port` (taken as http).
pub(crate) fn parse_node_url(text: &str) -> Result<(String, String), PoolError> {
    let invalid = |reason: &str| PoolError::InvalidUrl {
        url: text.to_owned(),
        reason: reason.to_owned(),
    };
    let with_scheme = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let url = reqwest::Url::parse(&with_scheme).map_err(|e| invalid(&e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(invalid("scheme must be http or https"));
    }
    let host = url.host_str().ok_or_else(|| invalid("missing host"))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| invalid("missing port"))?;
    if url.path() != "/" || url.query().is_some() {
        return Err(invalid("a node URL has no path or query"));
    }
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    Ok((
        format!("{host}:{port}"),
        format!("{}://{host}:{port}", url.scheme()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_normalise_to_key_and_base() {
        assert_eq!(
            parse_node_url("http://127.0.0.1:11434").unwrap(),
            ("127.0.0.1:11434".into(), "http://127.0.0.1:11434".into())
        );
        assert_eq!(
            parse_node_url("localhost:8080").unwrap().0,
            "localhost:8080"
        );
        assert_eq!(
            parse_node_url("http://gpu-box/").unwrap().1,
            "http://gpu-box:80"
        );
        assert_eq!(parse_node_url("http://[::1]:9").unwrap().0, "[::1]:9");
        for bad in [
            "",
            "ftp://x:1",
            "http://x:1/api",
            "http://:1",
            "http://x:99999",
        ] {
            assert!(parse_node_url(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
