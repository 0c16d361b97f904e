//! The spread of clean gate runs, and the statistical limits and detection limits drawn from it.
//!
//! `harness gate --record-spread N` runs the gate N times on a clean tree and writes each
//! metric's N values with the machine to `results/gate-spread.json`. For a metric whose bound
//! says `"baseline": true`, the gate then also holds the value to a **statistical limit**: the
//! clean mean moved against the bound's direction by a one-sided prediction interval,
//! `t(0.999, N-1) * s * sqrt(1 + 1/N)` (the range a new clean value falls in 999 times in 1,000
//! under a normal spread; Bencher's t-test threshold is the same form). The stricter of that
//! and the fixed bound applies. `s` is floored at [`SD_FLOOR`] of the mean: figures the mock
//! makes nearly deterministic (routing) would otherwise get a limit that a 0.1% wobble crosses.
//!
//! The **detection limit** is the smallest relative shift, against the bound's direction, that
//! fails the gate at least 95 times in 100: a timing metric fails only when its measure and its
//! one re-measure both cross the limit, so each must cross it with probability
//! `sqrt(0.95) = 0.975`, which puts the shifted mean 1.96 `s` beyond the limit. Counts bounded
//! `== 0` catch any one.
//!
//! Limits apply only on the machine that recorded the spread (same CPU model and core count);
//! elsewhere the fixed bounds stand alone and the gate says so.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::bounds::{Bound, Op};
use crate::gate::GateSettings;
use crate::machine::Machine;
use crate::summary::Summary;

pub mod record;

/// The least standard deviation assumed, as a fraction of the mean.
pub const SD_FLOOR: f64 = 0.01;

/// Clean gate runs: each metric's value in every run, where they ran and how they measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpreadFile {
    /// What it was recorded on.
    pub machine: Machine,
    /// The gate's sizes when recorded; a metric's limit applies only to a run that measures it
    /// at the same sizes (`None`, a file from before they were stored: no limit applies).
    #[serde(default)]
    pub settings: Option<GateSettings>,
    /// Which HTTP client carried the pools' requests (`Debug` form; `None`: the default).
    #[serde(default)]
    pub http_client: Option<String>,
    /// Gate runs recorded.
    pub runs: usize,
    /// Each metric's value (the median of the gate's repeats) in each run.
    pub metrics: BTreeMap<String, Vec<f64>>,
}

impl SpreadFile {
    /// Reads a spread file; `None` when there is none and `required` is false.
    pub fn read(path: &Path, required: bool) -> anyhow::Result<Option<Self>> {
        if !path.exists() {
            anyhow::ensure!(!required, "no spread file at {}", path.display());
            return Ok(None);
        }
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        Ok(Some(file))
    }

    /// Why its limits do not hold for a run on `machine` with `http_client`, if they do not:
    /// another CPU model or core count, another build profile or another HTTP client.
    pub fn mismatch(&self, machine: &Machine, http_client: Option<&str>) -> Option<String> {
        let m = &self.machine;
        if m.cpu != machine.cpu || m.cores != machine.cores {
            return Some(format!("recorded on {} ({} cores)", m.cpu, m.cores));
        }
        if m.release_build != machine.release_build {
            return Some(format!("recorded with release_build = {}", m.release_build));
        }
        if self.http_client.as_deref() != http_client {
            return Some(format!(
                "recorded with HTTP client {}",
                self.http_client.as_deref().unwrap_or("default")
            ));
        }
        None
    }

    /// The statistics of metric `name`, when it has at least two values.
    pub fn stats(&self, name: &str) -> Option<Stats> {
        self.metrics.get(name).and_then(|v| Stats::of(v))
    }
}

/// Summary statistics of one metric's clean values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Values.
    pub n: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation (n - 1).
    pub sd: f64,
    /// Median.
    pub median: f64,
    /// Least value.
    pub min: f64,
    /// Greatest value.
    pub max: f64,
}

impl Stats {
    /// The statistics of `values`; `None` with fewer than two or any that is not finite.
    pub fn of(values: &[f64]) -> Option<Self> {
        let n = values.len();
        if n < 2 || values.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let order = Summary::of(values.to_vec());
        Some(Self {
            n,
            mean,
            sd: var.sqrt(),
            median: order.median,
            min: order.min,
            max: order.max,
        })
    }

