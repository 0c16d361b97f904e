//! The driver's report as a [`Run`]: one record per request asked for, sent times from the
//! report's `at_ms` when every reported request has a plausible one.
//!
//! Plausible means within the driver's run (from its start to its exit, with a second's slack
//! for clocks read a moment apart): a time in other units, from another clock or far off cannot
//! place a request in a fault cell's phases, and one such line makes the whole run untimed
//! (counted in `Lines::untimed`), its throughput counted over the driver's whole wall time, start-up
//! included, rather than over a span a bad line stretched or shrank.

use std::time::{Duration, SystemTime};

use super::{Ask, Reported};
use crate::load::{Record, Run};
use crate::summary::new_histogram;

/// How far outside the driver's run a send time may be and still count.
const SLACK_MS: f64 = 1_000.0;

/// The run `reported` describes for `ask`, the driver started at `started` and ran `wall`;
/// counts the reported requests without a plausible send time into `reported.lines.untimed`.
pub fn to_run(ask: &Ask, reported: &mut Reported, started: SystemTime, wall: Duration) -> Run {
    let started_ms = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3);
    let window = (started_ms - SLACK_MS)..=(started_ms + wall.as_secs_f64() * 1e3 + SLACK_MS);
    let plausible = |at: Option<f64>| at.filter(|a| window.contains(a));
    reported.lines.untimed = reported
        .outcomes
        .values()
        .filter(|o| plausible(o.at_ms).is_none())
        .count() as u64;
    let timed = !reported.outcomes.is_empty() && reported.lines.untimed == 0;
    let base_ms = match timed {
        true => reported
            .outcomes
            .values()
            .filter_map(|o| o.at_ms)
            .fold(f64::INFINITY, f64::min),
        false => started_ms,
    };
    let mut latency = new_histogram();
    let mut last_end_ms = 0.0f64;
    let records = (0..ask.requests)
        .map(|n| {
            let outcome = reported.outcomes.get(&n);
            let ok = outcome.is_some_and(|o| o.ok);
            let latency_us = outcome.map_or(0, |o| (o.latency_ms.clamp(0.0, 3.6e6) * 1e3) as u64);
            let sent_ms = outcome.and_then(|o| plausible(o.at_ms)).unwrap_or(base_ms) - base_ms;
            if ok {
                latency.saturating_record(latency_us.max(1));
            }
            last_end_ms = last_end_ms.max(sent_ms + latency_us as f64 / 1e3);
            Record {
                n,
                status: ok.then_some(200),
                latency_us,
                sent_us: (sent_ms.max(0.0) * 1e3) as u64,
                late_us: 0,
                ttft_us: None,
                tokens: 0,
                left: false,
            }
        })
        .collect();
    let elapsed = match timed {
        true => Duration::try_from_secs_f64(last_end_ms / 1e3).unwrap_or(wall),
        false => wall,
    };
    Run {
        run_id: ask.run_id.to_owned(),
        elapsed,
        records,
        latency,
        ttft: new_histogram(),
        itl: new_histogram(),
        late: 0,
        window: None,
        capped: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::report::Outcome;

    const START_MS: f64 = 1_765_000_000_000.0;

    fn reported(lines: &[(u64, bool, f64, Option<f64>)]) -> Reported {
        let mut r = Reported::default();
        for (n, ok, latency_ms, at_ms) in lines {
            let outcome = Outcome {
                ok: *ok,
                latency_ms: *latency_ms,
                at_ms: *at_ms,
            };
            r.outcomes.insert(*n, outcome);
        }
        r
    }

    fn run_of(r: &mut Reported) -> Run {
        let ask = Ask {
            nodes: &[],
            workers: 1,
            requests: 3,
            run_id: "r",
        };
        let started = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(START_MS / 1e3);
        to_run(&ask, r, started, Duration::from_secs(5))
    }

    #[test]
    fn a_timed_report_counts_from_the_first_send_to_the_last_answer() {
        let mut r = reported(&[
            (0, true, 10.0, Some(START_MS + 2_000.0)),
            (1, true, 10.0, Some(START_MS + 2_100.0)),
            (2, false, 5.0, Some(START_MS + 2_050.0)),
        ]);
        let run = run_of(&mut r);
        assert_eq!(r.lines.untimed, 0);
        assert_eq!(run.elapsed, Duration::from_millis(110));
        assert_eq!(run.records[1].sent_us, 100_000);
        assert_eq!(run.ok(), 2);
    }

    #[test]
    fn one_implausible_or_missing_time_makes_the_run_untimed() {
        for bad in [None, Some(1e300), Some(2_100.0), Some(START_MS + 60_000.0)] {
            let mut r = reported(&[
                (0, true, 10.0, Some(START_MS + 2_000.0)),
                (1, true, 10.0, bad),
            ]);
            let run = run_of(&mut r);
            assert_eq!(r.lines.untimed, 1, "{bad:?}");
            assert_eq!(
                run.elapsed,
                Duration::from_secs(5),
                "the wall time: {bad:?}"
            );
            assert_eq!(run.records[2].status, None, "unreported is failed");
        }
    }
}
