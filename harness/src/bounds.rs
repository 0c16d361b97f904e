//! One bounds grammar for every experiment: a JSON file of `{"comment": ..., "metrics": {NAME:
//! BOUND}}` where NAME is `EXPERIMENT[.WORKLOAD].CELL.MEASURE` (`two-node.atomic.speedup`,
//! `gateway.distribution.efficiency`) and BOUND an op, a value and a reason.
//!
//! `harness gate` reads its compiled-in `gate-bounds.json`; `harness gateway --bounds FILE` and
//! `harness gate --gateway RESULT --bounds FILE` read a gateway's. Each experiment parses the
//! names it can measure (its cells and measures, [`Name::split`] then its own check), so a typo
//! is an error that lists what exists; ops, bounds, files, judging and printing are here once.
//!
//! The workload part is optional and names what each request was (`embed`, `chat`, `trace`;
//! none means `embed`): it keeps bounds of different workloads from ever judging each other's
//! figures.

use std::collections::BTreeMap;
use std::str::FromStr;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// The workloads a name may carry (`crate::workload::Workload::name`); a name without one means
/// the first.
pub const WORKLOADS: [&str; 3] = ["embed", "chat", "trace"];

/// A bound's name split into its parts, not yet checked against any experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Name<'a> {
    /// What measured it (`two-node`, `gateway`).
    pub experiment: &'a str,
    /// What each request was, when named.
    pub workload: Option<&'a str>,
    /// Which cell of the experiment (`atomic`, `distribution`).
    pub cell: &'a str,
    /// Which figure of the cell (`speedup`, `efficiency`).
    pub measure: &'a str,
}

impl<'a> Name<'a> {
    /// Splits `EXPERIMENT[.WORKLOAD].CELL.MEASURE`; an unknown workload is an error.
    pub fn split(text: &'a str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split('.').collect();
        let (experiment, workload, cell, measure) = match parts[..] {
            [e, c, m] => (e, None, c, m),
            [e, w, c, m] => (e, Some(w), c, m),
            _ => {
                return Err(format!(
                    "{text:?}: expected EXPERIMENT[.WORKLOAD].CELL.MEASURE"
                ));
            }
        };
        if parts.iter().any(|p| p.is_empty()) {
            return Err(format!("{text:?}: an empty part"));
        }
        if let Some(w) = workload.filter(|w| !WORKLOADS.contains(w)) {
            return Err(format!(
                "{text:?}: no workload {w:?} (workloads: {})",
                WORKLOADS.join(", ")
            ));
        }
        Ok(Self {
            experiment,
            workload,
            cell,
            measure,
        })
    }

    /// An error for a part that is not one of `known`.
    pub fn unknown(text: &str, what: &str, part: &str, known: &[String]) -> String {
        format!("{text:?}: no {what} {part:?} (known: {})", known.join(", "))
    }
}

/// How a bound compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// The value must be at least the limit.
    #[serde(rename = ">=")]
    AtLeast,
    /// The value must be at most the limit.
    #[serde(rename = "<=")]
    AtMost,
    /// The value must equal the limit (counts).
    #[serde(rename = "==")]
    Equals,
    /// Measured and shown, never failing.
    #[serde(rename = "report")]
    Report,
}

impl Op {
    /// Whether `value` satisfies `limit` under this comparison (NaN never does).
    pub fn holds(self, value: f64, limit: f64) -> bool {
        match self {
            Op::AtLeast => value >= limit,
            Op::AtMost => value <= limit,
            Op::Equals => value == limit,
            Op::Report => true,
        }
    }

    /// `>= 1.8`, or `reported`.
    pub fn describe(self, limit: f64) -> String {
        let op = match self {
            Op::AtLeast => ">=",
            Op::AtMost => "<=",
            Op::Equals => "==",
            Op::Report => return "reported".into(),
        };
        format!("{op} {limit}")
    }
}

/// One bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bound {
    /// How the value compares with `value`.
    pub op: Op,
    /// The limit.
    pub value: f64,
    /// Measured by timing (the gate re-measures it once before it fails).
    #[serde(default)]
    pub timing: bool,
    /// Also held to a statistical limit from the spread of clean runs ([`crate::spread`]).
    #[serde(default)]
    pub baseline: bool,
    /// Why this bound.
    #[serde(default)]
    pub reason: String,
}

impl Bound {
    /// Whether `value` satisfies the bound.
    pub fn holds(&self, value: f64) -> bool {
        self.op.holds(value, self.value)
    }

    /// `>= 1.8`, or `reported`.
    pub fn describe(&self) -> String {
        self.op.describe(self.value)
    }
}

/// Every bound of a file, by metric.
pub type Bounds<M> = BTreeMap<M, Bound>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BoundsFile {
    #[serde(default, rename = "comment")]
    _comment: String,
    metrics: serde_json::Map<String, serde_json::Value>,
}

