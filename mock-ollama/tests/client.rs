//! `ControlClient` against a node with a control token: every call does what the control API
//! says, a wrong token is a typed 401 and changes nothing, and the served log pages through.

use std::time::Duration;

use mock_ollama::{
    Availability, ClientError, ControlAccess, ControlClient, MockCluster, NodeConfig, SettingsPatch,
};

fn node() -> MockCluster {
    let config = NodeConfig {
        control: ControlAccess::Token("secret".into()),
        ..NodeConfig::with_latency(Duration::ZERO)
    };
    MockCluster::start(vec![config]).expect("node starts")
}

fn embed(url: &str, id: usize) -> u16 {
    reqwest::blocking::Client::new()
        .post(format!("{url}/api/embed"))
        .json(&serde_json::json!({ "model": "all-minilm", "input": format!("[rid:{id}]") }))
        .send()
        .expect("sent")
        .status()
        .as_u16()
}

#[test]
fn the_client_reads_changes_and_pages_through_a_node() {
    let cluster = node();
    let url = cluster.urls()[0].clone();
    let client = ControlClient::new(url.clone(), Some("secret".into())).expect("client");
    let before = client.settings().expect("settings");
    let patch = SettingsPatch {
        latency: Some(Duration::from_micros(1500)),
        parallel: Some(3),
        ..SettingsPatch::default()
    };
    let after = client.update(&patch).expect("patched");
    assert_eq!((after.latency_ns, after.parallel), (1_500_000, 3));
    assert_eq!(
        cluster.nodes()[0].config().latency.base,
        Duration::from_micros(1500)
    );
    client.update(&patch.undo(&before)).expect("undone");
    assert_eq!(client.settings().expect("settings"), before);

    client.set_availability(Availability::Busy).expect("busy");
    assert_eq!(embed(&url, 0), 503);
    client.set_availability(Availability::Up).expect("up");
    for id in 1..=5 {
        assert_eq!(embed(&url, id), 200);
    }
    let markers = |page: &mock_ollama::ServedPage| -> Vec<String> {
        page.entries
            .iter()
            .filter_map(|e| e.marker.clone())
            .collect()
    };
    let first = client.served(0, 3).expect("served log");
    assert_eq!(markers(&first), ["0", "1", "2"]);
    assert!(first.started_unix_ns > 0);
    let rest = client.served(first.next, 10).expect("served log");
    assert_eq!(
        markers(&rest),
        ["3", "4", "5"],
        "from where the first page ended"
    );
    assert!(
        client
            .served(rest.next, 10)
            .expect("served log")
            .entries
            .is_empty()
    );
    let counts = client.requests_by_endpoint().expect("metrics");
    assert_eq!(counts.get("/api/embed"), Some(&6));

    client
        .refuse_for(Duration::from_millis(200))
        .expect("refusing");
    // The node goes down from a task of its own: see it refuse a new connection first, so
    // `wait_until_back` waits for its return and not for the moment before it left.
    let fresh = reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let refused = (0..100_000).any(|_| {
        let answer = fresh.get(format!("{url}/api/version")).send();
        let down = answer.is_err_and(|e| e.is_connect());
        if !down {
            std::thread::yield_now();
        }
        down
    });
    assert!(refused, "the node never refused a connection");
    client.wait_until_back().expect("back by itself");
    assert_eq!(embed(&url, 6), 200);
}

#[test]
fn a_wrong_token_is_a_typed_401_and_changes_nothing() {
    let cluster = node();
    let url = cluster.urls()[0].clone();
    let wrong = ControlClient::new(url.clone(), Some("guess".into())).expect("client");
    let patch = SettingsPatch {
        speed: Some(0.5),
        ..SettingsPatch::default()
    };
    match wrong.update(&patch) {
        Err(ClientError::Status { status: 401, .. }) => {}
        other => panic!("expected a 401, got {other:?}"),
    }
    assert_eq!(cluster.nodes()[0].config().speed, 1.0);
    let none = ControlClient::new(url, None).expect("client");
    assert!(matches!(
        none.settings(),
        Err(ClientError::Status { status: 401, .. })
    ));
}
