//! The token metrics of a run of streamed answers, defined as the LLM serving benchmarks define
//! them (vLLM's `bench serve`): time to first token (TTFT, from the intended send), inter-token
//! latency (ITL, every gap between two token lines), time per output token (TPOT, a request's
//! `(end - TTFT) / (tokens - 1)`), output tokens per second, and goodput: requests per second
//! that completed whole within an [`Slo`]. Unlike vLLM's, which counts successful requests only,
//! TTFT and ITL here take every stream that delivered tokens, cut ones included (their tokens
//! did reach the client; a stream retried by a gateway carries the gap across the retry), while
//! TPOT and goodput take whole answers only.

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::load::{Record, Run};
use crate::summary::{Latency, new_histogram};

/// What a request must meet to count in goodput; an unset limit always holds. Stored as its
/// text (`ttft=500ms,tpot=50ms`), as the command line takes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Slo {
    /// Longest time to first token.
    pub ttft: Option<Duration>,
    /// Longest time per output token.
    pub tpot: Option<Duration>,
}

/// Why an `--slo` value was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0:?}: expected ttft=DURATION and/or tpot=DURATION, comma-separated (e.g. ttft=500ms,tpot=50ms)"
)]
pub struct SloError(String);

impl FromStr for Slo {
    type Err = SloError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || SloError(text.to_owned());
        let mut slo = Slo::default();
        for part in text.split(',') {
            let (name, value) = part.split_once('=').ok_or_else(bad)?;
            let value = humantime::parse_duration(value.trim()).map_err(|_| bad())?;
            let slot = match name.trim() {
                "ttft" => &mut slo.ttft,
                "tpot" => &mut slo.tpot,
                _ => return Err(bad()),
            };
            if slot.replace(value).is_some() {
                return Err(bad());
            }
        }
        Ok(slo)
    }
}

impl TryFrom<String> for Slo {
    type Error = SloError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Slo> for String {
    fn from(slo: Slo) -> String {
        let limits = [("ttft", slo.ttft), ("tpot", slo.tpot)];
        let parts = limits.iter().filter_map(|(name, limit)| {
            limit.map(|l| format!("{name}={}", humantime::format_duration(l)))
        });
        parts.collect::<Vec<_>>().join(",")
    }
}

impl Slo {
    /// Whether a whole answer met every limit.
    pub fn met_by(&self, record: &Record) -> bool {
        let Some(ttft) = record.ttft_us else {
            return false;
        };
        let within =
            |limit: Option<Duration>, us: u64| limit.is_none_or(|l| us <= l.as_micros() as u64);
        record.ok() && within(self.ttft, ttft) && within(self.tpot, tpot_us(record).unwrap_or(0))
    }
}

/// A request's time per output token, us: `None` below two tokens.
pub fn tpot_us(record: &Record) -> Option<u64> {
    let ttft = record.ttft_us?;
    let after_first = u64::from(record.tokens.checked_sub(1).filter(|n| *n > 0)?);
    Some(record.latency_us.saturating_sub(ttft) / after_first)
}

/// The token figures of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenMetrics {
    /// Time to first token of every request that got one, ms.
    pub ttft: Latency,
    /// Every gap between two tokens of one stream, ms.
    pub itl: Latency,
    /// Time per output token of whole answers with two tokens or more, ms.
    pub tpot: Latency,
    /// Token lines received, whole streams or not.
    pub output_tokens: u64,
    /// Of them per second of the run.
    pub output_tokens_per_s: f64,
    /// Requests sent.
    pub requests: u64,
    /// Whole answers (every line parsed, the final one last).
    pub whole: u64,
    /// Streams that delivered a token and then broke off (cut, reset, timed out, or continued
    /// past their end), the ones the client left on purpose apart.
    pub cut_after_first_token: u64,
    /// Streams the client left on purpose (`--leave-after`); results from before it read 0.
    #[serde(default)]
    pub left: u64,
    /// The SLO goodput is judged against, if any.
    pub slo: Option<Slo>,
    /// Whole answers within the SLO.
    pub meeting_slo: Option<u64>,
    /// Of them per second of the run.
    pub goodput: Option<f64>,
}