/// Parses a bounds file's text whose names are `M`s (an experiment's metric type). Two names of
/// one metric (with and without the default workload) are an error, not a silent overwrite.
pub fn parse<M>(text: &str) -> anyhow::Result<Bounds<M>>
where
    M: FromStr<Err = String> + Ord,
{
    let file: BoundsFile = serde_json::from_str(text).context("parsing the bounds file")?;
    let mut bounds = Bounds::new();
    for (name, bound) in file.metrics {
        let metric: M = name.parse().map_err(|e: String| anyhow::anyhow!(e))?;
        let bound: Bound =
            serde_json::from_value(bound).with_context(|| format!("the bound on {name:?}"))?;
        anyhow::ensure!(
            bounds.insert(metric, bound).is_none(),
            "{name:?}: a second bound on the same metric"
        );
    }
    Ok(bounds)
}

/// Judges a value against its bound and, for baseline bounds, against `statistical`: a limit in
/// the bound's direction drawn from clean runs ([`crate::spread::limit`]). Returns whether it
/// passed and the bound in words.
pub fn judge(bound: &Bound, value: f64, statistical: Option<f64>) -> (bool, String) {
    let mut pass = bound.holds(value) && !value.is_nan();
    let mut text = bound.describe();
    // A reported metric has no bound, so its spread is shown elsewhere but never fails.
    if let Some(limit) = statistical.filter(|_| bound.baseline) {
        match bound.op {
            Op::AtLeast | Op::AtMost => {
                pass &= bound.op.holds(value, limit);
                text.push_str(&format!(
                    "; clean spread {}",
                    bound.op.describe(round3(limit))
                ));
            }
            Op::Equals | Op::Report => {}
        }
    }
    (pass, text)
}

/// `x` to three decimals, for bounds in words.
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One judged bound, for printing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judged {
    /// The metric's name.
    pub metric: String,
    /// The value (`None`: the result does not carry it, which fails).
    pub value: Option<f64>,
    /// The bound in words.
    pub bound: String,
    /// Whether it passed.
    pub pass: bool,
}

impl Judged {
    /// Judges `value` (none: not measured, a failure) against `bound`, with no baseline.
    pub fn of(metric: String, bound: &Bound, value: Option<f64>) -> Self {
        let (pass, text) = value.map_or((false, bound.describe()), |v| judge(bound, v, None));
        Self {
            metric,
            value,
            bound: text,
            pass,
        }
    }
}

/// Prints judged bounds under `title`; returns whether all passed.
pub fn print(title: &str, judged: &[Judged]) -> bool {
    println!("== bounds for {title}");
    for j in judged {
        let value = j
            .value
            .map_or_else(|| "not measured".to_owned(), |v| format!("{v:.3}"));
        let verdict = if j.pass { "pass" } else { "FAIL" };
        println!("  {verdict}  {:<48} {value:>14}  ({})", j.metric, j.bound);
    }
    judged.iter().all(|j| j.pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_three_or_four_parts() {
        let n = Name::split("gateway.embed.node-busy.client_failures").unwrap();
        assert_eq!(
            (n.experiment, n.workload, n.cell, n.measure),
            ("gateway", Some("embed"), "node-busy", "client_failures")
        );
        assert_eq!(
            Name::split("two-node.atomic.speedup").unwrap().workload,
            None
        );
        for bad in ["a.b", "a.b.c.d.e", "a..c", "gateway.stream.x.y"] {
            assert!(Name::split(bad).is_err(), "{bad} must not parse");
        }
    }

    #[test]
    fn judge_applies_bound_and_statistical_limit() {
        let at_least = Bound {
            op: Op::AtLeast,
            value: 1.8,
            timing: true,
            baseline: true,
            reason: String::new(),
        };
        assert!(judge(&at_least, 1.95, None).0);
        assert!(!judge(&at_least, 1.7, None).0, "below 1.8");
        let (pass, text) = judge(&at_least, 1.85, Some(1.9));
        assert!(!pass, "below the clean spread's limit");
        assert!(text.contains("clean spread >= 1.9"), "{text}");
        assert!(judge(&at_least, 1.95, Some(1.9)).0);
        let p99 = Bound {
            op: Op::AtMost,
            value: 6.0,
            ..at_least.clone()
        };
        assert!(judge(&p99, 2.9, Some(3.0)).0, "within the spread's ceiling");
        assert!(!judge(&p99, 3.1, Some(3.0)).0, "above the spread's ceiling");
        assert!(!judge(&at_least, f64::NAN, None).0, "NaN never passes");
        let unchecked = Bound {
            baseline: false,
            ..at_least.clone()
        };
        assert!(judge(&unchecked, 1.85, Some(1.9)).0, "not held to a spread");
        let report = Bound {
            op: Op::Report,
            ..at_least
        };
        assert!(judge(&report, 0.3, Some(2.0)).0, "reported only");
        assert!(
            !Judged::of("x".into(), &report, None).pass,
            "not measured fails"
        );
    }
}
