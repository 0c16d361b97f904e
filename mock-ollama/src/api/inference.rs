//! The inference endpoints: `/api/embed`, `/api/embeddings`, `/api/generate`, `/api/chat`.
//!
//! Each follows Ollama's order of checks (body, model name, model lookup, capability), then the
//! injected fault, then the scheduler: wait for the model to load, take a slot (one per embed
//! input, in turn), hold it for the service time. Slots and counters are RAII guards, so a client
//! that disconnects mid-request frees its slot when axum drops the handler's future.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

use super::types::{
    ChatRequest, EmbedRequest, EmbeddingsRequest, EmbeddingsResponse, GenerateRequest, Metrics,
};
use super::validate::{self, GenerationOptions, truncate_embedding};
use super::{
    ApiError, NodeState, json as json_response, json_bytes, nanos_since, parse_body, reset_response,
};
use crate::config::Leave;
use crate::embedding::{EmbeddingTable, estimate_tokens, fnv1a};
use crate::faults::{self, FAULT_HEADER, Fault};
use crate::residency::RunnerOptions;
use crate::scheduler::{Busy, InUse, ModelRuntime, Slot};
use crate::served;

impl From<Busy> for ApiError {
    fn from(_: Busy) -> Self {
        ApiError::busy()
    }
}

/// What the fault draw decided, after a stall (if any) has been served.
enum Proceed {
    /// Serve, with a fault to strike during the answer (`StallAfter`, `ResetAfter`) if any.
    Serve(Option<Fault>),
    Abort(Response),
}

/// Draws this request's fault (or reads the forced one) and applies what strikes before the
/// answer; a request that `generates` tokens keeps a fault that strikes during its answer.
async fn apply_fault(
    state: &NodeState,
    headers: &HeaderMap,
    rng: &mut SmallRng,
    generates: bool,
) -> Result<Proceed, ApiError> {
    let forced = match headers.get(FAULT_HEADER) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!("invalid {FAULT_HEADER} header"),
                    )
                })?
                .parse::<Fault>()
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?,
        ),
    };
    let config = state.scheduler.config();
    let fault = faults::decide(&config.faults, forced, rng);
    let fault = match generates {
        true => fault.for_generation(config.faults.after_tokens),
        false => fault.for_embedding(),
    };
    match fault {
        Fault::None => Ok(Proceed::Serve(None)),
        later @ (Fault::StallAfter(_) | Fault::ResetAfter(_)) => Ok(Proceed::Serve(Some(later))),
        Fault::Error => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "mock-ollama: injected server error",
        )),
        Fault::Reset => Ok(Proceed::Abort(reset_response())),
        Fault::Stall => {
            crate::served::note_stall();
            crate::timer::sleep(config.timer, config.faults.stall).await;
            Ok(Proceed::Serve(None))
        }
    }
}

/// Holds the slot until `took` after its service started (see [`Slot::started`]), and past that
/// while a test holds inference ([`crate::hold`]); a zero service time does not even yield, so the
/// node's own overhead can be measured.
async fn serve(state: &NodeState, slot: &mut Slot, took: Duration) {
    served::note_service_start(Instant::now(), slot.started);
    let _in_service = state.metrics.in_service();
    let due = slot.started + took;
    crate::timer::sleep_until(state.scheduler.config().timer, due).await;
    let holds = state.scheduler.holds();
    if holds.released(crate::hold::Held::Service).await {
        served::note_service_end(Instant::now());
    } else {
        slot.finished_on_time(due);
        // The precise timer may fire a little early; the log's end is never in the future.
        served::note_service_end(due.min(Instant::now()));
    }
    state.metrics.observe_service(took);
    if !took.is_zero() {
        state.metrics.observe_served(slot.started.elapsed());
    }
}

fn embedding_model(state: &NodeState, name: &str) -> Result<Arc<ModelRuntime>, ApiError> {
    let model = state.scheduler.resolve(name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("model {name:?} not found, try pulling it first"),
        )
    })?;
    if model.embeddings.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "this model does not support embeddings",
        ));
    }
    Ok(model)
}

