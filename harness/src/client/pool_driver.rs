//! Our own pool variants as a driver (`harness drive`): the driver protocol's other side, in
//! Rust, so `harness client` measures the `pool` crate exactly as it measures SOLLOL's pool or
//! any other library, on the same cells and nodes, and a Rust user has a driver to copy.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use anyhow::Context as _;
use pool::Strategy;

use crate::variant::{PoolOptions, Variant};

/// What the harness told the driver (the `OPB_*` variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverEnv {
    /// The nodes' base URLs.
    pub nodes: Vec<String>,
    /// Concurrent callers.
    pub workers: usize,
    /// Requests over all callers.
    pub requests: u64,
    /// The request ids' prefix.
    pub run_id: String,
    /// The model to ask for.
    pub model: String,
    /// Where the report goes.
    pub report: PathBuf,
}

impl DriverEnv {
    /// Reads the `OPB_*` variables, naming the one missing or malformed.
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| {
            std::env::var(name)
                .with_context(|| format!("{name} is not set: run me from harness client"))
        };
        let number = |name: &str| -> anyhow::Result<u64> {
            let text = var(name)?;
            text.parse()
                .with_context(|| format!("{name}={text:?} is not a count"))
        };
        let nodes: Vec<String> = var("OPB_NODES")?
            .split(',')
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        anyhow::ensure!(!nodes.is_empty(), "OPB_NODES names no node");
        Ok(Self {
            nodes,
            workers: usize::try_from(number("OPB_WORKERS")?)?.max(1),
            requests: number("OPB_REQUESTS")?,
            run_id: var("OPB_RUN_ID")?,
            model: var("OPB_MODEL")?,
            report: var("OPB_REPORT")?.into(),
        })
    }
}

/// Sends the requests `env` asks for through `variant` routing by `strategy`, from `env.workers`
/// threads, and writes the report: a line per request, then the pool's `get_stats()` (a variant
/// that keeps none writes none).
pub fn drive(env: &DriverEnv, variant: Variant, strategy: Strategy) -> anyhow::Result<()> {
    let options = PoolOptions {
        strategy,
        ..PoolOptions::default()
    };
    let pool = variant
        .build(&env.nodes, options)
        .with_context(|| format!("building the {variant} pool"))?;
    let file =
        File::create(&env.report).with_context(|| format!("creating {}", env.report.display()))?;
    let report = Mutex::new(BufWriter::new(file));
    let (epoch, clock) = (SystemTime::now(), Instant::now());
    let epoch_ms = epoch
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3);
    std::thread::scope(|s| {
        for w in 0..env.workers {
            let (pool, report) = (&pool, &report);
            s.spawn(move || {
                for n in (w as u64..env.requests).step_by(env.workers) {
                    let id = format!("{}-{n}", env.run_id);
                    let sent = clock.elapsed();
                    let ok = pool.embed(&env.model, format!("text [rid:{id}]").into()).is_ok();
                    let latency_ms = (clock.elapsed() - sent).as_secs_f64() * 1e3;
                    let at_ms = epoch_ms + sent.as_secs_f64() * 1e3;
                    let line = serde_json::json!({"id": id, "ok": ok, "latency_ms": latency_ms, "at_ms": at_ms});
                    if let Ok(mut out) = report.lock() {
                        // A line that cannot be written is a request the harness counts as
                        // unreported: nothing to do here.
                        let _ = writeln!(out, "{line}");
                    }
                }
            });
        }
    });
    // A worker that panicked has already panicked the scope: the lock cannot be poisoned here.
    let mut out = report
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if variant.keeps_stats() {
        writeln!(out, "{}", serde_json::json!({ "stats": pool.stats() }))?;
    }
    out.flush().context("writing the report")?;
    Ok(())
}
