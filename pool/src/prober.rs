//! The background health probe: SOLLOL's health-check and VRAM loops in one.
//!
//! At start and then every interval it asks each node for `GET /api/ps` and `GET /api/tags` and stores whether both
//! answered in time. Under `LockScope::Probe` the mutex ledger holds its global lock across all of
//! these calls, as SOLLOL's loops hold `self._lock`; a node whose control plane answers slowly
//! then stalls every request thread. Every other variant probes outside any lock.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::PoolError;
use crate::http::{Transport, healthy};
use crate::ledger::Ledger;

/// How often and how patiently to probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Time between probe rounds.
    pub interval: Duration,
    /// Timeout of each probe request (SOLLOL uses 2 s).
    pub timeout: Duration,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
        }
    }
}

/// The probing thread; stops and is joined when dropped.
pub(crate) struct Prober {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Prober {
    /// Starts probing `ledger`'s nodes; a mutex ledger scoped to `LockScope::Probe` holds its
    /// lock across each round.
    pub(crate) fn spawn<X: Transport>(
        ledger: Arc<Ledger>,
        transport: Arc<X>,
        config: ProbeConfig,
    ) -> Result<Self, PoolError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("pool-prober".into())
            .spawn(move || {
                // One round at once, then one per interval, so even a short run sees the probe.
                loop {
                    ledger.probe(&mut |node| healthy(&*transport, node, config.timeout));
                    if !matches!(
                        stopped.recv_timeout(config.interval),
                        Err(RecvTimeoutError::Timeout)
                    ) {
                        break;
                    }
                }
            })
            .map_err(PoolError::Spawn)?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
