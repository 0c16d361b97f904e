//! Request validation as Ollama does it: the shape of the body (Go's `encoding/json` binding),
//! `keep_alive` (Go's `time.ParseDuration`), `options` (`api.Options.FromMap`) and the limits that
//! keep one request from sizing unbounded work or memory.
//!
//! Texts and statuses follow Ollama's `server/routes.go` and `api/types.go`: a body or field of the
//! wrong JSON type is a 400 with Go's `json: cannot unmarshal ...` text; a `keep_alive` Go cannot
//! parse is a 400 with `time: ...`; an option of the wrong type is a 500 (`FromMap` runs in the
//! scheduler, after the model is found), and unknown options are ignored. JSON syntax errors are
//! 400s with serde's wording, not Go's (only "unexpected EOF" is worded as Go words it); like Go's
//! decoder, only the first JSON value of a body is read.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::ApiError;
use crate::models::ModelSpec;
use crate::residency::RunnerOptions;

/// Output tokens of one generation when neither `num_predict` nor `num_ctx` says otherwise, and
/// the context length assumed for every model (Ollama's default `num_ctx`).
pub const DEFAULT_CONTEXT: u64 = 4096;
/// Largest `num_ctx` honoured (the longest context of the models people serve, 128 Ki tokens);
/// Ollama clamps to the model's training length.
pub const MAX_CONTEXT: u64 = 131_072;

/// A JSON field's Go type, as binding checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoType {
    /// `string`.
    Str,
    /// `bool`.
    Bool,
    /// `int`.
    Int,
    /// `map[string]interface {}`.
    Map,
    /// `[]api.Message`.
    Messages,
    /// `[]int`.
    IntList,
    /// Anything (`any`, `json.RawMessage`, custom unmarshalers checked elsewhere).
    Any,
}

impl GoType {
    fn name(self) -> &'static str {
        match self {
            GoType::Str => "string",
            GoType::Bool => "bool",
            GoType::Int => "int",
            GoType::Map => "map[string]interface {}",
            GoType::Messages => "[]api.Message",
            GoType::IntList => "[]int",
            GoType::Any => "interface {}",
        }
    }

    /// Whether `value` binds; `null` always does (it leaves the zero value).
    fn accepts(self, value: &Value) -> bool {
        match (self, value) {
            (_, Value::Null) | (GoType::Any, _) => true,
            (GoType::Str, Value::String(_)) | (GoType::Bool, Value::Bool(_)) => true,
            (GoType::Int, Value::Number(n)) => n.is_i64() || n.is_u64(),
            (GoType::Map, Value::Object(_)) => true,
            (GoType::Messages | GoType::IntList, Value::Array(_)) => true,
            _ => false,
        }
    }
}

/// Go's name of a JSON value's kind, as `UnmarshalTypeError` prints it (`number 2.5` for a number
/// that does not fit an integer field).
fn kind(value: &Value, target: GoType) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(n) if target == GoType::Int => format!("number {n}"),
        Value::Number(_) => "number".into(),
        Value::String(_) => "string".into(),
        Value::Array(_) => "array".into(),
        Value::Object(_) => "object".into(),
    }
}

/// Go's name of a JSON value's kind for a field of type `any`, as in `cannot unmarshal array`.
pub fn json_kind(value: &Value) -> String {
    kind(value, GoType::Any)
}

/// Reads the first JSON value of `bytes` (Go's decoder ignores what follows it) and checks that it
/// is an object whose listed fields have their Go types, messages included. `request` is the Go
/// type's name in package `api` (`GenerateRequest`).
pub fn bind(bytes: &[u8], request: &str, fields: &[(&str, GoType)]) -> Result<Value, ApiError> {
    let value = decode(bytes, "api", request, fields)?;
    if let Some(messages) = value.get("messages").and_then(Value::as_array) {
        check_messages(messages, request)?;
    }
    Ok(value)
}

/// [`bind`] without the check of `messages`, for a type `request` in Go package `package`
/// (`openai.ChatCompletionRequest`, whose message content may be an array of parts).
pub fn decode(
    bytes: &[u8],
    package: &str,
    request: &str,
    fields: &[(&str, GoType)],
) -> Result<Value, ApiError> {
    let bad = |text: String| ApiError::new(StatusCode::BAD_REQUEST, text);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("missing request body".into()));
    }
    let value = serde_json::Deserializer::from_slice(bytes)
        .into_iter::<Value>()
        .next()
        .unwrap_or(Ok(Value::Null))
        .map_err(|e| {
            if e.is_eof() {
                bad("unexpected EOF".into())
            } else {
                bad(e.to_string())
            }
        })?;
    let object = match &value {
        Value::Object(map) => map,
        Value::Null => return Ok(Value::Object(Map::new())),
        other => {
            return Err(bad(format!(
                "json: cannot unmarshal {} into Go value of type {package}.{request}",
                kind(other, GoType::Any)
            )));
        }
    };
    for &(field, go_type) in fields {
        // Go matches keys case-insensitively; an exact match is what every client sends.
        if let Some(v) = object.get(field).filter(|v| !go_type.accepts(v)) {
            return Err(bad(format!(
                "json: cannot unmarshal {} into Go struct field {request}.{field} of type {}",
                kind(v, go_type),
                go_type.name()
            )));
        }
    }
    Ok(value)
}

