//! `cargo bench -p pool`: what each variant costs per request, from the bookkeeping alone
//! (nanoseconds, where the lock is visible) to full HTTP requests (where it usually is not).
//!
//! Groups: `ledger` (one request's bookkeeping at 1-100 threads), `select` (one request's
//! bookkeeping, single thread, per strategy over 2-16 nodes), `snapshot` (`stats()` while 12 writers run), `end_to_end` (one request through
//! each pool to an in-process mock node, beside a plain `reqwest::blocking` call and the atomic
//! pool on that same client; and a 12-worker batch). The pools use their default (per-caller)
//! HTTP client unless a row names another.

use std::hint::black_box;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use crossbeam_utils::CachePadded;
use mock_ollama::{MockCluster, NodeConfig, SlotPolicy};
use pool::testing::{Outcome, simulate_request};
use pool::{
    AtomicLedger, BareLedger, HttpClient, HttpConfig, Ledger, LockScope, MutexLedger, Pool,
    PoolConfig, Strategy,
};

const THREADS: [usize; 5] = [1, 2, 4, 12, 100];

/// One request through some pool.
type Request = Box<dyn Fn() + Sync>;

/// A pool over `n` addresses nothing listens on: only its ledger is used, without I/O.
fn with_nodes(ledger: impl Into<Ledger>, n: usize) -> Pool {
    let urls: Vec<String> = (0..n).map(|i| format!("http://10.0.0.{i}:11434")).collect();
    with_strategy(ledger, &urls, Strategy::RoundRobin)
}

fn with_strategy(ledger: impl Into<Ledger>, urls: &[String], strategy: Strategy) -> Pool {
    let config = PoolConfig {
        strategy,
        ..PoolConfig::default()
    };
    Pool::new(ledger, config, urls).expect("distinct node URLs")
}

/// Runs `iters` operations split over `threads` threads released together; returns the span from
/// the first thread's start to the last thread's end, read on the threads themselves (the
/// coordinating thread can be descheduled right after the barrier when threads outnumber cores).
fn on_threads(threads: usize, iters: u64, op: impl Fn() + Sync) -> Duration {
    let per_thread = iters.div_ceil(threads as u64);
    let start = Barrier::new(threads);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (start, op) = (&start, &op);
                s.spawn(move || {
                    start.wait();
                    let began = Instant::now();
                    for _ in 0..per_thread {
                        op();
                    }
                    (began, Instant::now())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread panicked"))
            .collect()
    });
    let first = spans
        .iter()
        .map(|s| s.0)
        .min()
        .expect("at least one thread");
    let last = spans
        .iter()
        .map(|s| s.1)
        .max()
        .expect("at least one thread");
    // Report time per requested iteration even when rounding added a few.
    (last - first).mul_f64(iters as f64 / (per_thread * threads as u64) as f64)
}

/// One request's bookkeeping through `ledger` on `threads` threads.
fn bench_ledger(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    threads: usize,
    ledger: impl Into<Ledger>,
) {
    let pool = with_nodes(ledger, 2);
    let ledger = pool.ledger();
    let outcome = Outcome::Success {
        latency: Duration::from_millis(20),
    };
    group.bench_function(BenchmarkId::new(name, threads), |b| {
        b.iter_custom(|iters| {
            on_threads(threads, iters, || {
                black_box(simulate_request(ledger, Strategy::RoundRobin, outcome));
            })
        })
    });
}

