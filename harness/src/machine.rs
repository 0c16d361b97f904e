//! What a result was measured on: machine, toolchain, commit and date.
//!
//! Figures are only comparable on the same machine and build, so every result file carries this.

use serde::{Deserialize, Serialize};

/// The measuring environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Logical CPUs available to the process.
    pub cores: usize,
    /// CPU model from `/proc/cpuinfo`.
    pub cpu: String,
    /// Total memory in GiB.
    pub memory_gib: f64,
    /// Kernel release.
    pub os: String,
    /// `rustc --version` of the compiler that built the harness.
    pub rustc: String,
    /// Commit of the working tree (`-dirty` when tracked files outside `results/` are modified).
    pub git_commit: String,
    /// Whether the harness was built with optimisations.
    pub release_build: bool,
    /// When the measurement started (RFC 3339, UTC).
    pub date: String,
}

impl Machine {
    /// Reads the current environment.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|rest| rest.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .map(str::to_owned)
            })
            .and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .map_or(0.0, |kb| (kb / 1024.0 / 1024.0 * 10.0).round() / 10.0);
        let os = std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(
            |_| std::env::consts::OS.into(),
            |s| format!("Linux {}", s.trim()),
        );
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            memory_gib,
            os,
            rustc: env!("HARNESS_RUSTC_VERSION").to_owned(),
            git_commit: git_commit(),
            release_build: !cfg!(debug_assertions),
            date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }

    /// One line for headers: `2 cores, Intel(R) ..., 23.4 GiB, rustc 1.95.0, commit abc123`.
    pub fn one_line(&self) -> String {
        format!(
            "{} cores, {}, {} GiB, {}, {}, commit {}, {}",
            self.cores,
            self.cpu,
            self.memory_gib,
            self.os,
            self.rustc,
            self.git_commit,
            if self.release_build {
                "release build"
            } else {
                "DEBUG build (figures not comparable)"
            }
        )
    }
}

fn git_commit() -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match run(&["rev-parse", "--short=12", "HEAD"]) {
        Some(commit) => {
            let dirty = run(&[
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":!results",
            ])
            .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{commit}-dirty")
            } else {
                commit
            }
        }
        None => "unknown".into(),
    }
}

/// CPU time (user + system) this process has used so far; zero where it cannot be read.
pub fn cpu_time() -> std::time::Duration {
    #[cfg(unix)]
    {
        use nix::sys::resource::{UsageWho, getrusage};
        if let Ok(usage) = getrusage(UsageWho::RUSAGE_SELF) {
            let micros =
                |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
            return std::time::Duration::from_micros(
                micros(usage.user_time()) + micros(usage.system_time()),
            );
        }
    }
    std::time::Duration::ZERO
}

/// CPU time the calling thread has used so far (`CLOCK_THREAD_CPUTIME_ID`, nanoseconds); `None`
/// where it cannot be read. Only this thread's own work counts: what it waits for on another
/// thread (a node, a client's I/O thread) does not.
pub fn thread_cpu() -> Option<std::time::Duration> {
    #[cfg(unix)]
    {
        use nix::time::{ClockId, clock_gettime};
        let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).ok()?;
        let nanos = u64::try_from(t.tv_sec()).ok()? * 1_000_000_000;
        Some(std::time::Duration::from_nanos(
            nanos + u64::try_from(t.tv_nsec()).ok()?,
        ))
    }
    #[cfg(not(unix))]
    None
}

/// CPU time of this process's live threads whose name (`comm`) `named` accepts
/// (`/proc/self/task/*/schedstat`, nanoseconds; zero where it cannot be read). Threads that have
/// exited are not counted: take the process's whole figure from [`cpu_time`].
pub fn threads_cpu(named: impl Fn(&str) -> bool) -> std::time::Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return std::time::Duration::ZERO;
    };
    let mut ns = 0;
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !named(comm.trim()) {
            continue;
        }
        ns += std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
    }
    std::time::Duration::from_nanos(ns)
}