/// Serves `inputs` one slot at a time, handing each served input to `emit`; returns the token
/// count and how long the request waited for the model, which takes the request's `keep_alive`.
async fn embed_items(
    state: &NodeState,
    model: &Arc<ModelRuntime>,
    (wanted, keep_alive): (RunnerOptions, Option<Duration>),
    inputs: &[String],
    rng: &mut SmallRng,
    mut emit: impl FnMut(&EmbeddingTable, &str),
) -> Result<(u64, Duration), ApiError> {
    let table = model.embeddings.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "this model does not support embeddings",
        )
    })?;
    let acquired = state
        .scheduler
        .acquire_model(model, &state.metrics, wanted, keep_alive)
        .await?;
    served::note_model(&model.spec.name, &acquired);
    let mut tokens = 0;
    for (i, input) in inputs.iter().enumerate() {
        let item_tokens = estimate_tokens(input);
        tokens += item_tokens;
        let took = state.scheduler.service_time(item_tokens, rng);
        let mut slot = state.scheduler.slot(model, &state.metrics, i == 0).await?;
        serve(state, &mut slot, took).await;
        drop(slot);
        emit(table, input);
    }
    let load_wait = acquired.waited;
    drop(acquired);
    served::note_tokens(tokens, 0, None);
    Ok((tokens, load_wait))
}

pub(super) async fn embed(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let request: EmbedRequest = parse_body(body, "EmbedRequest", EmbedRequest::FIELDS)?;
    let keep_alive = validate::keep_alive(request.keep_alive.as_ref())?;
    let name = request.model.unwrap_or_default();
    if name.trim().is_empty() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "model '' not found"));
    }
    let invalid = || ApiError::new(StatusCode::BAD_REQUEST, "invalid input type");
    let inputs: Vec<String> = match request.input {
        Value::Null => Vec::new(),
        Value::String(text) if text.is_empty() => Vec::new(),
        Value::String(text) => vec![text],
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(text) => Ok(text),
                _ => Err(invalid()),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(invalid()),
    };
    let model = embedding_model(&state, &name)?;
    let wanted = validate::options(request.options.as_ref())?.runner(&model.spec);
    let dimensions = request.dimensions;
    let mut rng = state.scheduler.request_rng();
    if let Proceed::Abort(response) = apply_fault(&state, &headers, &mut rng, false).await? {
        return Ok(response);
    }
    // The body is written by hand: formatting the vectors through serde would cost more than
    // everything else the node does (see `embedding`).
    let dim = model.embeddings.as_ref().map_or(0, |table| table.dim());
    let mut out = Vec::with_capacity(128 + inputs.len() * dim * 12);
    out.extend_from_slice(b"{\"model\":");
    serde_json::to_writer(&mut out, &name)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    out.extend_from_slice(b",\"embeddings\":[");
    let mut first = true;
    let (tokens, load_wait) = embed_items(
        &state,
        &model,
        (wanted, keep_alive),
        &inputs,
        &mut rng,
        |table, input| {
            if !first {
                out.push(b',');
            }
            first = false;
            match dimensions {
                None => table.write_json(input, &mut out),
                // The slow path: a shorter vector is normalised again, so it cannot reuse the
                // pre-formatted components.
                Some(_) => {
                    let vector = truncate_embedding(table.vector(input), dimensions);
                    // Writing floats into a Vec cannot fail.
                    let _ = serde_json::to_writer(&mut out, &vector);
                }
            }
        },
    )
    .await?;
    out.push(b']');
    let metrics = [
        ("total_duration", nanos_since(start)),
        ("load_duration", (load_wait.as_nanos() as u64).max(1)),
        ("prompt_eval_count", tokens),
    ];
    for (field, value) in metrics.iter().filter(|(_, v)| *v > 0) {
        out.extend_from_slice(format!(",\"{field}\":{value}").as_bytes());
    }
    out.push(b'}');
    Ok(json_bytes(StatusCode::OK, out))
}

