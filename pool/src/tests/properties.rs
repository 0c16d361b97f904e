//! proptest properties: the two ledgers agree with each other on any script, totals are exact on
//! real threads with random shapes, and the edges (cursor wrap, one node, churn) hold.

use std::sync::Arc;

use proptest::prelude::*;
use proptest::strategy::Strategy as _;
use proptest::test_runner::TestCaseError;

use super::{one_request, success};
use crate::ledger::{LedgerCore, Outcome};
use crate::strategy::Strategy;
use crate::tests::{StdAtomic, StdMutex};

/// One operation of a differential script.
#[derive(Debug, Clone)]
enum Op {
    Add(u8),
    Remove(u8),
    Request {
        strategy: Strategy,
        outcome: Outcome,
    },
    Probe(u8),
}

fn outcome() -> impl proptest::strategy::Strategy<Value = Outcome> {
    prop_oneof![
        (1u64..50_000).prop_map(success),
        Just(Outcome::NodeFault),
        Just(Outcome::ClientFault),
    ]
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    prop_oneof![
        1 => (0u8..5).prop_map(Op::Add),
        1 => (0u8..5).prop_map(Op::Remove),
        6 => (proptest::sample::select(Strategy::ALL.to_vec()), outcome()).prop_map(|(strategy, outcome)| Op::Request { strategy, outcome }),
        1 => any::<u8>().prop_map(Op::Probe),
    ]
}

fn key(i: u8) -> String {
    format!("node{i}:11434")
}

/// Applies `op` and describes its visible result, so two ledgers can be compared step by step.
fn apply<L: LedgerCore>(ledger: &L, op: &Op) -> String {
    match op {
        Op::Add(i) => format!(
            "{:?}",
            ledger
                .add_node(&key(*i), &format!("http://{}", key(*i)))
                .map(|a| a.key)
        ),
        Op::Remove(i) => format!("{:?}", ledger.remove_node(&key(*i)).map(|a| a.key)),
        Op::Request { strategy, outcome } => {
            let id = one_request(&mut ledger.steps(), *strategy, *outcome);
            let nodes = ledger.nodes();
            format!(
                "{:?}",
                id.and_then(|id| nodes.iter().find(|n| n.id == id))
                    .map(|n| n.key.clone())
            )
        }
        Op::Probe(mask) => {
            ledger.probe(false, &mut |addr| {
                let i: u8 = addr.key[4..5].parse().unwrap();
                mask >> i & 1 == 1
            });
            String::new()
        }
    }
}

proptest! {
    /// The same script through both ledgers gives the same picks, results and stats.
    #[test]
    fn ledgers_agree_on_any_script(script in proptest::collection::vec(op(), 1..80)) {
        let (atomic, mutex) = (StdAtomic::default(), StdMutex::default());
        for op in &script {
            prop_assert_eq!(apply(&atomic, op), apply(&mutex, op), "after {:?}", op);
            prop_assert_eq!(atomic.snapshot(Strategy::Weighted), mutex.snapshot(Strategy::Weighted));
        }
    }

    /// Real threads, random shapes: totals are the sum of what the threads did.
    #[test]
    fn atomic_totals_exact_on_real_threads(nodes in 1usize..4, scripts in scripts()) {
        concurrent_accounting::<StdAtomic>(nodes, &scripts)?;
    }

    #[test]
    fn mutex_totals_exact_on_real_threads(nodes in 1usize..4, scripts in scripts()) {
        concurrent_accounting::<StdMutex>(nodes, &scripts)?;
    }
}

/// Per thread, a list of attempt outcomes (true = success).
pub(crate) fn scripts() -> impl proptest::strategy::Strategy<Value = Vec<Vec<bool>>> {
    proptest::collection::vec(
        proptest::collection::vec(proptest::bool::weighted(0.8), 1..150),
        2..8,
    )
}

/// Runs `scripts` on one thread each through a fresh ledger with `nodes` nodes, round-robin, and
/// checks every total against what the threads did.
pub(crate) fn concurrent_accounting<L: LedgerCore + Default>(
    nodes: usize,
    scripts: &[Vec<bool>],
) -> Result<(), TestCaseError> {
    let ledger = Arc::new(L::default());
    for i in 0..nodes {
        ledger
            .add_node(&key(i as u8), &format!("http://{}", key(i as u8)))
            .unwrap();
    }
    std::thread::scope(|s| {
        for script in scripts {
            let ledger = &ledger;
            s.spawn(move || {
                for ok in script {
                    let outcome = if *ok { success(10) } else { Outcome::NodeFault };
                    one_request(&mut ledger.steps(), Strategy::RoundRobin, outcome);
                }
            });
        }
    });
    let ops: u64 = scripts.iter().map(|s| s.len() as u64).sum();
    let ok: u64 = scripts.iter().flatten().filter(|b| **b).count() as u64;
    let stats = ledger.snapshot(Strategy::RoundRobin);
    prop_assert_eq!(stats.total_requests, ops);
    prop_assert_eq!(stats.successful_requests, ok);
    prop_assert_eq!(stats.failed_requests, ops - ok);
    let per_node: Vec<u64> = stats
        .node_performance
        .values()
        .map(|n| n.total_requests)
        .collect();
    prop_assert_eq!(per_node.iter().sum::<u64>(), ops);
    let (min, max) = (
        per_node.iter().min().unwrap(),
        per_node.iter().max().unwrap(),
    );
    prop_assert!(
        max - min <= 1,
        "round-robin picks per node differ by more than one: {:?}",
        per_node
    );
    prop_assert_eq!(stats.active_total(), 0);
    Ok(())
}

fn wraps_cleanly<L: LedgerCore>(ledger: L) {
    ledger.add_node("a:1", "http://a:1").unwrap();
    ledger.add_node("b:2", "http://b:2").unwrap();
    let picks: Vec<u64> = (0..6)
        .map(|_| one_request(&mut ledger.steps(), Strategy::RoundRobin, success(1)).unwrap())
        .collect();
    // u64::MAX - 2, -1, MAX, then 0, 1, 2: with two nodes the alternation survives the wrap.
    assert_eq!(picks, [1, 0, 1, 0, 1, 0]);
    assert_eq!(ledger.snapshot(Strategy::RoundRobin).successful_requests, 6);
}

#[test]
fn cursor_wraps_at_u64_max() {
    wraps_cleanly(StdAtomic::default().with_cursor(u64::MAX - 2));
    wraps_cleanly(StdMutex::default().with_cursor(u64::MAX - 2));
}

fn one_node_takes_everything<L: LedgerCore>(ledger: L) {
    ledger.add_node("only:1", "http://only:1").unwrap();
    for strategy in Strategy::ALL {
        assert_eq!(
            one_request(&mut ledger.steps(), strategy, success(3)),
            Some(0),
            "{strategy}"
        );
    }
    ledger.remove_node("only:1").unwrap();
    assert_eq!(
        one_request(&mut ledger.steps(), Strategy::RoundRobin, success(3)),
        None
    );
    let s = ledger.snapshot(Strategy::RoundRobin);
    assert_eq!(
        (
            s.total_requests,
            s.successful_requests,
            s.failed_requests,
            s.nodes_configured
        ),
        (6, 5, 1, 0)
    );
}

#[test]
fn one_node_then_none() {
    one_node_takes_everything(StdAtomic::default());
    one_node_takes_everything(StdMutex::default());
}
