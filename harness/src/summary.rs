//! Summaries of repeated measurements (median and spread) and of latency histograms.
//!
//! Every figure the harness reports is a median over repeats with its min and max, and every ratio
//! is computed pair by pair within a repeat, so a slow moment of the machine moves both sides.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Median, min and max of repeated samples, with the samples themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Median (mean of the middle two for an even count).
    pub median: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// All samples, in measurement order.
    pub samples: Vec<f64>,
}

impl Summary {
    /// Summarises `samples`; an empty list gives NaNs, which render as "n/a".
    pub fn of(samples: Vec<f64>) -> Self {
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Self {
            median,
            min: sorted.first().copied().unwrap_or(f64::NAN),
            max: sorted.last().copied().unwrap_or(f64::NAN),
            samples,
        }
    }

    /// `median [min-max]` with `digits` decimals.
    pub fn show(&self, digits: usize) -> String {
        if self.median.is_nan() {
            return "n/a".into();
        }
        format!(
            "{:.d$} [{:.d$}-{:.d$}]",
            self.median,
            self.min,
            self.max,
            d = digits
        )
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Requests recorded.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

/// A latency histogram in microseconds, 1 us to 10 min at 3 significant figures.
pub fn new_histogram() -> Histogram<u64> {
    // proven: 1 <= low, high >= 2 * low and 3 significant figures are what `new_with_bounds`
    // accepts; these are constants.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static bounds are valid")
}

/// Adds `from` into `into`; both made by [`new_histogram`].
pub fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    // proven: `add` fails only when `from` holds a value above `into`'s highest trackable
    // value; both have the bounds of `new_histogram`, and every record into them is checked
    // against those bounds (`record` refuses larger values, `saturating_record` clamps).
    into.add(from)
        .expect("histograms of new_histogram share bounds");
}

impl Latency {
    /// Percentiles of a microsecond histogram.
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |v: u64| v as f64 / 1000.0;
        Self {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        let s = Summary::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(s.samples, [3.0, 1.0, 2.0], "samples keep measurement order");
        assert_eq!(Summary::of(vec![1.0, 2.0, 3.0, 10.0]).median, 2.5);
        assert!(Summary::of(vec![]).median.is_nan());
        assert_eq!(Summary::of(vec![]).show(1), "n/a");
        assert_eq!(Summary::of(vec![1.0, 2.0]).show(2), "1.50 [1.00-2.00]");
    }

    #[test]
    fn latency_percentiles_in_ms() {
        let mut h = new_histogram();
        for us in 1..=1000u64 {
            h.record(us * 100).unwrap();
        }
        let l = Latency::of(&h);
        assert_eq!(l.count, 1000);
        assert!((l.p50 - 50.0).abs() < 0.1, "{l:?}");
        assert!((l.max - 100.0).abs() < 0.1, "{l:?}");
    }
}