pub(super) async fn embeddings(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: EmbeddingsRequest =
        parse_body(body, "EmbeddingRequest", EmbeddingsRequest::FIELDS)?;
    let keep_alive = validate::keep_alive(request.keep_alive.as_ref())?;
    let name = request.model.unwrap_or_default();
    if name.trim().is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "model is required"));
    }
    let model = embedding_model(&state, &name)?;
    let wanted = validate::options(request.options.as_ref())?.runner(&model.spec);
    let mut rng = state.scheduler.request_rng();
    if let Proceed::Abort(response) = apply_fault(&state, &headers, &mut rng, false).await? {
        return Ok(response);
    }
    let prompt: Vec<String> = request
        .prompt
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    let mut embedding = Vec::new();
    embed_items(
        &state,
        &model,
        (wanted, keep_alive),
        &prompt,
        &mut rng,
        |table, input| {
            embedding = table.vector(input).into_iter().map(f64::from).collect();
        },
    )
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &EmbeddingsResponse { embedding },
    ))
}

/// Which generation endpoint is answering; decides the response shape and error texts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Generate,
    Chat,
}

/// A validated generation request.
struct Generation {
    endpoint: Endpoint,
    model_name: String,
    model: Arc<ModelRuntime>,
    prompt: String,
    output_tokens: u64,
    /// The runner options it asks for.
    runner: RunnerOptions,
    stream: bool,
    /// The request's `keep_alive` (`Duration::MAX`: forever); `None`: the model keeps its own.
    keep_alive: Option<Duration>,
}

impl Generation {
    /// Ollama's unload request: `keep_alive: 0` with an empty prompt (or no messages).
    fn unloads(&self) -> bool {
        self.keep_alive == Some(Duration::ZERO)
    }
}

fn generation_model(
    state: &NodeState,
    name: &str,
    endpoint: Endpoint,
) -> Result<Arc<ModelRuntime>, ApiError> {
    let model = state
        .scheduler
        .resolve(name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("model '{name}' not found")))?;
    if model.spec.is_embedding() {
        let what = if endpoint == Endpoint::Generate {
            "generate"
        } else {
            "chat"
        };
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{:?} does not support {what}", model.spec.name),
        ));
    }
    Ok(model)
}

/// Output tokens for `options`, bounded by the context (see [`GenerationOptions::output_tokens`]).
fn output_tokens(state: &NodeState, options: GenerationOptions) -> u64 {
    options.output_tokens(u64::from(state.scheduler.config().default_output_tokens))
}

pub(super) async fn generate(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let request: GenerateRequest = parse_body(body, "GenerateRequest", GenerateRequest::FIELDS)?;
    let keep_alive = validate::keep_alive(request.keep_alive.as_ref())?;
    let model_name = request.model.unwrap_or_default();
    if model_name.trim().is_empty() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "model '' not found"));
    }
    let model = generation_model(&state, &model_name, Endpoint::Generate)?;
    let options = validate::options(request.options.as_ref())?;
    let job = Generation {
        endpoint: Endpoint::Generate,
        prompt: request.prompt.unwrap_or_default(),
        output_tokens: output_tokens(&state, options),
        runner: options.runner(&model.spec),
        stream: request.stream.unwrap_or(true),
        keep_alive,
        model_name,
        model,
    };
    run_generation(state, headers, job, start).await
}

pub(super) async fn chat(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let request: ChatRequest = parse_body(body, "ChatRequest", ChatRequest::FIELDS)?;
    let keep_alive = validate::keep_alive(request.keep_alive.as_ref())?;
    let model_name = request.model.unwrap_or_default();
    if model_name.trim().is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "model is required"));
    }
    let model = generation_model(&state, &model_name, Endpoint::Chat)?;
    let options = validate::options(request.options.as_ref())?;
    let messages = request.messages.unwrap_or_default();
    let prompt = messages
        .iter()
        .map(|m| m.content.as_deref().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let job = Generation {
        endpoint: Endpoint::Chat,
        prompt: if messages.is_empty() {
            String::new()
        } else {
            prompt
        },
        output_tokens: output_tokens(&state, options),
        runner: options.runner(&model.spec),
        stream: request.stream.unwrap_or(true),
        keep_alive,
        model_name,
        model,
    };
    run_generation(state, headers, job, start).await
}

