//! What one mock process costs while it simulates a cluster under LLM load: 64 nodes with four
//! chat models each, 1,000 concurrent streamed generations, the served log on. Beside it, in the
//! same run, a minimal axum handler on 64 listeners streams the same NDJSON lines at the same
//! pace: the floor any server pays for those streams on this machine.
//!
//! Each server runs as its own process (this binary re-run as `baseline`, or the `mock-ollama`
//! binary), so its CPU time (`/proc/PID/stat`) and memory (`VmRSS`, `VmHWM`) are its own; the
//! load comes from this process. Reported: CPU per streamed token, memory per node (idle RSS
//! over 64) and per stream (peak over idle, over 1,000), and the mock's ratio to the floor,
//! with the median and spread of the repeats.
//!
//! `cargo bench -p mock-ollama --bench stream_cost` (about 2 minutes; uses ports 31100-31163);
//! with `-- load`, only the load, for a profiler attached to a server started by hand; with
//! `-- mock`, only the mock's runs.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

const NODES: u16 = 64;
const STREAMS: usize = 1_000;
const BASE_PORT: u16 = 31_100;
const PER_TOKEN: Duration = Duration::from_millis(50);
const TOKENS: u64 = 40;
const MODELS: [&str; 4] = ["llama3.2", "m1", "m2", "m3"];
const WARMUP: Duration = Duration::from_secs(3);
const WINDOW: Duration = Duration::from_secs(8);
const REPEATS: usize = 3;

/// One server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    /// `mock-ollama` with its precise timer (the default).
    Mock,
    /// `mock-ollama --timer tokio`.
    MockTokioTimer,
    /// The minimal axum handler.
    Floor,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Mock => "mock-ollama",
            Server::MockTokioTimer => "mock-ollama --timer tokio",
            Server::Floor => "minimal axum handler",
        }
    }

    fn start(self) -> Child {
        let mut command = match self {
            Server::Floor => {
                let mut c = Command::new(std::env::current_exe().expect("own path"));
                c.arg("baseline");
                c
            }
            Server::Mock | Server::MockTokioTimer => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_mock-ollama"));
                let per_token = format!("{}ms", PER_TOKEN.as_millis());
                c.args([
                    "--nodes",
                    &NODES.to_string(),
                    "--port",
                    &BASE_PORT.to_string(),
                ]);
                c.args([
                    "--parallel",
                    "4",
                    "--latency",
                    "1ms",
                    "--per-token",
                    &per_token,
                ]);
                for model in &MODELS[1..] {
                    c.args(["--model", model]);
                }
                if self == Server::MockTokioTimer {
                    c.args(["--timer", "tokio"]);
                }
                c.env("RUST_LOG", "warn");
                c
            }
        };
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("server starts")
    }
}

/// CPU seconds (user + system) and memory of a process, from `/proc`.
struct Usage {
    cpu: f64,
    rss: u64,
    peak: u64,
}

fn usage(pid: u32) -> Usage {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which may hold spaces) start at state, field 3.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Usage {
        // Linux reports CPU time in clock ticks of 1/100 s (USER_HZ).
        cpu: ticks / 100.0,
        rss: kib("VmRSS:") * 1024,
        peak: kib("VmHWM:") * 1024,
    }
}

/// One measured run.
struct Run {
    cpu_per_token_us: f64,
    node_bytes: f64,
    stream_bytes: f64,
    tokens: u64,
}