impl TokenMetrics {
    /// The figures of `run`, goodput against `slo` when there is one.
    pub fn of(run: &Run, slo: Option<Slo>) -> Self {
        let mut tpot = new_histogram();
        for us in run.records.iter().filter(|r| r.ok()).filter_map(tpot_us) {
            tpot.saturating_record(us);
        }
        let seconds = run.elapsed.as_secs_f64().max(1e-9);
        let output_tokens = run.records.iter().map(|r| u64::from(r.tokens)).sum::<u64>();
        let meeting_slo =
            slo.map(|slo| run.records.iter().filter(|r| slo.met_by(r)).count() as u64);
        Self {
            ttft: Latency::of(&run.ttft),
            itl: Latency::of(&run.itl),
            tpot: Latency::of(&tpot),
            output_tokens,
            output_tokens_per_s: output_tokens as f64 / seconds,
            requests: run.records.len() as u64,
            whole: run.ok(),
            cut_after_first_token: run
                .records
                .iter()
                .filter(|r| !r.ok() && !r.left && r.ttft_us.is_some())
                .count() as u64,
            left: run.left(),
            slo,
            meeting_slo,
            goodput: meeting_slo.map(|n| n as f64 / seconds),
        }
    }
}

impl TokenMetrics {
    /// The figures as two lines for a terminal; `cpu` is the client's CPU time over the run.
    pub fn describe(&self, cpu: Duration) -> String {
        let pair = |l: &Latency| format!("p50 {:.2} ms, p99 {:.2} ms", l.p50, l.p99);
        let goodput = match (self.slo, self.meeting_slo, self.goodput) {
            (Some(slo), Some(met), Some(rate)) => format!(
                "; goodput {rate:.1} req/s ({met} of {} within {})",
                self.requests,
                String::from(slo)
            ),
            _ => String::new(),
        };
        format!(
            "streams: {} whole of {}, {} cut after their first token{}; TTFT {}; ITL {}; TPOT {}\n\
             {} output tokens, {:.0} tokens/s; client CPU {:.2} us per token line{goodput}",
            self.whole,
            self.requests,
            self.cut_after_first_token,
            match self.left {
                0 => String::new(),
                left => format!(", {left} left by the client on purpose"),
            },
            pair(&self.ttft),
            pair(&self.itl),
            pair(&self.tpot),
            self.output_tokens,
            self.output_tokens_per_s,
            cpu.as_secs_f64() * 1e6 / self.output_tokens.max(1) as f64,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: Option<u16>, ttft_us: Option<u64>, tokens: u32, latency_us: u64) -> Record {
        Record {
            n: 0,
            status,
            latency_us,
            sent_us: 0,
            late_us: 0,
            ttft_us,
            tokens,
            left: false,
        }
    }

    #[test]
    fn slo_text_reads_both_limits_and_refuses_the_rest() {
        let slo: Slo = "ttft=500ms, tpot=50ms".parse().unwrap();
        assert_eq!(slo.ttft, Some(Duration::from_millis(500)));
        assert_eq!(slo.tpot, Some(Duration::from_millis(50)));
        let only: Slo = "tpot=2ms".parse().unwrap();
        assert_eq!(
            (only.ttft, only.tpot),
            (None, Some(Duration::from_millis(2)))
        );
        let text = String::from(slo);
        assert_eq!(text, "ttft=500ms,tpot=50ms");
        assert_eq!(text.parse::<Slo>().unwrap(), slo, "read back as written");
        for bad in ["", "ttft", "ttft=fast", "itl=5ms", "ttft=1s,ttft=2s"] {
            assert!(bad.parse::<Slo>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn tpot_is_the_time_after_the_first_token_over_the_tokens_after_it() {
        // 100 ms to the first token, 11 tokens, 600 ms in all: 500 ms over 10 tokens.
        let r = record(Some(200), Some(100_000), 11, 600_000);
        assert_eq!(tpot_us(&r), Some(50_000));
        assert_eq!(
            tpot_us(&record(Some(200), Some(1), 1, 9)),
            None,
            "one token"
        );
        assert_eq!(tpot_us(&record(None, None, 0, 9)), None, "no token");
    }

    #[test]
    fn goodput_counts_whole_answers_within_every_limit() {
        let slo = Slo {
            ttft: Some(Duration::from_millis(200)),
            tpot: Some(Duration::from_millis(60)),
        };
        assert!(slo.met_by(&record(Some(200), Some(100_000), 11, 600_000)));
        assert!(
            !slo.met_by(&record(Some(200), Some(300_000), 11, 800_000)),
            "first token late"
        );
        assert!(
            !slo.met_by(&record(Some(200), Some(100_000), 11, 800_000)),
            "tokens slow (70 ms each)"
        );
        assert!(
            !slo.met_by(&record(None, Some(100_000), 5, 300_000)),
            "cut after its first token"
        );
        assert!(!slo.met_by(&record(Some(200), None, 0, 1)), "no token");
        assert!(Slo::default().met_by(&record(Some(200), Some(1), 1, 2)));
    }
}
