//! Words for numbers in verdicts, so every sentence the harness prints reads the same way: a
//! ratio keeps its digits however small it is, a count agrees with its noun, and two figures
//! that are equal are not called "1.0x slower".

/// A ratio with enough digits to be read: two decimals from 0.1 up, two significant digits
/// below (0.0031, not 0.00).
pub fn ratio(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".into();
    }
    let digits = if value.abs() >= 0.1 || value == 0.0 {
        2
    } else {
        (1 - value.abs().log10().floor() as i32).clamp(2, 9) as usize
    };
    format!("{value:.digits$}")
}

/// `n` and its noun, singular for one: "1 worker", "4 workers".
pub fn count(n: impl Into<u64>, singular: &str, plural: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// "median of 1 run", "medians of 3 runs".
pub fn medians_of(n: usize, singular: &str, plural: &str) -> String {
    let medians = if n == 1 { "median" } else { "medians" };
    format!("{medians} of {}", count(n as u64, singular, plural))
}

/// How `value` compares with `fastest` (both rates): "as fast as the fastest variant" within
/// 5%, "N.Nx slower than the fastest variant" beyond.
pub fn slower_than_fastest(value: f64, fastest: f64) -> String {
    let times = fastest / value;
    if !times.is_finite() {
        "no rate to compare with the fastest variant".into()
    } else if times < 1.05 {
        "as fast as the fastest variant (within 5%)".into()
    } else {
        format!("{times:.1}x slower than the fastest variant")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_keep_their_digits() {
        assert_eq!(ratio(0.29), "0.29");
        assert_eq!(ratio(1.0), "1.00");
        assert_eq!(ratio(0.0), "0.00");
        assert_eq!(ratio(0.0031), "0.0031");
        assert_eq!(ratio(0.0312), "0.031");
        assert_eq!(ratio(0.099), "0.099");
        assert_eq!(ratio(f64::NAN), "n/a");
    }

    #[test]
    fn counts_agree_with_their_noun() {
        assert_eq!(count(1u32, "worker", "workers"), "1 worker");
        assert_eq!(count(4u32, "worker", "workers"), "4 workers");
        assert_eq!(count(0u32, "worker", "workers"), "0 workers");
        assert_eq!(medians_of(1, "run", "runs"), "median of 1 run");
        assert_eq!(medians_of(3, "run", "runs"), "medians of 3 runs");
    }

    #[test]
    fn equal_rates_are_not_slower() {
        assert_eq!(
            slower_than_fastest(570.0, 572.0),
            "as fast as the fastest variant (within 5%)"
        );
        assert_eq!(
            slower_than_fastest(48.0, 572.0),
            "11.9x slower than the fastest variant"
        );
        assert_eq!(
            slower_than_fastest(0.0, 572.0),
            "no rate to compare with the fastest variant"
        );
    }
}
