use std::path::Path;

use serde_json::Value;

use super::*;

#[test]
fn lengths_read_a_count_or_a_range_and_refuse_the_rest() {
    assert_eq!("64".parse::<Lengths>().unwrap(), Lengths::fixed(64));
    assert_eq!(
        "16..256".parse::<Lengths>().unwrap(),
        Lengths { min: 16, max: 256 }
    );
    for bad in ["", "0", "-3", "9..2", "1..", "..4", "x", "2000000"] {
        assert!(bad.parse::<Lengths>().is_err(), "{bad:?} accepted");
    }
}

#[test]
fn drawn_lengths_stay_in_range_repeat_per_request_and_spread() {
    let range = Lengths { min: 10, max: 20 };
    let draws: Vec<u32> = (0..1000).map(|n| range.of(n, 1)).collect();
    assert!(draws.iter().all(|d| (10..=20).contains(d)));
    assert_eq!(draws, (0..1000).map(|n| range.of(n, 1)).collect::<Vec<_>>());
    for value in 10..=20 {
        assert!(draws.contains(&value), "{value} never drawn");
    }
    let other: Vec<u32> = (0..1000).map(|n| range.of(n, 2)).collect();
    assert_ne!(draws, other, "the prompt and output axes draw apart");
    assert_eq!(Lengths::fixed(7).of(99, 1), 7);
}

fn body(requests: &Requests, n: u64, id: &str) -> Value {
    serde_json::from_slice(&requests.bodies.render(n, id)).unwrap()
}

#[test]
fn chat_asks_its_lengths_with_the_id_last_in_either_dialect() {
    let chat = Workload::Chat(Chat::new(Lengths::fixed(8), Lengths::fixed(5)));
    let native = chat.requests(Api::Ollama, &Models::one("llama3.2"));
    assert_eq!(native.path, "/api/chat");
    assert_eq!(native.read, Read::stream(Api::Ollama));
    let b = body(&native, 3, "run-3");
    assert_eq!(b["options"]["num_predict"], 5);
    assert_eq!(b["stream"], true);
    let content = b["messages"][0]["content"].as_str().unwrap();
    assert!(content.ends_with("[rid:run-3]"), "{content}");
    assert_eq!(
        content.len(),
        8 * 4 + "[rid:run-3]".len(),
        "8 tokens of 4 characters"
    );

    let openai = chat.requests(Api::Openai, &Models::one("llama3.2"));
    assert_eq!(openai.path, "/v1/chat/completions");
    assert_eq!(body(&openai, 3, "run-3")["max_tokens"], 5);
}

#[test]
fn a_trace_replays_its_arrivals_and_lengths() {
    let text = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
                2023-11-16 18:15:46.0000000,12,3\n\
                2023-11-16 18:15:46.5000000,20,7\n";
    let trace = crate::trace::Trace::parse(Path::new("t.csv"), text).unwrap();
    let requests = Workload::Trace(Arc::new(trace)).requests(Api::Ollama, &Models::one("m"));
    let arrivals = requests.arrivals.clone().unwrap();
    assert_eq!(&arrivals[..], &[Duration::ZERO, Duration::from_millis(500)]);
    assert_eq!(body(&requests, 1, "r-1")["options"]["num_predict"], 7);
    assert_eq!(
        body(&requests, 3, "r-3")["options"]["num_predict"],
        7,
        "past its end a closed loop goes round the trace again"
    );
}

#[test]
fn a_model_mix_reaches_the_bodies() {
    let chat = Workload::Chat(Chat::new(Lengths::fixed(4), Lengths::fixed(2)));
    let mix: Models = "a=1,b=1".parse().unwrap();
    let requests = chat.requests(Api::Ollama, &mix);
    for n in 0..50 {
        assert_eq!(body(&requests, n, "r")["model"], mix.pick(n), "request {n}");
    }
    let embed = Workload::Embed.requests(Api::Ollama, &mix);
    assert_eq!(body(&embed, 0, "r")["model"], "a", "embed asks the first");
}