fn ledger_group(c: &mut Criterion) {
    let mut group = c.benchmark_group("ledger");
    group.throughput(Throughput::Elements(1));
    for threads in THREADS {
        bench_ledger(
            &mut group,
            "MutexLedger",
            threads,
            MutexLedger::new(LockScope::Counters),
        );
        bench_ledger(&mut group, "AtomicLedger", threads, AtomicLedger::new());
        bench_ledger(&mut group, "bare round-robin", threads, BareLedger::new());
        // The floor the issue compares with: three relaxed fetch_adds on one shared cache line.
        let line = CachePadded::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
        group.bench_function(BenchmarkId::new("3x fetch_add one line", threads), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, || {
                    for counter in line.iter() {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
        });
    }
    group.finish();
}

fn select_group(c: &mut Criterion) {
    let mut group = c.benchmark_group("select");
    let outcome = Outcome::Success {
        latency: Duration::from_millis(20),
    };
    for nodes in [2, 4, 16] {
        let urls: Vec<String> = (0..nodes).map(|i| format!("http://10.0.0.{i}:1")).collect();
        for strategy in Strategy::ALL {
            let atomic = with_strategy(AtomicLedger::new(), &urls, strategy);
            let mutex = with_strategy(MutexLedger::new(LockScope::Counters), &urls, strategy);
            group.bench_function(
                BenchmarkId::new(format!("AtomicLedger/{strategy}"), nodes),
                |b| b.iter(|| black_box(simulate_request(atomic.ledger(), strategy, outcome))),
            );
            group.bench_function(
                BenchmarkId::new(format!("MutexLedger/{strategy}"), nodes),
                |b| b.iter(|| black_box(simulate_request(mutex.ledger(), strategy, outcome))),
            );
        }
    }
    group.finish();
}

fn snapshot_under(c: &mut BenchmarkGroup<'_, WallTime>, name: &str, pool: Pool) {
    let ledger = pool.ledger();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..12 {
            let (ledger, stop) = (&ledger, &stop);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    simulate_request(
                        ledger,
                        Strategy::RoundRobin,
                        Outcome::Success {
                            latency: Duration::from_millis(1),
                        },
                    );
                }
            });
        }
        c.bench_function(name, |b| b.iter(|| black_box(pool.stats())));
        stop.store(true, Ordering::Relaxed);
    });
}

fn snapshot_group(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot");
    snapshot_under(
        &mut group,
        "MutexLedger, 12 writers",
        with_nodes(MutexLedger::new(LockScope::Counters), 2),
    );
    snapshot_under(
        &mut group,
        "AtomicLedger, 12 writers",
        with_nodes(AtomicLedger::new(), 2),
    );
    group.finish();
}

fn end_to_end_group(c: &mut Criterion) {
    let config = NodeConfig {
        slots: SlotPolicy {
            parallel: 128,
            force_embed_parallel: true,
        },
        ..NodeConfig::with_latency(Duration::ZERO)
    };
    let cluster = MockCluster::start(vec![config; 2]).expect("mock nodes start");
    let urls = cluster.urls();
    let single = &urls[..1];
    let mut group = c.benchmark_group("end_to_end");
    group.throughput(Throughput::Elements(1));
    let client = reqwest::blocking::Client::new();
    let body =
        serde_json::to_vec(&serde_json::json!({ "model": "mxbai-embed-large", "input": "chunk" }))
            .unwrap();
    group.bench_function("plain reqwest, 1 request", |b| {
        b.iter(|| {
            let response = client
                .post(format!("{}/api/embed", single[0]))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .unwrap();
            let parsed: pool::EmbedResponse =
                serde_json::from_slice(&response.bytes().unwrap()).unwrap();
            black_box(parsed)
        })
    });
    let config = PoolConfig::default;
    let locked = MutexLedger::new;
    let atomic = Pool::new(AtomicLedger::new(), config(), single).unwrap();
    let mutex = Pool::new(locked(LockScope::Counters), config(), single).unwrap();
    let mutex_request = Pool::new(locked(LockScope::Request), config(), single).unwrap();
    let bare = Pool::new(BareLedger::new(), config(), single).unwrap();
    // The plain call's own client under the pool: what the pool adds to that call.
    let blocking = || PoolConfig {
        http: HttpConfig {
            client: HttpClient::Blocking,
            ..HttpConfig::default()
        },
        ..PoolConfig::default()
    };
    let on_reqwest = Pool::new(AtomicLedger::new(), blocking(), single).unwrap();
    group.bench_function("atomic pool on reqwest::blocking, 1 request", |b| {
        b.iter(|| black_box(on_reqwest.embed("mxbai-embed-large", "chunk").unwrap()))
    });
    group.bench_function("atomic pool, 1 request", |b| {
        b.iter(|| black_box(atomic.embed("mxbai-embed-large", "chunk").unwrap()))
    });
    group.bench_function("mutex-counters pool, 1 request", |b| {
        b.iter(|| black_box(mutex.embed("mxbai-embed-large", "chunk").unwrap()))
    });
    group.bench_function("mutex-request pool, 1 request", |b| {
        b.iter(|| black_box(mutex_request.embed("mxbai-embed-large", "chunk").unwrap()))
    });
    group.bench_function("bare pool, 1 request", |b| {
        b.iter(|| black_box(bare.embed("mxbai-embed-large", "chunk").unwrap()))
    });
    peak_over_two_nodes(&mut group, &urls);
    group.finish();
}

