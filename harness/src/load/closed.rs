//! The scenarios' closed loop: a pool driven by N threads, each sending its share of embed
//! requests one after another ([`closed_loop`]), and [`released`], which times any work on
//! threads started together.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use super::threads::{self, RunError};
use super::{Run, Schedule};
use crate::variant::PoolUnderTest;

/// What the workers send.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Worker threads.
    pub workers: usize,
    /// Requests in total.
    pub requests: usize,
    /// Stop sending new requests after this long (requests already sent finish), and count
    /// throughput over this window only.
    pub cap: Option<Duration>,
    /// Embedding model.
    pub model: String,
    /// Text of every request; `None` numbers them (`chunk 17`), so inputs differ.
    pub text: Option<String>,
}

/// Runs `workload` against `pool` and waits for every request to finish. The vectors are
/// decoded (real client work) and dropped; an answer counts as a 200, an error as none.
pub fn closed_loop(pool: &dyn PoolUnderTest, workload: &Workload) -> Result<Run, RunError> {
    let schedule = Schedule::Closed {
        workers: workload.workers.max(1),
        requests: workload.requests as u64,
        cap: workload.cap,
    };
    let mut run = threads::run(schedule, "pool", |_| {
        Ok(|n: u64| {
            let input = workload
                .text
                .clone()
                .unwrap_or_else(|| format!("chunk {n}"));
            pool.embed(&workload.model, input.into()).ok().map(|_| 200)
        })
    })?;
    run.window = workload.cap;
    Ok(run)
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
