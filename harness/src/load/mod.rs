//! One load model for every system under test: a [`Schedule`] (a closed loop of workers, or an
//! open loop of arrivals at a rate), one [`Record`] per request and one [`Run`] per run, whatever
//! sends the requests. Two executors share it: OS threads ([`threads`]), for blocking callers such
//! as our pools (each thread one caller, as SOLLOL's `ThreadPoolExecutor` has it), and tokio tasks
//! (the load engine, `crate::engine`), for HTTP to any URL.
//!
//! Workers record into their own tallies, merged once at the end: the hot path takes no shared
//! lock and writes no shared atomic (the open loop's one counter hands out arrival slots), so the
//! instrument does not add the contention it measures. Work is split statically in the closed
//! loop (request `n` goes to worker `n mod W`).

mod closed;
pub mod threads;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand_distr::{Distribution, Exp};

use crate::summary::new_histogram;

pub use closed::{Workload, closed_loop, released};

/// A send counts as late when it leaves this long after its intended time.
pub const LATE: Duration = Duration::from_millis(1);

/// When requests arrive in an open loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrivals {
    /// Evenly spaced.
    Constant,
    /// A Poisson process (exponential gaps) from a seed.
    Poisson {
        /// Seed of the gaps.
        seed: u64,
    },
}

/// How load is offered.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// `workers` concurrent workers, each sending its next request when the last is answered.
    Closed {
        /// Concurrent workers (= connections).
        workers: usize,
        /// Requests in total.
        requests: u64,
        /// Stop sending new requests after this long.
        cap: Option<Duration>,
    },
    /// Requests at `rate` per second over at most `connections` connections.
    Open {
        /// Arrivals per second.
        rate: f64,
        /// Requests in total.
        requests: u64,
        /// Connections (requests wait for a free one, and the wait counts in their latency).
        connections: usize,
        /// Spacing of arrivals.
        arrivals: Arrivals,
    },
    /// One request at each given time (a replayed trace's arrivals), over at most
    /// `connections` connections, as the open loop sends them.
    Replay {
        /// Intended send times from the start, one per request.
        offsets: Arc<[Duration]>,
        /// Connections.
        connections: usize,
    },
}

impl Schedule {
    /// Why the schedule cannot run, if it cannot.
    pub fn check(&self) -> Result<(), &'static str> {
        match self {
            Schedule::Closed { workers: 0, .. } => Err("workers must be at least 1"),
            Schedule::Open { connections: 0, .. } | Schedule::Replay { connections: 0, .. } => {
                Err("connections must be at least 1")
            }
            Schedule::Open { rate, .. } if !(rate.is_finite() && *rate > 0.0) => {
                Err("the rate must be a positive number")
            }
            _ => Ok(()),
        }
    }

    /// Concurrent senders: the closed loop's workers or the open loop's connections.
    pub fn lanes(&self) -> usize {
        match self {
            Schedule::Closed { workers, .. } => *workers,
            Schedule::Open { connections, .. } | Schedule::Replay { connections, .. } => {
                *connections
            }
        }
    }

    /// The intended send times of an open loop or a replay; `None` for a closed loop.
    pub fn offsets(&self) -> Option<Arc<[Duration]>> {
        match self {
            Schedule::Closed { .. } => None,
            Schedule::Open {
                rate,
                requests,
                arrivals,
                ..
            } => Some(offsets(*rate, *requests, *arrivals).into()),
            Schedule::Replay { offsets, .. } => Some(Arc::clone(offsets)),
        }
    }
}

/// One request's outcome, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// The request's number (its id is `run_id-number`).
    pub n: u64,
    /// The HTTP status, or `None` when no complete answer arrived (connection refused or reset,
    /// body cut, timeout, a pool's error, or the client left: see `left`).
    pub status: Option<u16>,
    /// From the intended send to the last byte, in us (in a closed loop the intended send is
    /// the send).
    pub latency_us: u64,
    /// When it was meant to be sent, us after the run started.
    pub sent_us: u64,
    /// How long after its intended time it actually left, us (0 in a closed loop).
    pub late_us: u64,
    /// A streamed answer's first token, us from the intended send (`None`: not streamed, or
    /// no token arrived).
    pub ttft_us: Option<u64>,
    /// Tokens of a streamed answer that arrived (0 when not streamed).
    pub tokens: u32,
    /// The client left it on purpose (the workload's `--leave-after`): neither an answer nor
    /// a failure.
    pub left: bool,
}

