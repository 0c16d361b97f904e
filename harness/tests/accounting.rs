//! The harness's accounting check, end to end: a pool that drops one attempt in seven from its
//! books (through `pool::testing::Degradation`) is run against embedded nodes, and the check must
//! find exactly the requests it lost, per node and in total; the same pool undegraded must agree.

use std::num::NonZeroU64;
use std::time::Duration;

use harness::load::Workload;
use harness::measure::measure;
use harness::nodes::{ClusterSpec, Nodes};
use harness::results::Accounting;
use harness::variant::{PoolOptions, Variant};
use pool::testing::Degradation;

const REQUESTS: usize = 210;
const EVERY: u64 = 7;

fn run(variant: Variant, degradation: Degradation) -> (u64, Accounting) {
    let cluster = Nodes::start(&ClusterSpec::uniform(2, 1, Duration::ZERO), &[]).unwrap();
    let workload = Workload {
        workers: 3,
        requests: REQUESTS,
        cap: None,
        model: "nomic-embed-text".into(),
        text: None,
    };
    let options = PoolOptions {
        degradation,
        ..PoolOptions::default()
    };
    let mut accounting = Accounting::default();
    let measured = measure(variant, &cluster, options, &workload, &mut accounting).unwrap();
    assert_eq!(
        measured.run.ok(),
        REQUESTS as u64,
        "every request must be answered"
    );
    (measured.lost, accounting)
}

#[test]
fn a_pool_that_misses_attempts_in_its_books_is_caught_per_node_and_in_total() {
    let unrecorded = Degradation {
        unrecorded_every: NonZeroU64::new(EVERY),
        ..Degradation::default()
    };
    for variant in [Variant::Atomic, Variant::MutexCounters] {
        let (lost, accounting) = run(variant, unrecorded);
        let missed = REQUESTS as u64 / EVERY;
        // Each unrecorded request is missing from the pool's successes and from one node's
        // attempts: two disagreements per request.
        assert_eq!(lost, 2 * missed, "{variant}: {:#?}", accounting.mismatches);
        let said = accounting.mismatches.join("\n");
        assert!(said.contains("pool successes vs client answers"), "{said}");
        assert!(said.contains("pool's attempts vs node's answers"), "{said}");
    }
}

#[test]
fn the_same_pool_undegraded_agrees_with_the_nodes() {
    for variant in [Variant::Atomic, Variant::MutexCounters] {
        let (lost, accounting) = run(variant, Degradation::default());
        assert_eq!(lost, 0, "{variant}: {:#?}", accounting.mismatches);
        assert!(accounting.mismatches.is_empty());
        assert_eq!(accounting.checked_against_server, 1);
    }
}