fn check_messages(messages: &[Value], request: &str) -> Result<(), ApiError> {
    for message in messages {
        let Value::Object(fields) = message else {
            if message.is_null() {
                continue;
            }
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "json: cannot unmarshal {} into Go struct field {request}.messages of type api.Message",
                    kind(message, GoType::Any)
                ),
            ));
        };
        for field in ["role", "content"] {
            if let Some(v) = fields.get(field).filter(|v| !GoType::Str.accepts(v)) {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "json: cannot unmarshal {} into Go struct field {request}.messages.{field} of type string",
                        kind(v, GoType::Str)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `keep_alive`: `None` for absent or `null` (the server's default), else the duration; negative
/// values mean "forever" (`Duration::MAX`). Errors are Ollama's 400s.
pub fn keep_alive(value: Option<&Value>) -> Result<Option<Duration>, ApiError> {
    let bad = |text: String| ApiError::new(StatusCode::BAD_REQUEST, text);
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let seconds = n.as_f64().unwrap_or(0.0);
            Ok(Some(if seconds < 0.0 {
                Duration::MAX
            } else {
                Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
            }))
        }
        Some(Value::String(text)) => match go_duration(text) {
            Ok(nanos) if nanos < 0 => Ok(Some(Duration::MAX)),
            Ok(nanos) => Ok(Some(Duration::from_nanos(nanos.unsigned_abs()))),
            Err(e) => Err(bad(e)),
        },
        Some(Value::Bool(_)) => Err(bad("Unsupported type: 'bool'".into())),
        Some(Value::Array(_)) => Err(bad("Unsupported type: '[]interface {}'".into())),
        Some(Value::Object(_)) => Err(bad("Unsupported type: 'map[string]interface {}'".into())),
    }
}

/// Go's `time.ParseDuration`: signed nanoseconds, or its error text.
pub fn go_duration(text: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {text:?}");
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        if number.is_empty() || number == "." {
            return Err(invalid());
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {text:?}"));
        }
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(format!("time: unknown unit {unit:?} in duration {text:?}")),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    if total > i64::MAX as f64 {
        return Err(invalid());
    }
    let nanos = total as i64;
    Ok(if negative { -nanos } else { nanos })
}

/// The generation options the mock reads, after Ollama's `FromMap` type checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GenerationOptions {
    /// `num_predict` as sent.
    pub num_predict: Option<i64>,
    /// `num_ctx` as sent.
    pub num_ctx: Option<i64>,
    /// `num_batch` as sent.
    pub num_batch: Option<i64>,
    /// `num_gpu` as sent.
    pub num_gpu: Option<i64>,
    /// `main_gpu` as sent.
    pub main_gpu: Option<i64>,
    /// `use_mmap` as sent.
    pub use_mmap: Option<bool>,
    /// `num_thread` as sent.
    pub num_thread: Option<i64>,
}

/// Options Ollama types as integers, floats, strings lists and booleans (the ones clients send;
/// any other key is ignored, as Ollama ignores unknown keys).
const INT_OPTIONS: [&str; 11] = [
    "num_predict",
    "num_ctx",
    "seed",
    "top_k",
    "num_keep",
    "repeat_last_n",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "num_thread",
    "mirostat",
];
const FLOAT_OPTIONS: [&str; 10] = [
    "temperature",
    "top_p",
    "min_p",
    "typical_p",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "mirostat_tau",
    "mirostat_eta",
    "tfs_z",
];
const BOOL_OPTIONS: [&str; 3] = ["use_mmap", "penalize_newline", "numa"];

/// `options` checked as Ollama's `FromMap` checks it: a wrong type is a 500 naming the option.
pub fn options(value: Option<&Value>) -> Result<GenerationOptions, ApiError> {
    let Some(Value::Object(map)) = value else {
        return Ok(GenerationOptions::default());
    };
    let wrong = |key: &str, what: &str| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("option {key:?} must be of {what}"),
        )
    };
    let mut parsed = GenerationOptions::default();
    for (key, v) in map.iter().filter(|(_, v)| !v.is_null()) {
        let key = key.as_str();
        if INT_OPTIONS.contains(&key) {
            // Go's FromMap takes a float64 and truncates it.
            let n = v.as_f64().ok_or_else(|| wrong(key, "type integer"))?;
            let n = n as i64;
            let field = match key {
                "num_predict" => &mut parsed.num_predict,
                "num_ctx" => &mut parsed.num_ctx,
                "num_batch" => &mut parsed.num_batch,
                "num_gpu" => &mut parsed.num_gpu,
                "main_gpu" => &mut parsed.main_gpu,
                "num_thread" => &mut parsed.num_thread,
                _ => continue,
            };
            *field = Some(n);
        } else if FLOAT_OPTIONS.contains(&key) && !v.is_number() {
            return Err(wrong(key, "type float32"));
        } else if BOOL_OPTIONS.contains(&key) {
            let flag = v.as_bool().ok_or_else(|| wrong(key, "type boolean"))?;
            if key == "use_mmap" {
                parsed.use_mmap = Some(flag);
            }
        } else if key == "stop" {
            let items = v.as_array().ok_or_else(|| wrong(key, "type array"))?;
            if !items.iter().all(Value::is_string) {
                return Err(wrong(key, "an array of strings"));
            }
        }
    }
    Ok(parsed)
}