    /// The standard deviation used for limits: at least [`SD_FLOOR`] of the mean.
    pub fn sd_used(&self) -> f64 {
        self.sd.max(SD_FLOOR * self.mean.abs())
    }
}

/// One-sided 99.9% quantiles of Student's t for 1 to 30 degrees of freedom (standard tables).
const T_999: [f64; 30] = [
    318.309, 22.327, 10.215, 7.173, 5.893, 5.208, 4.785, 4.501, 4.297, 4.144, 4.025, 3.930, 3.852,
    3.787, 3.733, 3.686, 3.646, 3.610, 3.579, 3.552, 3.527, 3.505, 3.485, 3.467, 3.450, 3.435,
    3.421, 3.408, 3.396, 3.385,
];

/// The one-sided 99.9% quantile of t with `df` degrees of freedom; past 30, 30's (3.385, above
/// the exact value, so the limit is a little looser than it need be: fewer false alarms, not
/// more).
pub fn t_999(df: usize) -> f64 {
    T_999[df.clamp(1, 30) - 1]
}

/// What a bound becomes with a spread behind it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limit {
    /// The clean mean moved by the prediction interval, against the bound's direction.
    pub statistical: f64,
    /// What the gate holds the value to: the stricter of the statistical limit and the fixed
    /// bound, or the fixed bound alone for a bound not held to the spread.
    pub effective: f64,
    /// The smallest relative shift of the mean, against the bound's direction, caught 95 times
    /// in 100 (0.06: a 6% regression).
    pub detects: f64,
    /// The mean at which that happens.
    pub caught_at: f64,
}

/// The limit `stats` puts on `bound`: for bounds held to the spread (`"baseline": true`), the
/// stricter of the statistical limit and the fixed bound; for the others the fixed bound, with
/// the spread giving only the detection limit. `None` for bounds with no direction (`==`,
/// `report`).
pub fn limit(bound: &Bound, stats: &Stats) -> Option<Limit> {
    let sd = stats.sd_used();
    let margin = t_999(stats.n - 1) * sd * (1.0 + 1.0 / stats.n as f64).sqrt();
    let held = bound.baseline;
    let (statistical, effective) = match bound.op {
        Op::AtLeast => {
            let s = stats.mean - margin;
            (
                s,
                if held {
                    s.max(bound.value)
                } else {
                    bound.value
                },
            )
        }
        Op::AtMost => {
            let s = stats.mean + margin;
            (
                s,
                if held {
                    s.min(bound.value)
                } else {
                    bound.value
                },
            )
        }
        Op::Equals | Op::Report => return None,
    };
    // A timing metric fails only when its re-measure fails too: each must cross with
    // probability sqrt(0.95) = 0.975 (z = 1.96); any other fails on one crossing (z = 1.645).
    let z = if bound.timing { 1.96 } else { 1.645 };
    let direction = if bound.op == Op::AtLeast { -1.0 } else { 1.0 };
    let caught_at = effective + direction * z * sd;
    let detects = direction * (caught_at - stats.mean) / stats.mean.abs().max(1e-12);
    Some(Limit {
        statistical,
        effective,
        detects,
        caught_at,
    })
}

