//! The sending side: closed-loop workers and open-loop connections, each with its own
//! connection, histogram and outcome list, merged once at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mock_ollama::Timer;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand_distr::{Distribution, Exp};

use super::conn::{Conn, Endpoint};
use super::{Arrivals, Engine, EngineError, EngineRun, Record, Schedule, Target};
use crate::summary::new_histogram;

/// A send counts as late when it leaves this long after its intended time.
const LATE: Duration = Duration::from_millis(1);

/// What one worker measured.
struct Tally {
    start: Instant,
    records: Vec<Record>,
    latency: Histogram<u64>,
    late: u64,
}

impl Tally {
    fn new(start: Instant) -> Self {
        Self {
            start,
            records: Vec::new(),
            latency: new_histogram(),
            late: 0,
        }
    }

    fn record(&mut self, n: u64, status: Option<u16>, since: Instant) {
        let latency_us = since.elapsed().as_micros() as u64;
        let record = Record {
            n,
            status,
            latency_us,
            sent_us: since.saturating_duration_since(self.start).as_micros() as u64,
        };
        if record.ok() {
            let _ = self.latency.record(latency_us.max(1));
        }
        self.records.push(record);
    }
}

/// One worker's connection to the target.
fn client(engine: &Engine, target: &Target) -> Result<Conn, EngineError> {
    Ok(Conn::new(
        Endpoint::parse(&target.url)?,
        engine.timeout,
        engine.keep_alive,
        target.decode,
        target.headers.clone(),
    ))
}

/// Sends request `id` and reads its whole answer; the status, or `None` when the answer never
/// arrived complete.
async fn send(conn: &mut Conn, target: &Target, id: &str) -> Option<u16> {
    conn.post(id, target.template.render(id)).await
}

pub(super) async fn drive(
    engine: &Engine,
    target: &Target,
    schedule: Schedule,
    run_id: &str,
) -> Result<EngineRun, EngineError> {
    let started = Instant::now();
    let tallies = match schedule {
        Schedule::Closed {
            workers,
            requests,
            cap,
        } => closed(engine, target, run_id, workers, requests, cap).await?,
        Schedule::Open {
            rate,
            requests,
            connections,
            arrivals,
        } => {
            let offsets = offsets(rate, requests, arrivals);
            open(engine, target, run_id, connections, offsets).await?
        }
    };
    Ok(merge(run_id, started.elapsed(), tallies))
}

/// The workers' tallies as one run.
fn merge(run_id: &str, elapsed: Duration, tallies: Vec<Tally>) -> EngineRun {
    let mut run = EngineRun {
        run_id: run_id.to_owned(),
        elapsed,
        records: Vec::new(),
        latency: new_histogram(),
        late: 0,
    };
    for tally in tallies {
        run.records.extend(tally.records);
        crate::summary::merge(&mut run.latency, &tally.latency);
        run.late += tally.late;
    }
    run
}

