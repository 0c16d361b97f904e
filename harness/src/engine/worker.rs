//! The sending side on tasks: closed-loop workers and open-loop connections, each with its own
//! connection and tally (`crate::load`'s), merged once at the end; and the closed loop on
//! threads (`crate::load::threads`) with one connection and runtime per thread.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mock_ollama::Timer;

use super::conn::{Conn, Endpoint, Options};
use super::{Engine, EngineError, Run, Schedule, Target};
use crate::load::threads::{self, RunError};
use crate::load::{Answer, Tally, merge};

/// One worker's connection to the target.
fn client(engine: &Engine, target: &Target) -> Result<Conn, EngineError> {
    let options = Options {
        timeout: engine.timeout,
        keep_alive: engine.keep_alive,
        decode: target.decode,
        headers: target.headers.clone(),
        read: target.read,
    };
    Ok(Conn::new(Endpoint::parse(&target.url)?, options))
}

/// Sends request `n` with id `id` and reads its answer.
async fn send(conn: &mut Conn, target: &Target, n: u64, id: &str) -> Answer {
    conn.post(id, n, target.bodies.render(n, id)).await
}

pub(super) async fn drive(
    engine: &Engine,
    target: &Target,
    schedule: Schedule,
    run_id: &str,
) -> Result<Run, EngineError> {
    let started = Instant::now();
    let tallies = match (&schedule, schedule.offsets()) {
        (
            Schedule::Closed {
                workers,
                requests,
                cap,
            },
            _,
        ) => closed(engine, target, run_id, *workers, *requests, *cap).await?,
        (_, offsets) => {
            let offsets = offsets.unwrap_or_else(|| Arc::new([]));
            open(engine, target, run_id, schedule.lanes(), offsets).await?
        }
    };
    Ok(merge(run_id, started.elapsed(), tallies))
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
) -> Result<Run, EngineError> {
    // Every connection before any thread, so a bad URL is an error before anything is sent.
    let conns: Vec<Mutex<Option<Conn>>> = (0..workers)
        .map(|_| client(engine, target).map(|c| Mutex::new(Some(c))))
        .collect::<Result<_, _>>()?;
    let schedule = Schedule::Closed {
        workers,
        requests,
        cap: None,
    };
    let make = |lane: usize| {
        let taken = conns.get(lane).and_then(|c| c.lock().ok()?.take());
        let conn = taken.ok_or_else(|| RunError::Start("no connection".into()))?;
        on_thread(conn, target, run_id).map_err(|e| RunError::Start(e.to_string()))
    };
    threads::run(schedule, run_id, make).map_err(|e| match e {
        RunError::Schedule(why) => EngineError::Schedule(why),
        RunError::Start(why) => EngineError::Start(why),
    })
}

/// A blocking sender over `conn` on a single-threaded runtime of its own: sends request `n` as
/// `run_id-n` on the calling thread and returns its status.
fn on_thread<'a>(
    mut conn: Conn,
    target: &'a Target,
    run_id: &'a str,
) -> Result<impl FnMut(u64) -> Option<u16> + 'a, EngineError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| EngineError::Start(e.to_string()))?;
    Ok(move |n: u64| {
        let id = super::template::request_id(run_id, n);
        runtime.block_on(send(&mut conn, target, n, &id)).status
    })
}

/// [`on_thread`] with a connection of its own to `target`.
pub(super) fn thread_sender<'a>(
    engine: &Engine,
    target: &'a Target,
    run_id: &'a str,
) -> Result<impl FnMut(u64) -> Option<u16> + 'a, EngineError> {
    on_thread(client(engine, target)?, target, run_id)
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
                    tally.capped = true;
                    break;
                }
                let id = super::template::request_id(&run_id, n);
                let sent = Instant::now();
                let answer = send(&mut client, &target, n, &id).await;
                tally.record_answer(n, answer, sent, sent);
            }
            tally.itl = client.take_gaps();
            tally
        }));
    }
    join(tasks).await
}

async fn open(
    engine: &Engine,
    target: &Target,
    run_id: &str,
    connections: usize,
    offsets: Arc<[Duration]>,
) -> Result<Vec<Tally>, EngineError> {
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
                // A send that had to wait for its time is on time (the precise timer's
                // lateness is not the target's); one that found its time passed is as late as
                // it is.
                let now = Instant::now();
                let sent = if now < intended {
                    mock_ollama::timer::sleep_until(Timer::Precise, intended).await;
                    intended
                } else {
                    now
                };
                let id = super::template::request_id(&run_id, n);
                let answer = send(&mut client, &target, n, &id).await;
                // Latency from the intended send: a request that waited for a connection
                // carries that wait (no coordinated omission).
                tally.record_answer(n, answer, intended, sent);
            }
            tally.itl = client.take_gaps();
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
