//! loom models of the shipped ledger code (instantiated with loom's primitives).
//!
//! Each model runs 2-3 threads under a preemption bound of 3 (override with
//! `LOOM_MAX_PREEMPTIONS`); the whole file runs in seconds on two cores. Both ledgers go through
//! the same generic model functions, so a property is stated once.

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;

use super::{one_request, success};
use crate::ledger::{AtomicCore, LedgerCore, MutexCore, Outcome, Picked, Steps};
use crate::strategy::Strategy;
use crate::sync::test_families::LoomSync;

/// Runs `f` under loom with a preemption bound of 3, unless `LOOM_MAX_PREEMPTIONS` says otherwise.
pub(crate) fn model(f: impl Fn() + Sync + Send + 'static) {
    model_bounded(3, f);
}

/// Runs `f` under loom with preemption bound `bound`, unless `LOOM_MAX_PREEMPTIONS` says otherwise.
fn model_bounded(bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(bound);
    }
    builder.check(f);
}

fn ledger_with<L: LedgerCore + Default>(nodes: &[&str]) -> Arc<L> {
    ledger_set_up::<L>(nodes, |_| {})
}

/// A ledger with `nodes`, after `setup` (used to break it on purpose).
fn ledger_set_up<L: LedgerCore + Default>(nodes: &[&str], setup: fn(&mut L)) -> Arc<L> {
    let mut ledger = L::default();
    setup(&mut ledger);
    for key in nodes {
        ledger.add_node(key, &format!("http://{key}")).unwrap();
    }
    Arc::new(ledger)
}

/// One thread per outcome, each running one request's bookkeeping on `ledger`.
fn spawn_requests<L: LedgerCore>(
    ledger: &Arc<L>,
    outcomes: [Outcome; 2],
) -> Vec<thread::JoinHandle<Option<u64>>> {
    outcomes
        .into_iter()
        .map(|outcome| {
            let ledger = Arc::clone(ledger);
            thread::spawn(move || one_request(&mut ledger.steps(), Strategy::RoundRobin, outcome))
        })
        .collect()
}

fn accounting_is_exact<L: LedgerCore + Default>() {
    model(|| {
        let ledger = ledger_with::<L>(&["a:1"]);
        for h in spawn_requests(&ledger, [success(5), Outcome::NodeFault]) {
            assert_eq!(h.join().unwrap(), Some(0));
        }
        let s = ledger.snapshot(Strategy::RoundRobin);
        assert_eq!(
            (s.total_requests, s.successful_requests, s.failed_requests),
            (2, 1, 1)
        );
        let node = &s.node_performance["a:1"];
        assert_eq!(
            (
                node.total_requests,
                node.failed_requests,
                node.active_requests
            ),
            (2, 1, 0)
        );
        assert_eq!(node.latency_ms, 0.005);
    });
}

#[test]
fn atomic_accounting_is_exact() {
    accounting_is_exact::<AtomicCore<LoomSync>>();
}

#[test]
fn mutex_accounting_is_exact() {
    accounting_is_exact::<MutexCore<LoomSync>>();
}

pub(crate) fn round_robin_is_fair<L: LedgerCore + Default>(setup: fn(&mut L)) {
    model(move || {
        let ledger = ledger_set_up::<L>(&["a:1", "b:2"], setup);
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let ledger = Arc::clone(&ledger);
                thread::spawn(move || {
                    ledger
                        .steps()
                        .select(Strategy::RoundRobin, &[])
                        .map(|p| p.node().id)
                })
            })
            .collect();
        let mut per_node = [0; 2];
        for h in handles {
            per_node[h.join().unwrap().unwrap() as usize] += 1;
        }
        // Three distinct tickets over two nodes: 2 and 1. A duplicated ticket could give 3 and 0.
        per_node.sort();
        assert_eq!(per_node, [1, 2], "round robin handed out a ticket twice");
    });
}

#[test]
fn atomic_round_robin_is_fair() {
    round_robin_is_fair::<AtomicCore<LoomSync>>(|_| {});
}

#[test]
fn mutex_round_robin_is_fair() {
    round_robin_is_fair::<MutexCore<LoomSync>>(|_| {});
}

