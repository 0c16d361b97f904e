//! The pool variants under comparison, built behind one type so every scenario drives them the same
//! way.

use std::time::Duration;

use pool::{
    AtomicLedger, BareLedger, LockScope, LockTimingSummary, MutexLedger, Pool, PoolConfig,
    PoolError, PoolStats, ProbeConfig, Strategy,
};
use serde::{Deserialize, Serialize};

/// One way of doing a pool's bookkeeping.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// Atomics, padded slots, RCU node list (the plan's proposal).
    Atomic,
    /// One mutex over the bookkeeping, released before I/O (SOLLOL's request path).
    MutexCounters,
    /// As `mutex-counters`, plus a prober that holds the lock across its HTTP calls (SOLLOL's
    /// health and VRAM loops).
    MutexProbe,
    /// The mutex held across the whole HTTP exchange (the plan's diagram).
    MutexRequest,
    /// Round-robin, no stats, no lock (FlockParser-legacy).
    Bare,
}

impl Variant {
    /// Every variant, in report order.
    pub const ALL: [Variant; 5] = [
        Variant::Atomic,
        Variant::MutexCounters,
        Variant::MutexProbe,
        Variant::MutexRequest,
        Variant::Bare,
    ];

    /// Name on the command line and in reports (`mutex-counters`).
    pub fn name(self) -> &'static str {
        match self {
            Variant::Atomic => "atomic",
            Variant::MutexCounters => "mutex-counters",
            Variant::MutexProbe => "mutex-probe",
            Variant::MutexRequest => "mutex-request",
            Variant::Bare => "bare",
        }
    }

    /// Whether the variant keeps per-request statistics.
    pub fn keeps_stats(self) -> bool {
        self != Variant::Bare
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Settings shared by every variant of one measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolOptions {
    /// Routing strategy.
    pub strategy: Strategy,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Background probing for every variant with stats; only `mutex-probe` holds the lock.
    pub probe: Option<ProbeConfig>,
    /// Record the mutex ledger's lock wait and hold times.
    pub lock_timing: bool,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            strategy: Strategy::RoundRobin,
            timeout: Duration::from_secs(30),
            probe: None,
            lock_timing: false,
        }
    }
}

/// A pool of any variant.
#[derive(Debug)]
pub enum AnyPool {
    /// `atomic`.
    Atomic(Pool<AtomicLedger>),
    /// `mutex-*`.
    Mutex(Pool<MutexLedger>),
    /// `bare`.
    Bare(Pool<BareLedger>),
}

impl AnyPool {
    /// Builds `variant` over `urls`.
    pub fn build(
        variant: Variant,
        urls: &[String],
        options: PoolOptions,
    ) -> Result<Self, PoolError> {
        let scope = match variant {
            Variant::MutexProbe => LockScope::Probe,
            Variant::MutexRequest => LockScope::Request,
            _ => LockScope::Counters,
        };
        let probe = if variant == Variant::Bare {
            None
        } else {
            options.probe
        };
        let config = PoolConfig {
            strategy: options.strategy,
            scope,
            timeout: options.timeout,
            probe,
        };
        Ok(match variant {
            Variant::Atomic => AnyPool::Atomic(Pool::new(AtomicLedger::new(), config, urls)?),
            Variant::Bare => AnyPool::Bare(Pool::new(BareLedger::new(), config, urls)?),
            _ => {
                let ledger = if options.lock_timing {
                    MutexLedger::with_lock_timing()
                } else {
                    MutexLedger::new()
                };
                AnyPool::Mutex(Pool::new(ledger, config, urls)?)
            }
        })
    }

    /// One embed request; the vectors are decoded (real client work) and dropped.
    pub fn embed(&self, model: &str, input: &str) -> Result<(), PoolError> {
        match self {
            AnyPool::Atomic(p) => p.embed(model, input).map(drop),
            AnyPool::Mutex(p) => p.embed(model, input).map(drop),
            AnyPool::Bare(p) => p.embed(model, input).map(drop),
        }
    }

    /// The pool's statistics.
    pub fn stats(&self) -> PoolStats {
        match self {
            AnyPool::Atomic(p) => p.stats(),
            AnyPool::Mutex(p) => p.stats(),
            AnyPool::Bare(p) => p.stats(),
        }
    }

    /// Lock wait and hold percentiles (instrumented mutex pools only).
    pub fn lock_timings(&self) -> Option<LockTimingSummary> {
        match self {
            AnyPool::Mutex(p) => p.ledger().lock_timings(),
            _ => None,
        }
    }
}
