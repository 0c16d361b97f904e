//! A typed, blocking client for a node's control API, served log and counters over HTTP, shipped
//! beside the server as toxiproxy ships its client: what a harness on another host (or a user's
//! own test) needs to drive a `mock-ollama --control-token T` node it did not start.
//!
//! Blocking (`reqwest::blocking`): call it from plain threads, not from inside an async runtime.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::blocking::{Client, RequestBuilder, Response};

use crate::control::{Availability, Settings, SettingsPatch};
use crate::served::{Entry, Page};

/// How long one control call may take, and how long [`ControlClient::wait_until_back`] waits.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request could not be sent or its answer read.
    #[error("{url}: {source}")]
    Http {
        /// The node.
        url: String,
        /// What went wrong.
        #[source]
        source: reqwest::Error,
    },
    /// The node answered with an error status (401 for a wrong token, 400 for a bad patch).
    #[error("{url}: {status}: {body}")]
    Status {
        /// The node.
        url: String,
        /// The status.
        status: u16,
        /// Its answer.
        body: String,
    },
    /// The served log's answer lacked one of its headers (not a mock-ollama node?).
    #[error("{url}: no {header} header in the served log's answer")]
    Header {
        /// The node.
        url: String,
        /// The header.
        header: &'static str,
    },
    /// A served-log line that is not an entry.
    #[error("{url}: a served-log line: {source}")]
    Line {
        /// The node.
        url: String,
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
    },
    /// The node did not answer again within [`CONTROL_TIMEOUT`] after refusing connections.
    #[error("{url} did not come back after refusing connections")]
    NotBack {
        /// The node.
        url: String,
    },
}

/// One node's control API.
#[derive(Debug, Clone)]
pub struct ControlClient {
    url: String,
    token: Option<String>,
    http: Client,
}

impl ControlClient {
    /// A client for the node at `url` (its base URL), sending `token` as a bearer token when
    /// given. Sends nothing yet.
    pub fn new(url: impl Into<String>, token: Option<String>) -> Result<Self, ClientError> {
        let url = url.into();
        let http = Client::builder()
            .timeout(CONTROL_TIMEOUT)
            .build()
            .map_err(|source| ClientError::Http {
                url: url.clone(),
                source,
            })?;
        Ok(Self { url, token, http })
    }

    /// The node's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.url));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    fn send(&self, request: RequestBuilder) -> Result<Response, ClientError> {
        let http = |source| ClientError::Http {
            url: self.url.clone(),
            source,
        };
        let response = request.send().map_err(http)?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        Err(ClientError::Status {
            url: self.url.clone(),
            status: status.as_u16(),
            body: response.text().unwrap_or_default().trim().to_owned(),
        })
    }

    fn json<T: serde::de::DeserializeOwned>(&self, response: Response) -> Result<T, ClientError> {
        response.json().map_err(|source| ClientError::Http {
            url: self.url.clone(),
            source,
        })
    }

    /// `GET /mock/config`: the node's settings and availability.
    pub fn settings(&self) -> Result<Settings, ClientError> {
        let response = self.send(self.request(Method::GET, "/mock/config"))?;
        self.json(response)
    }

    /// `PATCH /mock/config`: all of `patch` or none of it; returns the settings after.
    pub fn update(&self, patch: &SettingsPatch) -> Result<Settings, ClientError> {
        let request = self.request(Method::PATCH, "/mock/config").json(patch);
        let response = self.send(request)?;
        self.json(response)
    }

    /// `POST /mock/availability`: up, busy or hanging.
    pub fn set_availability(&self, availability: Availability) -> Result<(), ClientError> {
        let body = serde_json::json!({ "state": availability });
        let request = self.request(Method::POST, "/mock/availability");
        self.send(request.json(&body)).map(drop)
    }

    /// `POST /mock/availability` with `refuse`: the node stops listening for `down` and comes
    /// back by itself (it cannot be reached to be told).
    pub fn refuse_for(&self, down: Duration) -> Result<(), ClientError> {
        let body =
            serde_json::json!({ "state": "refuse", "for": format!("{}ms", down.as_millis()) });
        let request = self.request(Method::POST, "/mock/availability");
        self.send(request.json(&body)).map(drop)
    }

    /// Waits, for up to [`CONTROL_TIMEOUT`], until the node's control API answers again (a
    /// route no inference traffic is counted under).
    pub fn wait_until_back(&self) -> Result<(), ClientError> {
        let started = Instant::now();
        loop {
            let probe = self.request(Method::GET, "/mock/config").send();
            if probe.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if started.elapsed() >= CONTROL_TIMEOUT {
                return Err(ClientError::NotBack {
                    url: self.url.clone(),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Up to `limit` served-log entries from `since` on, paging through `GET /mock/served`
    /// (each page at most the node's own page limit).
    pub fn served(&self, since: u64, limit: usize) -> Result<Page, ClientError> {
        let mut page = Page {
            entries: Vec::new(),
            next: since,
            dropped: 0,
            started_unix_ns: 0,
            open: 0,
        };
        let mut first = true;
        loop {
            let left = limit.saturating_sub(page.entries.len()).min(100_000);
            let path = format!("/mock/served?since={}&limit={left}", page.next);
            let response = self.send(self.request(Method::GET, &path))?;
            let next = self.header(&response, "x-mock-next")? as u64;
            page.dropped = self.header(&response, "x-mock-dropped")? as u64;
            // The first page's count, read before any entry; a node from before the count sends
            // none: read as nothing open.
            if std::mem::take(&mut first) {
                page.open = self.header(&response, "x-mock-open").unwrap_or(0) as u64;
            }
            page.started_unix_ns = self.header(&response, "x-mock-started-unix-ns")?;
            let body = response.text().map_err(|source| ClientError::Http {
                url: self.url.clone(),
                source,
            })?;
            let before = page.entries.len();
            for line in body.lines().filter(|l| !l.is_empty()) {
                let entry: Entry =
                    serde_json::from_str(line).map_err(|source| ClientError::Line {
                        url: self.url.clone(),
                        source,
                    })?;
                page.entries.push(entry);
            }
            page.next = next;
            if page.entries.len() == before || page.entries.len() >= limit {
                return Ok(page);
            }
        }
    }

    fn header(&self, response: &Response, header: &'static str) -> Result<u128, ClientError> {
        response
            .headers()
            .get(header)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ClientError::Header {
                url: self.url.clone(),
                header,
            })
    }

    /// Finished requests by endpoint, every status together, from `GET /metrics`.
    pub fn requests_by_endpoint(&self) -> Result<BTreeMap<String, u64>, ClientError> {
        let response = self.send(self.request(Method::GET, "/metrics"))?;
        let text = response.text().map_err(|source| ClientError::Http {
            url: self.url.clone(),
            source,
        })?;
        Ok(requests_by_endpoint(&text))
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
