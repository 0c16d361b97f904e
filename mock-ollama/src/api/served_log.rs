//! `GET /mock/served?since=SEQ&limit=N`: the served-request log as JSON lines, one entry per
//! line, oldest first. The page's position travels in headers, so every body line is an entry:
//! `x-mock-next` (the `since` of the next page), `x-mock-dropped` (entries lost from the ring:
//! nonzero means exact accounting is no longer possible), `x-mock-open` (requests received and
//! not yet logged: a reader that needs every entry of a finished run reads again until it is 0)
//! and `x-mock-started-unix-ns` (the node's wall-clock start, to place the entries' monotonic
//! times).
//!
//! `GET /mock/residency`: the node's residency timeline as one JSON object (`events`, oldest
//! first, on the served log's clock; `dropped`), see [`crate::residency`].

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{ApiError, NodeState};

/// Most entries one page returns.
pub const MAX_PAGE: usize = 100_000;

/// The query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Window {
    #[serde(default)]
    since: u64,
    limit: Option<usize>,
}

pub(super) async fn read(
    State(state): State<Arc<NodeState>>,
    headers: axum::http::HeaderMap,
    query: Result<Query<Window>, QueryRejection>,
) -> Result<Response, ApiError> {
    // Readable with the control API off (it changes nothing); with a token, only with it.
    if matches!(
        state.scheduler.current().control,
        crate::control::ControlAccess::Token(_)
    ) {
        super::control::authorize(&state, &headers)?;
    }
    let Query(window) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let limit = window.limit.unwrap_or(MAX_PAGE).min(MAX_PAGE);
    let page = state.served.read(window.since, limit);
    let mut body = Vec::with_capacity(page.entries.len() * 256);
    for entry in &page.entries {
        // An entry is plain data: serialising it cannot fail.
        let _ = serde_json::to_writer(&mut body, entry);
        body.push(b'\n');
    }
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    for (name, value) in [
        ("x-mock-next", page.next.to_string()),
        ("x-mock-dropped", page.dropped.to_string()),
        ("x-mock-open", page.open.to_string()),
        ("x-mock-started-unix-ns", page.started_unix_ns.to_string()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    Ok(response)
}

/// The residency timeline; readable as the served log is.
pub(super) async fn residency(
    State(state): State<Arc<NodeState>>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    if matches!(
        state.scheduler.current().control,
        crate::control::ControlAccess::Token(_)
    ) {
        super::control::authorize(&state, &headers)?;
    }
    let events = state.scheduler.residency_events();
    Ok(super::json(StatusCode::OK, &events))
}
