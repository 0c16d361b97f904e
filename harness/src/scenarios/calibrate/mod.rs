//! `calibrate`: does a node take the time it was told to take, and what does timing cost?
//!
//! For each timer (`precise`, the node's default, and `tokio`, the 1 ms timer it replaced) and
//! each configured service time from 250 us to 1 s, one keep-alive client sends requests one
//! after another to one one-slot node. The served time is measured twice: by the node (from the
//! item's service start to the end of its sleep, the figure judged against the bounds) and by
//! the client (its latency minus its own cost at 0 service time, which also holds the client
//! thread's wake-up after waiting). Then each timer's
//! single-node throughput at 2, 5 and 20 ms with 4 workers against the configured capacity
//! (slots / service time), and the CPU each costs at 1,000 requests/s (1 ms service, 16 slots):
//! the whole process's CPU per request, and for the precise timer its thread's own share of a
//! core.

use std::time::Duration;

use indicatif::ProgressBar;
use mock_ollama::{MockCluster, NodeConfig, NodeSpec, Timer};
use serde_json::json;

mod verdicts;

use super::open_loop::open_loop;
use super::{Ctx, Findings};
use crate::load::{Workload, closed_loop};
use crate::results::{Accounting, Row};
use crate::summary::{Latency, Summary};
use crate::variant::{PoolOptions, PoolUnderTest, Variant};

/// Configured service times.
const SERVICE_US: [u64; 9] = [
    250, 500, 1_000, 1_500, 2_000, 5_000, 20_000, 100_000, 1_000_000,
];
/// Service times at which the client's view is taken apart (those a new user timed, issue 27).
const CLIENT_VIEW_US: [u64; 2] = [1_500, 5_000];
/// Service times of the throughput check.
const CAPACITY_MS: [u64; 3] = [2, 5, 20];
/// Repeats of each throughput check (each [`capacity_window`] long).
const CAPACITY_REPEATS: usize = 3;
const TIMERS: [(Timer, &str); 2] = [(Timer::Precise, "precise"), (Timer::Tokio, "tokio")];

fn node(timer: Timer, service: Duration, slots: usize) -> anyhow::Result<MockCluster> {
    let config = NodeConfig {
        timer,
        ..NodeSpec::new(service, slots).config(0)
    };
    Ok(MockCluster::start(vec![config])?)
}

fn client(nodes: &MockCluster) -> anyhow::Result<Box<dyn PoolUnderTest>> {
    Ok(Variant::Bare.build(&nodes.urls(), PoolOptions::default())?)
}

fn workload(workers: usize, requests: usize, cap: Option<Duration>) -> Workload {
    Workload {
        workers,
        requests,
        cap,
        model: "all-minilm".into(),
        text: Some("calibrate".into()),
    }
}

/// What one sequential calibration run measured, in milliseconds.
struct Served {
    /// The node's own p50 and p99 of how long items held their slot.
    node: (f64, f64),
    /// The node's p50 from a request's arrival to its answer being handed to the server (the
    /// served log's `end_ns - arrival_ns`): everything the node itself did.
    span: f64,
    /// The client's latency percentiles.
    client: Latency,
}

