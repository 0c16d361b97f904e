//! Clients that leave (`--leave-after`, `--leave-share`): a share of the streamed requests is
//! dropped by the client after k tokens, or after a time from the send, which with a long prompt
//! falls inside the node's prompt evaluation. What a node and a gateway do then (stop, finish the
//! token in progress, or go on generating for nobody) is what the nodes' served logs show.
//!
//! Which requests leave is a function of the request number only, so two runs of one workload
//! drop the same requests: request `n` leaves when a hash of `n` falls in the share. Not evenly
//! spaced (every fourth for 0.25): the closed loop hands request `n` to worker `n mod W`, so with
//! an even `W` evenly spaced leavers all went to half of the workers, whose short requests then
//! made up more than their share of a time-capped run (68% instead of 50% through nginx). Drawn
//! by hash, each request a worker sends leaves with probability `p` whatever came before, so the
//! share of the requests sent is `p` however long each takes.

use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When a leaving client goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveAt {
    /// Once this many tokens have arrived.
    Tokens(NonZeroU32),
    /// This long after the send, whatever has arrived (before the first token: during the
    /// prompt's evaluation or the wait for a slot or a load).
    After(Duration),
}

/// Why a `--leave-after` or `--leave-share` value was refused.
#[derive(Debug, thiserror::Error)]
pub enum LeaveError {
    /// Neither a token count nor a duration.
    #[error("{0:?}: expected a token count (5) or a time after the send (300ms)")]
    At(String),
    /// Not a share in (0, 1].
    #[error("{0:?}: expected a share of the requests above 0 and at most 1 (0.25)")]
    Share(String),
}

impl std::fmt::Display for LeaveAt {
    /// As `--leave-after` takes it: `5` (tokens) or `300ms`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeaveAt::Tokens(k) => write!(f, "{k}"),
            LeaveAt::After(d) => write!(f, "{}", humantime::format_duration(*d)),
        }
    }
}

impl FromStr for LeaveAt {
    type Err = LeaveError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Ok(tokens) = text.parse::<NonZeroU32>() {
            return Ok(LeaveAt::Tokens(tokens));
        }
        humantime::parse_duration(text)
            .ok()
            .filter(|d| !d.is_zero())
            .map(LeaveAt::After)
            .ok_or_else(|| LeaveError::At(text.to_owned()))
    }
}

/// Parts per million of the requests, above 0 and at most all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share(u32);

const MILLION: u64 = 1_000_000;

impl Share {
    /// Every request.
    pub const ALL: Share = Share(MILLION as u32);

    /// The share as a fraction.
    pub fn fraction(self) -> f64 {
        f64::from(self.0) / MILLION as f64
    }

    /// Whether request `n` is one of the share: a function of `n` only.
    pub fn holds(self, n: u64) -> bool {
        // A seed of its own, so the draw is not the one that sets lengths.
        let draw = mock_ollama::embedding::splitmix64(n ^ 0x1ea7_e5ee_d000_0000) % MILLION;
        draw < u64::from(self.0)
    }
}

impl FromStr for Share {
    type Err = LeaveError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || LeaveError::Share(text.to_owned());
        let value = text.trim().parse::<f64>().map_err(|_| bad())?;
        let ppm = (value * MILLION as f64).round();
        if !(value > 0.0 && value <= 1.0 && ppm >= 1.0) {
            return Err(bad());
        }
        Ok(Share(ppm as u32))
    }
}

/// Which requests a client leaves early, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leave {
    /// When.
    pub at: LeaveAt,
    /// Which requests.
    pub share: Share,
}

impl Leave {
    /// When request `n` leaves, if it does.
    pub fn of(self, n: u64) -> Option<LeaveAt> {
        self.share.holds(n).then_some(self.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leave_after_reads_tokens_or_a_time() {
        let five = NonZeroU32::new(5).unwrap();
        assert_eq!("5".parse::<LeaveAt>().unwrap(), LeaveAt::Tokens(five));
        assert_eq!(
            "300ms".parse::<LeaveAt>().unwrap(),
            LeaveAt::After(Duration::from_millis(300))
        );
        for bad in ["0", "0s", "-1", "soon", ""] {
            assert!(bad.parse::<LeaveAt>().is_err(), "{bad:?} accepted");
        }
    }

    /// The share holds for that share of the requests, and as much of every worker's: the
    /// evenly spaced twin (`floor((n + 1) p) > floor(n p)`) was seen failing: at 0.5 worker 0 of
    /// 4 got none.
    #[test]
    fn a_share_picks_that_share_of_the_requests_and_of_each_workers() {
        let half: Share = "0.5".parse().unwrap();
        let all = (0..40_000).filter(|&n| half.holds(n)).count();
        assert!((19_500..=20_500).contains(&all), "{all} of 40,000");
        for worker in 0..4 {
            let own = (worker..40_000)
                .step_by(4)
                .filter(|&n| half.holds(n))
                .count();
            assert!(
                (4_800..=5_200).contains(&own),
                "worker {worker}: {own} of 10,000"
            );
        }
        let tenth: Share = "0.1".parse().unwrap();
        let some = (0..10_000).filter(|&n| tenth.holds(n)).count();
        assert!((900..=1_100).contains(&some), "{some} of 10,000");
        assert!((0..1000).all(|n| Share::ALL.holds(n)));
        for bad in ["0", "1.5", "-0.2", "nan", "0.0000001", "x"] {
            assert!(bad.parse::<Share>().is_err(), "{bad:?} accepted");
        }
    }
}
