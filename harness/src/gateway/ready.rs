//! Waiting for the gateway: `GET` a path it serves (`--ready-path`, by default `/api/version`
//! for the Ollama dialect and `/v1/models` for OpenAI's, which is all an OpenAI-only proxy
//! answers) with the user's headers, until it answers 2xx or the status the user named.
//!
//! A 400, 401, 403 or 407 ends the wait at once: a gateway that refuses the harness's key will
//! refuse every request, and a run of errors would hide that behind figures. (A starting server
//! answers nothing, 404 or 503, not these; LiteLLM's proxy answers a wrong key with 400 when it
//! has no database.)

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Api;
use crate::engine::Headers;

/// What counts as ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// The path `GET` is sent to.
    pub path: String,
    /// The status that counts as ready; `None` is any 2xx.
    pub status: Option<u16>,
}

impl Readiness {
    /// The path an `api` gateway is expected to serve, any 2xx.
    pub fn for_api(api: Api) -> Self {
        let path = match api {
            Api::Ollama => "/api/version",
            Api::Openai => "/v1/models",
        };
        Self {
            path: path.into(),
            status: None,
        }
    }

    fn accepts(&self, status: reqwest::StatusCode) -> bool {
        match self.status {
            Some(wanted) => status.as_u16() == wanted,
            None => status.is_success(),
        }
    }

    fn describe(&self) -> String {
        match self.status {
            Some(s) => format!("GET {} with {s}", self.path),
            None => format!("GET {} with 2xx", self.path),
        }
    }
}

/// Waits until the gateway at `target` answers as `ready` wants; returns its `Server` header,
/// which names many gateways and their version (`nginx/1.22.1`).
pub fn wait(
    target: &str,
    ready: &Readiness,
    headers: &Headers,
    timeout: Duration,
) -> anyhow::Result<Option<String>> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let url = format!("{target}{}", ready.path);
    let started = Instant::now();
    let mut last = String::from("no answer yet");
    for attempt in 0u64.. {
        if started.elapsed() >= timeout {
            break;
        }
        let mut request = client.get(&url);
        for header in headers.iter() {
            request = request.header(header.name(), header.value(&format!("ready-{attempt}")));
        }
        match request.send() {
            Ok(r) if ready.accepts(r.status()) => {
                let server = r.headers().get(reqwest::header::SERVER);
                return Ok(server.and_then(|v| v.to_str().ok()).map(str::to_owned));
            }
            Ok(r) if refused(r.status()) => {
                let status = r.status();
                let body = r.text().unwrap_or_default();
                anyhow::bail!(
                    "the gateway at {target} refused GET {} with {status}, which waiting will not \
                     mend: are its key or headers the ones it wants? (--header; sent: {}). It \
                     answered: {}",
                    ready.path,
                    sent(headers),
                    headers.redact(excerpt(&body)),
                );
            }
            Ok(r) => last = format!("status {}", r.status()),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!(
        "the gateway at {target} did not answer {} within {timeout:?} (last: {last}); --ready-path \
         and --ready-status name what it serves",
        ready.describe()
    )
}

fn refused(status: reqwest::StatusCode) -> bool {
    [400, 401, 403, 407].contains(&status.as_u16())
}

fn sent(headers: &Headers) -> String {
    if headers.is_empty() {
        "none".into()
    } else {
        headers.redacted().join(", ")
    }
}

/// The first 300 characters of an answer, on one line.
fn excerpt(body: &str) -> &str {
    let end = body.char_indices().nth(300).map_or(body.len(), |(i, _)| i);
    body[..end].trim()
}
