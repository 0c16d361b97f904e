//! What a pool costs in absolute terms, measured against an independent reference client in the
//! same run: the gate's view of regressions that leave every speedup where it was.
//!
//! A change that makes every request slower by the same amount (a logging call, a dependency bump
//! that turns keep-alive off) moves no ratio of the pool with itself. So each figure here compares
//! the pool with the load engine ([`crate::engine`]) on the same fresh node, same workers,
//! interleaved (which side goes first alternates by repeat). The engine builds its own hyper
//! connections, sharing nothing with the pool's reqwest client, so a broken client setting moves
//! one side only.
//!
//! - **overhead**: the pool's requests/s at zero service time over the engine's.
//! - **connections per request**: TCP connections the node accepted during the pool's run, per
//!   request: near 0 with keep-alive, 1.0 without.
//! - **latency added** (p50, p99): at moderate load with a real service time, each side's latency
//!   percentile minus the node's median served time (from the node's own record of how long items
//!   held their slot), the pool's over the engine's.
//! - **CPU per request**: the CPU time the pool's calling threads spend per request over what the
//!   engine spends on the same exchange from the same threads, interleaved call by call
//!   (`cpu.rs`). Throughput hides a CPU regression while the client has a core to spare; this
//!   figure does not.

mod cpu;

pub use cpu::{CpuFigures, figures as cpu_figures};

use std::time::Duration;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use mock_ollama::MockNode;

use crate::engine::{Engine, Schedule, Target, Template};
use crate::load::{Workload, closed_loop};
use crate::nodes::{ClusterSpec, Nodes};
use crate::variant::{PoolOptions, Variant};

/// How big each part of one cost sample is. Reports written before a part existed read its
/// sizes as the defaults.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CostSettings {
    /// Requests per side in the zero-service throughput part.
    pub throughput_requests: usize,
    /// Workers (and connections) in the throughput part.
    pub throughput_workers: usize,
    /// Requests per side in the latency part.
    pub latency_requests: usize,
    /// Workers in the latency part: half the node's slots, so nothing queues (moderate load).
    pub latency_workers: usize,
    /// Service time in the latency part, microseconds.
    pub latency_service_us: u64,
    /// Requests per side in the CPU part.
    pub cpu_requests: usize,
    /// Workers (threads) in the CPU part.
    pub cpu_workers: usize,
}

impl Default for CostSettings {
    fn default() -> Self {
        Self {
            throughput_requests: 3_000,
            throughput_workers: 4,
            latency_requests: 1_000,
            latency_workers: 2,
            latency_service_us: 1_000,
            cpu_requests: 3_000,
            cpu_workers: 1,
        }
    }
}

/// One sample of every cost figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostSample {
    /// The pool's requests/s over the engine's, zero service time.
    pub overhead: f64,
    /// New TCP connections per request during the pool's throughput run.
    pub connections_per_request: f64,
    /// The pool's added median latency over the engine's.
    pub latency_added_p50: f64,
    /// The pool's added p99 latency over the engine's.
    pub latency_added_p99: f64,
    /// The pool's callers' CPU time per request over the engine's threads'.
    pub cpu_per_request: f64,
}

/// Measures one [`CostSample`] of `variant` built with `options`; `repeat` picks which side runs
/// first (alternating, so a drift in the machine does not favour one side).
pub fn sample(
    variant: Variant,
    options: PoolOptions,
    settings: &CostSettings,
    repeat: usize,
) -> anyhow::Result<CostSample> {
    let pool_first = repeat.is_multiple_of(2);
    let throughput = Part {
        workers: settings.throughput_workers,
        requests: settings.throughput_requests,
        service: Duration::ZERO,
    };
    let (pool, engine, _) = throughput.run(variant, options, pool_first)?;
    let latency = Part {
        workers: settings.latency_workers,
        requests: settings.latency_requests,
        service: Duration::from_micros(settings.latency_service_us),
    };
    let (pool_lat, engine_lat, served) = latency.run(variant, options, pool_first)?;
    let added =
        |q: f64| added_us(&pool_lat.latency, q, served) / added_us(&engine_lat.latency, q, served);
    let cpu_per_request = cpu::figures(variant, options, settings, pool_first)?.ratio();
    Ok(CostSample {
        overhead: pool.throughput / engine.throughput.max(1e-9),
        connections_per_request: pool.connections as f64 / pool.requests.max(1) as f64,
        latency_added_p50: added(0.5),
        latency_added_p99: added(0.99),
        cpu_per_request,
    })
}

