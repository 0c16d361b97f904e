//! The pool variants under comparison: each one a ledger and lock scope, built into a
//! `pool::Pool` (or, for the gate's self-test, a deliberately degraded one) that every scenario
//! drives the same way, through [`PoolUnderTest`].

use std::time::Duration;

use pool::testing::{Degradation, degraded_pool};
use pool::{
    AtomicLedger, BareLedger, EmbedInput, EmbedResponse, HttpClient, HttpConfig, Ledger, LockScope,
    MutexLedger, Pool, PoolConfig, PoolError, PoolStats, ProbeConfig, Reply, Strategy, Transport,
    Wrap,
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
    /// Background probing (pools with stats only); only `mutex-probe` holds the lock.
    pub probe: Option<ProbeConfig>,
    /// Record the mutex ledger's lock wait and hold times.
    pub lock_timing: bool,
    /// Deliberate regressions (the gate's self-test); none by default.
    pub degradation: Degradation,
    /// Keep connections alive between requests (reqwest's default). `false` is another of the
    /// self-test's regressions: a new TCP connection for every attempt.
    pub keep_alive: bool,
    /// Blocking HTTP clients the pool spreads its calling threads over (`HttpConfig::clients`).
    pub http_clients: usize,
    /// Which HTTP client carries the pool's requests.
    pub http_client: HttpClient,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            strategy: Strategy::RoundRobin,
            timeout: Duration::from_secs(30),
            probe: None,
            lock_timing: false,
            degradation: Degradation::default(),
            keep_alive: true,
            http_clients: 1,
            http_client: HttpClient::default(),
        }
    }
}

/// What the harness asks of a pool, whatever its transport and request wrapper: a production
/// `Pool` and a degraded one are different types, so scenarios hold either as this.
pub trait PoolUnderTest: Send + Sync {
    /// `POST /api/embed` through the pool.
    fn embed(&self, model: &str, input: EmbedInput) -> Result<Reply<EmbedResponse>, PoolError>;
    /// The pool's statistics (SOLLOL's `get_stats()`).
    fn stats(&self) -> PoolStats;
    /// The pool's bookkeeping.
    fn ledger(&self) -> &Ledger;
}

impl<X: Transport, W: Wrap> PoolUnderTest for Pool<X, W> {
    fn embed(&self, model: &str, input: EmbedInput) -> Result<Reply<EmbedResponse>, PoolError> {
        Pool::embed(self, model, input)
    }
    fn stats(&self) -> PoolStats {
        Pool::stats(self)
    }
    fn ledger(&self) -> &Ledger {
        Pool::ledger(self)
    }
}

impl Variant {
    /// Builds this variant's pool over `urls`: a production pool, or a degraded one when
    /// `options.degradation` asks for it.
    pub fn build(
        self,
        urls: &[String],
        options: PoolOptions,
    ) -> Result<Box<dyn PoolUnderTest>, PoolError> {
        let config = PoolConfig {
            strategy: options.strategy,
            http: HttpConfig {
                timeout: options.timeout,
                max_idle_per_host: if options.keep_alive { usize::MAX } else { 0 },
                clients: options.http_clients,
                client: options.http_client,
                ..HttpConfig::default()
            },
            probe: options.probe,
        };
        let locked = |scope| {
            let ledger = MutexLedger::new(scope);
            if options.lock_timing {
                ledger.with_lock_timing()
            } else {
                ledger
            }
        };
        let ledger: Ledger = match self {
            Variant::Atomic => AtomicLedger::new().into(),
            Variant::MutexCounters => locked(LockScope::Counters).into(),
            Variant::MutexProbe => locked(LockScope::Probe).into(),
            Variant::MutexRequest => locked(LockScope::Request).into(),
            Variant::Bare => BareLedger::new().into(),
        };
        Ok(if options.degradation.is_none() {
            Box::new(Pool::new(ledger, config, urls)?)
        } else {
            Box::new(degraded_pool(ledger, config, urls, options.degradation)?)
        })
    }
}
