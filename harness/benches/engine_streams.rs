//! Can the load engine read LLM streams fast enough not to be what a streaming measurement
//! measures? 1,000 concurrent streamed chat answers, every line read and parsed, against a
//! minimal streaming server (an axum handler writing Ollama's chat lines at a fixed pace, each
//! line its own write) running as its own process: this binary re-run as `serve`.
//!
//! Each stream asks 50 tokens; the server paces them at 10 ms (1,000 streams offer 100,000
//! lines/s) or 5 ms (200,000). Reported per pace, median and range over the repeats: lines
//! read per second, the engine's CPU per line (this process only: the server is another), the
//! server's CPU per line, inter-token latency p50/p99 as the engine read it against the pace,
//! and streams not whole.
//!
//! `cargo bench -p harness --bench engine_streams` (about a minute and a half).

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::engine::{Engine, Headers, Schedule, Target};
use harness::workload::{Api, Chat, Lengths, Models, TokenMetrics, Workload};

const STREAMS: usize = 1_000;
const TOKENS: u32 = 50;
const PACES: [Duration; 2] = [Duration::from_millis(10), Duration::from_millis(5)];
const WINDOW: Duration = Duration::from_secs(8);
const REPEATS: usize = 3;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        serve();
        return;
    }
    let machine = harness::machine::Machine::detect();
    println!("{}", machine.one_line());
    println!(
        "| pace | offered lines/s | lines/s read | engine CPU us/line | server CPU us/line | ITL p50 / p99 ms | not whole |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut server = Server::start();
    // Warm-up: connections opened, allocators and caches filled.
    let _ = server.run(PACES[0], Duration::from_secs(2));
    for pace in PACES {
        let runs: Vec<Measured> = (0..REPEATS).map(|_| server.run(pace, WINDOW)).collect();
        let offered = STREAMS as f64 / pace.as_secs_f64();
        println!(
            "| {pace:?} | {offered:.0} | {} | {} | {} | {} / {} | {} |",
            spread(&runs, |m| m.lines_per_s, 0),
            spread(&runs, |m| m.engine_us_per_line, 2),
            spread(&runs, |m| m.server_us_per_line, 2),
            spread(&runs, |m| m.itl_p50_ms, 2),
            spread(&runs, |m| m.itl_p99_ms, 2),
            spread(&runs, |m| m.not_whole as f64, 0),
        );
    }
    server.stop();
}

/// One run's figures.
struct Measured {
    lines_per_s: f64,
    engine_us_per_line: f64,
    server_us_per_line: f64,
    itl_p50_ms: f64,
    itl_p99_ms: f64,
    not_whole: u64,
}

/// `median (min-max)`.
fn spread(runs: &[Measured], f: impl Fn(&Measured) -> f64, digits: usize) -> String {
    let mut v: Vec<f64> = runs.iter().map(f).collect();
    v.sort_by(f64::total_cmp);
    format!(
        "{:.digits$} ({:.digits$}-{:.digits$})",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1]
    )
}

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start() -> Self {
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .arg("serve")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the server's address");
        Self {
            child,
            url: format!("http://{}/api/chat", line.trim()),
        }
    }

    fn run(&mut self, pace: Duration, window: Duration) -> Measured {
        let workload = Workload::Chat(Chat::new(Lengths::fixed(8), Lengths::fixed(TOKENS)));
        let requests = workload.requests(Api::Ollama, &Models::one("m"));
        let pace_header = format!("x-pace-us: {}", pace.as_micros());
        let target = Target {
            url: self.url.clone(),
            bodies: requests.bodies,
            read: requests.read,
            decode: None,
            headers: Headers::parse(&[pace_header]).expect("header"),
        };
        let schedule = Schedule::Closed {
            workers: STREAMS,
            requests: u64::MAX / 2,
            cap: Some(window),
        };
        let (server_before, engine_before) =
            (cpu_of(self.child.id()), harness::machine::cpu_time());
        let run = Engine::default().run(&target, schedule, "b").expect("run");
        let engine = harness::machine::cpu_time().saturating_sub(engine_before);
        let server = cpu_of(self.child.id()) - server_before;
        let metrics = TokenMetrics::of(&run, None);
        let lines = metrics.output_tokens.max(1) as f64;
        Measured {
            lines_per_s: metrics.output_tokens_per_s,
            engine_us_per_line: engine.as_secs_f64() * 1e6 / lines,
            server_us_per_line: server * 1e6 / lines,
            itl_p50_ms: metrics.itl.p50,
            itl_p99_ms: metrics.itl.p99,
            not_whole: metrics.requests - metrics.whole,
        }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds process `pid` has used (`/proc/PID/stat`, user + system).
fn cpu_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which may hold spaces) start at state, field 3.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    // Linux reports CPU time in clock ticks of 1/100 s (USER_HZ).
    ticks / 100.0
}

/// The floor server: Ollama's chat lines at the pace in `x-pace-us`, one write per line.
#[tokio::main]
async fn serve() {
    use axum::body::{Body, Bytes};
    use axum::http::HeaderMap;
    use axum::routing::post;

    async fn chat(headers: HeaderMap, body: Bytes) -> axum::response::Response {
        let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let tokens = request["options"]["num_predict"].as_u64().unwrap_or(16);
        let pace = headers
            .get("x-pace-us")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .map_or(Duration::from_millis(10), Duration::from_micros);
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        tokio::spawn(async move {
            // An interval keeps the average pace exact where a sleep per token would add the
            // timer wheel's rounding to each.
            let mut ticks = tokio::time::interval(pace);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            ticks.tick().await;
            const LINE: &[u8] = b"{\"model\":\"m\",\"created_at\":\"2026-12-06T00:00:00.000000000Z\",\"message\":{\"role\":\"assistant\",\"content\":\" tok\"},\"done\":false}\n";
            for _ in 0..tokens {
                ticks.tick().await;
                if tx.send(Bytes::from_static(LINE)).await.is_err() {
                    return;
                }
            }
            const DONE: &[u8] = b"{\"model\":\"m\",\"created_at\":\"2026-12-06T00:00:00.000000000Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\"}\n";
            let _ = tx.send(Bytes::from_static(DONE)).await;
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            let line = rx.recv().await?;
            Some((Ok::<Bytes, std::convert::Infallible>(line), rx))
        });
        axum::response::Response::new(Body::from_stream(stream))
    }

    let app = axum::Router::new().route("/api/chat", post(chat));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    println!("{}", listener.local_addr().expect("addr"));
    let _ = axum::serve(listener, app).await;
}
