//! Which models a node holds and what its prompt cache saves, over real HTTP: evictions and
//! reloads seen in the served log, `/mock/residency`, `/metrics` and `/api/ps`; the prompt
//! cache seen in the served log and in `prompt_eval_duration`; all of it set at runtime.

use std::time::Duration;

use mock_ollama::{MockNode, ModelSpec, NodeConfig, ServedEntry, SettingsPatch};
use serde_json::{Value, json};

async fn node(config: NodeConfig) -> MockNode {
    MockNode::spawn(config).await.expect("node starts")
}

/// Two chat models and the defaults otherwise (no service time: these tests count, not time).
fn two_models() -> NodeConfig {
    NodeConfig {
        models: vec![
            ModelSpec::generation("alpha", "llama", "1B", 1 << 30),
            ModelSpec::generation("beta", "llama", "1B", 1 << 30),
        ],
        ..NodeConfig::with_latency(Duration::ZERO)
    }
}

async fn generate(node: &MockNode, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{}/api/generate", node.url()))
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

async fn get(node: &MockNode, path: &str) -> String {
    reqwest::get(format!("{}{path}", node.url()))
        .await
        .expect("sent")
        .text()
        .await
        .expect("body")
}

fn entry(node: &MockNode, marker: &str) -> ServedEntry {
    node.served(0, usize::MAX)
        .entries
        .into_iter()
        .find(|e| e.marker.as_deref() == Some(marker))
        .expect("logged")
}

/// With one runner allowed, alternating models evicts on every change; each eviction is in
/// the served log (on the request that caused it), the timeline, `/metrics` and `/api/ps`.
#[tokio::test]
async fn evictions_show_in_the_log_the_timeline_the_metrics_and_ps() {
    let node = node(two_models()).await;
    node.update(&SettingsPatch {
        max_loaded_models: Some(1),
        ..SettingsPatch::default()
    })
    .expect("patched");
    for (i, model) in ["alpha", "beta", "beta", "alpha"].iter().enumerate() {
        let prompt = format!("hello [rid:{i}]");
        generate(
            &node,
            json!({ "model": model, "prompt": prompt, "stream": false }),
        )
        .await;
    }
    let logged: Vec<_> = (0..4)
        .map(|i| {
            let e = entry(&node, &i.to_string());
            (e.resident, e.evicted)
        })
        .collect();
    assert_eq!(
        logged,
        [
            (Some(false), Some(0)),
            (Some(false), Some(1)),
            (Some(true), Some(0)),
            (Some(false), Some(1)),
        ]
    );
    let timeline: Value = serde_json::from_str(&get(&node, "/mock/residency").await).unwrap();
    let unloaded: Vec<_> = timeline["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "unloaded")
        .map(|e| {
            (
                e["model"].clone(),
                e["reason"].clone(),
                e["for_model"].clone(),
            )
        })
        .collect();
    assert_eq!(
        unloaded,
        [
            (
                json!("alpha:latest"),
                json!("evicted"),
                json!("beta:latest")
            ),
            (
                json!("beta:latest"),
                json!("evicted"),
                json!("alpha:latest")
            ),
        ]
    );
    let metrics = get(&node, "/metrics").await;
    assert!(
        metrics.contains("mock_ollama_evictions_total 2"),
        "{metrics}"
    );
    assert!(metrics.contains("mock_ollama_loads_total 3"), "{metrics}");
    let ps: Value = serde_json::from_str(&get(&node, "/api/ps").await).unwrap();
    let models = ps["models"].as_array().unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(models[0]["name"], "alpha:latest");
    assert_eq!(models[0]["size_vram"], models[0]["size"]);
}

/// A request with another `num_ctx` reloads the model: the log names the field, `/api/ps`
/// shows the new context and a footprint grown by its KV cache.
#[tokio::test]
async fn another_num_ctx_reloads_and_ps_shows_the_new_context_and_size() {
    let node = node(NodeConfig::with_latency(Duration::ZERO)).await;
    let ps_of = |text: String| -> (u64, u64) {
        let ps: Value = serde_json::from_str(&text).unwrap();
        let m = &ps["models"][0];
        (
            m["context_length"].as_u64().unwrap(),
            m["size_vram"].as_u64().unwrap(),
        )
    };
    let ask = |marker: &str, num_ctx: u64| {
        json!({
            "model": "llama3.2", "prompt": format!("hi [rid:{marker}]"), "stream": false,
            "options": { "num_ctx": num_ctx },
        })
    };
    generate(&node, ask("small", 4096)).await;
    let (ctx, small) = ps_of(get(&node, "/api/ps").await);
    assert_eq!(ctx, 4096);
    generate(&node, ask("large", 8192)).await;
    let (ctx, large) = ps_of(get(&node, "/api/ps").await);
    assert_eq!(ctx, 8192);
    // llama3.2's KV cache: 114,688 bytes per token, one slot.
    assert_eq!(large - small, 4096 * 114_688);
    assert_eq!(entry(&node, "small").reload, None);
    assert_eq!(entry(&node, "large").reload.as_deref(), Some("num_ctx"));
    assert!(
        get(&node, "/metrics")
            .await
            .contains("mock_ollama_reloads_total 1")
    );
}

/// With the cache on, a prompt that extends the last one is evaluated only past the shared
/// prefix: the log counts the cached tokens and `prompt_eval_duration` charges the rest.
/// With the cache off (the default), the same two prompts are evaluated whole.
#[tokio::test]
async fn the_prompt_cache_charges_only_the_new_part_of_a_prompt() {
    for cache in [true, false] {
        let node = node(NodeConfig::with_latency(Duration::ZERO)).await;
        node.update(&SettingsPatch {
            prompt_cache: Some(cache),
            prompt_rate: Some(1_000_000.0),
            ..SettingsPatch::default()
        })
        .expect("patched");
        let history = "a".repeat(4_000);
        let first = format!("{history} [rid:1]");
        let second = format!("{first} and more [rid:2]");
        let eval = |v: &Value| v["prompt_eval_duration"].as_u64().unwrap();
        // 10^6 tokens/s: a microsecond per token evaluated (to a nanosecond of float rounding).
        let costs = |v: &Value, tokens: u64| eval(v).abs_diff(tokens * 1_000) <= 2;
        let one = generate(
            &node,
            json!({ "model": "llama3.2", "prompt": first, "stream": false }),
        )
        .await;
        let two = generate(
            &node,
            json!({ "model": "llama3.2", "prompt": second, "stream": false }),
        )
        .await;
        let (e1, e2) = (entry(&node, "1"), entry(&node, "2"));
        assert_eq!(e1.cached_tokens, Some(0));
        let first_tokens = e1.prompt_tokens.unwrap();
        if cache {
            // The whole first prompt was in the slot: its tokens come from the cache.
            assert_eq!(e2.cached_tokens, Some(first_tokens));
            let new_tokens = e2.prompt_tokens.unwrap() - first_tokens;
            assert!(costs(&two, new_tokens), "{}", eval(&two));
            assert!(costs(&one, first_tokens), "{}", eval(&one));
        } else {
            assert_eq!(e2.cached_tokens, Some(0));
            assert!(costs(&two, e2.prompt_tokens.unwrap()), "{}", eval(&two));
        }
    }
}

/// The options a runner compares must be typed as Ollama types them: a wrong type is Ollama's
/// 500, not a reload.
#[tokio::test]
async fn a_runner_option_of_the_wrong_type_is_ollamas_500() {
    let node = node(NodeConfig::with_latency(Duration::ZERO)).await;
    let response = reqwest::Client::new()
        .post(format!("{}/api/generate", node.url()))
        .json(&json!({ "model": "llama3.2", "prompt": "x", "options": { "use_mmap": "yes" } }))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 500);
}

/// The catalogue changes at runtime over the control API: a model kept unchanged stays
/// resident, a new one serves, a removed one answers Ollama's not-found; a catalogue the node
/// cannot serve is refused whole.
#[tokio::test]
async fn the_catalogue_changes_at_runtime_and_kept_models_stay_resident() {
    let node = node(NodeConfig::with_latency(Duration::ZERO)).await;
    let http = reqwest::Client::new();
    generate(
        &node,
        json!({ "model": "llama3.2", "prompt": "a [rid:before]", "stream": false }),
    )
    .await;
    let settings: Value = serde_json::from_str(&get(&node, "/mock/config").await).unwrap();
    let mut models = settings["models"].as_array().unwrap().clone();
    models.retain(|m| m["name"] != "all-minilm:latest");
    models.push(json!({ "name": "qwen3:8b", "size": 5_200_000_000u64 }));
    let patch = |body: Value| {
        http.patch(format!("{}/mock/config", node.url()))
            .json(&body)
            .send()
    };
    assert_eq!(
        patch(json!({ "models": models })).await.unwrap().status(),
        200
    );
    generate(
        &node,
        json!({ "model": "llama3.2", "prompt": "b [rid:kept]", "stream": false }),
    )
    .await;
    assert_eq!(
        entry(&node, "kept").resident,
        Some(true),
        "kept models keep their state"
    );
    generate(
        &node,
        json!({ "model": "qwen3:8b", "prompt": "c [rid:new]", "stream": false }),
    )
    .await;
    let gone = http
        .post(format!("{}/api/embed", node.url()))
        .json(&json!({ "model": "all-minilm", "input": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    let tags = get(&node, "/api/tags").await;
    assert!(
        tags.contains("qwen3:8b") && !tags.contains("all-minilm"),
        "{tags}"
    );
    let twice = json!({ "models": [{ "name": "x" }, { "name": "x:latest" }] });
    assert_eq!(patch(twice).await.unwrap().status(), 400);
    assert!(
        get(&node, "/api/tags").await.contains("qwen3:8b"),
        "nothing changed"
    );
}
