//! The HTTP surface: Ollama's routes (native and OpenAI-compatible), error texts and content
//! types, plus `GET /metrics`.
//!
//! Handlers never panic on input: every malformed body maps to the status and text Ollama sends
//! (see `ollama-wire.md` in the shared notes), unknown paths get gin's `404 page not found` and
//! wrong methods gin's `405 method not allowed`.

mod control;
mod inference;
mod info;
mod openai;
mod served_log;
pub mod types;
pub mod validate;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::control::{Availability, AvailabilityCell, PatchError, SettingsPatch};
use crate::metrics::{Label, Metrics};
use crate::scheduler::Scheduler;
use crate::served::{self, ServedLog, Trace};

/// Ollama's text when its queue overflows (two spaces after the period, as in `sched.go`).
pub const BUSY_MESSAGE: &str = "server busy, please try again.  maximum pending requests exceeded";

/// What every handler shares: configuration, scheduler, counters.
#[derive(Debug)]
pub struct NodeState {
    /// Models, slots and queue.
    pub scheduler: Scheduler,
    /// Server-side counters.
    pub metrics: Metrics,
    /// The served-request log.
    pub served: Arc<ServedLog>,
    /// Up, busy or hanging (refusing is the accept loop's business).
    pub availability: AvailabilityCell,
    /// The node's accept loop, for the control API's `refuse` (set once the node runs).
    pub(crate) lifecycle: std::sync::OnceLock<std::sync::Weak<crate::server::Lifecycle>>,
    /// Bumped each time the accept loop stops: hanging requests then end (as an aborted
    /// connection), or a node with a hung client could never shut down.
    pub(crate) stops: tokio::sync::watch::Sender<u64>,
}

impl NodeState {
    /// Applies `patch` to the settings for requests that arrive from now on.
    pub fn update(&self, patch: &SettingsPatch) -> Result<(), PatchError> {
        let next = patch.apply(&self.scheduler.current())?;
        self.scheduler.replace_config(next);
        Ok(())
    }
}

/// An error answered as `{"error": message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Ollama's message.
    pub message: String,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn busy() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, BUSY_MESSAGE)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json(self.status, &serde_json::json!({ "error": self.message }))
    }
}

/// A JSON answer with Ollama's (gin's) content type.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut response = (status, bytes).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            response
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// A JSON answer whose body is already serialised.
pub fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// Marks a response whose connection must be aborted (an injected reset).
#[derive(Debug, Clone, Copy)]
struct ResetMarker;

/// A response that sends headers and then aborts the body, so the client sees a broken
/// connection rather than an answer.
fn reset_response() -> Response {
    let stream = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "injected reset",
        ))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response.extensions_mut().insert(ResetMarker);
    response
}

/// Binds a body as Ollama's handlers do (see [`validate::bind`]): `request` is the Go type's name
/// and `fields` the Go types its fields are checked against before decoding.
fn parse_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    request: &str,
    fields: &[(&str, validate::GoType)],
) -> Result<T, ApiError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, rejection.body_text())
        }
    })?;
    served::note_body(&bytes);
    let value = validate::bind(&bytes, request, fields)?;
    serde_json::from_value(value).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))
}

/// The endpoint label for counters: the route's path, or `other` for unknown paths.
fn endpoint_label(path: &str) -> &'static str {
    const KNOWN: [&str; 18] = [
        "/",
        "/api/version",
        "/api/tags",
        "/api/ps",
        "/api/show",
        "/api/embed",
        "/api/embeddings",
        "/api/generate",
        "/api/chat",
        "/metrics",
        "/v1/models",
        "/v1/embeddings",
        "/v1/chat/completions",
        "/v1/completions",
        "/mock/served",
        "/mock/residency",
        "/mock/config",
        "/mock/availability",
    ];
    if path.starts_with("/v1/models/") {
        return "/v1/models/{model}";
    }
    KNOWN
        .iter()
        .find(|k| **k == path)
        .copied()
        .unwrap_or("other")
}

/// Whether requests to `endpoint` are inference, logged in the served log. Control-plane calls
/// never are.
fn is_inference(endpoint: &str) -> bool {
    matches!(
        endpoint,
        "/api/embed"
            | "/api/embeddings"
            | "/api/generate"
            | "/api/chat"
            | "/v1/embeddings"
            | "/v1/chat/completions"
            | "/v1/completions"
    )
}

