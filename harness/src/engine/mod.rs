//! The load engine: an async HTTP client that drives any URL with a request template, closed-loop
//! (N workers, each sending its next request when the last is answered) or open-loop (a fixed
//! arrival rate, constant or Poisson, latency from the intended send time, late sends counted).
//!
//! It is what drives third-party gateways (`harness gateway`), so it must never be what limits a
//! measurement: a tokio multi-thread runtime, one keep-alive connection per worker (each worker
//! owns its connection, so connection counts at the nodes mean something; `keep_alive: false`
//! opens one per request instead), per-worker histograms and
//! outcome lists merged at the end, a static split of request ids in the closed loop, and no lock
//! on the hot path (the open loop's one shared atomic hands out arrival slots). Every request
//! carries a unique id (`x-request-id` and the template's `{rid}`), and its outcome is kept, so
//! the audit can join the client's view with each node's served log.
//!
//! A streamed answer ([`Read::Stream`]) is read frame by frame and every line parsed
//! (`stream`): the first token's time and each gap between tokens go into the worker's
//! histograms, so the token metrics cost no list per request. A request the workload leaves
//! early ([`Leave`]) is dropped mid-answer, its connection with it, and recorded as left.
//!
//! Split as oha is: [`template`] builds bodies, `conn` holds one hyper HTTP/1.1 connection,
//! `worker` sends, this module plans and merges. A first version on reqwest (one client per
//! worker) reached 0.69 of wrk's requests/s at twice its CPU per request on the same target.

mod conn;
pub mod headers;
pub(crate) mod stream;
pub mod template;
mod worker;

use std::time::Duration;

pub use crate::load::{Arrivals, Record, Run, Schedule};
pub use headers::{HeaderError, Headers};
pub use template::{Bodies, Template};

use crate::workload::{Api, Leave};

/// What to send, and where.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL every request is POSTed to.
    pub url: String,
    /// Each request's body.
    pub bodies: Bodies,
    /// How answers are read.
    pub read: Read,
    /// Decodes each 2xx answer read whole ([`Read::Whole`]), for comparisons with a client that
    /// does (`run peak`'s `engine+decode`); `None` reads the answer and drops it.
    pub decode: Option<Decoder>,
    /// The user's headers on every request (keys, user ids), after the harness's own.
    pub headers: Headers,
}

/// How the engine reads an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Whole, then dropped (or decoded).
    Whole,
    /// Line by line as it arrives, in `api`'s streaming format: the time of the first token and
    /// the gaps between tokens are kept, and an answer counts as complete only when the stream
    /// is whole (every line parsed, the final one last).
    Stream {
        /// The streaming format.
        api: Api,
        /// Requests the client leaves early (closing its connection), if any.
        leave: Option<Leave>,
    },
}

impl Read {
    /// Streamed in `api`'s format, every answer read to its end.
    pub fn stream(api: Api) -> Self {
        Read::Stream { api, leave: None }
    }
}

/// Decodes one 2xx body; `false` (not what was expected) records the request as failed, without
/// a status.
pub type Decoder = fn(&[u8]) -> bool;

/// Settings of the engine itself.
#[derive(Debug, Clone)]
pub struct Engine {
    /// Runtime worker threads.
    pub threads: usize,
    /// Per-request timeout (a request past it is a failure with no status).
    pub timeout: Duration,
    /// Keep each worker's connection open between its requests; `false` opens a new connection
    /// for every request (what a client without keep-alive costs a gateway or a node).
    pub keep_alive: bool,
}

impl Default for Engine {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(2, usize::from),
            timeout: Duration::from_secs(60),
            keep_alive: true,
        }
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A schedule that cannot run.
    #[error("invalid schedule: {0}")]
    Schedule(&'static str),
    /// The runtime or a client could not be built.
    #[error("cannot start the load engine: {0}")]
    Start(String),
}

impl Engine {
    /// Runs `schedule` against `target`; ids are `run_id-N`.
    pub fn run(
        &self,
        target: &Target,
        schedule: Schedule,
        run_id: &str,
    ) -> Result<Run, EngineError> {
        schedule.check().map_err(EngineError::Schedule)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.threads.max(1))
            .enable_all()
            .build()
            .map_err(|e| EngineError::Start(e.to_string()))?;
        let run = runtime.block_on(worker::drive(self, target, schedule, run_id))?;
        Ok(run)
    }

    /// A closed loop of `requests` on `workers` OS threads, each blocking on a runtime and a
    /// connection of its own: a blocking pool's I/O model without the pool (`run peak`'s
    /// `threads+decode`). `threads` is not used.
    pub fn run_on_threads(
        &self,
        target: &Target,
        workers: usize,
        requests: u64,
        run_id: &str,
    ) -> Result<Run, EngineError> {
        worker::closed_on_threads(self, target, run_id, workers, requests)
    }

    /// What [`Engine::run_on_threads`] runs on each of its threads, for a caller's own thread:
    /// a runtime and a connection of its own, sending request `n` as `run_id-n` and returning
    /// its status (`None`: no complete answer). The cost figures interleave it with the pool's
    /// calls on one thread.
    pub fn thread_sender<'a>(
        &self,
        target: &'a Target,
        run_id: &'a str,
    ) -> Result<impl FnMut(u64) -> Option<u16> + 'a, EngineError> {
        worker::thread_sender(self, target, run_id)
    }
}
