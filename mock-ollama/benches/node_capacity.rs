//! `cargo bench -p mock-ollama`: how many `/api/embed` requests per second one mock node serves at
//! zero service time (1 input, dimension 1024), beside a minimal axum handler that returns a fixed
//! body of the same size on the same machine. The mock must not be what limits a benchmark, so its
//! own cost is measured against the cheapest possible server. Beside it, the same node with its
//! served-request log off (what the log costs) and the OpenAI-compatible route (what rewriting
//! the answer costs).

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mock_ollama::{MockNode, NodeConfig, SlotPolicy};

/// Concurrent client tasks driving the server.
const CONCURRENCY: u64 = 32;

fn body() -> serde_json::Value {
    serde_json::json!({ "model": "mxbai-embed-large", "input": "a chunk of a document" })
}

/// Sends `iters` requests from `CONCURRENCY` tasks; returns the wall time.
async fn drive(client: &reqwest::Client, url: &str, iters: u64) -> Duration {
    let per_task = iters.div_ceil(CONCURRENCY);
    let began = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_owned());
            tokio::spawn(async move {
                for _ in 0..per_task {
                    let response = client
                        .post(&url)
                        .json(&body())
                        .send()
                        .await
                        .expect("request sent");
                    assert!(response.status().is_success());
                    let bytes = response.bytes().await.expect("body read");
                    std::hint::black_box(bytes);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("client task");
    }
    began
        .elapsed()
        .mul_f64(iters as f64 / (per_task * CONCURRENCY) as f64)
}

fn capacity(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    let config = NodeConfig {
        slots: SlotPolicy {
            parallel: 256,
            force_embed_parallel: true,
        },
        ..NodeConfig::with_latency(Duration::ZERO)
    };
    let unlogged = NodeConfig {
        served_log_capacity: 0,
        ..config.clone()
    };
    let node = runtime.block_on(MockNode::spawn(config)).unwrap();
    let mock_url = format!("{}/api/embed", node.url());
    let openai_url = format!("{}/v1/embeddings", node.url());
    let quiet = runtime.block_on(MockNode::spawn(unlogged)).unwrap();
    let quiet_url = format!("{}/api/embed", quiet.url());
    // The reference answers every request with the mock's own answer, byte for byte.
    let fixed: Bytes = runtime.block_on(async {
        client
            .post(&mock_url)
            .json(&body())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    });
    let reference_url = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/api/embed",
            post(move || {
                let fixed = fixed.clone();
                async move { ([("content-type", "application/json; charset=utf-8")], fixed) }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/api/embed")
    });
    let mut group = c.benchmark_group("node_capacity");
    group.throughput(Throughput::Elements(1));
    group.bench_function("mock-ollama /api/embed (dim 1024)", |b| {
        b.iter_custom(|iters| runtime.block_on(drive(&client, &mock_url, iters)))
    });
    group.bench_function("mock-ollama /api/embed, served log off", |b| {
        b.iter_custom(|iters| runtime.block_on(drive(&client, &quiet_url, iters)))
    });
    group.bench_function("mock-ollama /v1/embeddings (dim 1024)", |b| {
        b.iter_custom(|iters| runtime.block_on(drive(&client, &openai_url, iters)))
    });
    group.bench_function("fixed-body axum handler (same size)", |b| {
        b.iter_custom(|iters| runtime.block_on(drive(&client, &reference_url, iters)))
    });
    group.finish();
}

criterion_group!(benches, capacity);
criterion_main!(benches);
