//! The runtime control API: settings changed mid-run show in the served log's service times
//! (compared with the configured durations, never by timing the test), requests in flight keep
//! the settings they arrived with, busy and hang and refuse behave as documented and the node
//! comes back, and the token rule holds.

use std::time::Duration;

use mock_ollama::{
    Availability, ControlAccess, MockNode, NodeConfig, ServedOutcome, SettingsPatch, Timer,
};
use serde_json::{Value, json};

/// tokio's timer never ends a sleep early, so a logged service is at least its configured time.
fn config(latency: Duration) -> NodeConfig {
    NodeConfig {
        timer: Timer::Tokio,
        ..NodeConfig::with_latency(latency)
    }
}

async fn embed(node: &MockNode, id: &str) -> reqwest::Result<reqwest::Response> {
    reqwest::Client::new()
        .post(format!("{}/api/embed", node.url()))
        .json(&json!({ "model": "all-minilm", "input": format!("[rid:{id}]") }))
        .send()
        .await
}

fn service_ns(node: &MockNode, id: &str) -> u64 {
    let entry = node
        .served(0, usize::MAX)
        .entries
        .into_iter()
        .find(|e| e.marker.as_deref() == Some(id))
        .expect("logged");
    entry.service_end_ns.expect("served") - entry.service_start_ns.expect("served")
}

