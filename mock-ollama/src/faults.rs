//! Injected faults: which one (if any) a request suffers.
//!
//! Rates give realistic noise for load tests; the [`FAULT_HEADER`] header forces a fault on one
//! request, so tests of failover are deterministic rather than statistical.

use rand::RngExt;

use crate::config::FaultConfig;

/// Request header that forces a fault: `error`, `stall`, `reset`, `none`, or for a generation
/// `stall-after:K` / `reset-after:K` (after K tokens of its answer).
pub const FAULT_HEADER: &str = "x-mock-fault";

/// What happens to one inference request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Served normally.
    None,
    /// Answered `500 {"error": ...}` without being served.
    Error,
    /// Held for the configured stall time, then served.
    Stall,
    /// The connection is aborted instead of answered.
    Reset,
    /// A generation's answer stalls for the configured stall time after this many tokens.
    StallAfter(u32),
    /// A generation's answer is cut (the connection aborted) after this many tokens.
    ResetAfter(u32),
}

impl Fault {
    /// This fault as it strikes a request that generates tokens, when the node's faults strike
    /// `after` tokens into an answer: a stall or a reset moves there.
    pub fn for_generation(self, after: Option<u32>) -> Fault {
        match (self, after) {
            (Fault::Stall, Some(k)) => Fault::StallAfter(k),
            (Fault::Reset, Some(k)) => Fault::ResetAfter(k),
            (fault, _) => fault,
        }
    }

    /// This fault as it strikes a request without tokens (an embedding): before the answer.
    pub fn for_embedding(self) -> Fault {
        match self {
            Fault::StallAfter(_) => Fault::Stall,
            Fault::ResetAfter(_) => Fault::Reset,
            fault => fault,
        }
    }
}

impl std::str::FromStr for Fault {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim().to_ascii_lowercase();
        let unknown = || {
            format!(
                "unknown fault {text:?}: expected error, stall, reset, none, stall-after:K or reset-after:K"
            )
        };
        if let Some((kind, tokens)) = text.split_once("-after:") {
            let tokens: u32 = tokens.parse().map_err(|_| unknown())?;
            return match kind {
                "stall" => Ok(Fault::StallAfter(tokens)),
                "reset" => Ok(Fault::ResetAfter(tokens)),
                _ => Err(unknown()),
            };
        }
        match text.as_str() {
            "none" => Ok(Fault::None),
            "error" => Ok(Fault::Error),
            "stall" => Ok(Fault::Stall),
            "reset" => Ok(Fault::Reset),
            _ => Err(unknown()),
        }
    }
}

/// Draws the fault for one request: the forced one if given, otherwise by the configured rates
/// (checked in the order error, reset, stall, from one uniform draw so the rates add up).
pub fn decide(config: &FaultConfig, forced: Option<Fault>, rng: &mut impl rand::Rng) -> Fault {
    if let Some(fault) = forced {
        return fault;
    }
    let total = config.error_rate + config.reset_rate + config.stall_rate;
    if total <= 0.0 {
        return Fault::None;
    }
    let draw: f64 = rng.random();
    if draw < config.error_rate {
        Fault::Error
    } else if draw < config.error_rate + config.reset_rate {
        Fault::Reset
    } else if draw < total {
        Fault::Stall
    } else {
        Fault::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn forced_fault_wins_and_zero_rates_never_fault() {
        let mut rng = SmallRng::seed_from_u64(1);
        let quiet = FaultConfig::default();
        assert_eq!(decide(&quiet, Some(Fault::Reset), &mut rng), Fault::Reset);
        assert!((0..1000).all(|_| decide(&quiet, None, &mut rng) == Fault::None));
    }

    #[test]
    fn rates_are_honoured_roughly() {
        let mut rng = SmallRng::seed_from_u64(7);
        let config = FaultConfig {
            error_rate: 0.1,
            reset_rate: 0.05,
            stall_rate: 0.2,
            ..FaultConfig::default()
        };
        let n = 20_000;
        let mut counts = [0usize; 4];
        for _ in 0..n {
            let index = match decide(&config, None, &mut rng) {
                Fault::None => 0,
                Fault::Error => 1,
                Fault::Stall => 2,
                Fault::Reset => 3,
                other => panic!("rates never draw {other:?}"),
            };
            counts[index] += 1;
        }
        let frac = |i: usize| counts[i] as f64 / n as f64;
        assert!((frac(1) - 0.1).abs() < 0.01, "error {}", frac(1));
        assert!((frac(2) - 0.2).abs() < 0.015, "stall {}", frac(2));
        assert!((frac(3) - 0.05).abs() < 0.01, "reset {}", frac(3));
    }

    #[test]
    fn header_values_parse() {
        assert_eq!("ERROR".parse::<Fault>().unwrap(), Fault::Error);
        assert_eq!("reset-after:5".parse::<Fault>(), Ok(Fault::ResetAfter(5)));
        assert_eq!("stall-after:0".parse::<Fault>(), Ok(Fault::StallAfter(0)));
        assert!("explode".parse::<Fault>().is_err());
        assert!("reset-after:x".parse::<Fault>().is_err());
        assert!("error-after:3".parse::<Fault>().is_err());
    }
}
