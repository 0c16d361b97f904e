//! The control API over HTTP (see [`crate::control`]): `GET /mock/config`, `PATCH /mock/config`
//! (a [`SettingsPatch`] as JSON), and `POST /mock/availability` with
//! `{"state": "up" | "busy" | "hang" | "refuse", "for": "2s"}` (`for` is required for `refuse`).
//! With a token set, every call needs `Authorization: Bearer TOKEN` (401 otherwise, nothing
//! changed); with the control API off, these routes answer 404.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{ApiError, NodeState, json};
use crate::control::{Availability, ControlAccess, Settings, SettingsPatch};
use crate::duration::parse_duration;

/// Checks the caller against the node's [`ControlAccess`].
pub(super) fn authorize(state: &NodeState, headers: &HeaderMap) -> Result<(), ApiError> {
    match &state.scheduler.current().control {
        ControlAccess::Open => Ok(()),
        ControlAccess::Off => Err(ApiError::new(StatusCode::NOT_FOUND, "404 page not found")),
        ControlAccess::Token(token) => {
            let sent = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            // Compared without an early exit on the first differing byte: the time taken does
            // not tell a caller how much of a guess was right.
            let matches = sent.is_some_and(|sent| {
                sent.len() == token.len()
                    && sent
                        .bytes()
                        .zip(token.bytes())
                        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                        == 0
            });
            if matches {
                Ok(())
            } else {
                Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "a control token is required: Authorization: Bearer TOKEN",
                ))
            }
        }
    }
}

fn settings(state: &NodeState) -> Response {
    json(
        StatusCode::OK,
        &Settings::of(&state.scheduler.current(), state.availability.get()),
    )
}

pub(super) async fn get_config(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    Ok(settings(&state))
}

pub(super) async fn patch_config(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let patch: SettingsPatch = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    state
        .update(&patch)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok(settings(&state))
}

/// The body of `POST /mock/availability`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    state: String,
    #[serde(rename = "for")]
    down_for: Option<String>,
}

pub(super) async fn set_availability(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let bad = |text: String| ApiError::new(StatusCode::BAD_REQUEST, text);
    let change: Change = serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
    let next = match change.state.as_str() {
        "up" => Availability::Up,
        "busy" => Availability::Busy,
        "hang" => Availability::Hang,
        "refuse" => {
            let text = change.down_for.ok_or_else(|| {
                bad(
                    "refuse needs \"for\": a refusing node cannot be reached to bring it back"
                        .into(),
                )
            })?;
            let down = parse_duration(&text).map_err(|e| bad(format!("for: {e}")))?;
            let lifecycle = state
                .lifecycle
                .get()
                .and_then(std::sync::Weak::upgrade)
                .ok_or_else(|| bad("this node cannot refuse connections".into()))?;
            // Its own task: stopping the accept loop waits for requests in flight, this one
            // included, so it cannot be awaited here.
            tokio::spawn(async move {
                if let Err(e) = lifecycle.refuse_for(down).await {
                    tracing::error!("the node could not come back after refusing: {e}");
                }
            });
            return Ok((StatusCode::ACCEPTED, settings(&state)).into_response());
        }
        other => {
            return Err(bad(format!(
                "unknown state {other:?}: expected up, busy, hang or refuse"
            )));
        }
    };
    state.availability.set(next);
    Ok(settings(&state))
}
