//! Slot and queue semantics, faults and determinism, over real HTTP.
//!
//! Where a test needs "request A is being served", it holds the node's work
//! ([`MockNode::hold`]) so that state lasts until the test releases it, and waits for the node's
//! own gauges to show it (bounded polling of a condition), never for a fixed time or for a service
//! long enough to outlast the poller.

use std::time::Duration;

use mock_ollama::{FAULT_HEADER, FaultConfig, Held, MockNode, NodeConfig, QueueMode};
use serde_json::{Value, json};

async fn embed(
    client: &reqwest::Client,
    node: &MockNode,
    input: Value,
    fault: Option<&str>,
) -> Result<(u16, Value), reqwest::Error> {
    let mut request = client
        .post(format!("{}/api/embed", node.url()))
        .json(&json!({ "model": "all-minilm", "input": input }));
    if let Some(fault) = fault {
        request = request.header(FAULT_HEADER, fault);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

/// One embed of `input` on a task of its own; resolves to the answer's status.
fn spawn_embed(
    client: &reqwest::Client,
    node: &MockNode,
    input: &'static str,
) -> tokio::task::JoinHandle<u16> {
    let (client, url) = (client.clone(), node.url());
    tokio::spawn(async move {
        let body = json!({"model":"all-minilm","input":input});
        let response = client.post(format!("{url}/api/embed")).json(&body);
        response.send().await.unwrap().status().as_u16()
    })
}

/// Waits (bounded) until `condition` holds on the node's counters.
async fn until(
    node: &MockNode,
    what: &str,
    condition: impl Fn(&mock_ollama::CountersSnapshot) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition(&node.counters()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            node.counters()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn one_slot_makes_the_second_request_wait() {
    let node = MockNode::spawn(NodeConfig::with_latency(Duration::ZERO))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let hold = node.hold(Held::Service);
    let first = spawn_embed(&client, &node, "a");
    let second = spawn_embed(&client, &node, "b");
    until(&node, "one served, one queued", |c| {
        c.in_flight == 2 && c.in_service == 1 && c.queued == 1
    })
    .await;
    drop(hold);
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(second.await.unwrap(), 200);
    let counters = node.counters();
    assert_eq!((counters.queued, counters.in_service), (0, 0));
}

#[tokio::test]
async fn full_queue_answers_503_with_ollamas_text() {
    let node = MockNode::spawn(NodeConfig {
        max_queue: 1,
        queue: QueueMode::Bounded,
        ..NodeConfig::with_latency(Duration::ZERO)
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let spawn = |input| spawn_embed(&client, &node, input);
    let hold = node.hold(Held::Service);
    let a = spawn("a");
    let b = spawn("b");
    until(&node, "slot taken and queue full", |c| {
        c.in_service == 1 && c.queued == 1
    })
    .await;
    let (status, body) = embed(&client, &node, json!("c"), None).await.unwrap();
    assert_eq!(status, 503);
    assert_eq!(
        body,
        json!({ "error": "server busy, please try again.  maximum pending requests exceeded" })
    );
    drop(hold);
    assert_eq!((a.await.unwrap(), b.await.unwrap()), (200, 200));
    let counters = node.counters();
    assert_eq!(
        (counters.rejected_busy, counters.succeeded("/api/embed")),
        (1, 2)
    );
}

#[tokio::test]
async fn ollama_mode_queues_slot_waits_without_bound_but_bounds_load_waits() {
    let node = MockNode::spawn(NodeConfig {
        max_queue: 1,
        load_time: Duration::from_millis(1),
        ..NodeConfig::with_latency(Duration::ZERO)
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let spawn = |input| spawn_embed(&client, &node, input);
    let hold = node.hold(Held::Load);
    let a = spawn("a");
    until(&node, "a waits for the model to load", |c| c.loading == 1).await;
    let (status, body) = embed(&client, &node, json!("b"), None).await.unwrap();
    assert_eq!(
        (status, body),
        (
            503,
            json!({ "error": "server busy, please try again.  maximum pending requests exceeded" })
        ),
        "a second load wait overflows a queue of 1"
    );
    drop(hold);
    assert_eq!(a.await.unwrap(), 200);
    // The model is loaded now: waits for its one slot are never refused, whatever max_queue says.
    let waits: Vec<_> = ["c", "d", "e", "f"].into_iter().map(spawn).collect();
    for wait in waits {
        assert_eq!(wait.await.unwrap(), 200);
    }
    let counters = node.counters();
    assert_eq!(
        (counters.rejected_busy, counters.succeeded("/api/embed")),
        (1, 5)
    );
}

#[tokio::test]
async fn batch_items_each_take_a_slot() {
    let node = MockNode::spawn(NodeConfig::with_latency(Duration::from_millis(1)))
        .await
        .unwrap();
    let (status, body) = embed(&reqwest::Client::new(), &node, json!(["a", "b", "c"]), None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["embeddings"].as_array().unwrap().len(), 3);
    assert_eq!(node.counters().items_served, 3);
}

#[tokio::test]
async fn parallel_slots_serve_concurrently_when_forced() {
    let mut config = NodeConfig::with_latency(Duration::ZERO);
    config.slots = mock_ollama::SlotPolicy {
        parallel: 3,
        force_embed_parallel: true,
    };
    let node = MockNode::spawn(config).await.unwrap();
    let client = reqwest::Client::new();
    let hold = node.hold(Held::Service);
    let tasks: Vec<_> = ["x", "y", "z", "w"]
        .into_iter()
        .map(|input| spawn_embed(&client, &node, input))
        .collect();
    until(&node, "three served, the fourth queued", |c| {
        c.in_service == 3 && c.queued == 1
    })
    .await;
    drop(hold);
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
}

#[tokio::test]
async fn a_client_that_leaves_frees_its_slot() {
    let node = MockNode::spawn(NodeConfig::with_latency(Duration::ZERO))
        .await
        .unwrap();
    let hold = node.hold(Held::Service);
    let impatient = spawn_embed(&reqwest::Client::new(), &node, "a");
    until(&node, "the first request in service", |c| c.in_service == 1).await;
    impatient.abort();
    until(&node, "cancelled request counted", |c| {
        c.count("/api/embed", |s| s == "cancelled") == 1 && c.in_flight == 0
    })
    .await;
    let next = spawn_embed(&reqwest::Client::new(), &node, "b");
    until(&node, "next request in service", |c| c.in_service == 1).await;
    assert_eq!(node.counters().queued, 0, "the abandoned slot was freed");
    drop(hold);
    assert_eq!(next.await.unwrap(), 200);
}

#[tokio::test]
async fn a_streaming_client_that_leaves_frees_its_slot_at_once() {
    // 30 s per token: a slot held "until the next token" would outlast the 10 s `until` bound.
    let node = MockNode::spawn(NodeConfig {
        latency: mock_ollama::LatencyModel {
            base: Duration::ZERO,
            per_token: Duration::from_secs(30),
            prompt_rate: None,
            jitter: mock_ollama::Jitter::Fixed,
        },
        ..NodeConfig::default()
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let streamed = client
        .post(format!("{}/api/generate", node.url()))
        .json(&json!({"model":"llama3.2","prompt":"hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 200);
    drop(streamed);
    until(&node, "the abandoned stream noticed", |c| {
        c.streams_abandoned == 1
    })
    .await;
    let next = tokio::spawn({
        let url = node.url();
        async move {
            let body = json!({"model":"llama3.2","prompt":"hi","stream":false});
            reqwest::Client::new()
                .post(format!("{url}/api/generate"))
                .json(&body)
                .send()
                .await
        }
    });
    until(&node, "next request in flight", |c| c.in_flight == 1).await;
    assert_eq!(node.counters().queued, 0, "the stream's slot was freed");
    next.abort();
}

#[tokio::test]
async fn forced_faults() {
    let node = MockNode::spawn(NodeConfig {
        faults: FaultConfig {
            stall: Duration::from_millis(20),
            ..FaultConfig::default()
        },
        ..NodeConfig::with_latency(Duration::ZERO)
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let (status, body) = embed(&client, &node, json!("x"), Some("error"))
        .await
        .unwrap();
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (500, "mock-ollama: injected server error")
    );
    assert!(
        embed(&client, &node, json!("x"), Some("reset"))
            .await
            .is_err(),
        "reset breaks the connection"
    );
    assert_eq!(
        embed(&client, &node, json!("x"), Some("stall"))
            .await
            .unwrap()
            .0,
        200
    );
    assert_eq!(
        embed(&client, &node, json!("x"), Some("bogus"))
            .await
            .unwrap()
            .0,
        400
    );
    let counters = node.counters();
    assert_eq!(counters.count("/api/embed", |s| s == "500"), 1);
    assert_eq!(counters.count("/api/embed", |s| s == "reset"), 1);
    assert_eq!(counters.count("/api/embed", |s| s == "200"), 1);
}

async fn outcomes(seed: u64) -> Vec<u16> {
    let node = MockNode::spawn(NodeConfig {
        seed,
        faults: FaultConfig {
            error_rate: 0.3,
            ..FaultConfig::default()
        },
        ..NodeConfig::with_latency(Duration::ZERO)
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..200 {
        statuses.push(embed(&client, &node, json!("x"), None).await.unwrap().0);
    }
    let counters = node.counters();
    let errors = statuses.iter().filter(|s| **s == 500).count() as u64;
    assert_eq!(
        counters.count("/api/embed", |s| s == "500"),
        errors,
        "server and client agree"
    );
    statuses
}

#[tokio::test]
async fn fault_rate_is_seeded_and_close_to_its_setting() {
    let a = outcomes(1).await;
    let errors = a.iter().filter(|s| **s == 500).count();
    assert!(
        (35..=85).contains(&errors),
        "30% of 200 is 60, got {errors}"
    );
    assert_eq!(a, outcomes(1).await, "same seed, same sequence");
    assert_ne!(a, outcomes(2).await, "another seed, another sequence");
}

#[tokio::test]
async fn control_plane_latency_delays_only_tags_and_ps() {
    let node = MockNode::spawn(NodeConfig {
        control_latency: Duration::from_millis(1),
        ..NodeConfig::with_latency(Duration::ZERO)
    })
    .await
    .unwrap();
    let hold = node.hold(Held::ControlPlane);
    let url = node.url();
    let tags = tokio::spawn(async move {
        reqwest::get(format!("{url}/api/tags"))
            .await
            .unwrap()
            .status()
    });
    until(&node, "tags in flight", |c| c.in_flight == 1).await;
    // While /api/tags is held, inference still completes.
    let (status, _) = embed(&reqwest::Client::new(), &node, json!("x"), None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        node.counters().total("/api/tags"),
        0,
        "tags still waiting after the embed finished"
    );
    drop(hold);
    assert_eq!(tags.await.unwrap(), 200);
}

#[tokio::test]
async fn a_paused_node_refuses_connections_and_resumes_with_its_counters() {
    let node = MockNode::spawn(NodeConfig::with_latency(Duration::ZERO))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    assert_eq!(
        embed(&client, &node, json!("a"), None).await.unwrap().0,
        200
    );
    node.pause().await;
    assert!(!node.is_serving());
    let refused = reqwest::Client::new()
        .post(format!("{}/api/embed", node.url()))
        .json(&json!({"model":"all-minilm","input":"b"}))
        .send()
        .await
        .expect_err("nothing listens while paused");
    assert!(refused.is_connect(), "{refused}");
    node.resume().await.unwrap();
    assert_eq!(
        embed(&client, &node, json!("c"), None).await.unwrap().0,
        200
    );
    assert_eq!(
        node.counters().succeeded("/api/embed"),
        2,
        "counters survive the pause"
    );
}