#[tokio::test]
async fn a_speed_change_shows_in_the_logged_service_times() {
    let node = MockNode::spawn(config(Duration::from_millis(2)))
        .await
        .unwrap();
    embed(&node, "before").await.unwrap();
    let http = reqwest::Client::new();
    let changed: Value = http
        .patch(format!("{}/mock/config", node.url()))
        .json(&json!({ "speed": 0.1 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(changed["speed"], 0.1);
    embed(&node, "after").await.unwrap();
    assert!(service_ns(&node, "before") < 20_000_000, "2 ms at speed 1");
    assert!(
        service_ns(&node, "after") >= 20_000_000,
        "2 ms at speed 0.1 is 20 ms"
    );
    // A bad patch changes nothing.
    let refused = http
        .patch(format!("{}/mock/config", node.url()))
        .json(&json!({ "speed": 2.0, "error_rate": 7.0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(node.config().speed, 0.1, "nothing changed");
    let unknown = http
        .patch(format!("{}/mock/config", node.url()))
        .json(&json!({ "warp": 9 }))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
}

#[tokio::test]
async fn a_request_in_flight_keeps_the_settings_it_arrived_with() {
    let node = std::sync::Arc::new(
        MockNode::spawn(NodeConfig {
            slots: mock_ollama::SlotPolicy {
                parallel: 2,
                force_embed_parallel: true,
            },
            ..config(Duration::from_millis(300))
        })
        .await
        .unwrap(),
    );
    let early = {
        let node = std::sync::Arc::clone(&node);
        tokio::spawn(async move { embed(&node, "early").await.map(|r| r.status()) })
    };
    // Change the settings once the early request is being served (observed, not timed).
    while node.counters().in_flight == 0 {
        tokio::task::yield_now().await;
    }
    node.update(&SettingsPatch {
        latency: Some(Duration::from_millis(1)),
        ..SettingsPatch::default()
    })
    .unwrap();
    embed(&node, "late").await.unwrap();
    assert_eq!(early.await.unwrap().unwrap(), 200);
    assert!(service_ns(&node, "early") >= 300_000_000, "kept its 300 ms");
    assert!(
        service_ns(&node, "late") < 300_000_000,
        "arrived under 1 ms"
    );
}

#[tokio::test]
async fn busy_answers_ollamas_503_and_up_serves_again() {
    let node = MockNode::spawn(config(Duration::ZERO)).await.unwrap();
    let http = reqwest::Client::new();
    let set = |state: &'static str| {
        http.post(format!("{}/mock/availability", node.url()))
            .json(&json!({ "state": state }))
            .send()
    };
    assert_eq!(set("busy").await.unwrap().status(), 200);
    let busy = embed(&node, "b").await.unwrap();
    assert_eq!(busy.status(), 503);
    let text: Value = busy.json().await.unwrap();
    assert_eq!(text["error"], mock_ollama::api::BUSY_MESSAGE);
    let tags = reqwest::get(format!("{}/api/tags", node.url()))
        .await
        .unwrap();
    assert_eq!(tags.status(), 200, "the control plane still answers");
    assert_eq!(set("up").await.unwrap().status(), 200);
    assert_eq!(embed(&node, "u").await.unwrap().status(), 200);
    let outcomes: Vec<(ServedOutcome, Option<String>)> = node
        .served(0, 10)
        .entries
        .iter()
        .map(|e| (e.outcome, e.marker.clone()))
        .collect();
    // The busy answer's entry carries the body's marker: a gateway that does not pass
    // x-request-id on still has its refused attempts joined to their requests.
    assert_eq!(
        outcomes,
        [
            (ServedOutcome::Busy, Some("b".into())),
            (ServedOutcome::Served, Some("u".into()))
        ]
    );
    let bad = set("sideways").await.unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn a_hung_request_is_logged_and_never_answered() {
    let node = MockNode::spawn(config(Duration::ZERO)).await.unwrap();
    node.set_availability(Availability::Hang);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let hung = client
        .post(format!("{}/api/embed", node.url()))
        .json(&json!({ "model": "all-minilm", "input": "[rid:h]" }))
        .send()
        .await;
    assert!(hung.is_err_and(|e| e.is_timeout()), "no answer");
    // The node logs it once the client has gone.
    let mut polls = 0;
    while node.served(0, 10).entries.is_empty() {
        assert!(polls < 5_000, "the hung request was never logged");
        tokio::time::sleep(Duration::from_millis(1)).await;
        polls += 1;
    }
    let entry = &node.served(0, 10).entries[0];
    assert_eq!(
        (entry.marker.as_deref(), entry.outcome),
        (Some("h"), ServedOutcome::Hung)
    );
    node.set_availability(Availability::Up);
    assert_eq!(embed(&node, "after").await.unwrap().status(), 200);
}

/// A request still hung when the node leaves hang has its connection reset (a proxy holding it
/// open would otherwise carry it into whatever follows); it stays logged as hung.
#[tokio::test]
async fn leaving_hang_resets_the_hung_requests() {
    let node = MockNode::spawn(config(Duration::ZERO)).await.unwrap();
    node.set_availability(Availability::Hang);
    let url = node.url();
    let hung = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{url}/api/embed"))
            .json(&json!({ "model": "all-minilm", "input": "[rid:stuck]" }))
            .send()
            .await
    });
    let mut polls = 0;
    while node.counters().in_flight == 0 {
        assert!(polls < 5_000, "the request never arrived");
        tokio::time::sleep(Duration::from_millis(1)).await;
        polls += 1;
    }
    node.set_availability(Availability::Up);
    // A node that kept it hung would never end it: bounded, so that fails instead of hanging.
    let outcome = tokio::time::timeout(Duration::from_secs(10), hung)
        .await
        .expect("the hung request ended when the node left hang")
        .unwrap();
    assert!(outcome.is_err(), "reset, not answered: {outcome:?}");
    let mut polls = 0;
    while node.served(0, 10).entries.is_empty() {
        assert!(polls < 5_000, "the hung request was never logged");
        tokio::time::sleep(Duration::from_millis(1)).await;
        polls += 1;
    }
    assert_eq!(node.served(0, 10).entries[0].outcome, ServedOutcome::Hung);
}

#[tokio::test]
async fn refuse_over_http_needs_a_duration_then_comes_back_on_the_same_port() {
    let node = MockNode::spawn(config(Duration::ZERO)).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/mock/availability", node.url());
    let forever = http
        .post(&url)
        .json(&json!({ "state": "refuse" }))
        .send()
        .await
        .unwrap();
    assert_eq!(forever.status(), 400);
    let accepted = http
        .post(&url)
        .json(&json!({ "state": "refuse", "for": "300ms" }))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let mut polls = 0;
    while node.is_serving() {
        assert!(polls < 5_000, "never went down");
        tokio::time::sleep(Duration::from_millis(1)).await;
        polls += 1;
    }
    let refused = reqwest::Client::new().get(node.url()).send().await;
    assert!(
        refused.is_err_and(|e| e.is_connect()),
        "connection refused while down"
    );
    polls = 0;
    while !node.is_serving() {
        assert!(polls < 5_000, "never came back");
        tokio::time::sleep(Duration::from_millis(1)).await;
        polls += 1;
    }
    assert_eq!(embed(&node, "back").await.unwrap().status(), 200);
}

#[tokio::test]
async fn the_token_rule() {
    let node = MockNode::spawn(NodeConfig {
        control: ControlAccess::Token("s3cret".into()),
        ..config(Duration::ZERO)
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/mock/config", node.url());
    for token in [None, Some("wrong"), Some("s3cre"), Some("s3cret!")] {
        let mut request = http.patch(&url).json(&json!({ "speed": 5.0 }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        assert_eq!(request.send().await.unwrap().status(), 401, "{token:?}");
    }
    assert_eq!(node.config().speed, 1.0, "nothing changed");
    let served = http
        .get(format!("{}/mock/served", node.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 401, "the log needs the token too");
    let ok = http
        .patch(&url)
        .bearer_auth("s3cret")
        .json(&json!({ "speed": 5.0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(node.config().speed, 5.0);

    let off = MockNode::spawn(NodeConfig {
        control: ControlAccess::Off,
        ..config(Duration::ZERO)
    })
    .await
    .unwrap();
    let gone = http
        .get(format!("{}/mock/config", off.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    let log = http
        .get(format!("{}/mock/served", off.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(log.status(), 200, "the log stays readable");

    let open_on_all = NodeConfig {
        host: "0.0.0.0".parse().unwrap(),
        ..NodeConfig::default()
    };
    let error = MockNode::spawn(open_on_all)
        .await
        .expect_err("refused")
        .to_string();
    assert!(error.contains("--control-token"), "{error}");
}

#[tokio::test]
async fn fewer_slots_take_effect_as_busy_ones_are_freed() {
    let node = MockNode::spawn(NodeConfig {
        slots: mock_ollama::SlotPolicy {
            parallel: 4,
            force_embed_parallel: true,
        },
        ..config(Duration::from_millis(1))
    })
    .await
    .unwrap();
    node.update(&SettingsPatch {
        parallel: Some(1),
        ..SettingsPatch::default()
    })
    .unwrap();
    let node = std::sync::Arc::new(node);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let node = std::sync::Arc::clone(&node);
            tokio::spawn(async move { embed(&node, &format!("p{i}")).await.map(|r| r.status()) })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), 200);
    }
    // With one slot, no two services overlap.
    let mut spans: Vec<(u64, u64)> = node
        .served(0, 100)
        .entries
        .iter()
        .map(|e| (e.service_start_ns.unwrap(), e.service_end_ns.unwrap()))
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "overlapping services with one slot: {pair:?}"
        );
    }
}
