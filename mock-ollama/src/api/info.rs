//! The control-plane endpoints: `/`, `/api/version`, `/api/tags`, `/api/ps`, `/api/show`, and the
//! mock's own `/metrics`.
//!
//! `/api/tags` and `/api/ps` wait `control_latency` first, so a benchmark can make a node's health
//! probe slow while its inference stays healthy: the situation in which a pool that holds its
//! global lock across probes stalls.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::types::ShowRequest;
use super::{ApiError, NodeState, json as json_response, parse_body};
use crate::models::{ModelKind, ModelSpec};

/// The Ollama version the mock reports.
pub const VERSION: &str = "0.13.5";

pub(super) async fn root() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Ollama is running",
    )
        .into_response()
}

pub(super) async fn version() -> Response {
    json_response(StatusCode::OK, &json!({ "version": VERSION }))
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_nanos(time).to_string()
}

fn details(spec: &ModelSpec) -> Value {
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": spec.family,
        "families": [spec.family],
        "parameter_size": spec.parameter_size,
        "quantization_level": spec.quantization,
    })
}

/// When every model was last modified, as `/api/tags` reports it (Unix seconds).
pub(super) const MODIFIED_UNIX: u64 = 1_746_405_464;

pub(super) async fn control_plane_delay(state: &NodeState) {
    let config = state.scheduler.config();
    crate::timer::sleep(config.timer, config.control_latency).await;
    let holds = state.scheduler.holds();
    holds.released(crate::hold::Held::ControlPlane).await;
}

pub(super) async fn tags(State(state): State<Arc<NodeState>>) -> Response {
    control_plane_delay(&state).await;
    let modified = rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(MODIFIED_UNIX));
    let models: Vec<Value> = state
        .scheduler
        .models()
        .iter()
        .map(|m| {
            json!({
                "name": m.spec.name,
                "model": m.spec.name,
                "modified_at": modified,
                "size": m.spec.size,
                "digest": m.spec.digest(),
                "details": details(&m.spec),
            })
        })
        .collect();
    json_response(StatusCode::OK, &json!({ "models": models }))
}

pub(super) async fn ps(State(state): State<Arc<NodeState>>) -> Response {
    control_plane_delay(&state).await;
    let now_wall = SystemTime::now();
    let now = tokio::time::Instant::now();
    let mut loaded: Vec<(Duration, Value)> = state
        .scheduler
        .models()
        .iter()
        .filter_map(|m| {
            let expires = state.scheduler.expires_at(m).filter(|t| *t > now)?;
            let options = state.scheduler.runner_options(m)?;
            let size = state.scheduler.footprint(m, options.num_ctx);
            let remaining = expires - now;
            Some((
                remaining,
                json!({
                    "name": m.spec.name,
                    "model": m.spec.name,
                    "size": size,
                    "digest": m.spec.digest(),
                    "details": details(&m.spec),
                    "expires_at": rfc3339(now_wall + remaining),
                    // The mock has no CPU offload: a runner is all in (simulated) VRAM.
                    "size_vram": size,
                    "context_length": options.num_ctx,
                }),
            ))
        })
        .collect();
    // Ollama lists the model with the longest remaining keep-alive first.
    loaded.sort_by_key(|entry| std::cmp::Reverse(entry.0));
    let models: Vec<Value> = loaded.into_iter().map(|(_, v)| v).collect();
    json_response(StatusCode::OK, &json!({ "models": models }))
}

pub(super) async fn show(
    State(state): State<Arc<NodeState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: ShowRequest = parse_body(body, "ShowRequest", ShowRequest::FIELDS)?;
    let name = request.model.or(request.name).unwrap_or_default();
    if name.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "model is required"));
    }
    let model = state
        .scheduler
        .resolve(&name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("model '{name}' not found")))?;
    let spec = &model.spec;
    let (capabilities, model_info) = match spec.kind {
        ModelKind::Embedding { dim } => (
            json!(["embedding"]),
            json!({ "general.architecture": spec.family, format!("{}.embedding_length", spec.family): dim }),
        ),
        ModelKind::Generation => (
            json!(["completion"]),
            json!({ "general.architecture": spec.family, format!("{}.context_length", spec.family): 131072 }),
        ),
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "license": "simulated model, no weights",
            "modelfile": format!("FROM {}\n", spec.name),
            "parameters": "",
            "template": "{{ .Prompt }}",
            "details": details(spec),
            "model_info": model_info,
            "capabilities": capabilities,
            "modified_at": rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(MODIFIED_UNIX)),
        }),
    ))
}

pub(super) async fn metrics(State(state): State<Arc<NodeState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