async fn wait_ready() {
    let deadline = Instant::now() + Duration::from_secs(20);
    for port in BASE_PORT..BASE_PORT + NODES {
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "port {port} never opened");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Keeps `STREAMS` generations in flight until `end`, counting token lines received after
/// `count_from`.
async fn load(count_from: Instant, end: Instant) -> u64 {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(STREAMS)
        .build()
        .expect("client");
    let tasks: Vec<_> = (0..STREAMS)
        .map(|w| {
            let http = http.clone();
            tokio::spawn(async move {
                let port = BASE_PORT + (w % usize::from(NODES)) as u16;
                let model = MODELS[(w / usize::from(NODES)) % MODELS.len()];
                let mut tokens = 0u64;
                let mut i = 0u64;
                while Instant::now() < end {
                    i += 1;
                    let body = serde_json::json!({
                        "model": model, "prompt": format!("stream [rid:{w}-{i}]"),
                        "options": { "num_predict": TOKENS },
                    });
                    let Ok(response) = http
                        .post(format!("http://127.0.0.1:{port}/api/generate"))
                        .json(&body)
                        .send()
                        .await
                    else {
                        continue;
                    };
                    let mut body = response.bytes_stream();
                    while let Some(Ok(bytes)) = body.next().await {
                        if Instant::now() >= count_from && Instant::now() < end {
                            let lines = bytes.iter().filter(|b| **b == b'\n').count() as u64;
                            tokens += lines;
                        }
                    }
                }
                tokens
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap_or(0);
    }
    total
}

async fn measure(server: Server) -> Run {
    let mut child = server.start();
    let pid = child.id();
    wait_ready().await;
    let idle = usage(pid);
    let count_from = Instant::now() + WARMUP;
    let end = count_from + WINDOW;
    // The server's usage is sampled from a task of its own while the load runs.
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(count_from.into()).await;
        let before = usage(pid);
        tokio::time::sleep_until(end.into()).await;
        (before, usage(pid))
    });
    let tokens = load(count_from, end).await;
    let (before, after) = sampler.await.expect("sampler");
    let _ = child.kill();
    let _ = child.wait();
    Run {
        cpu_per_token_us: (after.cpu - before.cpu) / tokens.max(1) as f64 * 1e6,
        node_bytes: idle.rss as f64 / f64::from(NODES),
        stream_bytes: after.peak.saturating_sub(idle.rss) as f64 / STREAMS as f64,
        tokens,
    }
}

/// The floor: `NODES` listeners, each streaming `num_predict` lines of Ollama's shape, one per
/// `PER_TOKEN`, after a 1 ms start, with nothing else.
async fn baseline() {
    use axum::Json;
    use axum::body::{Body, Bytes};
    use axum::routing::post;
    use serde_json::{Value, json};

    async fn generate(Json(request): Json<Value>) -> axum::response::Response {
        let model = request["model"].as_str().unwrap_or("").to_owned();
        let tokens = request["options"]["num_predict"].as_u64().unwrap_or(16);
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            for _ in 0..tokens {
                tokio::time::sleep(PER_TOKEN).await;
                let line = json!({
                    "model": model,
                    "created_at": humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
                    "response": " tokens",
                    "done": false,
                });
                let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
                bytes.push(b'\n');
                if tx.send(Bytes::from(bytes)).await.is_err() {
                    return;
                }
            }
            let done =
                json!({ "model": model, "response": "", "done": true, "done_reason": "stop" });
            let mut bytes = serde_json::to_vec(&done).unwrap_or_default();
            bytes.push(b'\n');
            let _ = tx.send(Bytes::from(bytes)).await;
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|line| (Ok::<Bytes, std::convert::Infallible>(line), rx))
        });
        axum::response::Response::new(Body::from_stream(stream))
    }

    let app = axum::Router::new().route("/api/generate", post(generate));
    for port in BASE_PORT..BASE_PORT + NODES {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("port free");
        let app = app.clone();
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    // Until the bench kills it.
    std::future::pending::<()>().await;
}

fn median(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    )
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    match std::env::args().nth(1).as_deref() {
        Some("baseline") => return runtime.block_on(baseline()),
        // Load alone, against whatever listens on the ports (for a profiler on the server).
        Some("load") => {
            let count_from = Instant::now() + WARMUP;
            let tokens = runtime.block_on(load(count_from, count_from + WINDOW));
            return println!("{tokens} tokens");
        }
        _ => {}
    }
    // `cargo bench` passes `--bench`; this bench takes no other arguments.
    let servers = match std::env::args().nth(1).as_deref() {
        Some("mock") => vec![Server::Mock],
        _ => vec![Server::Mock, Server::MockTokioTimer, Server::Floor],
    };
    let mut runs: Vec<(Server, Run)> = Vec::new();
    for repeat in 0..REPEATS {
        for &server in &servers {
            let run = runtime.block_on(measure(server));
            eprintln!(
                "repeat {repeat} {:<26} {:>8} tokens  {:>6.1} us CPU/token  {:>7.0} B/node  {:>7.0} B/stream",
                server.name(),
                run.tokens,
                run.cpu_per_token_us,
                run.node_bytes,
                run.stream_bytes
            );
            runs.push((server, run));
        }
    }
    println!(
        "| server | tokens/run | CPU per token, us (median, min-max) | memory per node, KiB | per stream, KiB |"
    );
    println!("|---|---|---|---|---|");
    let mut floor_cpu = f64::NAN;
    for server in [Server::Floor, Server::Mock, Server::MockTokioTimer] {
        let of = |f: fn(&Run) -> f64| {
            median(
                runs.iter()
                    .filter(|(s, _)| *s == server)
                    .map(|(_, r)| f(r))
                    .collect(),
            )
        };
        let (cpu, lo, hi) = of(|r| r.cpu_per_token_us);
        let (tokens, _, _) = of(|r| r.tokens as f64);
        let (node, _, _) = of(|r| r.node_bytes);
        let (stream, _, _) = of(|r| r.stream_bytes);
        if server == Server::Floor {
            floor_cpu = cpu;
        }
        println!(
            "| {} | {tokens:.0} | {cpu:.1} ({lo:.1}-{hi:.1}){} | {:.0} | {:.1} |",
            server.name(),
            if server == Server::Floor {
                String::new()
            } else {
                format!(", {:.2}x the floor", cpu / floor_cpu)
            },
            node / 1024.0,
            stream / 1024.0
        );
    }
}