const WORDS: [&str; 16] = [
    "the",
    "pool",
    "routes",
    "each",
    "request",
    "to",
    "a",
    "node",
    "that",
    "answers",
    "with",
    "tokens",
    "while",
    "others",
    "wait",
    "patiently",
];

/// One NDJSON line (or the whole non-streaming body) of a generation answer.
fn chunk(job: &Generation, text: &str, done: Option<(&str, Metrics)>) -> Value {
    let mut line = json!({
        "model": job.model_name,
        "created_at": humantime::format_rfc3339_nanos(SystemTime::now()).to_string(),
        "done": done.is_some(),
    });
    match job.endpoint {
        Endpoint::Generate => line["response"] = json!(text),
        Endpoint::Chat => line["message"] = json!({ "role": "assistant", "content": text }),
    }
    if let Some((reason, metrics)) = done {
        line["done_reason"] = json!(reason);
        if let (Value::Object(map), Ok(Value::Object(extra))) =
            (&mut line, serde_json::to_value(metrics))
        {
            map.extend(extra);
        }
    }
    line
}

/// The words of one answer, drawn one at a time from a seed of the prompt, so an answer of any
/// length costs memory for one token, not for all of them.
struct Words {
    rng: SmallRng,
    first: bool,
}

impl Words {
    fn new(prompt: &str) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(fnv1a(prompt.as_bytes())),
            first: true,
        }
    }

    fn next_token(&mut self) -> String {
        let word = WORDS[self.rng.random_range(0..WORDS.len())];
        let space = if std::mem::take(&mut self.first) {
            ""
        } else {
            " "
        };
        format!("{space}{word}")
    }
}

/// How a stretch of a stream's work ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Worked {
    /// It ran its length with the client there.
    Done,
    /// The client left (the receiver was dropped); the node worked `after` more.
    Left { after: Duration },
}

/// Works `took` with `timer`. A client that leaves meanwhile stops the work at once
/// ([`Leave::AtOnce`]) or once this stretch is done ([`Leave::AtNextToken`]: a runner learns of
/// it only when it next sends, so prompt evaluation and the token in progress finish).
async fn work(
    tx: &tokio::sync::mpsc::Sender<Line>,
    timer: crate::config::Timer,
    leave: Leave,
    took: Duration,
) -> Worked {
    if took.is_zero() {
        return match tx.is_closed() {
            true => Worked::Left {
                after: Duration::ZERO,
            },
            false => Worked::Done,
        };
    }
    let end = Instant::now() + took;
    tokio::select! {
        () = crate::timer::sleep(timer, took) => Worked::Done,
        () = tx.closed() => {
            let left = Instant::now();
            if leave == Leave::AtNextToken {
                crate::timer::sleep(timer, end.saturating_duration_since(left)).await;
            }
            Worked::Left { after: left.elapsed() }
        }
    }
}

