//! Flag values the nodes cannot run with exit 2 with a message naming the flag, before any node
//! starts.

use std::process::Command;

fn mock_ollama(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mock-ollama"))
        .args(args)
        .output()
        .expect("mock-ollama runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn impossible_flag_values_exit_2_naming_the_flag() {
    for (args, flag) in [
        (&["--speed", "0"][..], "--speed"),
        (&["--speed", "1,-2"], "--speed"),
        (&["--error-rate", "1.5"], "--error-rate"),
        (&["--stall-rate", "-0.1"], "--stall-rate"),
        (&["--reset-rate", "nan"], "--reset-rate"),
        (&["--parallel", "0"], "--parallel"),
        (&["--nodes", "0"], "--nodes"),
        (&["--port", "65535", "--nodes", "2"], "--port"),
        (&["--jitter", "gaussian"], "--jitter"),
        (&["--queue", "fifo"], "--queue"),
        (&["--latency", "fast"], "--latency"),
        (&["--nodes", "2", "--speed", "1,1,1"], "--speed"),
        (&["--max-loaded-models", "0"], "--max-loaded-models"),
        (&["--vram", "lots"], "--vram"),
        (&["--preset", "gpu99"], "--preset"),
        (&["--preset", "gpu16", "--vram", "8GiB"], "--vram"),
        (&["--model", "x,size=lots"], "--model"),
    ] {
        let (code, stderr) = mock_ollama(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?} must name {flag}: {stderr}");
    }
}
