//! The two trace formats, line by line, with errors that name the line.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::{Format, TraceError, TraceRequest};

/// The format of `text` (JSON lines when its first non-empty line opens an object) and its
/// requests, sorted by arrival, arrivals counted from the first.
pub(super) fn requests(path: &Path, text: &str) -> Result<(Format, Vec<TraceRequest>), TraceError> {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let (format, mut timed) = if first.trim_start().starts_with('{') {
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
/// since the Unix epoch.
pub(super) fn timestamp_ns(text: &str) -> Option<i128> {
    let (date, time) = text.split_once([' ', 'T'])?;
    let (time, offset_s) = split_offset(time)?;
    let mut ymd = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    if ymd.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut parts = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min, s) = (parts.next()??, parts.next()??, parts.next()??);
    if parts.next().is_some() || h > 23 || min > 59 || s > 60 {
        return None;
    }
    if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: i128 = format!("{fraction:0<9}").parse().ok()?;
    let seconds = days_from_civil(y, m, d) * 86_400 + h * 3_600 + min * 60 + s - offset_s;
    Some(i128::from(seconds) * 1_000_000_000 + nanos)
}

/// The time of day and its UTC offset in seconds (`Z` or none: 0).
fn split_offset(time: &str) -> Option<(&str, i64)> {
    if let Some(time) = time.strip_suffix('Z') {
        return Some((time, 0));
    }
    let Some(at) = time.rfind(['+', '-']) else {
        return Some((time, 0));
    };
    let (time, offset) = time.split_at(at);
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let (h, m) = offset[1..].split_once(':')?;
    Some((
        time,
        sign * (h.parse::<i64>().ok()? * 3_600 + m.parse::<i64>().ok()? * 60),
    ))
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
