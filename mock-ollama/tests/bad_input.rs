//! Bad and extreme input, each kind answered as Ollama answers it (status and text from Ollama's
//! `server/routes.go` and `api/types.go`), with no panic, every request counted once, and memory
//! bounded. Each case is named, so a regression names the input that brought it back.
//!
//! This binary has one test: the panic hook it installs is process-wide.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mock_ollama::{MockNode, NodeConfig};
use serde_json::Value;

static PANICS: AtomicU64 = AtomicU64::new(0);

/// What a case must get back.
enum Want {
    /// This status and exactly this `error` text.
    Error(u16, &'static str),
    /// This status and an `error` text containing this (for serde's syntax errors, whose wording
    /// is not Go's).
    ErrorContaining(u16, &'static str),
    /// This status, and the body passes the check.
    Ok(fn(&str) -> Result<(), String>),
}

struct Case {
    name: &'static str,
    path: &'static str,
    body: String,
    want: Want,
}

fn case(name: &'static str, path: &'static str, body: &str, want: Want) -> Case {
    Case {
        name,
        path,
        body: body.to_owned(),
        want,
    }
}

fn json(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))
}

fn any_ok(_: &str) -> Result<(), String> {
    Ok(())
}

fn eval_count_is_context(text: &str) -> Result<(), String> {
    let v = json(text)?;
    (v["eval_count"] == 4096).then_some(()).ok_or_else(|| {
        format!(
            "eval_count {} is not the 4096-token context",
            v["eval_count"]
        )
    })
}

fn streamed_context_lines(text: &str) -> Result<(), String> {
    let lines = text.lines().count();
    (lines == 4097)
        .then_some(())
        .ok_or_else(|| format!("{lines} lines, want 4096 tokens and a final line"))
}

fn five_unit_components(text: &str) -> Result<(), String> {
    let v = json(text)?;
    let vector: Vec<f64> =
        serde_json::from_value(v["embeddings"][0].clone()).map_err(|e| e.to_string())?;
    let norm: f64 = vector.iter().map(|x| x * x).sum::<f64>().sqrt();
    (vector.len() == 5 && (norm - 1.0).abs() < 1e-5)
        .then_some(())
        .ok_or_else(|| format!("{} components, norm {norm}", vector.len()))
}

fn full_384_components(text: &str) -> Result<(), String> {
    let v = json(text)?;
    let len = v["embeddings"][0].as_array().map_or(0, Vec::len);
    (len == 384)
        .then_some(())
        .ok_or_else(|| format!("{len} components"))
}

