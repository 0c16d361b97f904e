//! The command line rejects bad input with a clear error instead of panicking, and measures what
//! its flags name.

use std::process::Command;

fn harness(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .output()
        .expect("harness runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_scenario_is_an_error() {
    let (code, stderr) = harness(&["run", "warp-speed", "--no-progress"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("unknown scenario \"warp-speed\""),
        "{stderr}"
    );
}

#[test]
fn zero_workers_and_bad_durations_are_errors() {
    let (code, stderr) = harness(&["run", "two-node", "--workers", "0"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--workers must be at least 1"), "{stderr}");
    let (code, stderr) = harness(&["run", "two-node", "--service", "fast"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("invalid duration"), "{stderr}");
}

#[test]
fn report_without_results_is_an_error() {
    let dir = std::env::temp_dir().join(format!("harness-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (code, stderr) = harness(&["report", "--out", dir.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no scenario results"), "{stderr}");
}

#[test]
fn a_node_that_is_not_a_url_is_an_error() {
    let (code, stderr) = harness(&[
        "run",
        "plan-test1",
        "--node",
        "ftp://x:1",
        "--node",
        "ftp://y:2",
        "--repeats",
        "1",
        "--no-progress",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("invalid node URL"), "{stderr}");
}

#[test]
fn too_few_external_nodes_is_an_error() {
    let (code, stderr) = harness(&[
        "run",
        "plan-test1",
        "--node",
        "http://127.0.0.1:1",
        "--repeats",
        "1",
        "--no-progress",
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("needs 2 node(s), --node gave 1"),
        "{stderr}"
    );
}

#[test]
fn the_bare_client_refuses_a_strategy_it_cannot_follow() {
    let (code, stderr) = harness(&[
        "run",
        "two-node",
        "--variants",
        "bare",
        "--strategy",
        "least_loaded",
        "--no-progress",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("routes round-robin only"), "{stderr}");
}

#[test]
fn zero_repeats_probe_interval_and_cap_are_errors_naming_the_flag() {
    for (args, flag) in [
        (&["run", "two-node", "--repeats", "0"][..], "--repeats"),
        (&["run", "two-node", "--nodes", "0"], "--nodes"),
        (
            &["run", "two-node", "--probe-interval", "0"],
            "--probe-interval",
        ),
        (&["run", "two-node", "--cap", "0s"], "--cap"),
        (&["run", "two-node", "--variants", "quantum"], "--variants"),
    ] {
        let (code, stderr) = harness(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?} must name {flag}: {stderr}");
    }
}

#[test]
fn a_mock_node_that_is_not_there_is_a_clear_error_and_excludes_nodes() {
    let target = ["gateway", "--target", "http://127.0.0.1:9", "--no-progress"];
    let node = ["--mock-node", "http://127.0.0.1:9"];
    let (code, stderr) = harness(&[&target[..], &node[..], &["--nodes", "2"]].concat());
    assert_eq!(code, 2);
    assert!(stderr.contains("exclude each other"), "{stderr}");
    let (code, stderr) = harness(&[&target[..], &node[..]].concat());
    assert_eq!(code, 2);
    assert!(
        stderr.contains("does not answer as a mock-ollama node"),
        "{stderr}"
    );
}

#[test]
fn peak_measures_the_named_http_client_only() {
    let dir = std::env::temp_dir().join(format!("harness-peak-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args([
            "run",
            "peak",
            "--variants",
            "atomic",
            "--http-client",
            "blocking",
        ])
        .args([
            "--workers",
            "2",
            "--requests",
            "40",
            "--repeats",
            "1",
            "--no-progress",
        ])
        .arg("--out")
        .arg(&dir)
        .output()
        .expect("harness runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.join("peak.json")).expect("peak.json written");
    let result: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let clients: std::collections::BTreeSet<&str> = result["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["variant"].as_str())
        .collect();
    assert_eq!(
        clients,
        [
            "atomic/blocking",
            "engine",
            "engine+decode",
            "threads+decode"
        ]
        .into(),
        "the named client only, beside the engine's rows"
    );
    assert_eq!(result["params"]["http_client"], "blocking");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_http_client_is_an_error_listing_the_known_ones() {
    let (code, stderr) = harness(&["run", "peak", "--http-client", "turbo"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("per-caller") && stderr.contains("blocking"),
        "{stderr}"
    );
}

/// A flag a command does not use is not offered there: refused, not silently ignored.
#[test]
fn flags_a_command_does_not_use_are_refused() {
    for args in [
        &["report", "--workers", "4"][..],
        &[
            "load",
            "--url",
            "http://127.0.0.1:9",
            "--strategy",
            "least_loaded",
        ],
        &[
            "gateway",
            "--target",
            "http://127.0.0.1:9",
            "--variants",
            "atomic",
        ],
        &["gate", "--cap", "4s"],
        // Before the command: the main job's flags, which `run` does not inherit.
        &["--workers", "4", "run", "two-node"],
    ] {
        let (code, stderr) = harness(args);
        assert_eq!(code, 2, "{args:?} must be refused: {stderr}");
        assert!(
            stderr.contains("unexpected argument") || stderr.contains("cannot be used with"),
            "{args:?}: {stderr}"
        );
    }
}
