//! The load engine against embedded mock nodes: every request sent once with its id, one
//! connection per worker, the open-loop schedule kept and late sends counted. Behaviour only: no
//! timing assertions.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use harness::engine::{Arrivals, Engine, Schedule, Target, Template};
use mock_ollama::{MockCluster, NodeConfig};

fn embed_target(url: &str) -> Target {
    Target {
        url: format!("{url}/api/embed"),
        bodies: Template::new(r#"{"model":"all-minilm","input":"text {rid} [rid:{rid}]"}"#).into(),
        read: harness::engine::Read::Whole,
        decode: None,
        headers: Default::default(),
    }
}

#[test]
fn without_keep_alive_every_request_opens_a_connection() {
    let nodes = MockCluster::start(vec![NodeConfig::with_latency(Duration::ZERO)]).expect("node");
    let node = &nodes.nodes()[0];
    let closed = Schedule::Closed {
        workers: 3,
        requests: 40,
        cap: None,
    };
    for (keep_alive, connections) in [(false, 40), (true, 3)] {
        let before = node.counters().connections_accepted;
        let engine = Engine {
            keep_alive,
            ..Engine::default()
        };
        let run = engine
            .run(&embed_target(&nodes.urls()[0]), closed.clone(), "k")
            .expect("run");
        assert_eq!((run.ok(), run.failed()), (40, 0), "keep-alive {keep_alive}");
        assert_eq!(
            node.counters().connections_accepted - before,
            connections,
            "keep-alive {keep_alive}"
        );
    }
}

#[test]
fn blocking_threads_send_each_id_once_over_one_connection_per_thread() {
    let nodes = MockCluster::start(vec![NodeConfig::with_latency(Duration::ZERO)]).expect("node");
    let before = nodes.nodes()[0].counters().connections_accepted;
    let run = Engine::default()
        .run_on_threads(&embed_target(&nodes.urls()[0]), 3, 61, "b")
        .expect("run");
    assert_eq!((run.ok(), run.failed()), (61, 0));
    let sent: BTreeSet<u64> = run.records.iter().map(|r| r.n).collect();
    assert_eq!(sent, (0..61).collect(), "every number once");
    assert_eq!(nodes.nodes()[0].counters().connections_accepted - before, 3);
    assert!(
        Engine::default()
            .run_on_threads(&embed_target(&nodes.urls()[0]), 0, 1, "z")
            .is_err()
    );
}

#[test]
fn a_decoder_sees_every_answer_and_its_refusals_are_failures() {
    let nodes = MockCluster::start(vec![NodeConfig::with_latency(Duration::ZERO)]).expect("node");
    let closed = Schedule::Closed {
        workers: 3,
        requests: 60,
        cap: None,
    };
    let run = |decode| {
        let target = Target {
            decode: Some(decode),
            ..embed_target(&nodes.urls()[0])
        };
        Engine::default()
            .run(&target, closed.clone(), "d")
            .expect("run")
    };
    static DECODED: AtomicUsize = AtomicUsize::new(0);
    let embeds = |body: &[u8]| {
        DECODED.fetch_add(1, Ordering::Relaxed);
        serde_json::from_slice::<pool::EmbedResponse>(body).is_ok()
    };
    let decoded = run(embeds);
    assert_eq!((decoded.ok(), decoded.failed()), (60, 0));
    assert_eq!(DECODED.load(Ordering::Relaxed), 60, "every answer decoded");
    let before = nodes.nodes()[0].counters().connections_accepted;
    let refused = run(|_| false);
    assert_eq!((refused.ok(), refused.failed()), (0, 60));
    assert!(refused.records.iter().all(|r| r.status.is_none()));
    assert_eq!(
        nodes.nodes()[0].counters().connections_accepted - before,
        3,
        "a refused answer keeps its connection"
    );
}

#[test]
fn closed_loop_sends_each_id_once_over_one_connection_per_worker() {
    let nodes = MockCluster::start(vec![NodeConfig::with_latency(Duration::from_micros(100))])
        .expect("node");
    let run = Engine::default()
        .run(
            &embed_target(&nodes.urls()[0]),
            Schedule::Closed {
                workers: 4,
                requests: 203,
                cap: None,
            },
            "t",
        )
        .expect("run");
    assert_eq!(run.records.len(), 203);
    assert_eq!(run.ok(), 203);
    let sent: BTreeSet<u64> = run.records.iter().map(|r| r.n).collect();
    assert_eq!(sent, (0..203).collect(), "every number once");
    let node = &nodes.nodes()[0];
    let served: BTreeSet<String> = node
        .served(0, usize::MAX)
        .entries
        .into_iter()
        .filter_map(|e| e.marker)
        .collect();
    let ids: BTreeSet<String> = (0..203).map(|n| run.id(n)).collect();
    assert_eq!(served, ids, "the node served exactly the ids sent");
    assert_eq!(
        node.counters().connections_accepted,
        4,
        "one keep-alive connection per worker"
    );
    assert_eq!(run.latency.len(), 203);
}

#[test]
fn open_loop_counts_sends_it_could_not_make_on_time() {
    // One connection, 10 ms per request, 1,000 arrivals per second: the connection is busy for
    // every arrival after the first, so each of those leaves late (by 9 ms or more).
    let nodes = MockCluster::start(vec![NodeConfig::with_latency(Duration::from_millis(10))])
        .expect("node");
    let run = Engine::default()
        .run(
            &embed_target(&nodes.urls()[0]),
            Schedule::Open {
                rate: 1000.0,
                requests: 20,
                connections: 1,
                arrivals: Arrivals::Poisson { seed: 7 },
            },
            "o",
        )
        .expect("run");
    assert_eq!(run.records.len(), 20);
    assert_eq!(run.ok(), 20);
    assert!(run.late >= 15, "late sends counted: {}", run.late);
}

#[test]
fn a_refused_target_is_counted_as_failed_not_lost() {
    let nodes = MockCluster::start(vec![NodeConfig::default()]).expect("node");
    let url = nodes.urls()[0].clone();
    nodes.shutdown();
    let run = Engine::default()
        .run(
            &embed_target(&url),
            Schedule::Closed {
                workers: 2,
                requests: 10,
                cap: None,
            },
            "r",
        )
        .expect("run");
    assert_eq!((run.records.len(), run.failed()), (10, 10));
    assert!(run.records.iter().all(|r| r.status.is_none()));
}

#[test]
fn impossible_schedules_are_errors() {
    let target = embed_target("http://127.0.0.1:9");
    for schedule in [
        Schedule::Closed {
            workers: 0,
            requests: 1,
            cap: None,
        },
        Schedule::Open {
            rate: 0.0,
            requests: 1,
            connections: 1,
            arrivals: Arrivals::Constant,
        },
        Schedule::Open {
            rate: f64::NAN,
            requests: 1,
            connections: 1,
            arrivals: Arrivals::Constant,
        },
    ] {
        assert!(
            Engine::default()
                .run(&target, schedule.clone(), "x")
                .is_err(),
            "{schedule:?}"
        );
    }
}
