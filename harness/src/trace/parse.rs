//! The two trace formats, line by line, with errors that name the line.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::{Format, TraceError, TraceRequest};

/// What a JSON-lines trace's first line starts with.
const JSON_OBJECT: char = '{';

/// The format of `text` (JSON lines when its first non-empty line opens an object) and its
/// requests, sorted by arrival, arrivals counted from the first.
pub(super) fn requests(path: &Path, text: &str) -> Result<(Format, Vec<TraceRequest>), TraceError> {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let (format, mut timed) = if first.trim_start().starts_with(JSON_OBJECT) {
        (Format::MooncakeJsonl, mooncake(path, text)?)
    } else {
        (Format::AzureCsv, azure(path, text)?)
    };
    timed.sort_by_key(|(at, _)| *at);
    let start = timed.first().map_or(0, |(at, _)| *at);
    let requests = timed
        .into_iter()
        .map(|(at, mut request)| {
            request.at = Duration::from_nanos(u64::try_from(at - start).unwrap_or(u64::MAX));
            request
        })
        .collect();
    Ok((format, requests))
}

fn row_error(path: &Path, line: usize, problem: impl Into<String>) -> TraceError {
    TraceError::Row {
        path: path.to_owned(),
        line,
        problem: problem.into(),
    }
}

/// A Mooncake line; other fields are ignored.
#[derive(Deserialize)]
struct MooncakeLine {
    timestamp: u64,
    input_length: u64,
    output_length: u64,
    #[serde(default)]
    hash_ids: Vec<u64>,
}

/// Requests with their arrival in ns since the Unix epoch (Mooncake: since the trace's zero).
type Timed = Vec<(i128, TraceRequest)>;

fn mooncake(path: &Path, text: &str) -> Result<Timed, TraceError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: MooncakeLine = serde_json::from_str(line)
            .map_err(|e| row_error(path, i + 1, format!("not a Mooncake request: {e}")))?;
        out.push((
            i128::from(row.timestamp) * 1_000_000,
            TraceRequest {
                at: Duration::ZERO,
                input_tokens: row.input_length,
                output_tokens: row.output_length,
                blocks: row.hash_ids,
            },
        ));
    }
    Ok(out)
}

const COLUMNS: [&str; 3] = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"];

fn azure(path: &Path, text: &str) -> Result<Timed, TraceError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((header_index, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    let mut at = [0usize; 3];
    for (slot, column) in at.iter_mut().zip(COLUMNS) {
        *slot = names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(column))
            .ok_or_else(|| {
                row_error(
                    path,
                    header_index + 1,
                    format!("no {column} column (expected {})", COLUMNS.join(", ")),
                )
            })?;
    }
    let mut out = Vec::new();
    for (i, line) in lines {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let field = |k: usize| fields.get(at[k]).copied().unwrap_or("");
        let bad = |problem: String| row_error(path, i + 1, problem);
        let when = timestamp_ns(field(0))
            .ok_or_else(|| bad(format!("unreadable TIMESTAMP {:?}", field(0))))?;
        let tokens = |k: usize| {
            field(k).parse::<u64>().map_err(|_| {
                bad(format!(
                    "{} {:?} is not a token count",
                    COLUMNS[k],
                    field(k)
                ))
            })
        };
        out.push((
            when,
            TraceRequest {
                at: Duration::ZERO,
                input_tokens: tokens(1)?,
                output_tokens: tokens(2)?,
                blocks: Vec::new(),
            },
        ));
    }
    Ok(out)
}

/// `2023-11-16 18:15:46.6805900` (or with a `T`, and an optional `Z` or `+HH:MM` offset) as ns
/// since the Unix epoch; humantime reads the date and time (up to 9 fractional digits).
pub(super) fn timestamp_ns(text: &str) -> Option<i128> {
    let (local, offset_s) = split_offset(text)?;
    let at = humantime::parse_rfc3339_weak(local).ok()?;
    let since = at.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(since.as_nanos() as i128 - i128::from(offset_s) * 1_000_000_000)
}

/// The date and time of day, and its UTC offset in seconds (`Z` or none: 0). The offset's sign
/// is looked for in the time, after the date's own dashes.
fn split_offset(text: &str) -> Option<(&str, i64)> {
    if let Some(local) = text.strip_suffix('Z') {
        return Some((local, 0));
    }
    let time_from = text.find([' ', 'T'])?;
    let Some(at) = text[time_from..].rfind(['+', '-']).map(|i| time_from + i) else {
        return Some((text, 0));
    };
    let (local, offset) = text.split_at(at);
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let (h, m) = offset[1..].split_once(':')?;
    Some((
        local,
        sign * (h.parse::<i64>().ok()? * 3_600 + m.parse::<i64>().ok()? * 60),
    ))
}
