//! `harness client` against drivers written here: this test binary, re-run as the driver with
//! `OPB_TEST_DRIVER=MODE`, speaks the driver protocol over plain HTTP/1.1 and misbehaves as MODE
//! says (sends a request twice, drops one, reports statistics that disagree with the nodes,
//! crashes, prints malformed lines, hangs, sends nothing). Each misbehaviour must land in its
//! class, and the well-behaved driver must score clean, so `cargo test` needs nothing but crates.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, SystemTime};

use harness::client::{Driver, DriverRun, Exit};
use harness::gateway::{self, Audit, Nodes, Settings, System};
use mock_ollama::{MockCluster, NodeConfig};

/// The variable that makes this binary a driver.
const MODE: &str = "OPB_TEST_DRIVER";
const REQUESTS: u64 = 24;

/// The driver's entry point, not a test (so ignored in a normal run): `try_measured` re-runs
/// this binary with only this function selected, `--ignored`, and the variable set.
#[test]
#[ignore = "the test drivers' entry point, run by the other tests"]
fn driver() {
    if let Ok(mode) = std::env::var(MODE) {
        drive(&mode);
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the harness"))
}

/// Sends `OPB_REQUESTS` embeddings round-robin over `OPB_NODES` from `OPB_WORKERS` threads and
/// reports them, misbehaving as `mode` says.
fn drive(mode: &str) {
    let nodes: Vec<String> = env("OPB_NODES").split(',').map(str::to_owned).collect();
    let (workers, requests): (u64, u64) = (
        env("OPB_WORKERS").parse().expect("workers"),
        env("OPB_REQUESTS").parse().expect("requests"),
    );
    let run_id = env("OPB_RUN_ID");
    if mode == "broken" {
        eprintln!("cannot import the library");
        std::process::exit(2);
    }
    if mode == "hang" && requests > 0 {
        std::thread::sleep(Duration::from_secs(3600));
    }
    if mode == "silent" {
        return;
    }
    let lines: Vec<(u64, bool, f64, f64, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (nodes, run_id) = (&nodes, &run_id);
                s.spawn(move || {
                    let mut out = Vec::new();
                    for n in (w..requests).step_by(workers as usize) {
                        if mode == "crash" && n >= requests / 2 {
                            std::process::exit(3);
                        }
                        if mode == "drop" && n == 1 {
                            continue;
                        }
                        let node = (n as usize) % nodes.len();
                        let at = unix_ms();
                        let ok = embed(&nodes[node], &format!("{run_id}-{n}"));
                        if mode == "twice" && n == 0 {
                            embed(&nodes[(node + 1) % nodes.len()], &format!("{run_id}-{n}"));
                        }
                        out.push((n, ok, unix_ms() - at, at, node));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker"))
            .collect()
    });
    let mut report = String::new();
    let mut used = vec![0u64; nodes.len()];
    for (n, ok, latency, at, node) in &lines {
        report += &format!(
            "{{\"id\":\"{run_id}-{n}\",\"ok\":{ok},\"latency_ms\":{latency},\"at_ms\":{at}}}\n"
        );
        used[*node] += u64::from(*ok);
    }
    if mode == "malformed" {
        report += "request 3 done\n{\"id\": 7}\n";
    }
    let ok = lines.iter().filter(|l| l.1).count() as u64;
    let total = (lines.len() as u64).saturating_sub(u64::from(mode == "lying"));
    let nodes_used: Vec<String> = nodes
        .iter()
        .zip(&used)
        .map(|(url, n)| format!("\"{}\":{n}", url.trim_start_matches("http://")))
        .collect();
    report += &format!(
        "{{\"stats\":{{\"total_requests\":{total},\"successful_requests\":{ok},\"failed_requests\":{},\"nodes_used\":{{{}}}}}}}\n",
        lines.len() as u64 - ok,
        nodes_used.join(",")
    );
    std::fs::write(env("OPB_REPORT"), report).expect("report written");
}

fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// One `/api/embed` to `node` marked with `id`; whether it answered 200.
fn embed(node: &str, id: &str) -> bool {
    let host = node.trim_start_matches("http://");
    let body = format!(
        "{{\"model\":\"{}\",\"input\":\"test [rid:{id}]\"}}",
        env("OPB_MODEL")
    );
    let Ok(mut stream) = TcpStream::connect(host) else {
        return false;
    };
    let request = format!(
        "POST /api/embed HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut answer = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

/// The distribution cell on two fast nodes with this binary as a driver in `mode`: the cell's
/// audit and the driver's one run.
fn measured(mode: &str, timeout: Duration) -> (Audit, DriverRun) {
    let result = measured_cells(mode, timeout, &["distribution"]);
    let cell = result
        .cells
        .iter()
        .find(|c| c.name == "distribution")
        .expect("cell");
    let runs = result.driver_runs;
    assert_eq!(runs.len(), 2, "the start-up run and the cell's");
    assert_eq!((runs[0].run_id.as_str(), runs[0].requests), ("startup", 0));
    (cell.audit.clone().expect("audited"), runs[1].clone())
}

/// `cells` on two fast nodes with this binary as a driver in `mode`.
fn measured_cells(mode: &str, timeout: Duration, cells: &[&str]) -> gateway::GatewayResult {
    try_measured(mode, timeout, cells).expect("measured")
}

/// `cells` with `command` as the driver.
fn measured_command(label: &str, command: &str, cells: &[&str]) -> gateway::GatewayResult {
    run_driver(label, command, ENOUGH, cells).expect("measured")
}

/// [`measured_cells`], or why the measurement stopped.
fn try_measured(
    mode: &str,
    timeout: Duration,
    cells: &[&str],
) -> anyhow::Result<gateway::GatewayResult> {
    let exe = std::env::current_exe().expect("this binary");
    let command = format!(
        "{MODE}={mode} '{}' --exact driver --ignored --nocapture --test-threads=1",
        exe.display()
    );
    run_driver(mode, &command, timeout, cells)
}

/// `cells` on two fast nodes with `command` as the driver.
fn run_driver(
    label: &str,
    command: &str,
    timeout: Duration,
    cells: &[&str],
) -> anyhow::Result<gateway::GatewayResult> {
    let nodes = MockCluster::start(vec![
        NodeConfig::with_latency(Duration::from_micros(200));
        2
    ])
    .expect("nodes");
    let dir = std::env::temp_dir().join(format!("opb-client-{label}-{}", std::process::id()));
    let settings = Settings {
        target: "driver".into(),
        nodes: 2,
        port: 0,
        api: gateway::Api::Ollama,
        label: label.into(),
        workers: 3,
        requests: REQUESTS,
        service: Duration::from_micros(200),
        slots: 1,
        speeds: Vec::new(),
        error_rates: Vec::new(),
        repeats: 1,
        ready_timeout: Duration::ZERO,
        cells: cells
            .iter()
            .map(|c| gateway::cells::named(c).expect("cell"))
            .collect(),
        phase: Duration::from_millis(300),
        repeat_inputs: false,
        stall: Duration::from_millis(200),
        headers: Default::default(),
        ready: gateway::Readiness::for_api(gateway::Api::Ollama),
        workload: Default::default(),
        system: System::Driver(Driver::new(command, timeout, &dir)),
    };
    gateway::check(&settings).expect("a client's cells");
    let result = gateway::measure(&settings, &Nodes::Embedded(&nodes));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

const ENOUGH: Duration = Duration::from_secs(60);

#[test]
fn a_well_behaved_driver_scores_clean() {
    let (audit, run) = measured("good", ENOUGH);
    assert!(audit.clean(), "{audit:?}");
    assert_eq!(audit.served_once, REQUESTS);
    assert_eq!((audit.nodes[0].served, audit.nodes[1].served), (12, 12));
    assert_eq!(run.exit, Exit::Exited { code: Some(0) });
    assert_eq!(
        (
            run.lines.requests,
            run.lines.unreported,
            run.lines.malformed
        ),
        (REQUESTS, 0, 0)
    );
    let stats = run.stats.expect("stats checked");
    assert_eq!(stats.differences, 0, "{stats:?}");
}

#[test]
fn a_request_sent_twice_is_served_more_than_once() {
    let (audit, run) = measured("twice", ENOUGH);
    assert_eq!(audit.served_more_than_once, 1, "{audit:?}");
    assert_eq!(audit.served_once, REQUESTS - 1);
    // The library counted one request where the nodes served two: its per-node counts are off.
    assert!(run.stats.expect("stats").differences > 0);
}

#[test]
fn a_dropped_request_is_unreported_and_never_served() {
    let (audit, run) = measured("drop", ENOUGH);
    assert_eq!(audit.never_served, 1, "{audit:?}");
    assert_eq!(run.lines.unreported, 1);
}

#[test]
fn statistics_that_lose_an_update_differ_from_the_nodes() {
    let (audit, run) = measured("lying", ENOUGH);
    assert!(
        audit.clean(),
        "the requests themselves were fine: {audit:?}"
    );
    let stats = run.stats.expect("stats");
    assert_eq!(stats.differences, 1, "total 1 apart: {stats:?}");
    assert_eq!(stats.library.total_requests, Some(REQUESTS - 1));
}

#[test]
fn a_crash_mid_run_is_its_exit_code_and_the_requests_it_left() {
    let (audit, run) = measured("crash", ENOUGH);
    assert_eq!(run.exit, Exit::Exited { code: Some(3) });
    assert_eq!(
        run.lines.unreported, REQUESTS,
        "it died before writing its report"
    );
    assert!(
        audit.never_served + audit.failed_but_served == REQUESTS,
        "{audit:?}"
    );
    assert!(run.stats.is_none());
}

#[test]
fn malformed_lines_are_counted_and_shown() {
    let (audit, run) = measured("malformed", ENOUGH);
    assert!(audit.clean(), "{audit:?}");
    assert_eq!(run.lines.malformed, 2);
    assert_eq!(run.lines.first_malformed.as_deref(), Some("request 3 done"));
}

#[test]
fn a_driver_that_hangs_is_killed_at_the_timeout() {
    let (audit, run) = measured("hang", Duration::from_secs(2));
    assert_eq!(run.exit, Exit::TimedOut { after_ms: 2000 });
    assert_eq!(
        (audit.never_served, run.lines.unreported),
        (REQUESTS, REQUESTS)
    );
}

#[test]
fn a_driver_that_sends_nothing_leaves_every_request_unserved() {
    let (audit, run) = measured("silent", ENOUGH);
    assert_eq!(run.exit, Exit::Exited { code: Some(0) });
    assert_eq!(
        (audit.never_served, run.lines.unreported),
        (REQUESTS, REQUESTS)
    );
    assert!(run.stats.is_none());
}

/// The two-node cell tells the driver one node, then both; a fault cell's run is sized from the
/// capacity ideal and its refused requests are the driver's failures, joined with the nodes.
#[test]
fn the_two_node_and_fault_cells_run_through_a_driver() {
    let result = measured_cells("good", ENOUGH, &["two-node", "node-refuse"]);
    let runs = &result.driver_runs;
    let told: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(told, ["startup", "one-node0", "two-node0", "node-refuse0"]);
    let runs = &runs[1..];
    let one = runs[0].stats.as_ref().expect("stats");
    assert_eq!(
        one.nodes.iter().map(|n| n.served).collect::<Vec<_>>(),
        [REQUESTS, 0]
    );
    let two = runs[1].stats.as_ref().expect("stats");
    assert_eq!(
        two.nodes.iter().map(|n| n.served).collect::<Vec<_>>(),
        [12, 12]
    );
    let cell = result
        .cells
        .iter()
        .find(|c| c.name == "two-node")
        .expect("cell");
    assert!(cell.figures.contains_key("speedup"));
    let fault = result
        .cells
        .iter()
        .find(|c| c.name == "node-refuse")
        .expect("cell");
    let report = &fault.faults[0];
    let audit = &report.audit;
    assert_eq!(audit.requests, runs[2].requests);
    assert!(
        runs[2].requests > REQUESTS,
        "sized by the ideal: {}",
        runs[2].requests
    );
    // Nothing is lost: every request the driver was asked for is in one class.
    let classes = audit.served_once
        + audit.served_more_than_once
        + audit.failed_but_served
        + audit.never_served
        + audit.answered_without_node;
    assert_eq!(classes, audit.requests, "{audit:?}");
}

/// A driver that cannot start (its library fails to import) stops the measurement at its
/// start-up run with its exit and output, instead of failing every run after it.
#[test]
fn a_driver_that_cannot_start_stops_the_measurement_with_its_output() {
    let error = try_measured("broken", ENOUGH, &["distribution"]).expect_err("refused");
    let text = format!("{error:#}");
    assert!(text.contains("code: Some(2)"), "{text}");
    assert!(text.contains("cannot import the library"), "{text}");
}

/// Our own pool as the driver (`harness drive`): its statistics agree with the nodes while the
/// last node answers 5% of requests with 500 and the pool fails over. With `nodes_used`
/// counting a node's attempts, as it did before it counted its answers as SOLLOL's does, this
/// test fails (11 differences in the run that showed it).
#[test]
fn our_pool_as_a_driver_agrees_with_the_nodes_under_failures() {
    let command = format!("'{}' drive --variant atomic", env!("CARGO_BIN_EXE_harness"));
    let result = measured_command("pool-atomic", &command, &["node-errors"]);
    let run = result
        .driver_runs
        .iter()
        .find(|r| r.run_id == "node-errors0")
        .expect("the fault run");
    let stats = run.stats.as_ref().expect("the atomic pool keeps stats");
    assert!(
        result.cells[1]
            .audit
            .as_ref()
            .is_some_and(|a| a.retries > 0),
        "the pool failed over"
    );
    assert_eq!(stats.differences, 0, "{stats:?}");
    assert_eq!(stats.sent, run.requests);
}
