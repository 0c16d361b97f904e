//! The OpenAI-compatible routes, served as Ollama serves them: `GET /v1/models`,
//! `GET /v1/models/{model}`, `POST /v1/chat/completions`, `POST /v1/completions`,
//! `POST /v1/embeddings`.
//!
//! Like Ollama's own middleware (`middleware/openai.go` in ollama/ollama at
//! 5dbb81b72c4b61b737e4970db711f7718e4efcc6, converters in `openai/openai.go` at
//! 634c416645790c84dfc80849b05f84b3853b127f), each route checks the OpenAI body, rewrites it
//! into the native request, runs the native handler and rewrites its answer. So these routes
//! share the native routes' scheduler, slots, queue, latency model, faults and counters by
//! construction, not by a second copy of the request path.
//!
//! Wire details taken from that source (notes in `/work/notes/ollama-openai.md`):
//! - ids are `chatcmpl-N` / `cmpl-N` with N random in 0..999, shared by a request's chunks;
//!   `created` is Unix seconds; `system_fingerprint` is `fp_ollama`; `owned_by` is the model
//!   name's namespace (`library` for plain names).
//! - `finish_reason` is the native `done_reason` on the last chunk and `null` before it;
//!   `usage` maps `prompt_eval_count`/`eval_count`.
//! - Streams are `text/event-stream`, `data: {json}\n\n` per chunk, then `data: [DONE]\n\n`.
//!   With `stream_options.include_usage`, chat adds one chunk with `"choices": []` and the usage;
//!   completions also put an all-zero `usage` on every earlier chunk.
//! - Errors are `{"error": {"message", "type", "param": null, "code": null}}`: the middleware's
//!   own checks answer 400 `invalid_request_error`; an error from the native handler keeps its
//!   status and is typed `api_error` whatever the status (the pinned middleware; a later revision
//!   types 404 as `not_found_error`).
//! - Embeddings: `encoding_format` `float` or `base64` (case-insensitive; base64 of the
//!   little-endian f32 bytes), `dimensions` passed to the native request, `""` embedded as
//!   `[""]`, missing or empty input 400 `invalid input`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures_util::StreamExt;
use rand::RngExt;
use serde_json::{Value, json};

use super::validate::{self, GoType};
use super::{ApiError, NodeState, ResetMarker, inference, info};

/// The largest native answer read back for rewriting: far above any body the mock writes
/// (embeddings of a full batch are a few megabytes), so only a bug could reach it.
const MAX_NATIVE_BODY: usize = 256 << 20;

/// An error in OpenAI's shape.
struct OpenAiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl OpenAiError {
    /// A check of the middleware's own: 400 `invalid_request_error`.
    fn invalid(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            message: message.into(),
        }
    }

    /// An error the native handler answered: its status, typed `api_error`.
    fn native(error: ApiError) -> Self {
        Self {
            status: error.status,
            kind: "api_error",
            message: error.message,
        }
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": { "message": self.message, "type": self.kind, "param": null, "code": null }
        });
        openai_json(self.status, &body)
    }
}

/// A JSON answer as Go's encoder writes it: `application/json`, ending in a newline.
fn openai_json(status: StatusCode, body: &Value) -> Response {
    let mut bytes = serde_json::to_vec(body).unwrap_or_default();
    bytes.push(b'\n');
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Binds an OpenAI body: Go's decode errors become 400 `invalid_request_error`.
fn bind(
    body: Result<Bytes, BytesRejection>,
    request: &str,
    fields: &[(&str, GoType)],
) -> Result<serde_json::Map<String, Value>, OpenAiError> {
    let bytes = body.map_err(|rejection| OpenAiError {
        status: rejection.status(),
        kind: "invalid_request_error",
        message: rejection.body_text(),
    })?;
    match validate::decode(&bytes, "openai", request, fields) {
        Ok(Value::Object(map)) => Ok(map),
        // `decode` answers an object or an error.
        Ok(_) => Ok(serde_json::Map::new()),
        Err(e) => Err(OpenAiError {
            status: e.status,
            kind: "invalid_request_error",
            message: e.message,
        }),
    }
}

fn native_body(value: &Value) -> Result<Bytes, BytesRejection> {
    Ok(Bytes::from(serde_json::to_vec(value).unwrap_or_default()))
}

/// What the native handler answered, for rewriting: passed through untouched when it is an
/// injected reset (the connection must break the same way), an OpenAI error when it failed.
enum Native {
    Answer(Response),
    Passthrough(Response),
}

fn classify(result: Result<Response, ApiError>) -> Result<Native, OpenAiError> {
    let response = result.map_err(OpenAiError::native)?;
    if response.extensions().get::<ResetMarker>().is_some() {
        return Ok(Native::Passthrough(response));
    }
    Ok(Native::Answer(response))
}

/// Reads a whole native answer's bytes; a non-2xx answer becomes the OpenAI error.
async fn read_native_bytes(response: Response) -> Result<Bytes, OpenAiError> {
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), MAX_NATIVE_BODY)
        .await
        .map_err(|e| {
            OpenAiError::native(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                e.to_string(),
            ))
        })?;
    if !status.is_success() {
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let message = value["error"].as_str().map_or_else(
            || String::from_utf8_lossy(&bytes).into_owned(),
            str::to_owned,
        );
        return Err(OpenAiError::native(ApiError::new(status, message)));
    }
    Ok(bytes)
}

