//! The load engine reading streamed answers from a mock node: every token counted, the first
//! one timed, the gaps kept, a stream cut mid-way told from a whole one, a replayed trace sent
//! one request per arrival with its own lengths, and clients that leave after k tokens or a
//! time. Behaviour only: no timing assertions (a time to leave sits far inside the prompt).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use harness::engine::{Engine, Headers, Run, Schedule, Target};
use harness::workload::{
    Api, Chat, Leave, LeaveAt, Lengths, Models, Share, TokenMetrics, Workload,
};
use mock_ollama::{MockCluster, NodeConfig};

fn target(url: &str, workload: &Workload, api: Api, headers: &[&str]) -> Target {
    let requests = workload.requests(api, &Models::one("llama3.2"));
    let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    Target {
        url: format!("{url}{}", requests.path),
        bodies: requests.bodies,
        read: requests.read,
        decode: None,
        headers: Headers::parse(&headers).expect("headers"),
    }
}

fn closed(requests: u64) -> Schedule {
    Schedule::Closed {
        workers: 3,
        requests,
        cap: None,
    }
}

const OUTPUT: Lengths = Lengths { min: 2, max: 9 };

fn chat() -> Workload {
    Workload::Chat(Chat::new(Lengths::fixed(8), OUTPUT))
}

#[test]
fn every_token_of_every_stream_is_counted_in_either_dialect() {
    let nodes = MockCluster::start(vec![NodeConfig::with_latency(Duration::ZERO)]).expect("node");
    for api in [Api::Ollama, Api::Openai] {
        let run: Run = Engine::default()
            .run(
                &target(&nodes.urls()[0], &chat(), api, &[]),
                closed(24),
                "c",
            )
            .expect("run");
        assert_eq!(run.ok(), 24, "{api:?}: every stream whole");
        for r in &run.records {
            assert_eq!(r.tokens, OUTPUT.of(r.n, 2), "{api:?}: request {}", r.n);
            assert!(r.ttft_us.is_some_and(|t| t <= r.latency_us), "{r:?}");
        }
        let gaps: u64 = run.records.iter().map(|r| u64::from(r.tokens) - 1).sum();
        assert_eq!(
            run.itl.len(),
            gaps,
            "{api:?}: one gap between each two tokens"
        );
        assert_eq!(run.ttft.len(), 24);
        let metrics = TokenMetrics::of(&run, None);
        assert_eq!((metrics.whole, metrics.cut_after_first_token), (24, 0));
        let tokens: u64 = run.records.iter().map(|r| u64::from(r.tokens)).sum();
        assert_eq!(metrics.output_tokens, tokens);
    }
}

#[test]
fn a_stream_reset_after_its_first_tokens_is_cut_not_complete() {
    let nodes = MockCluster::start(vec![NodeConfig::with_latency(Duration::ZERO)]).expect("node");
    let workload = Workload::Chat(Chat::new(Lengths::fixed(8), Lengths::fixed(6)));
    for api in [Api::Ollama, Api::Openai] {
        let cut = target(
            &nodes.urls()[0],
            &workload,
            api,
            &["x-mock-fault: reset-after:2"],
        );
        let run = Engine::default().run(&cut, closed(9), "r").expect("run");
        assert_eq!(run.ok(), 0, "{api:?}: no stream whole");
        assert!(
            run.records
                .iter()
                .all(|r| r.tokens == 2 && r.ttft_us.is_some()),
            "{api:?}: {:?}",
            run.records
        );
        let metrics = TokenMetrics::of(&run, None);
        assert_eq!(metrics.cut_after_first_token, 9, "{api:?}");
        assert_eq!(metrics.tpot.count, 0, "no time per token of a cut stream");
    }
}

