//! The shipped request path under loom: `Exchange::run` (select, mark, attempt, record, fail
//! over, re-select after a refused mark) with a scripted transport instead of sockets, racing
//! another request or a concurrent `remove_node`.
//!
//! The other models drive `simulate_request`, one attempt that gives up on a refused mark; these
//! check the retry loop that ships.

use std::marker::PhantomData;
use std::time::Duration;

use bytes::Bytes;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use serde::de::DeserializeOwned;

use super::loom_models::model;
use super::twins::assert_caught;
use crate::api::{EmbedResponse, Reply};
use crate::error::{FailureReason, PoolError};
use crate::http::{AttemptError, Transport};
use crate::ledger::{AtomicCore, LedgerCore, MutexCore};
use crate::node::NodeAddr;
use crate::pool::Exchange;
use crate::strategy::Strategy;
use crate::sync::test_families::{LoomSync, Unfenced};
use crate::testing::{Dropped, Dropping};

/// Node `a:1` answers 500, every other node answers one vector; the flag says whether an attempt
/// on `b:2` is in progress.
struct Script {
    on_b: Arc<AtomicBool>,
}

impl Transport for Script {
    fn post<T: DeserializeOwned>(
        &self,
        node: &NodeAddr,
        _: &str,
        _: Bytes,
    ) -> Result<T, AttemptError> {
        if node.key() == "b:2" {
            self.on_b.store(true, Ordering::SeqCst);
            self.on_b.store(false, Ordering::SeqCst);
        }
        if node.key() == "a:1" {
            return Err(AttemptError::Retry(FailureReason::Status {
                status: 500,
                message: "scripted".into(),
            }));
        }
        serde_json::from_str(r#"{"embeddings":[[1.0]]}"#)
            .map_err(|e| AttemptError::Retry(FailureReason::Body(e.to_string())))
    }

    /// Never called: these models run requests, not probes.
    fn get(&self, _: &NodeAddr, _: &str, _: Duration) -> Option<u16> {
        None
    }
}

fn ledger<L: LedgerCore + Default>() -> Arc<L> {
    let ledger = L::default();
    for key in ["a:1", "b:2"] {
        ledger.add_node(key, &format!("http://{key}")).unwrap();
    }
    Arc::new(ledger)
}

/// Which request path a model drives.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    /// The shipped `Exchange::run`.
    Shipped,
    /// Broken twin: the shipped path over bookkeeping that skips the un-mark after a node
    /// fault (a gauge not un-marked on one path).
    ForgetsUnmarkAfterFault,
}

/// One request through the shipped path (or its twin).
fn request<L: LedgerCore>(
    ledger: &L,
    script: &Script,
    hold_lock: bool,
    path: Path,
) -> Result<Reply<EmbedResponse>, PoolError> {
    let exchange = Exchange::<EmbedResponse, Script> {
        transport: script,
        strategy: Strategy::RoundRobin,
        path: "/api/embed",
        body: Bytes::new(),
        _answer: PhantomData,
    };
    match path {
        Path::Shipped => ledger.run(hold_lock, exchange),
        Path::ForgetsUnmarkAfterFault => ledger.run(
            hold_lock,
            Dropping {
                body: exchange,
                dropped: Dropped::UnmarkAfterFault,
            },
        ),
    }
}