fn cases() -> Vec<Case> {
    use Want::{Error, Ok};
    let gen_ = "/api/generate";
    let mut cases = vec![
        // The body itself.
        case(
            "empty body",
            "/api/embed",
            "",
            Error(400, "missing request body"),
        ),
        case(
            "whitespace body",
            gen_,
            " \n ",
            Error(400, "missing request body"),
        ),
        case(
            "truncated JSON",
            gen_,
            r#"{"model":"#,
            Error(400, "unexpected EOF"),
        ),
        case(
            "body is an array",
            gen_,
            "[1]",
            Error(
                400,
                "json: cannot unmarshal array into Go value of type api.GenerateRequest",
            ),
        ),
        case(
            "body is a number",
            "/api/chat",
            "42",
            Error(
                400,
                "json: cannot unmarshal number into Go value of type api.ChatRequest",
            ),
        ),
        case(
            "body is a string",
            "/api/embed",
            r#""hi""#,
            Error(
                400,
                "json: cannot unmarshal string into Go value of type api.EmbedRequest",
            ),
        ),
        case(
            "body is a bool",
            "/api/show",
            "true",
            Error(
                400,
                "json: cannot unmarshal bool into Go value of type api.ShowRequest",
            ),
        ),
        case(
            "body is null",
            "/api/embed",
            "null",
            Error(404, "model '' not found"),
        ),
        case(
            "trailing garbage after the object",
            "/api/embed",
            r#"{"model":"all-minilm","input":"x"} xyz"#,
            Ok(any_ok),
        ),
        // Fields of the wrong type.
        case(
            "model is a number",
            gen_,
            r#"{"model":1}"#,
            Error(
                400,
                "json: cannot unmarshal number into Go struct field GenerateRequest.model of type string",
            ),
        ),
        case(
            "prompt is a number",
            gen_,
            r#"{"model":"llama3.2","prompt":1}"#,
            Error(
                400,
                "json: cannot unmarshal number into Go struct field GenerateRequest.prompt of type string",
            ),
        ),
        case(
            "messages is a string",
            "/api/chat",
            r#"{"model":"llama3.2","messages":"hi"}"#,
            Error(
                400,
                "json: cannot unmarshal string into Go struct field ChatRequest.messages of type []api.Message",
            ),
        ),
        case(
            "message role is a number",
            "/api/chat",
            r#"{"model":"llama3.2","messages":[{"role":1}]}"#,
            Error(
                400,
                "json: cannot unmarshal number into Go struct field ChatRequest.messages.role of type string",
            ),
        ),
        case(
            "message content is a list of parts",
            "/api/chat",
            r#"{"model":"llama3.2","messages":[{"role":"user","content":[{"type":"text"}]}]}"#,
            Error(
                400,
                "json: cannot unmarshal array into Go struct field ChatRequest.messages.content of type string",
            ),
        ),
        case(
            "stream is a string",
            gen_,
            r#"{"model":"llama3.2","stream":"yes"}"#,
            Error(
                400,
                "json: cannot unmarshal string into Go struct field GenerateRequest.stream of type bool",
            ),
        ),
        case(
            "options is an array",
            gen_,
            r#"{"model":"llama3.2","options":[1]}"#,
            Error(
                400,
                "json: cannot unmarshal array into Go struct field GenerateRequest.options of type map[string]interface {}",
            ),
        ),
        case(
            "truncate is a string",
            "/api/embed",
            r#"{"model":"all-minilm","truncate":"yes"}"#,
            Error(
                400,
                "json: cannot unmarshal string into Go struct field EmbedRequest.truncate of type bool",
            ),
        ),
        case(
            "dimensions is a string",
            "/api/embed",
            r#"{"model":"all-minilm","dimensions":"5"}"#,
            Error(
                400,
                "json: cannot unmarshal string into Go struct field EmbedRequest.dimensions of type int",
            ),
        ),
        case(
            "dimensions is a fraction",
            "/api/embed",
            r#"{"model":"all-minilm","dimensions":2.5}"#,
            Error(
                400,
                "json: cannot unmarshal number 2.5 into Go struct field EmbedRequest.dimensions of type int",
            ),
        ),
        case(
            "embed input is a number",
            "/api/embed",
            r#"{"model":"all-minilm","input":5}"#,
            Error(400, "invalid input type"),
        ),
        case(
            "embed input is an object",
            "/api/embed",
            r#"{"model":"all-minilm","input":{"a":"b"}}"#,
            Error(400, "invalid input type"),
        ),
        case(
            "embed input is nested lists",
            "/api/embed",
            r#"{"model":"all-minilm","input":[["a"]]}"#,
            Error(400, "invalid input type"),
        ),
        // keep_alive, as Go's api.Duration parses it.
        case(
            "keep_alive is a bool",
            gen_,
            r#"{"model":"llama3.2","keep_alive":true}"#,
            Error(400, "Unsupported type: 'bool'"),
        ),
        case(
            "keep_alive is an object",
            "/api/embed",
            r#"{"model":"all-minilm","keep_alive":{}}"#,
            Error(400, "Unsupported type: 'map[string]interface {}'"),
        ),
        case(
            "keep_alive is not a duration",
            "/api/chat",
            r#"{"model":"llama3.2","keep_alive":"zzz"}"#,
            Error(400, "time: invalid duration \"zzz\""),
        ),
        case(
            "keep_alive has no unit",
            gen_,
            r#"{"model":"llama3.2","keep_alive":"5"}"#,
            Error(400, "time: missing unit in duration \"5\""),
        ),
        case(
            "keep_alive has an unknown unit",
            gen_,
            r#"{"model":"llama3.2","keep_alive":"5x"}"#,
            Error(400, "time: unknown unit \"x\" in duration \"5x\""),
        ),
        case(
            "keep_alive is null",
            gen_,
            r#"{"model":"llama3.2","prompt":"hi","stream":false,"keep_alive":null}"#,
            Ok(any_ok),
        ),
        // options, checked by the scheduler after the model is found (500, as Ollama's FromMap).
        case(
            "num_predict is a string",
            gen_,
            r#"{"model":"llama3.2","options":{"num_predict":"100"}}"#,
            Error(500, "option \"num_predict\" must be of type integer"),
        ),
        case(
            "temperature is a string",
            "/api/chat",
            r#"{"model":"llama3.2","options":{"temperature":"hot"}}"#,
            Error(500, "option \"temperature\" must be of type float32"),
        ),
        case(
            "stop is a string",
            gen_,
            r#"{"model":"llama3.2","options":{"stop":"x"}}"#,
            Error(500, "option \"stop\" must be of type array"),
        ),
        case(
            "stop holds a number",
            gen_,
            r#"{"model":"llama3.2","options":{"stop":[1]}}"#,
            Error(500, "option \"stop\" must be of an array of strings"),
        ),
        case(
            "bad option on an unknown model",
            gen_,
            r#"{"model":"ghost","options":{"num_predict":"x"}}"#,
            Error(404, "model 'ghost' not found"),
        ),
        case(
            "unknown option is ignored",
            gen_,
            r#"{"model":"llama3.2","prompt":"hi","stream":false,"options":{"foo":1}}"#,
            Ok(any_ok),
        ),
        // Values that size work or memory.
        case(
            "num_predict past u32 (panicked before)",
            gen_,
            r#"{"model":"llama3.2","prompt":"hi","stream":false,"options":{"num_predict":4294967296}}"#,
            Ok(eval_count_is_context),
        ),
        case(
            "num_predict of a billion, streamed (aborted the process before)",
            gen_,
            r#"{"model":"llama3.2","prompt":"hi","options":{"num_predict":1000000000}}"#,
            Ok(streamed_context_lines),
        ),
        case(
            "num_predict negative means the context",
            gen_,
            r#"{"model":"llama3.2","prompt":"hi","stream":false,"options":{"num_predict":-1}}"#,
            Ok(eval_count_is_context),
        ),
        case(
            "dimensions cuts and renormalises",
            "/api/embed",
            r#"{"model":"all-minilm","input":"x","dimensions":5}"#,
            Ok(five_unit_components),
        ),
        case(
            "dimensions 0 returns the whole vector",
            "/api/embed",
            r#"{"model":"all-minilm","input":"x","dimensions":0}"#,
            Ok(full_384_components),
        ),
        case(
            "dimensions past the length returns the whole vector",
            "/api/embed",
            r#"{"model":"all-minilm","input":"x","dimensions":99999}"#,
            Ok(full_384_components),
        ),
        // Model names.
        case(
            "blank model on embed",
            "/api/embed",
            r#"{"model":"   ","input":"x"}"#,
            Error(404, "model '' not found"),
        ),
        case(
            "missing model on chat",
            "/api/chat",
            "{}",
            Error(400, "model is required"),
        ),
        case(
            "missing model on embeddings",
            "/api/embeddings",
            "{}",
            Error(400, "model is required"),
        ),
        case(
            "missing model on show",
            "/api/show",
            "{}",
            Error(400, "model is required"),
        ),
    ];
    // Shapes no client sends on purpose.
    let deep = format!(
        r#"{{"model":"all-minilm","input":{}"x"{}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    cases.push(Case {
        name: "input nested 5,000 deep",
        path: "/api/embed",
        body: deep,
        want: Want::ErrorContaining(400, "recursion limit exceeded"),
    });
    cases.push(Case {
        name: "a 1 MB prompt",
        path: "/api/generate",
        body: format!(
            r#"{{"model":"llama3.2","stream":false,"prompt":"{}"}}"#,
            "word ".repeat(200_000)
        ),
        want: Want::Ok(any_ok),
    });
    cases.push(Case {
        name: "a body past the size limit",
        path: "/api/embed",
        body: format!(
            r#"{{"model":"all-minilm","input":"{}"}}"#,
            "x".repeat(3 << 20)
        ),
        want: Want::Error(413, "request body too large"),
    });
    cases
}