/// A snapshot taken while two requests run never shows an effect without its cause, and the
/// active gauge never leaves `0..=writers` (a decrement before its increment would wrap a `u64`).
///
/// Bound 2: the reader touches nine atomics, and bound 3 takes 47 s on two cores against 5 s.
/// Bound 2 still finds a reversed read order (total read first), checked when this was written.
pub(crate) fn snapshot_is_consistent<L: LedgerCore + Default>() {
    model_bounded(2, || {
        let ledger = ledger_with::<L>(&["a:1"]);
        let writers = spawn_requests(&ledger, [success(1), Outcome::NodeFault]);
        let s = ledger.snapshot(Strategy::RoundRobin);
        assert!(
            s.failed_requests <= s.total_requests,
            "effect before cause: failures above the total: {s:?}"
        );
        assert!(
            s.successful_requests + s.failed_requests <= s.total_requests,
            "effect before cause: outcomes above the total: {s:?}"
        );
        let node_sum: u64 = s.node_performance.values().map(|n| n.total_requests).sum();
        assert!(
            node_sum <= s.total_requests,
            "effect before cause: per-node sum above the global total: {s:?}"
        );
        let node = &s.node_performance["a:1"];
        assert!(
            node.failed_requests <= node.total_requests,
            "effect before cause: node failures above its total: {s:?}"
        );
        assert!(
            node.active_requests <= 2,
            "active gauge out of range: {s:?}"
        );
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(ledger.snapshot(Strategy::RoundRobin).active_total(), 0);
    });
}

#[test]
fn atomic_snapshot_is_consistent() {
    snapshot_is_consistent::<AtomicCore<LoomSync>>();
}

#[test]
fn mutex_snapshot_is_consistent() {
    snapshot_is_consistent::<MutexCore<LoomSync>>();
}

/// Two requests' active marks on one node: the gauge reads 0, 1 or 2 while they run, 0 after.
fn active_gauge_stays_in_range<L: LedgerCore + Default>() {
    model(|| {
        let ledger = ledger_with::<L>(&["a:1"]);
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let ledger = Arc::clone(&ledger);
                thread::spawn(move || {
                    let mut steps = ledger.steps();
                    let pick = steps.select(Strategy::LeastLoaded, &[]).unwrap();
                    assert!(steps.mark_active(&pick));
                    steps.unmark_active(&pick);
                })
            })
            .collect();
        let during = ledger.snapshot(Strategy::LeastLoaded).active_total();
        assert!(during <= 2, "active gauge went below zero: {during}");
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(ledger.snapshot(Strategy::LeastLoaded).active_total(), 0);
    });
}

#[test]
fn atomic_active_gauge_stays_in_range() {
    active_gauge_stays_in_range::<AtomicCore<LoomSync>>();
}

#[test]
fn mutex_active_gauge_stays_in_range() {
    active_gauge_stays_in_range::<MutexCore<LoomSync>>();
}

/// Removing node `a` while another thread selects: once removal is complete, `a` is never
/// selected, and no request is in flight to it when `remove_node` returns.
pub(crate) fn removal_is_safe<L: LedgerCore + Default>() {
    model(|| {
        let ledger = ledger_with::<L>(&["a:1", "b:2"]);
        let removed = Arc::new(AtomicBool::new(false));
        let in_flight_on_a = Arc::new(AtomicBool::new(false));
        let remover = {
            let (ledger, removed, in_flight_on_a) = (
                Arc::clone(&ledger),
                Arc::clone(&removed),
                Arc::clone(&in_flight_on_a),
            );
            thread::spawn(move || {
                ledger.remove_node("a:1").unwrap();
                assert!(
                    !in_flight_on_a.load(Ordering::SeqCst),
                    "remove_node returned while a request was in flight to it"
                );
                removed.store(true, Ordering::Release);
            })
        };
        let selector = {
            let (ledger, removed, in_flight_on_a) = (
                Arc::clone(&ledger),
                Arc::clone(&removed),
                Arc::clone(&in_flight_on_a),
            );
            thread::spawn(move || {
                let removal_complete = removed.load(Ordering::Acquire);
                let mut steps = ledger.steps();
                let Some(pick) = steps.select(Strategy::RoundRobin, &[]) else {
                    return;
                };
                let is_a = &*pick.node().key == "a:1";
                assert!(
                    !(removal_complete && is_a),
                    "selected a node whose removal had completed"
                );
                if steps.mark_active(&pick) {
                    in_flight_on_a.store(is_a, Ordering::SeqCst);
                    in_flight_on_a.store(false, Ordering::SeqCst);
                    steps.unmark_active(&pick);
                }
            })
        };
        remover.join().unwrap();
        selector.join().unwrap();
        let keys: Vec<_> = ledger.nodes().iter().map(|n| n.key.to_string()).collect();
        assert_eq!(keys, ["b:2"]);
    });
}

#[test]
fn atomic_removal_is_safe() {
    removal_is_safe::<AtomicCore<LoomSync>>();
}

#[test]
fn mutex_removal_is_safe() {
    removal_is_safe::<MutexCore<LoomSync>>();
}