fn ndjson_line(value: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// How long one generation takes, split as Ollama reports it.
#[derive(Debug, Clone, Copy)]
struct Timing {
    prompt_tokens: u64,
    /// Of the prompt's tokens, those the slot's cache held: not evaluated again.
    cached_tokens: u64,
    output_tokens: u64,
    prefill: Duration,
    decode: Duration,
    per_token: Duration,
    load_wait: Duration,
}

impl Timing {
    /// Prompt processing (base + the prompt's tokens not in the slot's cache at the prompt rate,
    /// or `per_token` each) and decoding (`per_token` per output token), each with its own
    /// jitter draw, over the node's speed. `shared` is the characters the slot's cache held; at
    /// least one token is evaluated, as Ollama's runner leaves one to sample from.
    fn draw(
        state: &NodeState,
        job: &Generation,
        (load_wait, shared): (Duration, usize),
        rng: &mut SmallRng,
    ) -> Self {
        let config = state.scheduler.config();
        let times = |tokens: u64| u32::try_from(tokens).unwrap_or(u32::MAX);
        let prompt_tokens = estimate_tokens(&job.prompt).max(1);
        let cached_tokens = (shared as u64 / 4).min(prompt_tokens - 1);
        let per_prompt = config.latency.prompt_time(prompt_tokens - cached_tokens);
        let prefill = state
            .scheduler
            .scaled(config.latency.base.saturating_add(per_prompt), rng);
        let output_tokens = job.output_tokens.max(1);
        let decode = state.scheduler.scaled(
            config
                .latency
                .per_token
                .saturating_mul(times(output_tokens)),
            rng,
        );
        Self {
            prompt_tokens,
            cached_tokens,
            output_tokens,
            prefill,
            decode,
            // `output_tokens` is at least 1 and bounded by the context, so this neither divides
            // by zero nor truncates.
            per_token: decode / times(output_tokens),
            load_wait,
        }
    }

    /// The six metrics of the final chunk, for a request that started at `start`.
    fn metrics(&self, start: Instant) -> Metrics {
        let nanos = |d: Duration| (d.as_nanos() as u64).max(1);
        Metrics {
            total_duration: nanos_since(start),
            load_duration: nanos(self.load_wait),
            prompt_eval_count: self.prompt_tokens,
            prompt_eval_duration: nanos(self.prefill),
            eval_count: self.output_tokens,
            eval_duration: nanos(self.decode),
        }
    }
}

async fn run_generation(
    state: Arc<NodeState>,
    headers: HeaderMap,
    job: Generation,
    start: Instant,
) -> Result<Response, ApiError> {
    let mut rng = state.scheduler.request_rng();
    let mid_answer = match apply_fault(&state, &headers, &mut rng, true).await? {
        Proceed::Abort(response) => return Ok(response),
        Proceed::Serve(later) => later,
    };
    let acquired = state
        .scheduler
        .acquire_model(&job.model, &state.metrics, job.runner, job.keep_alive)
        .await?;
    served::note_model(&job.model.spec.name, &acquired);
    let (in_use, load_wait) = (acquired.in_use, acquired.waited);
    if job.prompt.is_empty() {
        // Ollama's preload (and unload with keep_alive 0): answered at once, never streamed.
        let reason = if job.unloads() { "unload" } else { "load" };
        drop(in_use);
        if job.unloads() {
            state.scheduler.unload(&job.model);
        }
        let mut body = chunk(&job, "", None);
        body["done"] = json!(true);
        body["done_reason"] = json!(reason);
        return Ok(json_response(StatusCode::OK, &body));
    }
    let mut slot = state
        .scheduler
        .slot(&job.model, &state.metrics, true)
        .await?;
    let shared = slot.use_cache(&job.prompt, state.scheduler.config().prompt_cache);
    let timing = Timing::draw(&state, &job, (load_wait, shared), &mut rng);
    served::note_tokens(
        timing.prompt_tokens,
        timing.cached_tokens,
        Some(timing.output_tokens),
    );
    if !job.stream && mid_answer.is_none() && state.scheduler.config().leave == Leave::AtNextToken {
        return answer_detached(state, job, timing, start, (slot, in_use)).await;
    }
    if !job.stream {
        // Cut after k tokens: the node worked the prompt and those k, then the connection goes.
        let worked = match mid_answer {
            Some(Fault::ResetAfter(k)) => {
                let k = u64::from(k).min(timing.output_tokens);
                timing.prefill + timing.per_token * u32::try_from(k).unwrap_or(u32::MAX)
            }
            _ => timing.prefill + timing.decode,
        };
        serve(&state, &mut slot, worked).await;
        if let Some(Fault::StallAfter(_)) = mid_answer {
            // A generation held mid-way keeps its slot.
            served::note_stall();
            let config = state.scheduler.config();
            crate::timer::sleep(config.timer, config.faults.stall).await;
        }
        let held = (slot, in_use);
        drop(held);
        if let Some(Fault::ResetAfter(_)) = mid_answer {
            return Ok(reset_response());
        }
        let mut words = Words::new(&job.prompt);
        let text: String = (0..timing.output_tokens)
            .map(|_| words.next_token())
            .collect();
        let body = chunk(&job, &text, Some(("stop", timing.metrics(start))));
        return Ok(json_response(StatusCode::OK, &body));
    }
    let answer = Answer {
        job,
        timing,
        start,
        mid_answer,
    };
    Ok(stream_generation(state, answer, (slot, in_use)))
}

/// A non-streamed answer whose work goes on when its client leaves, as under
/// [`Leave::AtNextToken`]: it runs in a task of its own (the handler, dropped by the server when
/// the client closes the connection, only waits for it), which finishes the prompt evaluation or
/// the token in progress once the client is gone and logs how long it worked after.
async fn answer_detached(
    state: Arc<NodeState>,
    job: Generation,
    timing: Timing,
    start: Instant,
    held: (Slot, InUse),
) -> Result<Response, ApiError> {
    // The handler holds the receiver: when it is dropped, the task sees its sender closed.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Line>(1);
    let trace = served::current();
    if let Some(trace) = &trace {
        trace.service_start(Instant::now(), held.0.started);
    }
    tokio::spawn(async move {
        let (mut slot, in_use) = held;
        let _in_service = state.metrics.in_service();
        let timer = state.scheduler.config().timer;
        let prefill_end = slot.started + timing.prefill;
        let decode_end = prefill_end + timing.decode;
        // When the client left, and until when the node works on: the prompt's end during
        // prompt evaluation, the end of the token in progress during generation.
        let left = match until_or_left(&tx, timer, prefill_end).await {
            Some(left) => Some((left, prefill_end)),
            None => until_or_left(&tx, timer, decode_end).await.map(|left| {
                let per_token = timing.per_token.as_nanos().max(1);
                let done = left.saturating_duration_since(prefill_end).as_nanos() / per_token + 1;
                let next = prefill_end + timing.per_token * u32::try_from(done).unwrap_or(u32::MAX);
                (left, next.min(decode_end))
            }),
        };
        if let Some((left, until)) = left {
            crate::timer::sleep_until(timer, until).await;
            state.metrics.stream_abandoned();
            if let Some(trace) = &trace {
                trace.abandoned(until.saturating_duration_since(left));
            }
            return;
        }
        slot.finished_on_time(decode_end);
        state
            .metrics
            .observe_service(timing.prefill + timing.decode);
        if let Some(trace) = &trace {
            trace.service_end();
        }
        drop((slot, in_use));
        let mut words = Words::new(&job.prompt);
        let text: String = (0..timing.output_tokens)
            .map(|_| words.next_token())
            .collect();
        let body = chunk(&job, &text, Some(("stop", timing.metrics(start))));
        // The same bytes a plain answer has: one JSON object, no line break.
        let _ = tx
            .send(Ok(Bytes::from(
                serde_json::to_vec(&body).unwrap_or_default(),
            )))
            .await;
    });
    match rx.recv().await {
        Some(Ok(body)) => Ok(json_bytes(StatusCode::OK, body.to_vec())),
        _ => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "mock-ollama: the generation ended without an answer",
        )),
    }
}