/// Peak resident memory of this process, from `/proc/self/status` (Linux).
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[tokio::test]
async fn every_bad_input_is_answered_as_ollama_answers_it() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let node = MockNode::spawn(NodeConfig::with_latency(Duration::ZERO))
        .await
        .expect("node starts");
    let client = reqwest::Client::new();
    let cases = cases();
    assert!(cases.len() >= 30, "the issue asks for at least 30 kinds");
    let mut failures = Vec::new();
    for case in &cases {
        let response = client
            .post(format!("{}{}", node.url(), case.path))
            .header("content-type", "application/json")
            .body(case.body.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: no answer: {e}", case.name));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let verdict = match &case.want {
            Want::Error(want_status, want_text) => {
                let got = json(&text)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_owned));
                (status == *want_status && got.as_deref() == Some(*want_text))
                    .then_some(())
                    .ok_or_else(|| {
                        format!("got {status} {text:.200}, want {want_status} {want_text:?}")
                    })
            }
            Want::ErrorContaining(want_status, part) => {
                let got = json(&text)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_owned));
                (status == *want_status && got.as_deref().is_some_and(|g| g.contains(part)))
                    .then_some(())
                    .ok_or_else(|| {
                        format!("got {status} {text:.200}, want {want_status} with {part:?}")
                    })
            }
            Want::Ok(check) if status == 200 => check(&text),
            Want::Ok(_) => Err(format!("got {status} {text:.200}, want 200")),
        };
        if let Err(why) = verdict {
            failures.push(format!("{}: {why}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "no handler may panic");
    let counted: u64 = node.counters().requests.values().sum();
    assert_eq!(
        counted,
        cases.len() as u64,
        "every request counted exactly once"
    );
    let peak = peak_rss_bytes().unwrap_or(0);
    assert!(peak < 512 << 20, "peak resident memory {} MiB", peak >> 20);
}
