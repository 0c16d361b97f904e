//! Running a gateway under `harness gateway --cmd`: its whole process group stopped, its death
//! noticed with its output, and a gateway that never gets ready reported with its last output.
//! Uses only `sh` and `sleep`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use harness::gateway::process::{Bindings, Gateway};

fn dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("harness-gw-{name}-{}", std::process::id()))
}

fn bindings(name: &str) -> Bindings {
    Bindings {
        dir: dir(name),
        port: 1,
        node_urls: vec!["http://127.0.0.1:2".into()],
    }
}

/// Waits (bounded) until `check` holds: the test waits on observed state, not on time.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether `pid` is a live process (a zombie awaiting its reaper counts as gone).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|rest| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[test]
fn stopping_the_gateway_stops_its_whole_process_group() {
    let b = bindings("group");
    let gateway =
        Gateway::start("sleep 60 & echo $! > {dir}/child.pid; wait", None, &b).expect("started");
    let pid_file = b.dir.join("child.pid");
    eventually("the child wrote its pid", || read_pid(&pid_file).is_some());
    let child = read_pid(&pid_file).expect("pid");
    assert!(alive(child));
    drop(gateway);
    eventually("the forked child was stopped with the group", || {
        !alive(child)
    });
}

#[test]
fn a_gateway_that_exits_is_reported_with_its_status_and_output() {
    let b = bindings("exit");
    let mut gateway =
        Gateway::start("echo listening on {port}; echo bye; exit 3", None, &b).expect("started");
    let mut error = String::new();
    eventually("the exit was noticed", || match gateway.check_alive() {
        Ok(()) => false,
        Err(e) => {
            error = e.to_string();
            true
        }
    });
    assert!(error.contains("exit status: 3"), "{error}");
    assert!(
        error.contains("listening on 1") && error.contains("bye"),
        "{error}"
    );
}

#[test]
fn a_config_template_is_rendered_before_the_command_runs() {
    let b = bindings("template");
    std::fs::create_dir_all(&b.dir).unwrap();
    let template = b.dir.join("t.conf");
    std::fs::write(&template, "listen {port}\nserver {node_hostport}\n").unwrap();
    let mut gateway = Gateway::start("cat {config}; exit 0", Some(&template), &b).expect("started");
    eventually("it ran", || gateway.check_alive().is_err());
    assert_eq!(gateway.last_output(5), "listen 1\nserver 127.0.0.1:2");
}

#[test]
fn a_gateway_that_never_gets_ready_fails_the_run_with_its_output() {
    let (code, stderr) = gateway_run("ready", &["--cmd", "echo starting up; sleep 30"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("did not answer GET /api/version"),
        "{stderr}"
    );
    assert!(
        stderr.contains("starting up"),
        "the gateway's output is quoted: {stderr}"
    );
}

/// Runs `harness gateway` with `args` after a dead target, one node, a short readiness wait.
fn gateway_run(name: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = dir(name);
    let result = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args([
            "gateway",
            "--target",
            "http://127.0.0.1:9",
            "--nodes",
            "1",
            "--port",
            "0",
            "--ready-timeout",
            "300ms",
        ])
        .args(args)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("harness runs");
    (
        result.status.code(),
        String::from_utf8_lossy(&result.stderr).into_owned(),
    )
}

#[test]
fn a_bad_header_is_refused_before_the_gateway_starts() {
    for (header, expected) in [
        ("X-Request-ID: mine", "sets this header itself"),
        ("Host: elsewhere", "sets this header itself"),
        ("no colon here", "is not `Name: value`"),
        ("X-Tenant: {tenant}", "unknown placeholder {tenant}"),
    ] {
        let marker = dir("bad-header").join("started");
        let cmd = format!("touch {}; sleep 30", marker.display());
        let (code, stderr) = gateway_run("bad-header", &["--header", header, "--cmd", &cmd]);
        assert_eq!(code, Some(2), "{header}: {stderr}");
        assert!(stderr.contains(expected), "{header}: {stderr}");
        assert!(!marker.exists(), "{header}: the gateway was started");
    }
}

#[test]
fn header_values_are_redacted_in_the_printed_command_and_the_gateways_output() {
    let (code, stderr) = gateway_run(
        "redact",
        &[
            "--header",
            "Authorization: Bearer sk-very-secret-1",
            "--cmd",
            "echo my key is sk-very-secret-1; KEY=sk-very-secret-1 sleep 30",
        ],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("did not answer GET /api/version"),
        "{stderr}"
    );
    assert!(stderr.contains("my key is <redacted>"), "{stderr}");
    assert!(!stderr.contains("sk-very-secret-1"), "{stderr}");
}