#[test]
fn a_replayed_trace_sends_one_request_per_arrival_with_its_lengths() {
    let text = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
                2023-11-16 18:15:46.000,30,4\n\
                2023-11-16 18:15:46.002,12,7\n\
                2023-11-16 18:15:46.003,50,1\n\
                2023-11-16 18:15:46.009,8,3\n";
    let trace = harness::trace::Trace::parse(Path::new("t.csv"), text).expect("trace");
    let wanted: Vec<u32> = trace
        .requests
        .iter()
        .map(|r| r.output_tokens as u32)
        .collect();
    let nodes = MockCluster::start(vec![NodeConfig::with_latency(Duration::ZERO)]).expect("node");
    let workload = Workload::Trace(Arc::new(trace));
    let target = target(&nodes.urls()[0], &workload, Api::Ollama, &[]);
    let offsets = workload
        .requests(Api::Ollama, &Models::one("llama3.2"))
        .arrivals
        .expect("arrivals");
    let schedule = Schedule::Replay {
        offsets,
        connections: 2,
    };
    let run = Engine::default().run(&target, schedule, "t").expect("run");
    assert_eq!(run.ok(), 4);
    let mut records = run.records.clone();
    records.sort_by_key(|r| r.n);
    let got: Vec<u32> = records.iter().map(|r| r.tokens).collect();
    assert_eq!(got, wanted);
    let served = nodes.nodes()[0].served(0, 100).entries;
    let mut prompts: Vec<(String, u64)> = served
        .iter()
        .map(|e| {
            (
                e.marker.clone().unwrap_or_default(),
                e.prompt_tokens.unwrap_or(0),
            )
        })
        .collect();
    prompts.sort();
    let ids: Vec<&str> = prompts.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        ["t-0", "t-1", "t-2", "t-3"],
        "each arrival served once"
    );
    for ((_, evaluated), traced) in prompts.iter().zip([30, 12, 50, 8]) {
        assert!(
            (traced..traced + 8).contains(evaluated),
            "a prompt of {traced} tokens (plus its marker) evaluated as {evaluated}"
        );
    }
}

/// A server whose every answer is `body` with status 200, cleanly ended.
fn server(body: &'static str) -> String {
    common::serve(move || {
        axum::Router::new().route(
            "/api/chat",
            axum::routing::post(move || async move { body }),
        )
    })
}

#[test]
fn a_stream_that_ends_cleanly_without_its_final_line_is_not_complete() {
    let token = "{\"message\":{\"content\":\"ab\"},\"done\":false}\n";
    let cases = [
        (token, "no final line"),
        (
            "{\"message\":{\"content\":\"ab\"},\"done\":false}\n{\"done\":true}\n{\"done\":true}\n",
            "two final lines",
        ),
        (
            "{\"message\":{\"content\":\"ab\"},\"done\":false}\nnot json\n{\"done\":true}\n",
            "a line not JSON",
        ),
    ];
    for (body, why) in cases {
        let url = server(body);
        let run = Engine::default()
            .run(&target(&url, &chat(), Api::Ollama, &[]), closed(3), "e")
            .expect("run");
        assert_eq!(run.ok(), 0, "{why}");
        assert!(run.records.iter().all(|r| r.tokens == 1), "{why}");
    }
    let whole = server("{\"message\":{\"content\":\"ab\"},\"done\":false}\n{\"done\":true}\n");
    let run = Engine::default()
        .run(&target(&whole, &chat(), Api::Ollama, &[]), closed(3), "w")
        .expect("run");
    assert_eq!(run.ok(), 3, "the same server with a final line");
}

/// A node that takes `per_token` a token, evaluates prompts at `prompt_rate` tokens/s (`None`:
/// at `per_token`), and finishes the token or prompt in progress when its client leaves, as
/// Ollama's runner does.
fn leaving_node(per_token: Duration, prompt_rate: Option<f64>) -> MockCluster {
    let mut config = NodeConfig::with_latency(Duration::ZERO);
    config.latency.per_token = per_token;
    config.latency.prompt_rate = prompt_rate;
    config.leave = mock_ollama::Leave::AtNextToken;
    MockCluster::start(vec![config]).expect("node")
}

/// `workload` at `url` in `api`'s dialect, its client leaving as `leave` says.
fn leaving(url: &str, workload: &Workload, api: Api, leave: Leave) -> Target {
    let mut requests = workload.requests(api, &Models::one("llama3.2"));
    assert!(requests.leave(leave), "a streamed workload");
    Target {
        url: format!("{url}{}", requests.path),
        bodies: requests.bodies,
        read: requests.read,
        decode: None,
        headers: Headers::default(),
    }
}

