//! A state-machine test of each ledger against a plain sequential model (`proptest-state-machine`).
//!
//! The model is ordinary data: a list of nodes with counters, global totals and a cursor.
//! Round-robin in the model is spelled out independently (`nodes[cursor % len]`), so a ledger
//! that picks, counts or forgets differently from the obvious sequential meaning fails.

use std::marker::PhantomData;

use proptest::prelude::*;
use proptest::strategy::Strategy as _;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

use super::{one_request, success};
use crate::ledger::{LedgerCore, Outcome};
use crate::stats::PoolStats;
use crate::strategy::Strategy;
use crate::tests::{StdAtomic, StdMutex};

#[derive(Debug, Clone, Default, PartialEq)]
struct ModelNode {
    key: u8,
    total: u64,
    failed: u64,
    latency_sum_us: u64,
    latency_count: u64,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Model {
    nodes: Vec<ModelNode>,
    total: u64,
    successful: u64,
    failed: u64,
    cursor: u64,
    /// The node the last request went to, for the SUT to compare its pick against.
    last_pick: Option<u8>,
}

#[derive(Debug, Clone)]
pub(crate) enum Transition {
    Add(u8),
    Remove(u8),
    Request(Outcome),
}

impl ReferenceStateMachine for Model {
    type State = Model;
    type Transition = Transition;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model::default()).boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Transition> {
        let outcome = prop_oneof![
            (1u64..10_000).prop_map(success),
            Just(Outcome::NodeFault),
            Just(Outcome::ClientFault)
        ];
        let present: Vec<u8> = state.nodes.iter().map(|n| n.key).collect();
        if present.is_empty() {
            prop_oneof![1 => (0u8..4).prop_map(Transition::Add), 1 => outcome.prop_map(Transition::Request)].boxed()
        } else {
            prop_oneof![
                1 => (0u8..4).prop_map(Transition::Add),
                1 => proptest::sample::select(present).prop_map(Transition::Remove),
                5 => outcome.prop_map(Transition::Request),
            ]
            .boxed()
        }
    }

    fn preconditions(state: &Model, transition: &Transition) -> bool {
        match transition {
            Transition::Add(k) => !state.nodes.iter().any(|n| n.key == *k),
            Transition::Remove(k) => state.nodes.iter().any(|n| n.key == *k),
            Transition::Request(_) => true,
        }
    }

    fn apply(mut state: Model, transition: &Transition) -> Model {
        match transition {
            Transition::Add(key) => state.nodes.push(ModelNode {
                key: *key,
                ..ModelNode::default()
            }),
            Transition::Remove(key) => state.nodes.retain(|n| n.key != *key),
            Transition::Request(outcome) => {
                state.total += 1;
                let ticket = state.cursor;
                state.cursor += 1;
                state.last_pick = None;
                if state.nodes.is_empty() {
                    state.failed += 1;
                    return state;
                }
                let len = state.nodes.len() as u64;
                let node = &mut state.nodes[(ticket % len) as usize];
                state.last_pick = Some(node.key);
                node.total += 1;
                match outcome {
                    Outcome::Success { latency } => {
                        node.latency_sum_us += latency.as_micros() as u64;
                        node.latency_count += 1;
                        state.successful += 1;
                    }
                    Outcome::NodeFault => {
                        node.failed += 1;
                        state.failed += 1;
                    }
                    Outcome::ClientFault => state.failed += 1,
                }
            }
        }
        state
    }
}

fn key(k: u8) -> String {
    format!("n{k}:1")
}

/// The system under test: one ledger, driven transition by transition.
pub(crate) struct LedgerMachine<L>(PhantomData<L>);

impl<L: LedgerCore + Default> StateMachineTest for LedgerMachine<L> {
    type SystemUnderTest = L;
    type Reference = Model;

    fn init_test(_: &Model) -> L {
        L::default()
    }

    fn apply(ledger: L, model: &Model, transition: Transition) -> L {
        match transition {
            Transition::Add(k) => {
                ledger
                    .add_node(&key(k), &format!("http://{}", key(k)))
                    .unwrap();
            }
            Transition::Remove(k) => {
                ledger.remove_node(&key(k)).unwrap();
            }
            Transition::Request(outcome) => {
                let nodes = ledger.nodes();
                let id = one_request(&mut ledger.steps(), Strategy::RoundRobin, outcome);
                let picked =
                    id.map(|id| nodes.iter().find(|n| n.id == id).unwrap().key.to_string());
                assert_eq!(
                    picked,
                    model.last_pick.map(key),
                    "picked another node than the model"
                );
            }
        }
        ledger
    }

    fn check_invariants(ledger: &L, model: &Model) {
        let stats: PoolStats = ledger.snapshot(Strategy::RoundRobin);
        assert_eq!(
            (
                stats.total_requests,
                stats.successful_requests,
                stats.failed_requests
            ),
            (model.total, model.successful, model.failed)
        );
        assert_eq!(
            stats.nodes,
            model.nodes.iter().map(|n| key(n.key)).collect::<Vec<_>>()
        );
        for node in &model.nodes {
            let got = &stats.node_performance[&key(node.key)];
            assert_eq!(
                (got.total_requests, got.failed_requests, got.active_requests),
                (node.total, node.failed, 0)
            );
            let mean_ms = if node.latency_count == 0 {
                0.0
            } else {
                node.latency_sum_us as f64 / node.latency_count as f64 / 1000.0
            };
            assert_eq!(got.latency_ms, mean_ms);
        }
    }
}

prop_state_machine! {
    #[test]
    fn atomic_ledger_matches_the_sequential_model(sequential 1..40 => LedgerMachine<StdAtomic>);

    #[test]
    fn mutex_ledger_matches_the_sequential_model(sequential 1..40 => LedgerMachine<StdMutex>);
}
