//! The CPU-per-request figure: the pool's calls and the engine's exchanges interleaved call by
//! call on the same threads, each call's thread CPU time read around it
//! ([`crate::machine::thread_cpu`]).
//!
//! Two runs one after the other (pool, then engine) gave single ratios spread +-20% on this
//! shared VM: what a core gives a thread (steal, frequency, a neighbour's cache) drifts within a
//! second, on both sides' figures by about the same factor. Interleaving call by call puts both
//! sides under the same drift, so the ratio keeps what the pool adds. Only the calling thread's
//! own CPU counts: a client that hands its I/O to a thread of its own (`reqwest::blocking`) has
//! that thread's share missing, and the engine sender here, like the per-caller pool, does its
//! I/O on the calling thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use mock_ollama::MockNode;

use super::CostSettings;
use crate::engine::{Engine, Schedule, Target, Template};
use crate::load::threads::{self, RunError};
use crate::machine::thread_cpu;
use crate::nodes::{ClusterSpec, Nodes};
use crate::variant::{PoolOptions, Variant};

/// CPU time per call of each side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuFigures {
    /// The pool's calling thread, per call.
    pub pool: Duration,
    /// The engine's exchange on the same thread, per call.
    pub engine: Duration,
}

impl CpuFigures {
    /// The pool's over the engine's.
    pub fn ratio(&self) -> f64 {
        self.pool.as_secs_f64() / self.engine.as_secs_f64().max(1e-9)
    }
}

/// Both sides' CPU per call on one fresh node with zero service time; `pool_first` picks which
/// side takes each worker's first call of a pair.
pub fn figures(
    variant: Variant,
    options: PoolOptions,
    settings: &CostSettings,
    pool_first: bool,
) -> anyhow::Result<CpuFigures> {
    let workers = settings.cpu_workers.max(1);
    let spec = ClusterSpec::uniform(1, 2 * workers, Duration::ZERO);
    let Nodes::Owned(cluster) = Nodes::start(&spec, &[])? else {
        anyhow::bail!("cost figures need embedded nodes");
    };
    let spent = interleaved(
        variant,
        options,
        &cluster.nodes()[0],
        workers,
        settings.cpu_requests,
        pool_first,
    );
    cluster.shutdown();
    spent?.figures()
}

/// Which side sends a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Pool = 0,
    Engine = 1,
}

/// CPU nanoseconds and calls per side, summed over every thread.
#[derive(Debug, Default)]
struct Spent {
    nanos: [AtomicU64; 2],
    calls: [AtomicU64; 2],
    /// Calls whose CPU time could not be read.
    unread: AtomicU64,
}

impl Spent {
    fn add(&self, side: Side, before: Option<Duration>, after: Option<Duration>) {
        // Relaxed: plain tallies, read after the threads are joined.
        match before.zip(after) {
            Some((b, a)) => {
                let nanos = u64::try_from(a.saturating_sub(b).as_nanos()).unwrap_or(u64::MAX);
                self.nanos[side as usize].fetch_add(nanos, Ordering::Relaxed);
                self.calls[side as usize].fetch_add(1, Ordering::Relaxed);
            }
            None => {
                self.unread.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn per_call(&self, side: Side) -> anyhow::Result<Duration> {
        let calls = self.calls[side as usize].load(Ordering::Relaxed);
        anyhow::ensure!(calls > 0, "no {side:?} call was timed");
        Ok(Duration::from_nanos(
            self.nanos[side as usize].load(Ordering::Relaxed) / calls,
        ))
    }

    fn figures(&self) -> anyhow::Result<CpuFigures> {
        let unread = self.unread.load(Ordering::Relaxed);
        anyhow::ensure!(
            unread == 0,
            "{unread} calls' CPU time could not be read (CLOCK_THREAD_CPUTIME_ID)"
        );
        Ok(CpuFigures {
            pool: self.per_call(Side::Pool)?,
            engine: self.per_call(Side::Engine)?,
        })
    }
}

/// Each worker alternates a pool call and an engine exchange, `requests` of each overall.
fn interleaved(
    variant: Variant,
    options: PoolOptions,
    node: &MockNode,
    workers: usize,
    requests: usize,
    pool_first: bool,
) -> anyhow::Result<Spent> {
    let pool = variant.build(&[node.url()], options)?;
    let target = Target {
        url: format!("{}/api/embed", node.url()),
        bodies: Template::new(r#"{"model":"all-minilm","input":"reference {rid}"}"#).into(),
        read: crate::engine::Read::Whole,
        decode: None,
        headers: Default::default(),
    };
    let engine = Engine::default();
    let spent = Spent::default();
    let schedule = Schedule::Closed {
        workers,
        requests: 2 * requests as u64,
        cap: None,
    };
    let (pool, spent_ref, target) = (&*pool, &spent, &target);
    let run = threads::run(schedule, "cpu", |_| {
        let mut reference = engine
            .thread_sender(target, "reference")
            .map_err(|e| RunError::Start(e.to_string()))?;
        Ok(move |n: u64| {
            // Worker w sends n = w, w + W, w + 2W, ...: its k-th call is n / W.
            let side = if (n / workers as u64).is_multiple_of(2) == pool_first {
                Side::Pool
            } else {
                Side::Engine
            };
            let before = thread_cpu();
            let status = match side {
                Side::Pool => pool
                    .embed("all-minilm", format!("chunk {n}").into())
                    .ok()
                    .map(|_| 200),
                Side::Engine => reference(n),
            };
            spent_ref.add(side, before, thread_cpu());
            status
        })
    })
    .context("the interleaved CPU run")?;
    anyhow::ensure!(run.failed() == 0, "{} calls failed", run.failed());
    Ok(spent)
}
