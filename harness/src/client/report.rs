//! The driver's report: JSON lines in the file `OPB_REPORT` names.
//!
//! One line per request, `{"id": "RUN_ID-n", "ok": true, "latency_ms": 12.5, "at_ms":
//! 1765000000123.4}` (`at_ms`, the send's wall-clock time in ms since the Unix epoch, is
//! optional; without it throughput counts the driver's start-up too; `error` may say why a
//! request failed), and at most one `{"stats": {...}}` with the library's own statistics.
//! Anything else is counted, never trusted: lines that do not parse, ids of another run or out of
//! range, an id reported twice (its first line counts). The file is read up to a cap, so a
//! runaway driver cannot exhaust memory.

use std::collections::HashMap;
use std::io::{BufRead as _, Read as _};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Ask, LibraryStats};

/// The most of a report read, bytes.
const MAX_BYTES: u64 = 64 << 20;
/// The longest line taken, bytes (a stats line with many nodes fits).
const MAX_LINE: usize = 64 << 10;

/// One request as the driver reported it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// The library answered.
    pub ok: bool,
    /// From the send to the answer, ms.
    pub latency_ms: f64,
    /// When it was sent, ms since the Unix epoch.
    pub at_ms: Option<f64>,
}

/// The report's lines, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lines {
    /// Requests reported (each id once).
    pub requests: u64,
    /// Of those, ok.
    pub ok: u64,
    /// Requests asked for that no line reports (counted as failed).
    pub unreported: u64,
    /// Lines for an id already reported.
    pub reported_twice: u64,
    /// Lines with an id of another run or beyond the requests asked for.
    pub foreign: u64,
    /// Lines that are not a request or stats line (or are too long).
    pub malformed: u64,
    /// Requests reported without a send time (`at_ms`) within the driver's run: then the run's
    /// throughput counts the driver's whole wall time, and a fault cell cannot place its requests
    /// in phases.
    #[serde(default)]
    pub untimed: u64,
    /// The first malformed line, cut to 200 characters.
    pub first_malformed: Option<String>,
    /// The report was longer than the harness reads.
    pub truncated: bool,
}

/// What the report said.
#[derive(Debug, Clone, Default)]
pub struct Reported {
    /// Per request number.
    pub outcomes: HashMap<u64, Outcome>,
    /// The library's statistics, if a line gave them.
    pub stats: Option<LibraryStats>,
    /// The lines, counted.
    pub lines: Lines,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Request {
        id: String,
        ok: bool,
        #[serde(default)]
        latency_ms: Option<f64>,
        #[serde(default)]
        at_ms: Option<f64>,
    },
    Stats {
        stats: serde_json::Value,
    },
}

/// Reads the report at `path` for the run `ask` (a missing file is an empty report: the driver
/// sent nothing it told of).
pub fn read(path: &Path, ask: &Ask) -> std::io::Result<Reported> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Reported {
                lines: Lines {
                    unreported: ask.requests,
                    ..Lines::default()
                },
                ..Reported::default()
            });
        }
        Err(e) => return Err(e),
    };
    let mut limited = std::io::BufReader::new(file.take(MAX_BYTES + 1));
    let mut reported = Reported::default();
    let (mut buf, mut read) = (Vec::new(), 0u64);
    loop {
        buf.clear();
        let n = limited.read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        read += n as u64;
        if read > MAX_BYTES {
            reported.lines.truncated = true;
            break;
        }
        take_line(&buf, ask, &mut reported);
    }
    reported.lines.unreported = ask.requests - reported.lines.requests;
    Ok(reported)
}

fn take_line(raw: &[u8], ask: &Ask, out: &mut Reported) {
    let text = String::from_utf8_lossy(raw);
    let text = text.trim();
    if text.is_empty() {
        return;
    }
    let parsed = (raw.len() <= MAX_LINE)
        .then(|| serde_json::from_str::<Line>(text).ok())
        .flatten();
    let lines = &mut out.lines;
    match parsed {
        Some(Line::Request {
            id,
            ok,
            latency_ms,
            at_ms,
        }) => {
            let Some(n) = number_of(&id, ask) else {
                lines.foreign += 1;
                return;
            };
            if out.outcomes.contains_key(&n) {
                lines.reported_twice += 1;
                return;
            }
            lines.requests += 1;
            lines.ok += u64::from(ok);
            let latency_ms = latency_ms.filter(|l| l.is_finite()).unwrap_or(0.0);
            let at_ms = at_ms.filter(|a| a.is_finite() && *a > 0.0);
            out.outcomes.insert(
                n,
                Outcome {
                    ok,
                    latency_ms,
                    at_ms,
                },
            );
        }
        Some(Line::Stats { stats }) if out.stats.is_none() => {
            out.stats = Some(LibraryStats::from_json(&stats));
        }
        _ => {
            lines.malformed += 1;
            if lines.first_malformed.is_none() {
                lines.first_malformed = Some(text.chars().take(200).collect());
            }
        }
    }
}

/// Request number `n` of `RUN_ID-n`, if it is one this run asked for.
fn number_of(id: &str, ask: &Ask) -> Option<u64> {
    let digits = id.strip_prefix(ask.run_id)?.strip_prefix('-')?;
    let n: u64 = digits.parse().ok()?;
    // `07` and `+7` parse as 7 but are not the id the harness gave request 7.
    (n < ask.requests && n.to_string() == digits).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask() -> Ask<'static> {
        Ask {
            nodes: &[],
            workers: 1,
            requests: 3,
            run_id: "r",
        }
    }

    fn parse(text: &str) -> Reported {
        let dir = std::env::temp_dir().join(format!("opb-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let next = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("{next}.jsonl"));
        std::fs::write(&path, text).expect("write");
        let out = read(&path, &ask()).expect("read");
        let _ = std::fs::remove_file(&path);
        out
    }

    #[test]
    fn every_line_lands_in_one_count() {
        let out = parse(concat!(
            "{\"id\":\"r-0\",\"ok\":true,\"latency_ms\":2.5,\"at_ms\":1000}\n",
            "{\"id\":\"r-0\",\"ok\":false}\n",
            "{\"id\":\"q-1\",\"ok\":true}\n",
            "{\"id\":\"r-7\",\"ok\":true}\n",
            "{\"id\":\"r-01\",\"ok\":true}\n",
            "not json\n",
            "\n",
            "{\"id\":\"r-2\",\"ok\":false}\n",
            "{\"stats\":{\"total_requests\":2}}\n",
        ));
        let lines = &out.lines;
        assert_eq!((lines.requests, lines.ok, lines.unreported), (2, 1, 1));
        assert_eq!(
            (lines.reported_twice, lines.foreign, lines.malformed),
            (1, 3, 1)
        );
        assert_eq!(lines.first_malformed.as_deref(), Some("not json"));
        assert_eq!(out.outcomes[&0].at_ms, Some(1000.0));
        assert!(out.outcomes[&0].ok && !out.outcomes[&2].ok);
        assert_eq!(out.stats.map(|s| s.total_requests), Some(Some(2)));
    }

    #[test]
    fn a_missing_report_leaves_every_request_unreported() {
        let out = read(Path::new("/nonexistent/opb/report"), &ask()).expect("no error");
        assert_eq!(out.lines.unreported, 3);
    }
}
