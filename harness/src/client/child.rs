//! The driver's process: started in a group of its own, waited for up to the timeout, its whole
//! group killed after every run (a process it left behind would otherwise send into the next
//! run), and the end of its output read without reading all of it.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use super::Exit;

/// The most of the driver's output read for its tail, bytes.
const TAIL_BYTES: u64 = 64 << 10;

/// Starts the driver in a process group of its own, with each variable also as `OPB_NAME`.
pub fn spawn(
    command: &str,
    vars: &[(&'static str, String)],
    log: std::fs::File,
) -> std::io::Result<Child> {
    let env: Vec<(String, String)> = vars
        .iter()
        .map(|(name, value)| (format!("OPB_{}", name.to_ascii_uppercase()), value.clone()))
        .collect();
    crate::gateway::process::sh_in_group(command, &env, log)
}

/// Waits for `child` up to `timeout`, then kills whatever is left of its group either way.
pub fn wait_bounded(mut child: Child, timeout: Duration) -> Exit {
    let started = Instant::now();
    let exit = loop {
        match child.try_wait() {
            Ok(Some(status)) => break exited(status),
            Ok(None) if started.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(None) => {
                break Exit::TimedOut {
                    after_ms: timeout.as_millis() as u64,
                };
            }
            Err(e) => {
                break Exit::Lost {
                    error: e.to_string(),
                };
            }
        }
    };
    // The group outlives its leader: a background process the driver started is still in it.
    #[cfg(unix)]
    {
        use nix::sys::signal::{Signal, killpg};
        let _ = killpg(
            nix::unistd::Pid::from_raw(child.id() as i32),
            Signal::SIGKILL,
        );
    }
    if !matches!(exit, Exit::Exited { .. }) {
        let _ = child.kill();
        let _ = child.wait();
    }
    exit
}

fn exited(status: ExitStatus) -> Exit {
    Exit::Exited {
        code: status.code(),
    }
}

/// The last `lines` lines of a program's log (read from its last 64 KiB at most, so a program
/// that printed without end costs no more), each cut to 300 characters: a driver's, a gateway's.
pub fn tail(log: &Path, lines: usize) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut file) = std::fs::File::open(log) {
        let len = file.metadata().map_or(0, |m| m.len());
        let from = len.saturating_sub(TAIL_BYTES);
        if file.seek(SeekFrom::Start(from)).is_ok() {
            let _ = file.take(TAIL_BYTES).read_to_end(&mut bytes);
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| l.chars().take(300).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}