/// Sleeps until `end`, or until the client behind `tx` leaves: `None` when `end` came, or
/// when the client left.
async fn until_or_left(
    tx: &tokio::sync::mpsc::Sender<Line>,
    timer: crate::config::Timer,
    end: Instant,
) -> Option<Instant> {
    tokio::select! {
        () = crate::timer::sleep_until(timer, end) => None,
        () = tx.closed() => Some(Instant::now()),
    }
}

/// A generation ready to stream.
struct Answer {
    job: Generation,
    timing: Timing,
    start: Instant,
    /// A stall or reset that strikes after some of its tokens.
    mid_answer: Option<Fault>,
}

/// One item of a streamed body: a line, or the error that cuts the connection.
type Line = Result<Bytes, std::io::Error>;

/// Strikes `fault` into a stream before its token `index` when it is due there (a fault due
/// past the last token strikes before the final line): a stall holds the stream (a client
/// leaving meanwhile is handled as during any work), a reset cuts it. `Err` when the stream
/// must end here.
async fn strike(
    fault: Option<Fault>,
    index: u64,
    last: u64,
    tx: &tokio::sync::mpsc::Sender<Line>,
    state: &NodeState,
    trace: Option<&Arc<served::Trace>>,
) -> Result<(), Worked> {
    let due = |k: u32| u64::from(k).min(last) == index;
    let config = state.scheduler.config();
    match fault {
        Some(Fault::StallAfter(k)) if due(k) => {
            if let Some(trace) = trace {
                trace.stalled();
            }
            match work(tx, config.timer, config.leave, config.faults.stall).await {
                Worked::Done => Ok(()),
                left => Err(left),
            }
        }
        Some(Fault::ResetAfter(k)) if due(k) => {
            if let Some(trace) = trace {
                trace.reset();
            }
            let cut = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected reset");
            let _ = tx.send(Err(cut)).await;
            Err(Worked::Done)
        }
        _ => Ok(()),
    }
}

