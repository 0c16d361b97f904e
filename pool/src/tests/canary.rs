//! The canary: a ledger whose counters lose updates (load, yield, store, as Python's `+=` does
//! without a lock), and a test per checker asserting that the checker catches it; and its twin for
//! the mutex ledger, whose one lock is split in two (`Split`: copy out, change, write back).
//!
//! Each test also says *which* checker found the lost update. The loom test is litmus-style: it
//! collects the final total of every explored execution and asserts that the bad outcome is among
//! them, rather than expecting a panic.

use std::collections::BTreeSet;
use std::sync::{Arc as StdArc, Mutex};

use loom::sync::Arc;
use loom::thread;
use proptest::test_runner::{Config, TestError, TestRunner};

use super::loom_models::model;
use super::properties::{concurrent_accounting, scripts};
use super::stress::{PER_THREAD, THREADS, hammer};
use crate::ledger::{AtomicCore, LedgerCore, MutexCore, Steps};
use crate::strategy::Strategy;
use crate::sync::StdSync;
use crate::sync::test_families::{LoomSync, Racy, Split};

/// Final totals of two concurrent `begin()`s over every execution loom explores.
fn loom_outcomes<L: LedgerCore + Default>() -> BTreeSet<u64> {
    let outcomes = StdArc::new(Mutex::new(BTreeSet::new()));
    let seen = StdArc::clone(&outcomes);
    model(move || {
        let ledger = Arc::new(L::default());
        let other = {
            let ledger = Arc::clone(&ledger);
            thread::spawn(move || ledger.steps().begin())
        };
        ledger.steps().begin();
        other.join().unwrap();
        seen.lock()
            .unwrap()
            .insert(ledger.snapshot(Strategy::RoundRobin).total_requests);
    });
    outcomes.lock().unwrap().clone()
}

#[test]
fn loom_finds_the_racy_ledgers_lost_update() {
    let racy = loom_outcomes::<AtomicCore<Racy<LoomSync>>>();
    assert!(
        racy.contains(&1),
        "loom did not find the lost update; outcomes {racy:?}"
    );
    let real = loom_outcomes::<AtomicCore<LoomSync>>();
    assert_eq!(
        real,
        BTreeSet::from([2]),
        "the real ledger must never lose an increment"
    );
    println!("checker=loom found the lost update: racy outcomes {racy:?}, real outcomes {real:?}");
}

#[test]
fn loom_finds_the_split_mutex_ledgers_lost_update() {
    let split = loom_outcomes::<MutexCore<Split<LoomSync>>>();
    assert!(
        split.contains(&1),
        "loom did not find the lost update; outcomes {split:?}"
    );
    let real = loom_outcomes::<MutexCore<LoomSync>>();
    assert_eq!(
        real,
        BTreeSet::from([2]),
        "the real mutex ledger must never lose an increment"
    );
}

/// Runs the concurrent-accounting property on `L` and returns why it failed.
fn proptest_failure<L: LedgerCore + Default + 'static>() -> String {
    let mut runner = TestRunner::new(Config {
        cases: 32,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&(1usize..4, scripts()), |(nodes, scripts)| {
        concurrent_accounting::<L>(nodes, &scripts)
    });
    match result {
        Err(TestError::Fail(reason, _)) => reason.to_string(),
        other => panic!("the concurrent property did not catch the broken ledger: {other:?}"),
    }
}

#[test]
fn real_thread_proptest_finds_the_split_mutex_ledgers_lost_update() {
    let reason = proptest_failure::<MutexCore<Split<StdSync>>>();
    println!("checker=proptest (real threads) found it: {reason}");
}

#[test]
fn stress_finds_the_split_mutex_ledgers_lost_update() {
    stress_counts_less_than_sent::<MutexCore<Split<StdSync>>>("the split mutex ledger");
}

#[test]
fn real_thread_proptest_finds_the_racy_ledgers_lost_update() {
    let reason = proptest_failure::<AtomicCore<Racy<StdSync>>>();
    println!("checker=proptest (real threads) found it: {reason}");
}

#[test]
fn stress_finds_the_racy_ledgers_lost_update() {
    stress_counts_less_than_sent::<AtomicCore<Racy<StdSync>>>("the racy ledger");
}

/// Runs the stress hammer on `L` and asserts it counted fewer requests than were sent.
fn stress_counts_less_than_sent<L: LedgerCore + Default>(what: &str) {
    let ledger = L::default();
    ledger.add_node("a:1", "http://a:1").unwrap();
    let counted = hammer(&ledger).total_requests;
    let want = (THREADS * PER_THREAD) as u64;
    assert!(
        counted < want,
        "stress did not catch {what}: {counted} of {want}"
    );
    println!("checker=stress found it in {what}: {counted} of {want} requests counted");
}
