//! The thread executor: a [`Schedule`] on OS threads, one per closed-loop worker or open-loop
//! connection, each blocking in its own sender (a pool call, or an HTTP exchange on a runtime of
//! its own). Threads start together on a barrier and the clock starts when the last is ready,
//! so spawning them is not measured; the run ends at the last thread's own end (read on it).
//! In the open loop the next arrival goes to the next free thread (as a connection pool hands
//! out connections): a send is late only when every thread is busy or a sleep overran by 1 ms.
//! The scenarios' open loop gave arrival `i` to thread `i mod W` before this runner, so a busy
//! thread delayed its arrivals while others idled; its late counts are not comparable across.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

use super::{Run, Schedule, Tally, merge};

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A schedule that cannot run.
    #[error("invalid schedule: {0}")]
    Schedule(&'static str),
    /// A sender could not be made, or a thread died.
    #[error("cannot run the load: {0}")]
    Start(String),
}

/// Runs `schedule`; `make(i)` builds thread `i`'s sender, which sends request `n` and returns
/// its HTTP status (`None`: no complete answer, or the caller's error). Ids are `run_id-n`.
pub fn run<S>(
    schedule: Schedule,
    run_id: &str,
    make: impl Fn(usize) -> Result<S, RunError> + Sync,
) -> Result<Run, RunError>
where
    S: FnMut(u64) -> Option<u16>,
{
    schedule.check().map_err(RunError::Schedule)?;
    let lanes = schedule.lanes();
    let plan = match (&schedule, schedule.offsets()) {
        (Schedule::Closed { requests, cap, .. }, _) => Plan::Closed {
            requests: *requests,
            cap: *cap,
        },
        (_, offsets) => Plan::Open {
            offsets: offsets.unwrap_or_else(|| std::sync::Arc::new([])),
            next: AtomicU64::new(0),
        },
    };
    let ready = Barrier::new(lanes + 1);
    let start = OnceLock::new();
    let (started, tallies) = std::thread::scope(|s| {
        let threads: Vec<_> = (0..lanes)
            .map(|lane| {
                let (ready, start, plan, make) = (&ready, &start, &plan, &make);
                s.spawn(move || {
                    // Every thread reaches the barrier, even one whose sender panicked, so the
                    // others never wait there for it.
                    let sender = catch_unwind(AssertUnwindSafe(|| make(lane)));
                    ready.wait();
                    let start = *start.get_or_init(Instant::now);
                    let sender = sender
                        .map_err(|_| RunError::Start("making a sender panicked".into()))??;
                    Ok::<_, RunError>(plan.drive(lane, lanes, start, sender))
                })
            })
            .collect();
        ready.wait();
        let started = *start.get_or_init(Instant::now);
        let tallies = threads
            .into_iter()
            .map(|t| {
                t.join()
                    .map_err(|_| RunError::Start("a load thread panicked".into()))?
            })
            .collect::<Result<Vec<_>, RunError>>()?;
        Ok::<_, RunError>((started, tallies))
    })?;
    Ok(merge(run_id, started.elapsed(), tallies))
}

/// What each thread sends.
enum Plan {
    Closed {
        requests: u64,
        cap: Option<Duration>,
    },
    Open {
        offsets: std::sync::Arc<[Duration]>,
        next: AtomicU64,
    },
}

impl Plan {
    /// Lane `lane` of `lanes` sends its share with `send`.
    fn drive(
        &self,
        lane: usize,
        lanes: usize,
        start: Instant,
        mut send: impl FnMut(u64) -> Option<u16>,
    ) -> Tally {
        let mut tally = Tally::new(start);
        match self {
            Plan::Closed { requests, cap } => {
                let deadline = cap.map(|cap| start + cap);
                // Request n goes to worker n mod W: a static split, nothing shared.
                for n in (lane as u64..*requests).step_by(lanes) {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        tally.capped = true;
                        break;
                    }
                    let sent = Instant::now();
                    let status = send(n);
                    tally.record(n, status, sent, sent);
                }
            }
            Plan::Open { offsets, next } => loop {
                // Relaxed: the counter only hands out distinct slots; no data rides on it.
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(offset) = offsets.get(n as usize) else {
                    break;
                };
                let intended = start + *offset;
                let now = Instant::now();
                if now < intended {
                    std::thread::sleep(intended - now);
                }
                let sent = Instant::now();
                let status = send(n);
                // Latency from the intended send: a request that waited for a free thread
                // carries that wait (no coordinated omission).
                tally.record(n, status, intended, sent);
            },
        }
        tally.end = Some(Instant::now());
        tally
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Arrivals;

    #[test]
    fn every_request_is_sent_once_and_recorded() {
        let closed = Schedule::Closed {
            workers: 3,
            requests: 10,
            cap: None,
        };
        let run = run(closed, "t", |_| {
            Ok(|n: u64| Some(if n == 7 { 500 } else { 200 }))
        })
        .expect("runs");
        let mut ns: Vec<u64> = run.records.iter().map(|r| r.n).collect();
        ns.sort();
        assert_eq!(ns, (0..10).collect::<Vec<_>>());
        assert_eq!((run.ok(), run.failed()), (9, 1));
        assert_eq!(run.latency.len(), 9, "only answers in the histogram");
    }

    #[test]
    fn the_open_loop_sends_every_arrival_and_bad_schedules_are_errors() {
        let open = Schedule::Open {
            rate: 10_000.0,
            requests: 50,
            connections: 4,
            arrivals: Arrivals::Constant,
        };
        let run = run(open.clone(), "o", |_| Ok(|_| Some(200))).expect("runs");
        assert_eq!(run.records.len(), 50);
        let zero = Schedule::Closed {
            workers: 0,
            requests: 1,
            cap: None,
        };
        let refused = run_err(zero);
        assert!(refused.contains("workers"), "{refused}");
        let failing = super::run(open, "f", |_| {
            Err::<fn(u64) -> Option<u16>, _>(RunError::Start("no sender".into()))
        });
        assert!(matches!(failing, Err(RunError::Start(_))));
    }

    /// A sender that panics while being made is an error, and the other threads, already at the
    /// barrier, are released rather than left waiting there for it.
    #[test]
    fn a_sender_that_panics_while_made_is_an_error_not_a_hang() {
        let closed = Schedule::Closed {
            workers: 3,
            requests: 9,
            cap: None,
        };
        let result = super::run(closed, "p", |lane| {
            if lane == 1 {
                panic!("no sender for lane 1");
            }
            Ok(|_| Some(200))
        });
        assert!(
            matches!(&result, Err(RunError::Start(why)) if why.contains("panicked")),
            "{result:?}"
        );
    }

    fn run_err(schedule: Schedule) -> String {
        super::run(schedule, "e", |_| Ok(|_| Some(200)))
            .expect_err("refused")
            .to_string()
    }
}