/// `requests` sequential requests to a node of their own, after 50 of warm-up on another (in
/// which the precise timer learns its lead for this length of sleep).
fn sequential(timer: Timer, service: Duration, requests: usize) -> anyhow::Result<Served> {
    closed_loop(&*client(&node(timer, service, 1)?)?, &workload(1, 50, None))?;
    let nodes = node(timer, service, 1)?;
    let pool = client(&nodes)?;
    let run = closed_loop(&*pool, &workload(1, requests, None))?;
    anyhow::ensure!(
        run.failed() == 0,
        "{} calibration requests failed",
        run.failed()
    );
    let node = &nodes.nodes()[0];
    let quantile = |q| {
        node.served_quantile(q)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let mut spans: Vec<f64> = node
        .served(0, usize::MAX)
        .entries
        .iter()
        .map(|e| e.end_ns.saturating_sub(e.arrival_ns) as f64 / 1e6)
        .collect();
    spans.sort_by(f64::total_cmp);
    Ok(Served {
        node: (quantile(0.5), quantile(0.99)),
        span: spans.get(spans.len() / 2).copied().unwrap_or(f64::NAN),
        client: Latency::of(&run.latency),
    })
}

/// Requests of the sequential run at `service`: about 3 s of it, 10 to 300 requests.
fn requests_at(service: Duration) -> usize {
    (3.0 / service.as_secs_f64()).clamp(10.0, 300.0) as usize
}

/// CPU time of this process's live threads, and of the precise timer's thread, in ns.
fn cpu_ns() -> (u64, u64) {
    let ns = |d: Duration| d.as_nanos() as u64;
    (
        ns(crate::machine::threads_cpu(|_| true)),
        ns(crate::machine::threads_cpu(|name| name == "mock-timer")),
    )
}

/// At 1,000 requests/s for 3 s: process CPU per request (us) and the timer thread's share of one
/// core (%).
fn cpu_at_1000(timer: Timer) -> anyhow::Result<(f64, f64)> {
    let nodes = node(timer, Duration::from_millis(1), 16)?;
    let pool = client(&nodes)?;
    closed_loop(&*pool, &workload(4, 200, None))?;
    let before = cpu_ns();
    let run = open_loop(&*pool, 1000.0, 3000, 16)?;
    let after = cpu_ns();
    let requests = run.records.len().max(1) as f64;
    let per_request_us = (after.0 - before.0) as f64 / 1e3 / requests;
    let timer_share = 100.0 * (after.1 - before.1) as f64 / run.elapsed.as_nanos().max(1) as f64;
    Ok((per_request_us, timer_share))
}

/// How long a capacity run counts answers: at least 2 s and 250 service times. A capped run
/// counts whole answers inside the window, and the first answer comes a client round trip after
/// the window opens, so the window holds one service fewer than fits: 1% of a 2 s window at
/// 20 ms, a counting artifact the longer window cuts to 0.4%.
fn capacity_window(service: Duration) -> Duration {
    Duration::from_secs(2).max(service * 250)
}

/// Closed-loop throughput of one one-slot node over its configured capacity.
fn capacity_ratio(timer: Timer, service: Duration, window: Duration) -> anyhow::Result<f64> {
    let nodes = node(timer, service, 1)?;
    let pool = client(&nodes)?;
    let run = closed_loop(&*pool, &workload(4, usize::MAX / 2, Some(window)))?;
    Ok(run.throughput() * service.as_secs_f64())
}

/// The OS's own floor: how late a plain thread with a 1 ns timer slack wakes from
/// `thread::sleep(service)`, p50 and p99 in microseconds over `count` sleeps. No timer in the
/// node can end a sleep with less lateness than this (except by firing early).
fn os_floor(service: Duration, count: usize) -> (f64, f64) {
    std::thread::spawn(move || {
        mock_ollama::timer::lower_timer_slack();
        // Nanoseconds up to a minute: `saturating_record` clamps, it does not resize.
        // proven: constant bounds that `new_with_bounds` accepts (1 <= low, high >= 2 * low).
        let mut late = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
            .expect("valid bounds");
        for _ in 0..count {
            let started = std::time::Instant::now();
            std::thread::sleep(service);
            let over = started.elapsed().saturating_sub(service);
            late.saturating_record(over.as_nanos() as u64);
        }
        let us = |q| late.value_at_quantile(q) as f64 / 1e3;
        (us(0.5), us(0.99))
    })
    .join()
    .unwrap_or((f64::NAN, f64::NAN))
}

/// The p50 latency (ms) of one client sending one request at a time to a four-slot node while
/// three other clients keep three of its slots busy, so the probe never queues but the node,
/// the runtime and the CPUs are not idle.
fn probe_under_load(service: Duration) -> anyhow::Result<f64> {
    let nodes = node(Timer::Precise, service, 4)?;
    let (background, probe) = (client(&nodes)?, client(&nodes)?);
    let requests = requests_at(service);
    let window = service * requests as u32 + Duration::from_millis(500);
    let latency = std::thread::scope(|scope| {
        let busy =
            scope.spawn(|| closed_loop(&*background, &workload(3, usize::MAX / 2, Some(window))));
        // Let the background reach its steady state before the probe starts.
        std::thread::sleep(Duration::from_millis(200));
        let run = closed_loop(&*probe, &workload(1, requests, None));
        let busy = busy
            .join()
            .map_err(|_| anyhow::anyhow!("background load panicked"))?;
        anyhow::ensure!(busy?.failed() == 0, "background requests failed");
        let run = run?;
        anyhow::ensure!(run.failed() == 0, "{} probe requests failed", run.failed());
        Ok(Latency::of(&run.latency).p50)
    })?;
    Ok(latency)
}

/// The machine's floor for a reply after an idle wait: a plain thread serving raw TCP (64-byte
/// messages, `TCP_NODELAY`, 1 ns timer slack) that sleeps `service` before each reply, and a
/// client thread sending one message at a time. Returns the client's p50 round trip in
/// microseconds over `count` messages after 20 of warm-up. No server on this machine can answer
/// after such a wait with less lateness than this, HTTP or not.
fn reply_floor(service: Duration, count: usize) -> anyhow::Result<f64> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        mock_ollama::timer::lower_timer_slack();
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let mut message = [0u8; 64];
        while stream.read_exact(&mut message).is_ok() {
            std::thread::sleep(service);
            stream.write_all(&message)?;
        }
        Ok(())
    });
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut message = [0u8; 64];
    let mut rtts = Vec::with_capacity(count);
    for i in 0..count + 20 {
        let started = std::time::Instant::now();
        stream.write_all(&message)?;
        stream.read_exact(&mut message)?;
        if i >= 20 {
            rtts.push(started.elapsed().as_secs_f64() * 1e6);
        }
    }
    drop(stream);
    let _ = server.join();
    rtts.sort_by(f64::total_cmp);
    Ok(rtts.get(rtts.len() / 2).copied().unwrap_or(f64::NAN))
}

