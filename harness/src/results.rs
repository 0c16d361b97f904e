//! The result files: one JSON document per scenario in `results/`, with a documented schema.
//!
//! # Schema `ollama-pool-bench/scenario/v1`
//! ```text
//! {
//!   "schema": "ollama-pool-bench/scenario/v1",
//!   "scenario": "two-node",              // name on the command line
//!   "title": "...", "question": "...",   // what the scenario answers, in words
//!   "machine": { cores, cpu, memory_gib, os, rustc, git_commit, release_build, date },
//!   "repeats": 5,                        // measurements per figure
//!   "params": { ... },                   // every parameter, as run
//!   "rows": [ {
//!       "variant": "atomic", "case": "2 nodes", "metric": "speedup", "unit": "x",
//!       "value": { "median", "min", "max", "samples": [...] },   // over repeats
//!       "ideal": 2.0 | null,             // what perfect scaling would give
//!       "latency_ms": { count, p50, p90, p99, p999, max } | null,
//!       "lock": { wait_ns, hold_ns } | null,   // mutex lock percentiles when instrumented
//!       "note": "..." | null } ],
//!   "verdicts": [ "..." ],               // plain-language conclusions computed from the rows
//!   "accounting": { runs, sent, succeeded, failed, checked_against_pool,
//!                   checked_against_server, mismatches: [...] }
//! }
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use pool::LockTimingSummary;
use serde::{Deserialize, Serialize};

use crate::machine::Machine;
use crate::summary::{Latency, Summary};

/// Schema identifier of scenario files.
pub const SCHEMA: &str = "ollama-pool-bench/scenario/v1";

/// One figure: a metric of one variant in one case, over repeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Variant name (`atomic`, `mutex-request`, ...) or ledger name.
    pub variant: String,
    /// The case within the scenario (`2 nodes`, `workers=12`, ...).
    pub case: String,
    /// What is measured (`speedup`, `throughput`, ...).
    pub metric: String,
    /// Unit of `value`.
    pub unit: String,
    /// Median and spread over repeats.
    pub value: Summary,
    /// The value perfect scaling would give, when defined.
    pub ideal: Option<f64>,
    /// Latency percentiles over all repeats of this case.
    pub latency_ms: Option<Latency>,
    /// Lock wait and hold percentiles, for instrumented mutex variants.
    pub lock: Option<LockTimingSummary>,
    /// Anything a reader needs to interpret the figure.
    pub note: Option<String>,
}

impl Row {
    /// A row without latency, lock figures or note.
    pub fn new(
        variant: impl Into<String>,
        case: impl Into<String>,
        metric: &str,
        unit: &str,
        value: Summary,
    ) -> Self {
        Self {
            variant: variant.into(),
            case: case.into(),
            metric: metric.into(),
            unit: unit.into(),
            value,
            ideal: None,
            latency_ms: None,
            lock: None,
            note: None,
        }
    }

    /// Sets the ideal value.
    pub fn ideal(mut self, ideal: f64) -> Self {
        self.ideal = Some(ideal);
        self
    }

    /// Sets the latency percentiles.
    pub fn latency(mut self, latency: Latency) -> Self {
        self.latency_ms = Some(latency);
        self
    }

    /// Sets a note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

/// Every request sent, and whether both sides of the wire agree on it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Accounting {
    /// Closed-loop runs checked.
    pub runs: u64,
    /// Requests sent (each returned an answer or an error).
    pub sent: u64,
    /// Requests answered.
    pub succeeded: u64,
    /// Requests that ended in an error.
    pub failed: u64,
    /// Runs whose pool statistics were compared with the client's tally.
    pub checked_against_pool: u64,
    /// Runs whose server-side counters were compared with the client's tally.
    pub checked_against_server: u64,
    /// Every disagreement found, in words (empty when all agree).
    pub mismatches: Vec<String>,
}

impl Accounting {
    /// Adds another scenario part's accounting.
    pub fn merge(&mut self, other: Accounting) {
        self.runs += other.runs;
        self.sent += other.sent;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.checked_against_pool += other.checked_against_pool;
        self.checked_against_server += other.checked_against_server;
        self.mismatches.extend(other.mismatches);
    }
}

/// One scenario's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Scenario name.
    pub scenario: String,
    /// Short title.
    pub title: String,
    /// The question the scenario answers.
    pub question: String,
    /// Where and with what it ran.
    pub machine: Machine,
    /// Measurements per figure.
    pub repeats: usize,
    /// Every parameter.
    pub params: serde_json::Value,
    /// The figures.
    pub rows: Vec<Row>,
    /// Conclusions computed from the figures.
    pub verdicts: Vec<String>,
    /// Request accounting across all runs.
    pub accounting: Accounting,
}

/// Writes `result` as `dir/<scenario>.json`.
pub fn write(dir: &Path, result: &ScenarioResult) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{}.json", result.scenario));
    let text = serde_json::to_string_pretty(result)?;
    std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Reads every scenario file in `dir`, in `order` first, then any others by name.
pub fn read_all(dir: &Path, order: &[&str]) -> anyhow::Result<Vec<(PathBuf, ScenarioResult)>> {
    let mut results = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if value.get("schema").and_then(|s| s.as_str()) != Some(SCHEMA) {
            continue;
        }
        let result = serde_json::from_value::<ScenarioResult>(value)
            .with_context(|| format!("decoding {}", path.display()))?;
        results.push((path, result));
    }
    let rank = |name: &str| order.iter().position(|o| *o == name).unwrap_or(order.len());
    results.sort_by(|(_, a), (_, b)| {
        rank(&a.scenario)
            .cmp(&rank(&b.scenario))
            .then_with(|| a.scenario.cmp(&b.scenario))
    });
    Ok(results)
}