/// Reads a whole native JSON answer; a non-2xx answer becomes the OpenAI error.
async fn read_native(response: Response) -> Result<Value, OpenAiError> {
    let bytes = read_native_bytes(response).await?;
    Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The parts of a native `/api/embed` answer the OpenAI one needs, the vectors left as their
/// JSON text: parsing 1,024 floats per input and printing them again made `/v1/embeddings`
/// cost three times `/api/embed`.
#[derive(serde::Deserialize)]
struct NativeEmbed<'a> {
    #[serde(borrow)]
    embeddings: Vec<&'a serde_json::value::RawValue>,
    #[serde(default)]
    prompt_eval_count: u64,
}

/// The native `done_reason`, or `null` before the last chunk.
fn finish_reason(native: &Value) -> Value {
    match native["done_reason"].as_str() {
        Some(reason) if !reason.is_empty() => json!(reason),
        _ => Value::Null,
    }
}

fn usage(native: &Value) -> Value {
    let prompt = native["prompt_eval_count"].as_u64().unwrap_or(0);
    let completion = native["eval_count"].as_u64().unwrap_or(0);
    json!({ "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion })
}

// ---------------------------------------------------------------------------------------------
// Models

/// Owner of a model name: its namespace (`user/model`), else `library`.
fn owned_by(name: &str) -> &str {
    match name.rsplit_once('/') {
        Some((path, _)) => path.rsplit('/').next().unwrap_or("library"),
        None => "library",
    }
}

fn model_object(name: &str) -> Value {
    json!({
        "id": name,
        "object": "model",
        "created": info::MODIFIED_UNIX,
        "owned_by": owned_by(name),
    })
}

pub(super) async fn list_models(State(state): State<Arc<NodeState>>) -> Response {
    info::control_plane_delay(&state).await;
    let data: Vec<Value> = state
        .scheduler
        .models()
        .iter()
        .map(|m| model_object(&m.spec.name))
        .collect();
    // Go encodes an empty nil slice as null.
    let data = if data.is_empty() {
        Value::Null
    } else {
        json!(data)
    };
    openai_json(StatusCode::OK, &json!({ "object": "list", "data": data }))
}

pub(super) async fn retrieve_model(
    State(state): State<Arc<NodeState>>,
    Path(model): Path<String>,
) -> Response {
    info::control_plane_delay(&state).await;
    if state.scheduler.resolve(&model).is_none() {
        return OpenAiError::native(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("model '{model}' not found"),
        ))
        .into_response();
    }
    openai_json(StatusCode::OK, &model_object(&model))
}

// ---------------------------------------------------------------------------------------------
// Embeddings

const EMBED_FIELDS: &[(&str, GoType)] = &[
    ("input", GoType::Any),
    ("model", GoType::Str),
    ("dimensions", GoType::Int),
    ("encoding_format", GoType::Str),
];

/// How vectors are written back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Float,
    Base64,
}

fn encoding(format: Option<&str>) -> Result<Encoding, OpenAiError> {
    match format.unwrap_or("") {
        "" => Ok(Encoding::Float),
        f if f.eq_ignore_ascii_case("float") => Ok(Encoding::Float),
        f if f.eq_ignore_ascii_case("base64") => Ok(Encoding::Base64),
        f => Err(OpenAiError::invalid(format!(
            "Invalid value for 'encoding_format' = {f}. Supported values: ['float', 'base64']."
        ))),
    }
}