/// Every entry of the node's log once none is open (the leavers' are written when the node
/// finishes the token it was on).
fn settled_log(nodes: &MockCluster) -> Vec<mock_ollama::ServedEntry> {
    for _ in 0..5_000 {
        let page = nodes.nodes()[0].served(0, usize::MAX);
        if page.open == 0 {
            return page.entries;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("the node never finished its requests");
}

#[test]
fn a_share_of_clients_leaving_after_k_tokens_is_left_not_failed_and_the_node_stops() {
    let nodes = leaving_node(Duration::from_millis(10), None);
    let workload = Workload::Chat(Chat::new(Lengths::fixed(8), Lengths::fixed(20)));
    let half = "0.5".parse::<Share>().expect("share");
    let leave = Leave {
        at: "2".parse::<LeaveAt>().expect("tokens"),
        share: half,
    };
    let target = leaving(&nodes.urls()[0], &workload, Api::Ollama, leave);
    let run = Engine::default().run(&target, closed(8), "l").expect("run");
    let mut leavers: Vec<u64> = run.records.iter().filter(|r| r.left).map(|r| r.n).collect();
    leavers.sort_unstable();
    let chosen: Vec<u64> = (0..8).filter(|&n| half.holds(n)).collect();
    assert_eq!(leavers, chosen, "the share's requests, and only they");
    let left = chosen.len() as u64;
    assert!((1..8).contains(&left), "some leave, some stay: {chosen:?}");
    for r in &run.records {
        if r.left {
            assert!((2..20).contains(&r.tokens) && !r.ok(), "{r:?}");
        } else {
            assert!(r.ok() && r.tokens == 20, "{r:?}");
        }
    }
    assert_eq!((run.ok(), run.failed(), run.left()), (8 - left, 0, left));
    let metrics = TokenMetrics::of(&run, None);
    assert_eq!((metrics.left, metrics.cut_after_first_token), (left, 0));
    let log = settled_log(&nodes);
    for entry in &log {
        let n: u64 = entry.marker.as_deref().expect("marker")[2..]
            .parse()
            .expect("n");
        if half.holds(n) {
            assert_eq!(
                entry.outcome,
                mock_ollama::ServedOutcome::Cancelled,
                "{entry:?}"
            );
            assert!(entry.after_leave_ns.is_some(), "{entry:?}");
        } else {
            assert_eq!(
                entry.outcome,
                mock_ollama::ServedOutcome::Served,
                "{entry:?}"
            );
        }
    }
    assert_eq!(log.len(), 8);
}

#[test]
fn a_client_leaving_after_a_time_leaves_during_the_prompt_with_no_token() {
    // 4,000 prompt tokens at 4,000 tokens/s: 1 s of prompt before the first token, 5 times
    // the client's 200 ms.
    let nodes = leaving_node(Duration::from_millis(1), Some(4_000.0));
    let workload = Workload::Chat(Chat::new(Lengths::fixed(4_000), Lengths::fixed(4)));
    let leave = Leave {
        at: "200ms".parse::<LeaveAt>().expect("time"),
        share: Share::ALL,
    };
    let target = leaving(&nodes.urls()[0], &workload, Api::Openai, leave);
    let run = Engine::default().run(&target, closed(3), "p").expect("run");
    assert_eq!(run.left(), 3, "{:?}", run.records);
    assert!(
        run.records
            .iter()
            .all(|r| r.tokens == 0 && r.ttft_us.is_none())
    );
    let log = settled_log(&nodes);
    assert_eq!(log.len(), 3);
    // One slot: one request was in its prompt when its client left, and the node finished that
    // prompt; the others left while waiting for the slot, before any work.
    let mut worked = 0;
    for entry in log {
        assert_eq!(
            entry.outcome,
            mock_ollama::ServedOutcome::Cancelled,
            "{entry:?}"
        );
        match entry.service_start_ns {
            Some(_) => {
                assert!(entry.after_leave_ns.is_some_and(|ns| ns > 0), "{entry:?}");
                worked += 1;
            }
            None => assert_eq!(entry.after_leave_ns, None, "{entry:?}"),
        }
    }
    assert!(worked >= 1, "a request in service when its client left");
}