/// The detection limit in words: `catches -6.5% (a mean of 1.866)`, `catches a mean of 0.102`
/// (where the clean mean is near zero and a relative shift says nothing), `catches any one`
/// (counts), or `never fails` (reported).
pub fn describe_detection(bound: &Bound, limit: Option<&Limit>) -> String {
    let sign = match bound.op {
        Op::Equals => return "catches any one".into(),
        Op::Report => return "never fails".into(),
        Op::AtLeast => '-',
        Op::AtMost => '+',
    };
    let Some(limit) = limit else {
        return "detection limit unknown (no spread recorded at these settings)".into();
    };
    if !(0.0..=1.0).contains(&limit.detects) {
        return format!("catches a mean of {:.3}", limit.caught_at);
    }
    format!(
        "catches {sign}{:.1}% (a mean of {:.3})",
        100.0 * limit.detects,
        limit.caught_at
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(op: Op, value: f64) -> Bound {
        Bound {
            op,
            value,
            timing: true,
            baseline: true,
            reason: String::new(),
        }
    }

    #[test]
    fn stats_of_a_known_sample() {
        let s = Stats::of(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(
            (s.n, s.mean, s.median, s.min, s.max),
            (4, 2.5, 2.5, 1.0, 4.0)
        );
        assert!((s.sd - 1.290_994).abs() < 1e-6, "{}", s.sd);
        assert!(Stats::of(&[1.0]).is_none(), "one value has no spread");
        assert!(Stats::of(&[1.0, f64::NAN]).is_none());
    }

    #[test]
    fn the_limit_moves_against_the_bound_and_the_stricter_one_applies() {
        // Ten values, mean 2.0, sd 0.1 -> margin 4.297 * 0.1 * sqrt(1.1) = 0.4507.
        let values: Vec<f64> = [1.85, 1.9, 1.95, 2.0, 2.0, 2.0, 2.0, 2.05, 2.1, 2.15].to_vec();
        let s = Stats::of(&values).unwrap();
        let at_least = limit(&bound(Op::AtLeast, 1.0), &s).unwrap();
        let margin = 4.297 * s.sd * 1.1f64.sqrt();
        assert!((at_least.statistical - (2.0 - margin)).abs() < 1e-9);
        assert_eq!(
            at_least.effective, at_least.statistical,
            "stricter than 1.0"
        );
        let fixed_wins = limit(&bound(Op::AtLeast, 1.9), &s).unwrap();
        assert_eq!(fixed_wins.effective, 1.9);
        let at_most = limit(&bound(Op::AtMost, 9.0), &s).unwrap();
        assert!((at_most.statistical - (2.0 + margin)).abs() < 1e-9);
        assert!(limit(&bound(Op::Equals, 0.0), &s).is_none());
        let fixed_only = Bound {
            baseline: false,
            ..bound(Op::AtLeast, 1.0)
        };
        let l = limit(&fixed_only, &s).unwrap();
        assert_eq!(l.effective, 1.0, "not held to the spread");
        assert!((l.detects - (1.0 + 1.96 * s.sd) / 2.0).abs() < 1e-9);
        let counted = Bound {
            timing: false,
            ..fixed_only
        };
        let once = limit(&counted, &s).unwrap();
        assert!(
            (once.detects - (1.0 + 1.645 * s.sd) / 2.0).abs() < 1e-9,
            "no re-measure: one crossing fails"
        );
        assert!((once.caught_at - (1.0 - 1.645 * s.sd)).abs() < 1e-9);
        // Detection: (mean - limit + 1.96 sd) / mean.
        let expected = (margin + 1.96 * s.sd) / 2.0;
        assert!((at_least.detects - expected).abs() < 1e-9);
    }

    #[test]
    fn a_spread_with_no_variation_is_floored() {
        let s = Stats::of(&[0.996; 10]).unwrap();
        assert!(s.sd < 1e-12, "{}", s.sd);
        let l = limit(&bound(Op::AtLeast, 0.5), &s).unwrap();
        assert!(
            l.effective < 0.996 - 0.04,
            "a 1% floor leaves room for wobble: {l:?}"
        );
    }

    /// The limits do what they claim on simulated clean and regressed runs: a normal spread
    /// (Box-Muller over a fixed LCG, so it is repeatable) with the recorded mean and sd.
    #[test]
    fn clean_runs_pass_and_a_shift_at_the_detection_limit_fails() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut normal = move || {
            let mut uniform = || {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                ((seed >> 11) as f64 + 0.5) / (1u64 << 53) as f64
            };
            let (u, v) = (uniform(), uniform());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        };
        let (mean, sd) = (1.65, 0.03);
        let recorded: Vec<f64> = (0..10).map(|_| mean + sd * normal()).collect();
        let stats = Stats::of(&recorded).unwrap();
        let b = bound(Op::AtMost, 10.0);
        let l = limit(&b, &stats).unwrap();
        let trials = 4_000;
        let fails = |shift: f64, normal: &mut dyn FnMut() -> f64| {
            (0..trials)
                .filter(|_| {
                    let first = mean * (1.0 + shift) + sd * normal();
                    let again = mean * (1.0 + shift) + sd * normal();
                    first > l.effective && again > l.effective
                })
                .count()
        };
        let clean = fails(0.0, &mut normal);
        assert!(clean < trials / 200, "{clean} false alarms in {trials}");
        let caught = fails(l.detects, &mut normal);
        assert!(
            caught >= trials * 9 / 10,
            "only {caught} of {trials} caught at the stated limit {l:?}"
        );
    }
}
