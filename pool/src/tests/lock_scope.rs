//! What [`crate::LockScope`] promises, shown as ordering under loom rather than measured: with
//! the lock held across a probe round (`Probe`) no request's bookkeeping can happen during it;
//! with the lock held across a request (`Request`) no two attempts overlap. Each claim comes with
//! its twin: without the lock held, loom finds the interleaving the lock rules out.

use std::marker::PhantomData;
use std::sync::{Arc as StdArc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::thread;
use serde::de::DeserializeOwned;

use super::loom_models::model;
use crate::api::EmbedResponse;
use crate::http::{AttemptError, Transport};
use crate::ledger::{AtomicCore, LedgerCore, MutexCore, Steps};
use crate::node::NodeAddr;
use crate::pool::Exchange;
use crate::strategy::Strategy;
use crate::sync::test_families::LoomSync;

fn ledger<L: LedgerCore + Default>() -> Arc<L> {
    let ledger = L::default();
    ledger.add_node("a:1", "http://a:1").unwrap();
    Arc::new(ledger)
}

/// Whether loom finds an execution in which a request's first bookkeeping step starts and ends
/// inside a probe round's check. Both sides mark their span on one shared sequence: a request
/// blocked by the probe may start inside the round, but cannot end inside it.
fn request_counted_during_a_probe<L: LedgerCore + Default>(hold_lock: bool) -> bool {
    let seen = StdArc::new(Mutex::new(false));
    let found = StdArc::clone(&seen);
    model(move || {
        let ledger = ledger::<L>();
        let sequence = Arc::new(AtomicUsize::new(0));
        let request = {
            let (ledger, sequence) = (Arc::clone(&ledger), Arc::clone(&sequence));
            thread::spawn(move || {
                let start = sequence.fetch_add(1, Ordering::SeqCst);
                ledger.steps().begin();
                (start, sequence.fetch_add(1, Ordering::SeqCst))
            })
        };
        let mut round = (0, 0);
        ledger.probe(hold_lock, &mut |_| {
            round.0 = sequence.fetch_add(1, Ordering::SeqCst);
            thread::yield_now();
            round.1 = sequence.fetch_add(1, Ordering::SeqCst);
            true
        });
        let (started, ended) = request.join().unwrap();
        if round.0 < started && ended < round.1 {
            *found.lock().unwrap() = true;
        }
    });
    *seen.lock().unwrap()
}

#[test]
fn a_probe_round_under_the_lock_keeps_every_request_out() {
    assert!(
        !request_counted_during_a_probe::<MutexCore<LoomSync>>(true),
        "LockScope::Probe: a request was counted while the probe held the lock"
    );
    assert!(
        request_counted_during_a_probe::<MutexCore<LoomSync>>(false),
        "twin: without the lock held the model must find a request inside the probe round"
    );
    assert!(
        request_counted_during_a_probe::<AtomicCore<LoomSync>>(true),
        "the atomic ledger has no lock to hold: its probe never blocks a request"
    );
}

/// A transport that records whether two attempts were ever in progress at once.
struct Overlap {
    in_progress: AtomicUsize,
    overlapped: AtomicBool,
}

impl Transport for Overlap {
    fn post<T: DeserializeOwned>(
        &self,
        _: &NodeAddr,
        _: &str,
        _: Bytes,
    ) -> Result<T, AttemptError> {
        if self.in_progress.fetch_add(1, Ordering::SeqCst) > 0 {
            self.overlapped.store(true, Ordering::SeqCst);
        }
        thread::yield_now();
        self.in_progress.fetch_sub(1, Ordering::SeqCst);
        serde_json::from_str(r#"{"embeddings":[[1.0]]}"#)
            .map_err(|e| AttemptError::Retry(crate::error::FailureReason::Body(e.to_string())))
    }

    /// Never called: these models run requests, not probes.
    fn get(&self, _: &NodeAddr, _: &str, _: Duration) -> Option<u16> {
        None
    }
}

fn one_request<L: LedgerCore>(
    ledger: &L,
    transport: &Overlap,
    hold_lock: bool,
) -> Result<(), crate::error::PoolError> {
    let exchange = Exchange::<EmbedResponse, Overlap> {
        transport,
        strategy: Strategy::RoundRobin,
        path: "/api/embed",
        body: Bytes::new(),
        _answer: PhantomData,
    };
    ledger.run(hold_lock, exchange).map(drop)
}

/// Whether loom finds two requests' attempts in progress at once.
fn attempts_overlap<L: LedgerCore + Default>(hold_lock: bool) -> bool {
    let seen = StdArc::new(Mutex::new(false));
    let found = StdArc::clone(&seen);
    model(move || {
        let ledger = ledger::<L>();
        let transport = Arc::new(Overlap {
            in_progress: AtomicUsize::new(0),
            overlapped: AtomicBool::new(false),
        });
        let other = {
            let (ledger, transport) = (Arc::clone(&ledger), Arc::clone(&transport));
            thread::spawn(move || one_request(&*ledger, &transport, hold_lock))
        };
        one_request(&*ledger, &transport, hold_lock).unwrap();
        other.join().unwrap().unwrap();
        if transport.overlapped.load(Ordering::SeqCst) {
            *found.lock().unwrap() = true;
        }
    });
    *seen.lock().unwrap()
}

#[test]
fn the_lock_held_across_a_request_serialises_attempts() {
    assert!(
        !attempts_overlap::<MutexCore<LoomSync>>(true),
        "LockScope::Request: two attempts overlapped"
    );
    assert!(
        attempts_overlap::<MutexCore<LoomSync>>(false),
        "twin: with the lock released before I/O the model must find overlapping attempts"
    );
}
