//! Optional instrumentation of the mutex ledger: how long callers wait for the global lock and
//! how long they hold it, in HDR histograms.
//!
//! Off by default and then free (one predictable branch per acquisition). When on, samples are
//! recorded *inside* the critical section into histograms the lock already protects, so the
//! instrument adds no second lock and no shared atomic to the path it measures.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Wait and hold histograms, nanoseconds.
#[derive(Debug, Clone)]
pub struct LockTimings {
    wait: Histogram<u64>,
    hold: Histogram<u64>,
}

impl Default for LockTimings {
    fn default() -> Self {
        // 1 ns to 10 min at 3 significant figures: a lock held across a stalled HTTP call fits.
        let histogram =
            || Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("static bounds are valid");
        Self {
            wait: histogram(),
            hold: histogram(),
        }
    }
}

/// Percentiles of one histogram, nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest sample.
    pub max: u64,
    /// Sum of all samples (approximate: bucket midpoints), for "share of time" figures.
    pub sum: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        Self {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
            sum: h.mean() * h.len() as f64,
        }
    }
}

/// What the lock cost, summarised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LockTimingSummary {
    /// Time from asking for the lock to getting it.
    pub wait_ns: Percentiles,
    /// Time from getting the lock to releasing it.
    pub hold_ns: Percentiles,
}

impl LockTimings {
    /// Records one acquisition.
    pub fn record(&mut self, wait: Duration, hold: Duration) {
        self.wait.saturating_record((wait.as_nanos() as u64).max(1));
        self.hold.saturating_record((hold.as_nanos() as u64).max(1));
    }

    /// Percentiles so far.
    pub fn summary(&self) -> LockTimingSummary {
        LockTimingSummary {
            wait_ns: Percentiles::of(&self.wait),
            hold_ns: Percentiles::of(&self.hold),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reflects_samples() {
        let mut t = LockTimings::default();
        for i in 1..=100u64 {
            t.record(Duration::from_nanos(i * 10), Duration::from_micros(i));
        }
        let s = t.summary();
        assert_eq!(s.wait_ns.count, 100);
        assert!((495..=505).contains(&s.wait_ns.p50), "{:?}", s.wait_ns);
        assert!(
            s.hold_ns.max >= 99_900 && s.hold_ns.max <= 100_100,
            "{:?}",
            s.hold_ns
        );
        assert!((s.hold_ns.sum - 5_050_000.0).abs() / 5_050_000.0 < 0.01);
    }
}
