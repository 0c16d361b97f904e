//! The canary: a ledger whose counters lose updates (load, yield, store, as Python's `+=` does
//! without a lock), and a test per checker asserting that the checker catches it.
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
use crate::ledger::{AtomicCore, LedgerCore, Steps};
use crate::strategy::Strategy;
use crate::sync::StdSync;
use crate::sync::test_families::{LoomSync, Racy};

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
fn real_thread_proptest_finds_the_racy_ledgers_lost_update() {
    let mut runner = TestRunner::new(Config {
        cases: 32,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&(1usize..4, scripts()), |(nodes, scripts)| {
        concurrent_accounting::<AtomicCore<Racy<StdSync>>>(nodes, &scripts)
    });
    match result {
        Err(TestError::Fail(reason, _)) => {
            println!("checker=proptest (real threads) found it: {reason}")
        }
        other => panic!("the concurrent property did not catch the racy ledger: {other:?}"),
    }
}

#[test]
fn stress_finds_the_racy_ledgers_lost_update() {
    let racy = AtomicCore::<Racy<StdSync>>::default();
    racy.add_node("a:1", "http://a:1").unwrap();
    let stats = hammer(&racy);
    let want = (THREADS * PER_THREAD) as u64;
    assert!(
        stats.total_requests < want,
        "stress did not catch the racy ledger: {} of {want}",
        stats.total_requests
    );
    println!(
        "checker=stress found it: {} of {want} requests counted",
        stats.total_requests
    );
}
