//! The load engine reading streamed answers from a mock node: every token counted, the first
//! one timed, the gaps kept, a stream cut mid-way told from a whole one, and a replayed trace
//! sent one request per arrival with its own lengths. Behaviour only: no timing assertions.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use harness::engine::{Engine, Headers, Run, Schedule, Target};
use harness::workload::{Api, Chat, Lengths, Models, TokenMetrics, Workload};
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