/// Rows as the scenario's parts add them.
#[derive(Default)]
struct Out {
    rows: Vec<Row>,
}

/// The scenario, as the registry ([`super::SCENARIOS`]) lists it.
pub struct Calibrate;

impl super::ScenarioSpec for Calibrate {
    fn name(&self) -> &'static str {
        "calibrate"
    }
    fn title(&self) -> &'static str {
        "Service-time calibration: configured vs served, per timer"
    }
    fn question(&self) -> &'static str {
        "Does a node take the service time it was told to take, from 250 us to 1 s, does one node deliver its configured capacity, and what CPU does timing cost?"
    }
    fn measure(&self, ctx: &Ctx) -> anyhow::Result<Findings> {
        run(ctx)
    }
    fn reword(&self, result: &crate::results::ScenarioResult) -> Option<Vec<String>> {
        Some(verdicts::verdicts(&result.rows))
    }
}

/// Runs the scenario.
fn run(ctx: &Ctx) -> anyhow::Result<Findings> {
    let o = &ctx.opts;
    anyhow::ensure!(o.external.is_empty(), "calibrate starts its own nodes");
    let bar = ctx.progress(
        "calibrate",
        1 + TIMERS.len() * (SERVICE_US.len() + CAPACITY_MS.len() + 2),
    );
    let mut out = Out::default();
    bar.set_message("OS wake-up floor");
    os_floors(&mut out);
    bar.inc(1);
    for (timer, name) in TIMERS {
        accuracy(timer, name, &bar, &mut out)?;
        capacity(timer, name, &bar, &mut out)?;
        bar.set_message(format!("{name}: CPU at 1,000 req/s"));
        cpu(timer, name, &mut out)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let params = json!({
        "service_us": SERVICE_US, "capacity_service_ms": CAPACITY_MS, "capacity_repeats": CAPACITY_REPEATS, "timers": ["precise", "tokio"],
        "sequential_requests": "about 3 s per setting, 10 to 300, after 50 warm-up", "client": "bare pool, one keep-alive connection",
        "served_time": "client latency minus the p50 client latency at 0 service time",
        "bounds": { "p50": "max(2%, 50 us)", "p99": "max(10%, 200 us)" },
    });
    Ok(Findings {
        repeats: 1,
        params,
        verdicts: verdicts::verdicts(&out.rows),
        rows: out.rows,
        accounting: Accounting::default(),
    })
}

/// Where a client's extra time at one setting goes, in microseconds over the configured time.
struct ClientView {
    /// The client's p50 minus its p50 at zero service time, minus the configured time.
    client: f64,
    /// The same while three other clients keep three more of the node's slots busy.
    loaded: f64,
    /// Of it, the node's own span (arrival to answer) over its span at zero service time.
    node: f64,
    /// The same for a plain blocking server on raw TCP: the machine's floor.
    floor: f64,
}

fn client_view_at(us: u64, served: &Served, idle: &Served) -> anyhow::Result<ClientView> {
    let configured = us as f64;
    let floor = reply_floor(Duration::from_micros(us), 300)? - reply_floor(Duration::ZERO, 300)?;
    let loaded = probe_under_load(Duration::from_micros(us))?;
    Ok(ClientView {
        client: (served.client.p50 - idle.client.p50) * 1e3 - configured,
        loaded: (loaded - idle.client.p50) * 1e3 - configured,
        node: (served.span - idle.span) * 1e3 - configured,
        floor: floor - configured,
    })
}

impl ClientView {
    fn rows(&self, us: u64) -> Vec<Row> {
        let case = format!("configured {}", pretty(us));
        let row = |metric: &str, value: f64, note: &str| {
            Row::new(
                "client-view",
                case.clone(),
                metric,
                "us",
                Summary::of(vec![value]),
            )
            .note(note.to_owned())
        };
        vec![
            row(
                "client_extra",
                self.client,
                "bare-pool client: latency minus its latency at 0 service, minus the service",
            ),
            row(
                "client_extra_loaded",
                self.loaded,
                "the same while three other clients keep three more slots busy",
            ),
            row(
                "node_extra",
                self.node,
                "the node's own span (served log, arrival to answer), likewise",
            ),
            row(
                "floor_extra",
                self.floor,
                "a plain blocking server on raw TCP, likewise: this machine's floor",
            ),
        ]
    }
}

/// The machine's own wake-up lateness, which no timer can beat.
fn os_floors(out: &mut Out) {
    for us in [250, 1_000] {
        let (p50, p99) = os_floor(Duration::from_micros(us), 1_000);
        for (metric, value) in [("late_p50", p50), ("late_p99", p99)] {
            out.rows.push(
                Row::new(
                    "os-floor",
                    format!("thread::sleep({})", pretty(us)),
                    metric,
                    "us",
                    Summary::of(vec![value]),
                )
                .note("a plain thread with 1 ns timer slack: the machine's own wake-up lateness"),
            );
        }
    }
}

/// The node's served time against the configured one at every setting, for one timer.
fn accuracy(timer: Timer, name: &str, bar: &ProgressBar, out: &mut Out) -> anyhow::Result<()> {
    bar.set_message(format!("{name}: client cost"));
    let idle = sequential(timer, Duration::ZERO, 300)?;
    let overhead = idle.client.p50;
    bar.inc(1);
    for us in SERVICE_US {
        let service = Duration::from_micros(us);
        bar.set_message(format!("{name}: {us} us"));
        let served = sequential(timer, service, requests_at(service))?;
        bar.inc(1);
        let (p50, p99) = served.node;
        let by_client = (served.client.p50 - overhead, served.client.p99 - overhead);
        out.rows
            .extend(setting_rows(name, us, (p50, p99), by_client, overhead));
        if CLIENT_VIEW_US.contains(&us) && timer == Timer::Precise {
            let view = client_view_at(us, &served, &idle)?;
            out.rows.extend(view.rows(us));
        }
    }
    Ok(())
}

/// One node's throughput over its configured capacity, for one timer.
fn capacity(timer: Timer, name: &str, bar: &ProgressBar, out: &mut Out) -> anyhow::Result<()> {
    for ms in CAPACITY_MS {
        bar.set_message(format!("{name}: capacity at {ms} ms"));
        let service = Duration::from_millis(ms);
        let repeats = (0..CAPACITY_REPEATS)
            .map(|_| capacity_ratio(timer, service, capacity_window(service)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let summary = Summary::of(repeats);
        let case = format!("1 slot, {ms} ms, 4 workers");
        out.rows
            .push(Row::new(name, case, "capacity_ratio", "x", summary).ideal(1.0));
        bar.inc(1);
    }
    Ok(())
}

/// The whole process's CPU per request at 1,000 requests/s, and the timer thread's share.
fn cpu(timer: Timer, name: &str, out: &mut Out) -> anyhow::Result<()> {
    let (per_request, share) = cpu_at_1000(timer)?;
    let case = "1,000 req/s, 1 ms, 16 slots";
    let row = |metric, unit, value| Row::new(name, case, metric, unit, Summary::of(vec![value]));
    out.rows.push(row("cpu_per_request", "us", per_request));
    if timer == Timer::Precise {
        out.rows.push(row("timer_thread_core_share", "%", share));
    }
    Ok(())
}

/// The node's p50 and p99 against the configured time, and the client's view beside them, in
/// microseconds (the report's milliseconds have one decimal, too coarse at 250 us).
fn setting_rows(
    timer: &str,
    us: u64,
    (p50, p99): (f64, f64),
    client: (f64, f64),
    overhead: f64,
) -> Vec<Row> {
    let configured = us as f64;
    let case = format!("configured {}", pretty(us));
    let one = |ms: f64| Summary::of(vec![ms * 1e3]);
    vec![
        Row::new(timer, case.clone(), "served_p50", "us", one(p50))
            .ideal(configured)
            .note("as the node measured it (service start to the end of the sleep)"),
        Row::new(timer, case.clone(), "served_p99", "us", one(p99)).ideal(configured),
        Row::new(timer, case, "client_p50", "us", one(client.0))
            .ideal(configured)
            .note(format!(
                "as a client sees it, minus its {:.0} us cost at 0 service time; p99 {:.0} us",
                overhead * 1e3,
                client.1 * 1e3
            )),
    ]
}

fn pretty(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{} s", us / 1_000_000)
    } else if us >= 1_000 && us.is_multiple_of(1_000) {
        format!("{} ms", us / 1_000)
    } else if us >= 1_000 {
        format!("{:.1} ms", us as f64 / 1_000.0)
    } else {
        format!("{us} us")
    }
}