/// Counts each request once: by its final status, as `reset` when the mock aborted it, or as
/// `cancelled` when the client went away first (the guard's drop runs when the future is dropped).
/// Inference requests also get a served-log record for the handler to fill in.
async fn count_requests(
    State(state): State<Arc<NodeState>>,
    request: Request,
    next: Next,
) -> Response {
    struct Finish<'a> {
        metrics: &'a Metrics,
        endpoint: &'static str,
        label: Option<Label>,
        trace: Option<Arc<Trace>>,
    }
    impl Drop for Finish<'_> {
        fn drop(&mut self) {
            let label = self.label.unwrap_or(Label::Cancelled);
            self.metrics.record(self.endpoint, label);
            if let Some(trace) = self.trace.take() {
                match label {
                    Label::Status(status) => trace.finish(Some(status), false),
                    Label::Reset => trace.finish(None, true),
                    Label::Cancelled => trace.finish(None, false),
                }
            }
        }
    }
    let endpoint = endpoint_label(request.uri().path());
    let _in_flight = state.metrics.in_flight();
    let trace = (is_inference(endpoint) && state.served.is_on()).then(|| {
        let header = request
            .headers()
            .get(served::REQUEST_ID_HEADER)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        Arc::new(Trace::start(
            Arc::clone(&state.served),
            endpoint,
            header.as_deref(),
        ))
    });
    let mut finish = Finish {
        metrics: &state.metrics,
        endpoint,
        label: None,
        trace: trace.clone(),
    };
    let arrival = state.scheduler.current();
    let handled = async {
        let request = match availability_answer(&state, endpoint, trace.as_deref(), request).await {
            Ok(request) => request,
            Err(early) => return early,
        };
        crate::scheduler::with_settings_of_arrival(arrival, next.run(request)).await
    };
    let response = match trace.clone() {
        Some(trace) => served::scope(trace, handled).await,
        None => handled.await,
    };
    finish.label = Some(if response.extensions().get::<ResetMarker>().is_some() {
        Label::Reset
    } else {
        Label::Status(response.status().as_u16())
    });
    response
}

/// What a busy or hanging node does instead of handling the request (`Err` with the answer):
/// a busy node reads every inference request and answers it 503, as Ollama's handlers bind the
/// body before the scheduler refuses it; a hanging one reads every request but its `/mock/`
/// ones and answers none until it leaves hang, when it resets their connections. Either way the
/// body is read first, so the served log has the request's `[rid:ID]` even from a gateway that
/// does not pass `x-request-id` on.
async fn availability_answer(
    state: &NodeState,
    endpoint: &str,
    trace: Option<&Trace>,
    request: Request,
) -> Result<Request, Response> {
    if endpoint.starts_with("/mock/") {
        return Ok(request);
    }
    match state.availability.get() {
        Availability::Up => Ok(request),
        Availability::Busy if is_inference(endpoint) => {
            let limit = state.scheduler.current().max_body_bytes;
            if let Ok(body) = axum::body::to_bytes(request.into_body(), limit).await {
                served::note_body(&body);
            }
            Err(ApiError::busy().into_response())
        }
        Availability::Busy => Ok(request),
        Availability::Hang => {
            if let Some(trace) = trace {
                trace.hung();
            }
            let limit = state.scheduler.current().max_body_bytes;
            if let Ok(body) = axum::body::to_bytes(request.into_body(), limit).await {
                served::note_body(&body);
            }
            let mut stops = state.stops.subscribe();
            // Not answered while the node hangs: its connection is reset when the node leaves
            // hang or stops.
            tokio::select! {
                _ = stops.changed() => {}
                () = state.availability.left(Availability::Hang) => {}
            }
            Err(reset_response())
        }
    }
}

/// Builds the router of one node.
pub fn router(state: Arc<NodeState>) -> Router {
    let limit = state.scheduler.config().max_body_bytes;
    Router::new()
        .route("/", get(info::root))
        .route("/api/version", get(info::version))
        .route("/api/tags", get(info::tags))
        .route("/api/ps", get(info::ps))
        .route("/api/show", post(info::show))
        .route("/metrics", get(info::metrics))
        .route("/api/embed", post(inference::embed))
        .route("/api/embeddings", post(inference::embeddings))
        .route("/api/generate", post(inference::generate))
        .route("/api/chat", post(inference::chat))
        .route("/v1/models", get(openai::list_models))
        .route("/v1/models/{model}", get(openai::retrieve_model))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/mock/served", get(served_log::read))
        .route("/mock/residency", get(served_log::residency))
        .route(
            "/mock/config",
            get(control::get_config)
                .patch(control::patch_config)
                .post(control::patch_config),
        )
        .route("/mock/availability", post(control::set_availability))
        .fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found") })
        .method_not_allowed_fallback(|| async {
            (StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed")
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            count_requests,
        ))
        .with_state(state)
}

/// Nanoseconds since `start`, at least 1 so Ollama's omit-if-zero rule never drops the field.
fn nanos_since(start: Instant) -> u64 {
    (start.elapsed().as_nanos() as u64).max(1)
}