/// The closed loop on `workers` OS threads, each blocking on a single-threaded runtime of its
/// own with its own connection: a pool's I/O model (one thread per call in flight, as
/// `pool::HttpClient::PerCaller` does it) without the pool, so `run peak` can tell what the
/// pool costs from what the model costs.
pub(super) fn closed_on_threads(
    engine: &Engine,
    target: &Target,
    run_id: &str,
    workers: usize,
    requests: u64,
) -> Result<EngineRun, EngineError> {
    // The clock starts when every thread has its runtime, as `Engine::run`'s starts after its
    // runtime is built.
    let ready = std::sync::Barrier::new(workers + 1);
    let start = std::sync::OnceLock::new();
    // Every connection before any thread, so no thread waits at the barrier for one that failed.
    let conns = (0..workers)
        .map(|_| client(engine, target))
        .collect::<Result<Vec<_>, _>>()?;
    let tallies = std::thread::scope(|s| {
        let mut threads = Vec::with_capacity(workers);
        for (w, mut conn) in (0..workers as u64).zip(conns) {
            let (ready, start) = (&ready, &start);
            threads.push(s.spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                ready.wait();
                let runtime = runtime.map_err(|e| EngineError::Start(e.to_string()))?;
                let start = *start.get_or_init(Instant::now);
                let mut tally = Tally::new(start);
                for n in (w..requests).step_by(workers) {
                    let id = super::template::request_id(run_id, n);
                    let sent = Instant::now();
                    let status = runtime.block_on(send(&mut conn, target, &id));
                    tally.record(n, status, sent);
                }
                Ok(tally)
            }));
        }
        ready.wait();
        let started = *start.get_or_init(Instant::now);
        let tallies = threads
            .into_iter()
            .map(|t| {
                t.join()
                    .map_err(|_| EngineError::Start("a worker thread panicked".into()))?
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        Ok::<_, EngineError>((started, tallies))
    })?;
    let (started, tallies) = tallies;
    Ok(merge(run_id, started.elapsed(), tallies))
}

async fn closed(
    engine: &Engine,
    target: &Target,
    run_id: &str,
    workers: usize,
    requests: u64,
    cap: Option<Duration>,
) -> Result<Vec<Tally>, EngineError> {
    let start = Instant::now();
    let deadline = cap.map(|cap| start + cap);
    let mut tasks = Vec::with_capacity(workers);
    for w in 0..workers as u64 {
        let (mut client, target, run_id) =
            (client(engine, target)?, target.clone(), run_id.to_owned());
        let stride = workers as u64;
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new(start);
            // Request n goes to worker n mod W: a static split, nothing shared.
            for n in (w..requests).step_by(stride as usize) {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let id = super::template::request_id(&run_id, n);
                let sent = Instant::now();
                let status = send(&mut client, &target, &id).await;
                tally.record(n, status, sent);
            }
            tally
        }));
    }
    join(tasks).await
}

/// Intended send times, as offsets from the start.
fn offsets(rate: f64, requests: u64, arrivals: Arrivals) -> Vec<Duration> {
    match arrivals {
        Arrivals::Constant => (0..requests)
            .map(|i| Duration::from_secs_f64(i as f64 / rate))
            .collect(),
        Arrivals::Poisson { seed } => {
            // `Exp::new` refuses only a rate that is not positive and finite, which `validate`
            // refused before the run; should that ever change, the arrivals are even.
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

async fn open(
    engine: &Engine,
    target: &Target,
    run_id: &str,
    connections: usize,
    offsets: Vec<Duration>,
) -> Result<Vec<Tally>, EngineError> {
    let offsets = Arc::new(offsets);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (mut client, target, run_id) =
            (client(engine, target)?, target.clone(), run_id.to_owned());
        let (offsets, next) = (Arc::clone(&offsets), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new(start);
            loop {
                // Relaxed: the counter only hands out distinct slots; no data rides on it.
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(offset) = offsets.get(n as usize) else {
                    break;
                };
                let intended = start + *offset;
                let now = Instant::now();
                if now < intended {
                    mock_ollama::timer::sleep_until(Timer::Precise, intended).await;
                } else if now - intended > LATE {
                    tally.late += 1;
                }
                let id = super::template::request_id(&run_id, n);
                let status = send(&mut client, &target, &id).await;
                // Latency from the intended send: a request that waited for a connection
                // carries that wait (no coordinated omission).
                tally.record(n, status, intended);
            }
            tally
        }));
    }
    join(tasks).await
}

async fn join(tasks: Vec<tokio::task::JoinHandle<Tally>>) -> Result<Vec<Tally>, EngineError> {
    let mut tallies = Vec::with_capacity(tasks.len());
    for task in tasks {
        tallies.push(
            task.await
                .map_err(|e| EngineError::Start(format!("a worker failed: {e}")))?,
        );
    }
    Ok(tallies)
}