/// Streams the answer token by token from a task of its own; the slot and the model (`held`)
/// stay taken until the last line is written or the client leaves, which releases them at once,
/// not at its next token.
fn stream_generation(state: Arc<NodeState>, answer: Answer, held: (Slot, InUse)) -> Response {
    let Answer {
        job,
        timing,
        start,
        mid_answer,
    } = answer;
    let (tx, rx) = tokio::sync::mpsc::channel::<Line>(8);
    // The task holds the request's served-log record: the entry is written when it ends.
    let trace = served::current();
    if let Some(trace) = &trace {
        trace.service_start(Instant::now(), held.0.started);
    }
    tokio::spawn(async move {
        let held = held;
        let abandoned = |after: Duration| {
            state.metrics.stream_abandoned();
            if let Some(trace) = &trace {
                trace.abandoned(after);
            }
        };
        let config = state.scheduler.config();
        let (timer, leave) = (config.timer, config.leave);
        // Prompt processing counts from the slot's service start, as a non-streamed answer does.
        let prefill_left =
            (held.0.started + timing.prefill).saturating_duration_since(Instant::now());
        if let Worked::Left { after } = work(&tx, timer, leave, prefill_left).await {
            return abandoned(after);
        }
        let mut words = Words::new(&job.prompt);
        let last = timing.output_tokens;
        for index in 0..=last {
            match strike(mid_answer, index, last, &tx, &state, trace.as_ref()).await {
                Err(Worked::Left { after }) => return abandoned(after),
                Err(Worked::Done) => return,
                Ok(()) if index == last => break,
                Ok(()) => {}
            }
            if let Worked::Left { after } = work(&tx, timer, leave, timing.per_token).await {
                return abandoned(after);
            }
            let line = ndjson_line(&chunk(&job, &words.next_token(), None));
            if tx.send(Ok(line)).await.is_err() {
                return abandoned(Duration::ZERO);
            }
        }
        state
            .metrics
            .observe_service(timing.prefill + timing.decode);
        if let Some(trace) = &trace {
            trace.service_end();
        }
        let done = chunk(&job, "", Some(("stop", timing.metrics(start))));
        let _ = tx.send(Ok(ndjson_line(&done))).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let line = rx.recv().await?;
        if line.is_err() {
            // hyper puts the lines before into its write buffer and flushes it only once the
            // body is pending; pending once here lets it flush them before the cut aborts the
            // connection, so the client gets exactly the lines sent before the fault.
            tokio::task::yield_now().await;
        }
        Some((line, rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    response
}