impl Record {
    /// A complete 2xx answer.
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// From the actual send to the last byte, us: the latency that hides queueing before the
    /// send (coordinated omission), kept to show what it hides.
    pub fn from_actual_send_us(&self) -> u64 {
        self.latency_us.saturating_sub(self.late_us)
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Run {
    /// The ids' prefix.
    pub run_id: String,
    /// First send to last answer.
    pub elapsed: Duration,
    /// Every request sent, in no particular order.
    pub records: Vec<Record>,
    /// Latency of complete 2xx answers from their intended send, us.
    pub latency: Histogram<u64>,
    /// Streamed answers: time to first token of every request that got one, us from the
    /// intended send.
    pub ttft: Histogram<u64>,
    /// Streamed answers: every gap between two tokens of one answer, us.
    pub itl: Histogram<u64>,
    /// Open loop: requests sent more than [`LATE`] after their intended time.
    pub late: u64,
    /// Count only answers that ended within this window from the start when the run was
    /// capped (see [`Run::throughput`]); `None` counts every answer over the whole run.
    pub window: Option<Duration>,
    /// Whether a worker stopped sending at the schedule's cap.
    pub capped: bool,
}

impl Run {
    /// Complete 2xx answers.
    pub fn ok(&self) -> u64 {
        self.records.iter().filter(|r| r.ok()).count() as u64
    }

    /// Requests without a complete 2xx answer that the client did not leave on purpose.
    pub fn failed(&self) -> u64 {
        self.records.iter().filter(|r| !r.ok() && !r.left).count() as u64
    }

    /// Requests the client left on purpose.
    pub fn left(&self) -> u64 {
        self.records.iter().filter(|r| r.left).count() as u64
    }

    /// Complete 2xx answers per second. With a window, when the cap stopped the run (a capped
    /// closed loop of the scenarios), only answers that ended inside it, over it: the drain after it (requests already queued, fewer and
    /// fewer workers busy) would otherwise weigh in by an amount that depends on what is
    /// measured. Without one, every answer over the whole run.
    pub fn throughput(&self) -> f64 {
        match self.window.filter(|_| self.capped) {
            Some(window) => {
                let within = window.as_micros() as u64;
                let in_window = self
                    .records
                    .iter()
                    .filter(|r| r.ok() && r.sent_us + r.latency_us <= within);
                in_window.count() as f64 / window.as_secs_f64().max(1e-9)
            }
            None => self.ok() as f64 / self.elapsed.as_secs_f64().max(1e-9),
        }
    }

    /// The id of request `n`.
    pub fn id(&self, n: u64) -> String {
        crate::engine::template::request_id(&self.run_id, n)
    }

    /// Latency of complete 2xx answers from their actual send, us.
    pub fn latency_from_actual_send(&self) -> Histogram<u64> {
        let mut h = new_histogram();
        for r in self.records.iter().filter(|r| r.ok()) {
            h.saturating_record(r.from_actual_send_us().max(1));
        }
        h
    }
}

/// Intended send times of an open loop, as offsets from the start.
pub fn offsets(rate: f64, requests: u64, arrivals: Arrivals) -> Vec<Duration> {
    match arrivals {
        Arrivals::Constant => (0..requests)
            .map(|i| Duration::from_secs_f64(i as f64 / rate))
            .collect(),
        Arrivals::Poisson { seed } => {
            // `Exp::new` refuses only a rate that is not positive and finite, which
            // `Schedule::check` refuses first; should that ever change, the arrivals are even.
            let Ok(gaps) = Exp::new(rate) else {
                return offsets(rate, requests, Arrivals::Constant);
            };
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut at = 0.0;
            (0..requests)
                .map(|_| {
                    let this = at;
                    at += gaps.sample(&mut rng);
                    Duration::from_secs_f64(this)
                })
                .collect()
        }
    }
}

/// What one worker measured.
pub(crate) struct Tally {
    start: Instant,
    records: Vec<Record>,
    latency: Histogram<u64>,
    ttft: Histogram<u64>,
    /// Gaps between tokens; the sender records them as lines arrive.
    pub(crate) itl: Histogram<u64>,
    late: u64,
    /// When the worker finished, read on the worker: a coordinating thread that joins many
    /// workers on few cores reads the clock late by whole time slices.
    pub(crate) end: Option<Instant>,
    /// Whether the worker stopped at the cap.
    pub(crate) capped: bool,
}

impl Tally {
    /// An empty tally of a run that started at `start`.
    pub(crate) fn new(start: Instant) -> Self {
        Self {
            start,
            records: Vec::new(),
            latency: new_histogram(),
            ttft: new_histogram(),
            itl: new_histogram(),
            late: 0,
            end: None,
            capped: false,
        }
    }

    /// Records request `n`, meant to leave at `intended` and sent at `sent`, answered now.
    pub(crate) fn record(&mut self, n: u64, status: Option<u16>, intended: Instant, sent: Instant) {
        self.record_answer(n, Answer::whole(status), intended, sent);
    }

    /// [`Tally::record`] with a streamed answer's first token and token count.
    pub(crate) fn record_answer(
        &mut self,
        n: u64,
        answer: Answer,
        intended: Instant,
        sent: Instant,
    ) {
        let latency_us = intended.elapsed().as_micros() as u64;
        let late = sent.saturating_duration_since(intended);
        self.late += u64::from(late > LATE);
        let ttft_us = answer
            .first_token
            .map(|at| at.saturating_duration_since(intended).as_micros() as u64);
        let record = Record {
            n,
            status: answer.status,
            latency_us,
            sent_us: intended.saturating_duration_since(self.start).as_micros() as u64,
            late_us: late.as_micros() as u64,
            ttft_us,
            tokens: answer.tokens,
            left: answer.left,
        };
        if record.ok() {
            self.latency.saturating_record(latency_us.max(1));
        }
        if let Some(ttft) = ttft_us {
            self.ttft.saturating_record(ttft.max(1));
        }
        self.records.push(record);
    }
}

/// One answer as its sender read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Answer {
    /// The HTTP status of a complete answer (for a stream: a whole one), else `None`.
    pub(crate) status: Option<u16>,
    /// When a streamed answer's first token arrived.
    pub(crate) first_token: Option<Instant>,
    /// A streamed answer's tokens.
    pub(crate) tokens: u32,
    /// The client left it on purpose.
    pub(crate) left: bool,
}

impl Answer {
    /// An answer read whole (no tokens).
    pub(crate) fn whole(status: Option<u16>) -> Self {
        Self {
            status,
            first_token: None,
            tokens: 0,
            left: false,
        }
    }
}

/// The workers' tallies as one run; `elapsed` unless every worker read its own end, then from
/// the start to the last worker's end.
pub(crate) fn merge(run_id: &str, elapsed: Duration, tallies: Vec<Tally>) -> Run {
    let ends: Option<Vec<Instant>> = tallies.iter().map(|t| t.end).collect();
    let last = ends.and_then(|e| e.into_iter().max());
    let elapsed = match (last, tallies.first()) {
        (Some(last), Some(first)) => last.saturating_duration_since(first.start),
        _ => elapsed,
    };
    let mut run = Run {
        run_id: run_id.to_owned(),
        elapsed,
        records: Vec::new(),
        latency: new_histogram(),
        ttft: new_histogram(),
        itl: new_histogram(),
        late: 0,
        window: None,
        capped: false,
    };
    for tally in tallies {
        run.records.extend(tally.records);
        crate::summary::merge(&mut run.latency, &tally.latency);
        crate::summary::merge(&mut run.ttft, &tally.ttft);
        crate::summary::merge(&mut run.itl, &tally.itl);
        run.late += tally.late;
        run.capped |= tally.capped;
    }
    run
}