/// Latency at quantile `q` minus the node's served time, at least 1 us (a ratio's denominator).
fn added_us(latency: &Histogram<u64>, q: f64, served_us: f64) -> f64 {
    (latency.value_at_quantile(q) as f64 - served_us).max(1.0)
}

/// One side's figures from one part.
#[derive(Debug)]
struct Side {
    throughput: f64,
    requests: u64,
    connections: u64,
    latency: Histogram<u64>,
}

/// One closed-loop load, run by the pool and by the engine on one fresh node.
#[derive(Debug, Clone, Copy)]
struct Part {
    workers: usize,
    requests: usize,
    service: Duration,
}

impl Part {
    /// Runs both sides on a fresh node with twice as many slots as workers; returns the pool's
    /// side, the engine's, and the node's median served time over both, microseconds.
    fn run(
        &self,
        variant: Variant,
        options: PoolOptions,
        pool_first: bool,
    ) -> anyhow::Result<(Side, Side, f64)> {
        let spec = ClusterSpec::uniform(1, 2 * self.workers, self.service);
        let Nodes::Owned(cluster) = Nodes::start(&spec, &[])? else {
            anyhow::bail!("cost figures need embedded nodes");
        };
        let node = &cluster.nodes()[0];
        let (pool, engine) = if pool_first {
            let pool = self.pool_side(variant, options, node)?;
            (pool, self.engine_side(node)?)
        } else {
            let engine = self.engine_side(node)?;
            (self.pool_side(variant, options, node)?, engine)
        };
        let served_p50_us = node
            .served_quantile(0.5)
            .map_or(0.0, |d| d.as_secs_f64() * 1e6);
        cluster.shutdown();
        Ok((pool, engine, served_p50_us))
    }

    fn pool_side(
        &self,
        variant: Variant,
        options: PoolOptions,
        node: &MockNode,
    ) -> anyhow::Result<Side> {
        let before = node.counters().connections_accepted;
        let pool = variant.build(&[node.url()], options)?;
        let workload = Workload {
            workers: self.workers,
            requests: self.requests,
            cap: None,
            model: "all-minilm".into(),
            text: None,
        };
        let run = closed_loop(&*pool, &workload)?;
        drop(pool);
        anyhow::ensure!(run.failed() == 0, "{} pool requests failed", run.failed());
        Ok(Side {
            throughput: run.throughput(),
            requests: run.ok(),
            connections: node.counters().connections_accepted - before,
            latency: run.latency,
        })
    }

    fn engine_side(&self, node: &MockNode) -> anyhow::Result<Side> {
        let target = Target {
            url: format!("{}/api/embed", node.url()),
            bodies: Template::new(r#"{"model":"all-minilm","input":"reference {rid}"}"#).into(),
            read: crate::engine::Read::Whole,
            decode: None,
            headers: Default::default(),
        };
        let schedule = Schedule::Closed {
            workers: self.workers,
            requests: self.requests as u64,
            cap: None,
        };
        let run = Engine::default()
            .run(&target, schedule, "reference")
            .context("the reference client")?;
        anyhow::ensure!(
            run.failed() == 0,
            "{} reference requests failed",
            run.failed()
        );
        Ok(Side {
            throughput: run.throughput(),
            requests: run.ok(),
            connections: 0,
            latency: run.latency,
        })
    }
}