/// Two requests race; `a:1` always fails. Each must end answered by `b:2`, and the books must
/// hold exactly the attempts made: two successes on `b:2`, every attempt on `a:1` a failure.
fn failover_is_exact<L: LedgerCore + Default>(hold_lock: bool, path: Path) {
    model(move || {
        let ledger = ledger::<L>();
        let script = Arc::new(Script {
            on_b: Arc::new(AtomicBool::new(false)),
        });
        let other = {
            let (ledger, script) = (Arc::clone(&ledger), Arc::clone(&script));
            thread::spawn(move || request(&*ledger, &script, hold_lock, path).map(|r| r.node))
        };
        let mine = request(&*ledger, &script, hold_lock, path).map(|r| r.node);
        for answered in [mine, other.join().unwrap()] {
            assert_eq!(answered.expect("b:2 always answers").key(), "b:2");
        }
        let s = ledger.snapshot(Strategy::RoundRobin);
        assert_eq!(
            (s.total_requests, s.successful_requests, s.failed_requests),
            (2, 2, 0)
        );
        let (a, b) = (&s.node_performance["a:1"], &s.node_performance["b:2"]);
        assert_eq!((b.total_requests, b.failed_requests), (2, 0), "{s:?}");
        assert_eq!(
            a.total_requests, a.failed_requests,
            "every attempt on a:1 failed: {s:?}"
        );
        assert_eq!(s.active_total(), 0, "an active mark was left behind: {s:?}");
    });
}

#[test]
fn atomic_failover_is_exact() {
    failover_is_exact::<AtomicCore<LoomSync>>(false, Path::Shipped);
}

#[test]
fn mutex_failover_is_exact() {
    failover_is_exact::<MutexCore<LoomSync>>(false, Path::Shipped);
}

#[test]
fn mutex_failover_is_exact_with_the_lock_held() {
    failover_is_exact::<MutexCore<LoomSync>>(true, Path::Shipped);
}

/// A request fails over from `a:1` while `b:2` is removed. When `remove_node` returns no attempt
/// on `b:2` is in progress, and the request ends answered by `b:2` or failed with `a:1` as its
/// only tried node; either way it is counted once.
pub(crate) fn removal_during_failover<L: LedgerCore + Default>() {
    model(|| {
        let ledger = ledger::<L>();
        let on_b = Arc::new(AtomicBool::new(false));
        let remover = {
            let (ledger, on_b) = (Arc::clone(&ledger), Arc::clone(&on_b));
            thread::spawn(move || {
                ledger.remove_node("b:2").unwrap();
                assert!(
                    !on_b.load(Ordering::SeqCst),
                    "remove_node returned while an attempt on the node was in progress"
                );
            })
        };
        let script = Script { on_b };
        match request(&*ledger, &script, false, Path::Shipped) {
            Ok(reply) => assert_eq!(reply.node.key(), "b:2"),
            Err(PoolError::AllNodesFailed { failures }) => {
                let tried: Vec<&str> = failures.iter().map(|f| f.node.key()).collect();
                assert_eq!(tried, ["a:1"], "only a:1 may have failed");
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
        remover.join().unwrap();
        let s = ledger.snapshot(Strategy::RoundRobin);
        assert_eq!(s.total_requests, 1, "{s:?}");
        assert_eq!(s.successful_requests + s.failed_requests, 1, "{s:?}");
        assert_eq!(s.active_total(), 0, "{s:?}");
    });
}

#[test]
fn atomic_removal_during_failover() {
    removal_during_failover::<AtomicCore<LoomSync>>();
}

#[test]
fn mutex_removal_during_failover() {
    removal_during_failover::<MutexCore<LoomSync>>();
}

#[test]
fn the_failover_removal_model_catches_a_missing_fence() {
    assert_caught(
        "the shipped path over a ledger without the removal fences",
        removal_during_failover::<AtomicCore<Unfenced<LoomSync>>>,
        &["attempt on the node was in progress"],
    );
}

#[test]
fn the_failover_model_catches_a_gauge_left_marked_after_a_fault() {
    for (what, check) in [
        (
            "the atomic ledger",
            (|| failover_is_exact::<AtomicCore<LoomSync>>(false, Path::ForgetsUnmarkAfterFault))
                as fn(),
        ),
        ("the mutex ledger", || {
            failover_is_exact::<MutexCore<LoomSync>>(false, Path::ForgetsUnmarkAfterFault)
        }),
    ] {
        assert_caught(
            &format!("{what} without the un-mark after a node fault"),
            check,
            &["an active mark was left behind"],
        );
    }
}