impl GenerationOptions {
    /// The runner options these ask of `spec`'s runner: each unset one at Ollama's default, and
    /// the context cut to the model's training context.
    pub fn runner(&self, spec: &ModelSpec) -> RunnerOptions {
        let default = RunnerOptions::default();
        RunnerOptions {
            num_ctx: self.context().min(spec.context_length.max(4)),
            num_batch: self.num_batch.unwrap_or(default.num_batch),
            num_gpu: self.num_gpu.unwrap_or(default.num_gpu),
            main_gpu: self.main_gpu.unwrap_or(default.main_gpu),
            use_mmap: self.use_mmap.or(default.use_mmap),
            num_thread: self.num_thread.unwrap_or(default.num_thread),
        }
    }

    /// The context length: `num_ctx` clamped to `[4, MAX_CONTEXT]` (Ollama raises anything below
    /// 4 to 4), or [`DEFAULT_CONTEXT`].
    pub fn context(&self) -> u64 {
        self.num_ctx
            .map_or(DEFAULT_CONTEXT, |n| n.clamp(4, MAX_CONTEXT as i64) as u64)
    }

    /// Output tokens: `num_predict` when in `1..=context`; capped at the context when larger or
    /// negative (Ollama caps at 10 x `num_ctx` and may shift the context to go on; the mock has no
    /// end-of-sequence token, so it stops at the context); `default` when absent or 0.
    pub fn output_tokens(&self, default: u64) -> u64 {
        let limit = self.context();
        match self.num_predict {
            None | Some(0) => default.clamp(1, limit),
            Some(n) if n < 0 => limit,
            Some(n) => (n as u64).min(limit),
        }
    }
}

/// `dimensions` on `/api/embed`, as Ollama's `EmbedHandler` applies it: when `0 < d < len` the
/// vector is cut to `d` and normalised again; otherwise it is returned whole.
pub fn truncate_embedding(mut vector: Vec<f32>, dimensions: Option<i64>) -> Vec<f32> {
    let Some(d) = dimensions.and_then(|d| usize::try_from(d).ok()) else {
        return vector;
    };
    if d == 0 || d >= vector.len() {
        return vector;
    }
    vector.truncate(d);
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    for x in &mut vector {
        *x /= norm;
    }
    vector
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_and_fail_as_go_does() {
        assert_eq!(go_duration("5m"), Ok(300_000_000_000));
        assert_eq!(go_duration("1h2m3.5s"), Ok(3_723_500_000_000));
        assert_eq!(go_duration("-1m"), Ok(-60_000_000_000));
        assert_eq!(go_duration("0"), Ok(0));
        assert_eq!(
            go_duration("zzz"),
            Err("time: invalid duration \"zzz\"".into())
        );
        assert_eq!(go_duration(""), Err("time: invalid duration \"\"".into()));
        assert_eq!(
            go_duration("5"),
            Err("time: missing unit in duration \"5\"".into())
        );
        assert_eq!(
            go_duration("5x"),
            Err("time: unknown unit \"x\" in duration \"5x\"".into())
        );
    }

    #[test]
    fn output_tokens_are_bounded_by_the_context() {
        let with = |num_predict, num_ctx| GenerationOptions {
            num_predict,
            num_ctx,
            ..GenerationOptions::default()
        };
        assert_eq!(
            with(Some(4_294_967_296), None).output_tokens(16),
            DEFAULT_CONTEXT
        );
        assert_eq!(with(Some(-1), None).output_tokens(16), DEFAULT_CONTEXT);
        assert_eq!(with(Some(10), None).output_tokens(16), 10);
        assert_eq!(with(None, None).output_tokens(16), 16);
        assert_eq!(with(Some(100), Some(-5)).output_tokens(16), 4);
        assert_eq!(
            with(Some(i64::MAX), Some(i64::MAX)).output_tokens(16),
            MAX_CONTEXT
        );
    }

    #[test]
    fn dimensions_cut_and_renormalise_only_inside_the_vector() {
        let v = vec![0.6, 0.8, 0.0];
        assert_eq!(truncate_embedding(v.clone(), Some(1)), [1.0]);
        for whole in [None, Some(0), Some(-2), Some(3), Some(99)] {
            assert_eq!(truncate_embedding(v.clone(), whole), v, "{whole:?}");
        }
    }
}