fn base64_vector(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(super) async fn embeddings(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match embeddings_inner(state, headers, body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn embeddings_inner(
    state: Arc<NodeState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OpenAiError> {
    let request = bind(body, "EmbedRequest", EMBED_FIELDS)?;
    let encoding = encoding(request.get("encoding_format").and_then(Value::as_str))?;
    let input = match request.get("input") {
        Some(Value::String(text)) if text.is_empty() => json!([""]),
        None | Some(Value::Null) => return Err(OpenAiError::invalid("invalid input")),
        Some(Value::Array(items)) if items.is_empty() => {
            return Err(OpenAiError::invalid("invalid input"));
        }
        Some(other) => other.clone(),
    };
    let model = request.get("model").cloned().unwrap_or(json!(""));
    let mut native = json!({ "model": model, "input": input });
    if let Some(d) = request
        .get("dimensions")
        .and_then(Value::as_i64)
        .filter(|d| *d != 0)
    {
        native["dimensions"] = json!(d);
    }
    let answer = inference::embed(State(state), headers, native_body(&native)).await;
    let response = match classify(answer)? {
        Native::Passthrough(response) => return Ok(response),
        Native::Answer(response) => response,
    };
    let bytes = read_native_bytes(response).await?;
    let native: NativeEmbed<'_> = serde_json::from_slice(&bytes).map_err(|e| {
        OpenAiError::native(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        ))
    })?;
    // Written by hand in the Go structs' key order (object, data, model, usage).
    let mut out = Vec::with_capacity(bytes.len() + 128);
    out.extend_from_slice(br#"{"object":"list","data":["#);
    for (index, vector) in native.embeddings.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"object":"embedding","embedding":"#);
        match encoding {
            Encoding::Float => out.extend_from_slice(vector.get().as_bytes()),
            Encoding::Base64 => {
                let floats: Vec<f32> = serde_json::from_str(vector.get()).unwrap_or_default();
                let _ = serde_json::to_writer(&mut out, &base64_vector(&floats));
            }
        }
        out.extend_from_slice(format!(r#","index":{index}}}"#).as_bytes());
    }
    out.extend_from_slice(br#"],"model":"#);
    let _ = serde_json::to_writer(&mut out, &model);
    let tokens = native.prompt_eval_count;
    out.extend_from_slice(
        format!(r#","usage":{{"prompt_tokens":{tokens},"total_tokens":{tokens}}}}}"#).as_bytes(),
    );
    out.push(b'\n');
    let mut response = (StatusCode::OK, out).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

// ---------------------------------------------------------------------------------------------
// Chat and completions

const CHAT_FIELDS: &[(&str, GoType)] = &[
    ("model", GoType::Str),
    ("messages", GoType::Any),
    ("stream", GoType::Bool),
    ("stream_options", GoType::Map),
    ("max_tokens", GoType::Int),
    ("seed", GoType::Int),
];

const COMPLETION_FIELDS: &[(&str, GoType)] = &[
    ("model", GoType::Str),
    ("prompt", GoType::Str),
    ("stream", GoType::Bool),
    ("stream_options", GoType::Map),
    ("max_tokens", GoType::Int),
    ("seed", GoType::Int),
    ("suffix", GoType::Str),
];

/// Which OpenAI route is answering; decides the shapes of bodies and chunks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Chat,
    Completion,
}

/// What a generation answer is rewritten with.
struct Shape {
    route: Route,
    id: String,
    model: Value,
    include_usage: bool,
}

impl Shape {
    fn new(route: Route, model: Value, request: &serde_json::Map<String, Value>) -> Self {
        let n = rand::rng().random_range(0..999);
        let id = match route {
            Route::Chat => format!("chatcmpl-{n}"),
            Route::Completion => format!("cmpl-{n}"),
        };
        let include_usage = request
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Self {
            route,
            id,
            model,
            include_usage,
        }
    }

    /// The text of one native answer or line.
    fn text(&self, native: &Value) -> Value {
        match self.route {
            Route::Chat => native["message"]["content"].clone(),
            Route::Completion => native["response"].clone(),
        }
    }

    /// The whole non-streamed answer.
    fn complete(&self, native: &Value) -> Value {
        let text = json!(self.text(native).as_str().unwrap_or(""));
        let choice = match self.route {
            Route::Chat => json!({
                "index": 0,
                "message": { "role": "assistant", "content": text },
                "finish_reason": finish_reason(native),
            }),
            Route::Completion => json!({
                "text": text, "index": 0, "finish_reason": finish_reason(native),
            }),
        };
        let object = match self.route {
            Route::Chat => "chat.completion",
            Route::Completion => "text_completion",
        };
        json!({
            "id": self.id,
            "object": object,
            "created": unix_now(),
            "model": self.model,
            "system_fingerprint": "fp_ollama",
            "choices": [choice],
            "usage": usage(native),
        })
    }

    /// One stream chunk for one native line; `usage` is set on completions' chunks when the
    /// client asked for usage (all zero), and on the extra last chunk (`choices` empty).
    fn chunk(&self, choices: Value, usage: Option<Value>) -> Value {
        let object = match self.route {
            Route::Chat => "chat.completion.chunk",
            Route::Completion => "text_completion",
        };
        let mut chunk = json!({
            "id": self.id,
            "object": object,
            "created": unix_now(),
            "model": self.model,
            "system_fingerprint": "fp_ollama",
            "choices": choices,
        });
        if let Some(usage) = usage {
            chunk["usage"] = usage;
        }
        chunk
    }

    /// The SSE events for one native NDJSON line.
    fn events(&self, native: &Value) -> Vec<Bytes> {
        let text = json!(self.text(native).as_str().unwrap_or(""));
        let choice = match self.route {
            Route::Chat => json!({
                "index": 0,
                "delta": { "role": "assistant", "content": text },
                "finish_reason": finish_reason(native),
            }),
            Route::Completion => json!({
                "text": text, "index": 0, "finish_reason": finish_reason(native),
            }),
        };
        let zero = json!({ "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0 });
        let per_chunk_usage =
            (self.include_usage && self.route == Route::Completion).then_some(zero);
        let mut events = vec![sse(&self.chunk(json!([choice]), per_chunk_usage))];
        if native["done"].as_bool() == Some(true) {
            if self.include_usage {
                events.push(sse(&self.chunk(json!([]), Some(usage(native)))));
            }
            events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        }
        events
    }
}

fn sse(value: &Value) -> Bytes {
    let mut bytes = b"data: ".to_vec();
    bytes.extend(serde_json::to_vec(value).unwrap_or_default());
    bytes.extend_from_slice(b"\n\n");
    Bytes::from(bytes)
}

/// Rewrites a native NDJSON stream into SSE events, line by line as the lines arrive.
fn sse_stream(shape: Shape, native: Response) -> Response {
    struct Lines {
        body: axum::body::BodyDataStream,
        pending: Vec<u8>,
        shape: Shape,
        broken: bool,
    }
    let lines = Lines {
        body: native.into_body().into_data_stream(),
        pending: Vec::new(),
        shape,
        broken: false,
    };
    let events = futures_util::stream::unfold(lines, |mut lines| async move {
        loop {
            if lines.broken {
                return None;
            }
            if let Some(end) = lines.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = lines.pending.drain(..=end).collect();
                let Ok(value) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                let events = lines.shape.events(&value).into_iter().map(Ok);
                return Some((
                    futures_util::stream::iter(events.collect::<Vec<_>>()),
                    lines,
                ));
            }
            match lines.body.next().await {
                Some(Ok(bytes)) => lines.pending.extend_from_slice(&bytes),
                // The native stream was cut (an injected reset): so is this one.
                Some(Err(cut)) => {
                    lines.broken = true;
                    // Pending once, so hyper flushes the events before (see the native stream).
                    tokio::task::yield_now().await;
                    let cut = std::io::Error::new(std::io::ErrorKind::ConnectionReset, cut);
                    return Some((futures_util::stream::iter(vec![Err(cut)]), lines));
                }
                None => return None,
            }
        }
    })
    .flatten();
    let mut response = Response::new(Body::from_stream(events));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response
}

/// Runs a native generation answer through `shape`: one body, or an SSE stream.
async fn rewrite(
    shape: Shape,
    stream: bool,
    answer: Result<Response, ApiError>,
) -> Result<Response, OpenAiError> {
    let response = match classify(answer)? {
        Native::Passthrough(response) => return Ok(response),
        Native::Answer(response) => response,
    };
    if !response.status().is_success() {
        return Err(read_native(response).await.err().unwrap_or_else(|| {
            OpenAiError::native(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "native error",
            ))
        }));
    }
    let is_stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/x-ndjson"));
    if stream && is_stream {
        return Ok(sse_stream(shape, response));
    }
    let native = read_native(response).await?;
    if stream {
        // An answer the native handler never streams (a preload): one chunk, then done.
        let events: Vec<Result<Bytes, std::convert::Infallible>> =
            shape.events(&native).into_iter().map(Ok).collect();
        let mut response = Response::new(Body::from_stream(futures_util::stream::iter(events)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        return Ok(response);
    }
    Ok(openai_json(StatusCode::OK, &shape.complete(&native)))
}

/// `max_tokens` and `seed` as native options.
fn options(request: &serde_json::Map<String, Value>) -> Value {
    let mut options = serde_json::Map::new();
    if let Some(n) = request.get("max_tokens").filter(|v| !v.is_null()) {
        options.insert("num_predict".into(), n.clone());
    }
    if let Some(seed) = request.get("seed").filter(|v| !v.is_null()) {
        options.insert("seed".into(), seed.clone());
    }
    Value::Object(options)
}

/// A message's content as text: a string, or the text parts of an array of parts.
fn content_text(content: &Value) -> Result<String, OpenAiError> {
    match content {
        Value::String(text) => Ok(text.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => Ok(parts
            .iter()
            .filter(|p| p["type"] == "text")
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("")),
        other => Err(OpenAiError::invalid(format!(
            "invalid message content type: {}",
            go_kind(other)
        ))),
    }
}

/// The Go type `encoding/json` decodes a value into `any` as.
fn go_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

pub(super) async fn chat_completions(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let request = bind(body, "ChatCompletionRequest", CHAT_FIELDS)?;
        let messages = match request.get("messages") {
            Some(Value::Array(messages)) if !messages.is_empty() => messages,
            Some(Value::Array(_)) | None | Some(Value::Null) => {
                return Err(OpenAiError::invalid("[] is too short - 'messages'"));
            }
            Some(other) => {
                return Err(OpenAiError::invalid(format!(
                    "json: cannot unmarshal {} into Go struct field ChatCompletionRequest.messages of type []openai.Message",
                    validate::json_kind(other)
                )));
            }
        };
        let native_messages = messages
            .iter()
            .map(|m| {
                let role = m["role"].as_str().unwrap_or("user");
                Ok(json!({ "role": role, "content": content_text(&m["content"])? }))
            })
            .collect::<Result<Vec<_>, OpenAiError>>()?;
        let stream = request.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let model = request.get("model").cloned().unwrap_or(json!(""));
        let shape = Shape::new(Route::Chat, model.clone(), &request);
        let native = json!({
            "model": model, "messages": native_messages, "stream": stream, "options": options(&request),
        });
        let answer = inference::chat(State(state), headers, native_body(&native)).await;
        rewrite(shape, stream, answer).await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

pub(super) async fn completions(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let request = bind(body, "CompletionRequest", COMPLETION_FIELDS)?;
        let stream = request
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let model = request.get("model").cloned().unwrap_or(json!(""));
        let shape = Shape::new(Route::Completion, model.clone(), &request);
        let native = json!({
            "model": model,
            "prompt": request.get("prompt").cloned().unwrap_or(json!("")),
            "stream": stream,
            "options": options(&request),
        });
        let answer = inference::generate(State(state), headers, native_body(&native)).await;
        rewrite(shape, stream, answer).await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_namespaces() {
        assert_eq!(owned_by("all-minilm"), "library");
        assert_eq!(owned_by("user/model:tag"), "user");
        assert_eq!(owned_by("registry.example/team/model"), "team");
    }

    #[test]
    fn base64_is_little_endian_f32() {
        let encoded = base64_vector(&[1.0, -2.0]);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(
            bytes,
            [1.0f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat()
        );
    }

    #[test]
    fn content_parts_and_bad_types() {
        assert_eq!(content_text(&json!("hi")).ok().as_deref(), Some("hi"));
        let parts = json!([{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}]);
        assert_eq!(content_text(&parts).ok().as_deref(), Some("ab"));
        let err = content_text(&json!(1.5)).err().map(|e| e.message);
        assert_eq!(
            err.as_deref(),
            Some("invalid message content type: float64")
        );
    }
}