/// Peak throughput over both nodes at zero service time, 12 and 100 workers.
fn peak_over_two_nodes(group: &mut BenchmarkGroup<'_, WallTime>, urls: &[String]) {
    let config = PoolConfig::default;
    let locked = MutexLedger::new;
    let blocking = || PoolConfig {
        http: HttpConfig {
            client: HttpClient::Blocking,
            ..HttpConfig::default()
        },
        ..PoolConfig::default()
    };
    for workers in [12, 100] {
        let atomic = Pool::new(AtomicLedger::new(), config(), urls).unwrap();
        let mutex = Pool::new(locked(LockScope::Counters), config(), urls).unwrap();
        let on_reqwest = Pool::new(AtomicLedger::new(), blocking(), urls).unwrap();
        group.bench_function(
            BenchmarkId::new(
                "atomic pool on reqwest::blocking, 2 nodes, workers",
                workers,
            ),
            |b| {
                b.iter_custom(|iters| {
                    on_threads(workers, iters, || {
                        drop(on_reqwest.embed("mxbai-embed-large", "chunk").unwrap())
                    })
                })
            },
        );
        group.bench_function(
            BenchmarkId::new("atomic pool, 2 nodes, workers", workers),
            |b| {
                b.iter_custom(|iters| {
                    on_threads(workers, iters, || {
                        drop(atomic.embed("mxbai-embed-large", "chunk").unwrap())
                    })
                })
            },
        );
        group.bench_function(
            BenchmarkId::new("mutex-counters pool, 2 nodes, workers", workers),
            |b| {
                b.iter_custom(|iters| {
                    on_threads(workers, iters, || {
                        drop(mutex.embed("mxbai-embed-large", "chunk").unwrap())
                    })
                })
            },
        );
    }
}

/// A 12-worker batch with 1 ms service on two nodes, per ledger.
fn end_to_end_batch_group(c: &mut Criterion) {
    let config = PoolConfig::default;
    let locked = MutexLedger::new;
    let slow = NodeConfig {
        slots: SlotPolicy {
            parallel: 12,
            force_embed_parallel: true,
        },
        ..NodeConfig::with_latency(Duration::from_millis(1))
    };
    let slow_cluster = MockCluster::start(vec![slow; 2]).expect("mock nodes start");
    let mut batch = c.benchmark_group("end_to_end_batch");
    batch.throughput(Throughput::Elements(1));
    batch.sample_size(10);
    let kinds: [(&str, Request); 3] = [
        ("atomic", {
            let p = Pool::new(AtomicLedger::new(), config(), &slow_cluster.urls()).unwrap();
            Box::new(move || drop(p.embed("mxbai-embed-large", "chunk").unwrap()))
        }),
        ("mutex-counters", {
            let p = Pool::new(locked(LockScope::Counters), config(), &slow_cluster.urls()).unwrap();
            Box::new(move || drop(p.embed("mxbai-embed-large", "chunk").unwrap()))
        }),
        ("mutex-request", {
            let p = Pool::new(locked(LockScope::Request), config(), &slow_cluster.urls()).unwrap();
            Box::new(move || drop(p.embed("mxbai-embed-large", "chunk").unwrap()))
        }),
    ];
    for (name, op) in &kinds {
        batch.bench_function(
            BenchmarkId::new(format!("{name} pool, 12 workers, 1 ms service"), 12),
            |b| b.iter_custom(|iters| on_threads(12, iters, op)),
        );
    }
    batch.finish();
}

criterion_group!(
    benches,
    ledger_group,
    select_group,
    snapshot_group,
    end_to_end_group,
    end_to_end_batch_group
);
criterion_main!(benches);
