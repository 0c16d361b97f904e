//! Closed-loop load: N worker threads, each sending its share of the requests one after another.
//!
//! Workers get a static share of the work (request `i` goes to worker `i mod N`) and record
//! latencies into their own histogram, merged at the end: the harness's hot path takes no shared
//! lock and writes no shared atomic, so the instrument does not add the contention it measures.
//! Workers start together on a barrier; the clock runs from the first worker's start to the last
//! worker's end, both read on the workers ([`released`]).

use std::sync::Barrier;
use std::time::{Duration, Instant};

use crate::variant::PoolUnderTest;
use hdrhistogram::Histogram;

use crate::summary::new_histogram;

/// What the workers send.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Worker threads.
    pub workers: usize,
    /// Requests in total.
    pub requests: usize,
    /// Stop sending new requests after this long (requests already sent finish).
    pub cap: Option<Duration>,
    /// Embedding model.
    pub model: String,
    /// Text of every request; `None` numbers them (`chunk 17`), so inputs differ.
    pub text: Option<String>,
}

/// What one closed-loop run produced.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// Release of the workers to the end of the last one.
    pub elapsed: Duration,
    /// Requests answered.
    pub ok: u64,
    /// Requests that returned an error.
    pub failed: u64,
    /// Latency of answered requests, microseconds.
    pub latency: Histogram<u64>,
    /// Whether the cap stopped the run before all requests were sent.
    pub capped: bool,
    /// The cap, when one was set.
    pub window: Option<Duration>,
    /// Requests answered within the cap (counted from each worker's start).
    pub window_ok: u64,
}

impl RunResult {
    /// Answered requests per second. A capped run counts only answers inside the window and
    /// divides by the window: the drain after it (requests already queued, fewer and fewer workers
    /// busy) would otherwise weigh in by an amount that depends on the variant being measured.
    pub fn throughput(&self) -> f64 {
        match self.window {
            Some(window) if self.capped => self.window_ok as f64 / window.as_secs_f64().max(1e-9),
            _ => self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9),
        }
    }
}

/// Runs `work(i)` for `i` in `0..threads` on threads released together by a barrier. Returns the
/// results and the span from the earliest thread start to the latest thread end, both read on the
/// worker threads themselves: a timestamp the coordinating thread takes after the barrier can be
/// late by whole time slices when threads outnumber cores (100 threads on 2 cores), which once made
/// a million bookkeeping steps look like they took a millisecond.
pub fn released<T: Send>(threads: usize, work: impl Fn(usize) -> T + Sync) -> (Duration, Vec<T>) {
    let start = Barrier::new(threads);
    let parts: Vec<(Instant, Instant, T)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (start, work) = (&start, &work);
                s.spawn(move || {
                    start.wait();
                    let began = Instant::now();
                    let out = work(i);
                    (began, Instant::now(), out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker thread panicked"))
            .collect()
    });
    let first = parts.iter().map(|p| p.0).min();
    let last = parts.iter().map(|p| p.1).max();
    let span = first
        .zip(last)
        .map_or(Duration::ZERO, |(a, b)| b.saturating_duration_since(a));
    (span, parts.into_iter().map(|p| p.2).collect())
}

/// Runs `workload` against `pool` and waits for every request to finish.
pub fn closed_loop(pool: &dyn PoolUnderTest, workload: &Workload) -> RunResult {
    let workers = workload.workers.max(1);
    let (elapsed, parts) = released(workers, |w| {
        let mut latency = new_histogram();
        let (mut ok, mut failed, mut capped, mut window_ok) = (0u64, 0u64, false, 0u64);
        let mut text = String::new();
        let began = Instant::now();
        for i in (w..workload.requests).step_by(workers) {
            if workload.cap.is_some_and(|cap| began.elapsed() >= cap) {
                capped = true;
                break;
            }
            let input = match &workload.text {
                Some(fixed) => fixed.as_str(),
                None => {
                    text.clear();
                    std::fmt::Write::write_fmt(&mut text, format_args!("chunk {i}"))
                        .expect("writing to a String");
                    text.as_str()
                }
            };
            let sent = Instant::now();
            // The vectors are decoded (real client work) and dropped.
            match pool.embed(&workload.model, input.into()) {
                Ok(_) => {
                    ok += 1;
                    window_ok += u64::from(workload.cap.is_none_or(|cap| began.elapsed() <= cap));
                    latency.saturating_record((sent.elapsed().as_micros() as u64).max(1));
                }
                Err(_) => failed += 1,
            }
        }
        (latency, ok, failed, capped, window_ok)
    });
    let mut result = RunResult {
        elapsed,
        ok: 0,
        failed: 0,
        latency: new_histogram(),
        capped: false,
        window: workload.cap,
        window_ok: 0,
    };
    for (latency, ok, failed, capped, window_ok) in parts {
        result.latency.add(&latency).expect("same histogram bounds");
        result.ok += ok;
        result.failed += failed;
        result.capped |= capped;
        result.window_ok += window_ok;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_returns_results_in_thread_order() {
        let (span, out) = released(5, |i| i * 10);
        assert_eq!(out, [0, 10, 20, 30, 40]);
        assert!(
            span < Duration::from_secs(60),
            "a span, not garbage: {span:?}"
        );
    }
}
