//! The served-request log and the connection counters, over real HTTP: every request logged
//! once with its ids, outcomes by cause, pages and the dropped counter, control-plane calls kept
//! out; connections counted at the socket.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use mock_ollama::{FAULT_HEADER, MockNode, NodeConfig, ServedEntry, ServedOutcome};
use serde_json::{Value, json};

async fn node(config: NodeConfig) -> MockNode {
    MockNode::spawn(config).await.expect("node starts")
}

fn fast() -> NodeConfig {
    NodeConfig::with_latency(Duration::from_micros(200))
}

async fn embed(http: &reqwest::Client, node: &MockNode, text: &str, header: Option<&str>) -> u16 {
    let mut request = http
        .post(format!("{}/api/embed", node.url()))
        .json(&json!({ "model": "all-minilm", "input": text }));
    if let Some(id) = header {
        request = request.header("x-request-id", id);
    }
    request.send().await.expect("sent").status().as_u16()
}

fn all(node: &MockNode) -> Vec<ServedEntry> {
    node.served(0, usize::MAX).entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_are_each_logged_once_with_their_ids() {
    // tokio's timer never ends a sleep early, so the logged service is at least the configured
    // one whatever the machine's load (the precise timer's accuracy is `harness run calibrate`'s).
    let node = Arc::new(
        node(NodeConfig {
            timer: mock_ollama::Timer::Tokio,
            ..fast()
        })
        .await,
    );
    let http = reqwest::Client::new();
    let tasks: Vec<_> = (0..8)
        .map(|worker| {
            let (node, http) = (Arc::clone(&node), http.clone());
            tokio::spawn(async move {
                for i in 0..50 {
                    let id = format!("w{worker}-{i}");
                    let text = format!("text [rid:{id}] more");
                    assert_eq!(
                        embed(&http, &node, &text, Some(&format!("h-{id}"))).await,
                        200
                    );
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("worker");
    }
    let entries = all(&node);
    assert_eq!(entries.len(), 400);
    let markers: BTreeSet<_> = entries.iter().filter_map(|e| e.marker.clone()).collect();
    assert_eq!(markers.len(), 400, "every marker once");
    for (seq, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, seq as u64, "no gaps");
        assert_eq!(e.outcome, ServedOutcome::Served);
        assert_eq!(
            e.header_id.as_deref(),
            Some(&*format!("h-{}", e.marker.as_deref().unwrap()))
        );
        assert_eq!(e.items, 1);
        let (slot, start, end) = (
            e.slot_ns.unwrap(),
            e.service_start_ns.unwrap(),
            e.service_end_ns.unwrap(),
        );
        assert!(
            e.arrival_ns <= slot && start <= end && end <= e.end_ns,
            "{e:?}"
        );
        assert!(
            end - start >= 150_000,
            "the service time is in the log: {e:?}"
        );
    }
    assert_eq!(node.counters().items_served, 400, "log and counters agree");
    assert_eq!(node.counters().succeeded("/api/embed"), 400);
}

#[tokio::test]
async fn outcomes_by_cause_and_the_openai_route() {
    let node = node(fast()).await;
    let http = reqwest::Client::new();
    let forced = |fault: &'static str, id: &'static str| {
        http.post(format!("{}/api/embed", node.url()))
            .header(FAULT_HEADER, fault)
            .json(&json!({ "model": "all-minilm", "input": format!("[rid:{id}]") }))
            .send()
    };
    assert_eq!(forced("error", "e").await.unwrap().status(), 500);
    assert_eq!(forced("stall", "s").await.unwrap().status(), 200);
    let reset = forced("reset", "r").await;
    assert!(reset.is_err() || reset.unwrap().bytes().await.is_err());
    let bad = http
        .post(format!("{}/api/embed", node.url()))
        .json(&json!({ "model": "nope", "input": "[rid:m]" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 404);
    let openai = http
        .post(format!("{}/v1/embeddings", node.url()))
        .json(&json!({ "model": "all-minilm", "input": ["[rid:o] a", "b"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(openai.status(), 200);
    let by_marker = |id: &str| {
        all(&node)
            .into_iter()
            .find(|e| e.marker.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("{id} logged"))
    };
    assert_eq!(
        (by_marker("e").outcome, by_marker("e").status),
        (ServedOutcome::Error, Some(500))
    );
    let stalled = by_marker("s");
    assert!(stalled.stalled && stalled.outcome == ServedOutcome::Served);
    assert_eq!(by_marker("r").outcome, ServedOutcome::Reset);
    assert_eq!(by_marker("m").outcome, ServedOutcome::Error);
    let o = by_marker("o");
    assert_eq!(
        (o.endpoint.as_ref(), o.items, o.outcome),
        ("/v1/embeddings", 2, ServedOutcome::Served)
    );
    assert_eq!(all(&node).len(), 5);
}

#[tokio::test]
async fn a_stream_is_logged_when_it_ends_and_a_left_stream_as_cancelled() {
    // tokio's timer: its sleeps never end early, so three 1 ms tokens log at least 3 ms.
    let node = node(NodeConfig {
        latency: mock_ollama::LatencyModel {
            per_token: Duration::from_millis(1),
            ..Default::default()
        },
        timer: mock_ollama::Timer::Tokio,
        ..fast()
    })
    .await;
    let http = reqwest::Client::new();
    let stream = |id: &str, tokens: u64| {
        http.post(format!("{}/api/generate", node.url()))
            .json(&json!({ "model": "llama3.2", "prompt": format!("[rid:{id}]"), "options": { "num_predict": tokens } }))
            .send()
    };
    let whole = stream("whole", 3).await.unwrap().text().await.unwrap();
    assert_eq!(whole.lines().count(), 4);
    let mut left = stream("left", 100_000).await.unwrap().bytes_stream();
    left.next().await.expect("a first line").expect("bytes");
    drop(left);
    // The entry appears when the node sees the client gone: wait on that, not on time.
    let mut waited = 0;
    while all(&node).len() < 2 {
        assert!(waited < 5_000, "the abandoned stream was never logged");
        tokio::time::sleep(Duration::from_millis(1)).await;
        waited += 1;
    }
    let entries = all(&node);
    let whole = entries
        .iter()
        .find(|e| e.marker.as_deref() == Some("whole"))
        .unwrap();
    assert_eq!(whole.outcome, ServedOutcome::Served);
    assert!(whole.service_end_ns.unwrap() - whole.service_start_ns.unwrap() >= 3_000_000);
    let left = entries
        .iter()
        .find(|e| e.marker.as_deref() == Some("left"))
        .unwrap();
    assert_eq!(left.outcome, ServedOutcome::Cancelled);
    assert_eq!(left.service_end_ns, None);
}

#[tokio::test]
async fn pages_dropped_entries_and_control_plane_calls() {
    let node = node(NodeConfig {
        served_log_capacity: 5,
        ..fast()
    })
    .await;
    let http = reqwest::Client::new();
    for i in 0..8 {
        embed(&http, &node, &format!("[rid:{i}]"), None).await;
    }
    for path in [
        "/api/tags",
        "/api/ps",
        "/api/version",
        "/v1/models",
        "/metrics",
    ] {
        http.get(format!("{}{path}", node.url()))
            .send()
            .await
            .unwrap();
    }
    let page = node.served(0, 100);
    assert_eq!(page.dropped, 3);
    assert_eq!(
        page.entries
            .iter()
            .map(|e| e.marker.clone().unwrap())
            .collect::<Vec<_>>(),
        ["3", "4", "5", "6", "7"],
        "only inference is logged; the oldest are dropped"
    );
    let response = http
        .get(format!("{}/mock/served?since=4&limit=2", node.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(
        (header("x-mock-next"), header("x-mock-dropped")),
        ("6".into(), "3".into())
    );
    assert!(header("x-mock-started-unix-ns").parse::<u128>().unwrap() > 0);
    let lines: Vec<Value> = response
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines
            .iter()
            .map(|l| l["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [4, 5]
    );
    assert_eq!(lines[0]["outcome"], "served");
    let bad = http
        .get(format!("{}/mock/served?since=x", node.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn connections_are_counted_at_the_socket() {
    let node = node(fast()).await;
    let kept = reqwest::Client::new();
    for i in 0..10 {
        embed(&kept, &node, &format!("k{i}"), None).await;
    }
    assert_eq!(
        node.counters().connections_accepted,
        1,
        "keep-alive reuses one connection"
    );
    for i in 0..10 {
        let fresh = reqwest::Client::new();
        embed(&fresh, &node, &format!("f{i}"), None).await;
    }
    assert_eq!(
        node.counters().connections_accepted,
        11,
        "a new client, a new connection"
    );
    drop(kept);
    let metrics = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
        .get(format!("{}/metrics", node.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("mock_ollama_connections_accepted_total 12"),
        "{metrics}"
    );
    // Every client is gone: wait until the node has seen each connection close.
    let mut waited = 0;
    while node.counters().connections_closed < 12 {
        assert!(waited < 5_000, "closes not counted: {:?}", node.counters());
        tokio::time::sleep(Duration::from_millis(1)).await;
        waited += 1;
    }
    assert_eq!(node.counters().connections_closed, 12);
}

/// Each entry says which model served it, how long it waited for the model's load, and its
/// tokens: the first request to a cold model carries the load (tokio's sleep never ends early,
/// so at least `load_time`), a generation its prompt and output tokens, an embed its input
/// tokens and none generated, and a request for an unknown model no model at all.
#[tokio::test]
async fn entries_carry_the_model_its_load_wait_and_tokens() {
    let load_time = Duration::from_millis(20);
    let node = node(NodeConfig {
        load_time,
        ..fast()
    })
    .await;
    let http = reqwest::Client::new();
    let status = http
        .post(format!("{}/api/generate", node.url()))
        .json(
            &json!({ "model": "llama3.2", "prompt": format!("{} [rid:g]", "word".repeat(10)),
            "stream": false, "options": { "num_predict": 5 } }),
        )
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    assert_eq!(embed(&http, &node, "eight chars [rid:e]", None).await, 200);
    assert_eq!(
        http.post(format!("{}/api/embed", node.url()))
            .json(&json!({ "model": "nope", "input": "[rid:n]" }))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let entries = all(&node);
    let by = |marker: &str| {
        entries
            .iter()
            .find(|e| e.marker.as_deref() == Some(marker))
            .unwrap()
            .clone()
    };
    let g = by("g");
    assert_eq!(g.model.as_deref(), Some("llama3.2:latest"));
    assert!(g.load_ns.unwrap() >= load_time.as_nanos() as u64, "{g:?}");
    // "word" x 10 and " [rid:g]": 48 characters, 12 tokens at four characters a token.
    assert_eq!((g.prompt_tokens, g.output_tokens), (Some(12), Some(5)));
    let e = by("e");
    assert_eq!(e.model.as_deref(), Some("all-minilm:latest"));
    assert!(e.load_ns.is_some());
    assert_eq!((e.prompt_tokens, e.output_tokens), (Some(5), None));
    let n = by("n");
    assert_eq!((n.model, n.load_ns, n.prompt_tokens), (None, None, None));
}

/// The node's first entry, once written: waits for the entry, not for time (a node that worked
/// on where it should have stopped would miss the 5 s bound).
async fn first_entry(node: &MockNode, leave: mock_ollama::Leave) -> ServedEntry {
    let mut waited = 0;
    while all(node).is_empty() {
        assert!(
            waited < 5_000,
            "{leave:?}: the left request was never logged"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
        waited += 1;
    }
    all(node).remove(0)
}

/// An entry of a request whose client left during a 200 ms prompt, on a node that finishes the
/// prompt first: cancelled, yet served at least the prompt, and worked on after the client left.
fn worked_through_the_prompt(later: &ServedEntry) {
    assert_eq!(later.outcome, ServedOutcome::Cancelled);
    let worked = later.end_ns - later.service_start_ns.unwrap();
    assert!(
        worked >= 200_000_000,
        "the whole prompt was evaluated: {worked} ns"
    );
    assert!(later.after_leave_ns.unwrap() > 0, "{later:?}");
}

/// A node with a 1 ms token, prompts at `prompt_rate` tokens/s and the given leave mode, on
/// tokio's timer.
fn leaving(leave: mock_ollama::Leave, prompt_rate: f64) -> NodeConfig {
    NodeConfig {
        latency: mock_ollama::LatencyModel {
            per_token: Duration::from_millis(1),
            prompt_rate: Some(prompt_rate),
            ..fast().latency
        },
        timer: mock_ollama::Timer::Tokio,
        leave,
        ..fast()
    }
}

/// A client that leaves during prompt evaluation: `at-once` stops the node then (the entry
/// appears long before the 30 s prompt would end), `at-next-token` evaluates the whole prompt
/// first (its service lasts at least the 200 ms prompt) and logs how long it worked after.
#[tokio::test]
async fn a_client_leaving_during_the_prompt_stops_the_node_as_its_leave_mode_says() {
    let http = reqwest::Client::new();
    // 400 prompt tokens: 30 s at 13.33 tokens/s, 200 ms at 2,000 tokens/s.
    let leave_during_prompt = |leave: mock_ollama::Leave, prompt_rate: f64| {
        let http = http.clone();
        async move {
            let node = node(leaving(leave, prompt_rate)).await;
            let response = http
                .post(format!("{}/api/generate", node.url()))
                .json(&json!({ "model": "llama3.2", "prompt": format!("{} [rid:p]", "word".repeat(398)),
                    "options": { "num_predict": 3 } }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            drop(response);
            first_entry(&node, leave).await
        }
    };
    let at_once = leave_during_prompt(mock_ollama::Leave::AtOnce, 400.0 / 30.0).await;
    assert_eq!(at_once.outcome, ServedOutcome::Cancelled);
    let later = leave_during_prompt(mock_ollama::Leave::AtNextToken, 2_000.0).await;
    worked_through_the_prompt(&later);
    assert_eq!(later.output_tokens, Some(3));
}

/// The same for a non-streamed answer, whose client leaves by closing its connection before the
/// answer: `at-once` stops when the server drops the handler, `at-next-token` evaluates the
/// whole prompt first and logs how long it worked after.
#[tokio::test]
async fn a_client_leaving_a_non_streamed_answer_stops_the_node_as_its_leave_mode_says() {
    let leave_during_prompt = |leave: mock_ollama::Leave, prompt_rate: f64| async move {
        let node = Arc::new(node(leaving(leave, prompt_rate)).await);
        let url = format!("{}/api/generate", node.url());
        let body = json!({ "model": "llama3.2", "prompt": format!("{} [rid:q]", "word".repeat(398)),
            "stream": false, "options": { "num_predict": 3 } });
        let request = tokio::spawn(async move {
            let _ = reqwest::Client::new().post(url).json(&body).send().await;
        });
        // Leave once the node is working on it (its slot taken), not after some time.
        let mut waited = 0;
        while node.counters().in_service == 0 {
            assert!(waited < 5_000, "{leave:?}: never served");
            tokio::time::sleep(Duration::from_millis(1)).await;
            waited += 1;
        }
        request.abort();
        first_entry(&node, leave).await
    };
    let at_once = leave_during_prompt(mock_ollama::Leave::AtOnce, 400.0 / 30.0).await;
    assert_eq!(at_once.outcome, ServedOutcome::Cancelled);
    assert_eq!(at_once.after_leave_ns, None, "{at_once:?}");
    let later = leave_during_prompt(mock_ollama::Leave::AtNextToken, 2_000.0).await;
    worked_through_the_prompt(&later);
}

/// A non-streamed answer served to the end under `at-next-token` (its work in a task of its own)
/// has the same body as under `at-once`: one JSON object, no line break, done.
#[tokio::test]
async fn a_non_streamed_answer_has_the_same_body_in_both_leave_modes() {
    let mut bodies = Vec::new();
    for leave in [mock_ollama::Leave::AtOnce, mock_ollama::Leave::AtNextToken] {
        let node = node(leaving(leave, 1e6)).await;
        let body = reqwest::Client::new()
            .post(format!("{}/api/generate", node.url()))
            .json(
                &json!({ "model": "llama3.2", "prompt": "hi", "stream": false,
                "options": { "num_predict": 3 } }),
            )
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(!body.ends_with(b"\n"), "{leave:?}: {body:?}");
        let answer: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (answer["done"].clone(), answer["eval_count"].clone()),
            (json!(true), json!(3))
        );
        bodies.push(answer["response"].clone());
    }
    assert_eq!(bodies[0], bodies[1], "the same words for the same prompt");
}

/// A request still in service is counted open and has no entry; once answered it has its entry
/// and nothing is open, over HTTP too (the header a remote reader waits on). The twin that
/// does not count it was seen failing on the first assertion (0 open, no entry).
#[tokio::test]
async fn a_request_not_yet_logged_is_counted_open_until_its_entry_is_written() {
    let node = Arc::new(node(fast()).await);
    let hold = node.hold(mock_ollama::Held::Service);
    let http = reqwest::Client::new();
    let request = {
        let (http, node) = (http.clone(), Arc::clone(&node));
        tokio::spawn(async move { embed(&http, &node, "held [rid:o]", None).await })
    };
    let mut waited = 0;
    while node.counters().in_service == 0 {
        assert!(waited < 5_000, "never served");
        tokio::time::sleep(Duration::from_millis(1)).await;
        waited += 1;
    }
    let page = node.served(0, usize::MAX);
    assert_eq!((page.open, page.entries.len()), (1, 0), "in service: open");
    let url = node.url();
    // The blocking client lives and dies on a blocking thread.
    let remote = tokio::task::spawn_blocking(move || {
        let client = mock_ollama::ControlClient::new(url, None).unwrap();
        client.served(0, 0).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(remote.open, 1, "the header says so too");
    drop(hold);
    assert_eq!(request.await.unwrap(), 200);
    let page = node.served(0, usize::MAX);
    assert_eq!((page.open, page.entries.len()), (0, 1), "answered: logged");
}
