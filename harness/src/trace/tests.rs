//! The trace reader against the committed traces, bad rows, and the prompt builder's sharing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::parse::timestamp_ns;
use super::*;

fn committed(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data/traces")
        .join(name)
}

/// A file of its own in the temp directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn with(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("trace-test-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("temp file");
        Self(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn the_committed_azure_trace_reads_whole_with_its_arrivals() {
    let trace = Trace::load(&committed("azure-llm-2023-conv.csv")).expect("reads");
    assert_eq!(trace.format, Format::AzureCsv);
    assert_eq!(trace.requests.len(), 19_366);
    let first = &trace.requests[0];
    assert_eq!(
        (first.at, first.input_tokens, first.output_tokens),
        (Duration::ZERO, 374, 44)
    );
    // 18:15:50.9951690 - 18:15:46.6805900.
    assert_eq!(trace.requests[1].at, Duration::from_nanos(4_314_579_000));
    assert!(trace.requests.windows(2).all(|w| w[0].at <= w[1].at));
    let span = trace.requests.last().map(|r| r.at).unwrap_or_default();
    assert!(span > Duration::from_secs(55 * 60) && span < Duration::from_secs(61 * 60));
}

#[test]
fn the_committed_mooncake_trace_reads_whole_with_its_blocks() {
    let trace = Trace::load(&committed("mooncake-fast25-synthetic.jsonl")).expect("reads");
    assert_eq!(trace.format, Format::MooncakeJsonl);
    assert_eq!(trace.requests.len(), 3_993);
    let first = &trace.requests[0];
    assert_eq!((first.input_tokens, first.output_tokens), (40_160, 6));
    // ceil(40,160 / 512) blocks, numbered from 0.
    assert_eq!(first.blocks.len(), 79);
    assert_eq!(first.blocks[..3], [0, 1, 2]);
    assert_eq!(trace.requests[2].at, Duration::from_millis(40));
}

#[test]
fn a_bad_row_is_an_error_naming_the_file_and_line() {
    let csv = Scratch::with(
        "bad.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,10,3\n2023-11-16 18:15:47,ten,3\n",
    );
    let message = Trace::load(&csv.0).unwrap_err().to_string();
    assert!(
        message.contains("bad.csv:3:") && message.contains("ContextTokens"),
        "{message}"
    );
    let jsonl = Scratch::with(
        "bad.jsonl",
        "{\"timestamp\": 0, \"input_length\": 5, \"output_length\": 1}\n{\"timestamp\": \"soon\"}\n",
    );
    let message = Trace::load(&jsonl.0).unwrap_err().to_string();
    assert!(message.contains("bad.jsonl:2:"), "{message}");
    let columns = Scratch::with("columns.csv", "TIMESTAMP,Tokens\n2023-11-16 18:15:46,1\n");
    let message = Trace::load(&columns.0).unwrap_err().to_string();
    assert!(
        message.contains("columns.csv:1:") && message.contains("ContextTokens"),
        "{message}"
    );
    let date = Scratch::with(
        "date.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-13-01 00:00:00,1,1\n",
    );
    assert!(
        Trace::load(&date.0)
            .unwrap_err()
            .to_string()
            .contains("date.csv:2:")
    );
    let empty = Scratch::with("empty.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n");
    assert!(matches!(Trace::load(&empty.0), Err(TraceError::Empty(_))));
}

#[test]
fn a_file_past_the_limit_is_refused_before_it_is_read() {
    let huge = Scratch::with("huge.csv", "");
    std::fs::File::options()
        .write(true)
        .open(&huge.0)
        .and_then(|f| f.set_len(MAX_FILE_BYTES + 1))
        .expect("sparse file");
    assert!(matches!(
        Trace::load(&huge.0),
        Err(TraceError::TooLarge { .. })
    ));
}

#[test]
fn timestamps_read_across_midnight_and_with_offsets() {
    let at = |t| timestamp_ns(t).expect(t);
    assert_eq!(
        at("2023-11-17 00:00:00") - at("2023-11-16 23:59:59.5"),
        500_000_000
    );
    assert_eq!(
        at("2024-03-01T00:00:00") - at("2024-02-28T00:00:00"),
        2 * 86_400 * 1_000_000_000
    );
    assert_eq!(at("2024-05-10 02:00:00+02:00"), at("2024-05-10 00:00:00Z"));
    assert_eq!(at("1970-01-01 00:00:01.0000001"), 1_000_000_100);
    for bad in [
        "2023-11-16",
        "2023-11-16 25:00:00",
        "2023-11-16 10:00:00.x",
        "yesterday noon",
    ] {
        assert_eq!(timestamp_ns(bad), None, "{bad}");
    }
}

fn request(input_tokens: u64, blocks: &[u64]) -> TraceRequest {
    TraceRequest {
        at: Duration::ZERO,
        input_tokens,
        output_tokens: 1,
        blocks: blocks.to_vec(),
    }
}

fn shared_chars(a: &str, b: &str) -> usize {
    a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count()
}

/// Requests that share prefix blocks share their text, block for block, and then part; the
/// twin without blocks (the Azure case, or a builder that ignored them) shares nothing.
#[test]
fn prompts_that_share_blocks_share_their_text() {
    let a = prompt(&request(12, &[7, 8, 9]), 4, "a");
    let b = prompt(&request(12, &[7, 8, 3]), 4, "b");
    let shared = shared_chars(&a, &b);
    assert!(
        (32..48).contains(&shared),
        "two blocks of 4 tokens x 4 chars: {shared}"
    );
    assert!(a.ends_with("[rid:a]") && a.len() == 12 * 4 + "[rid:a]".len());
    let without = |p: &str| prompt(&request(12, &[]), 4, p);
    assert!(shared_chars(&without("a"), &without("b")) < 4);
    // A last block cut short is a prefix of the whole block.
    let short = prompt(&request(10, &[7, 8, 9]), 4, "c");
    assert!(shared_chars(&a, &short) >= 40);
}

#[test]
fn shaping_cuts_speeds_up_and_fits_the_context_keeping_shared_prefixes() {
    let trace = Trace::load(&committed("mooncake-fast25-synthetic.jsonl")).expect("reads");
    let window = trace.clone().window(Duration::from_secs(60));
    assert!(
        window
            .requests
            .iter()
            .all(|r| r.at < Duration::from_secs(60))
    );
    assert!(window.requests.len() < trace.requests.len() && !window.requests.is_empty());
    let fast = trace.clone().at_speed(2.0);
    assert_eq!(fast.requests[2].at, Duration::from_millis(20));
    let mut fitted = trace.clone();
    let scale = fitted.fit_context(4_096);
    assert!(scale < 1.0 && (fitted.token_scale - scale).abs() < 1e-12);
    assert!(
        fitted
            .requests
            .iter()
            .all(|r| r.input_tokens + r.output_tokens <= 4_096)
    );
    assert!(fitted.block_tokens < MOONCAKE_BLOCK_TOKENS);
    // Two requests whose first block is the same still share at least that block's text.
    let (a, b) = fitted
        .requests
        .iter()
        .enumerate()
        .find_map(|(i, a)| {
            let b = fitted.requests[i + 1..]
                .iter()
                .find(|b| !a.blocks.is_empty() && b.blocks.first() == a.blocks.first())?;
            (a.input_tokens.min(b.input_tokens) >= fitted.block_tokens).then_some((a, b))
        })
        .expect("the trace has requests sharing a prefix block");
    let (pa, pb) = (
        prompt(a, fitted.block_tokens, "x"),
        prompt(b, fitted.block_tokens, "y"),
    );
    assert!(shared_chars(&pa, &pb) >= fitted.block_tokens as usize * 4);
    let mut small = trace;
    assert_eq!(
        small.fit_context(u64::MAX),
        1.0,
        "everything fits: untouched"
    );
}
