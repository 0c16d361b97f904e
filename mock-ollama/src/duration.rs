//! Parsing of human durations (`20ms`, `1.5s`, `250us`) for flags and configs.
//!
//! The flags take fractional values (`1.5s`), which `humantime` does not accept, and the accepted
//! grammar is small enough to state in one sentence: a non-negative decimal number followed by one
//! of `ns`, `us`, `ms`, `s`, `m`, `h`. A bare `0` is also accepted.

use std::time::Duration;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (expected e.g. 20ms, 1.5s, 250us)")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

/// Parses `text` as a duration such as `20ms` or `1.5s`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: text.to_owned(),
        reason,
    };
    let trimmed = text.trim();
    if trimmed == "0" {
        return Ok(Duration::ZERO);
    }
    let split = trimmed
        .find(|c: char| c.is_ascii_alphabetic())
        .ok_or_else(|| err("missing unit"))?;
    let (number, unit) = trimmed.split_at(split);
    let value: f64 = number.parse().map_err(|_| err("not a number"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(err("must be a finite, non-negative number"));
    }
    let seconds_per_unit = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(err("unknown unit")),
    };
    Duration::try_from_secs_f64(value * seconds_per_unit).map_err(|_| err("out of range"))
}

/// Serde for an optional duration written as text (`"5ms"`; `null` or absent for none), the
/// control API's wire form, so the Rust side holds a `Duration`.
pub mod text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `Some(d)` as whole nanoseconds (`"5000000ns"`), exact for any duration.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format!("{}ns", d.as_nanos())),
            None => s.serialize_none(),
        }
    }

    /// Reads text such as `5ms` or `1.5s` ([`super::parse_duration`]).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| super::parse_duration(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_fractions() {
        assert_eq!(parse_duration("20ms").unwrap(), Duration::from_millis(20));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    }

    #[test]
    fn rejects_bad_input() {
        for bad in ["", "ms", "20", "-1s", "1.5parsecs", "nanms", "1e400s"] {
            assert!(parse_duration(bad).is_err(), "{bad} should be rejected");
        }
    }
}
