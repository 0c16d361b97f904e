//! `harness client`: a client library under test, driven by a small program of the user's (the
//! *driver*), audited as `harness gateway` audits a gateway.
//!
//! The harness starts the driver once per run with `sh -c`, in a process group of its own, and
//! tells it what to do in environment variables (and the same values as placeholders in the
//! command):
//!
//! | variable | placeholder | meaning |
//! |---|---|---|
//! | `OPB_NODES` | `{nodes}` | the nodes' base URLs, comma-separated |
//! | `OPB_WORKERS` | `{workers}` | concurrent callers |
//! | `OPB_REQUESTS` | `{requests}` | requests to send, over all callers |
//! | `OPB_RUN_ID` | `{run_id}` | request `n` (0-based) carries `[rid:RUN_ID-n]` in its input |
//! | `OPB_PHASE` | `{phase}` | the cell being measured (for the driver's own logs) |
//! | `OPB_MODEL` | `{model}` | the model to ask for |
//! | `OPB_REPORT` | `{report}` | a file the driver writes its JSON lines to |
//!
//! The driver writes one JSON line per request to `OPB_REPORT` (`report.rs` has the format) and
//! may end with one line of the library's own statistics. Its stdout and stderr go to a log whose
//! tail is kept with the run. A driver that does not finish within the timeout is killed with its
//! whole group; a crash, a hang, malformed lines or nothing sent end as a verdict on the run,
//! never as a hang of the harness, and every request it was asked to send is accounted for.

mod check;
mod child;
mod cpu;
pub mod pool_driver;
mod report;
pub mod table;
mod timing;
mod verdict;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

pub use check::{LibraryStats, NodeCount, StatsCheck};
pub use child::tail;
pub use report::{Lines, Reported};
pub use verdict::verdicts;

use crate::load::Run;

/// The model the driver is told to ask for (the mock nodes serve it).
pub const MODEL: &str = "all-minilm";

/// Lines of the driver's output kept with each run.
const TAIL_LINES: usize = 20;

/// What can go wrong running a driver (its misbehaviour is not an error: it is a verdict).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The driver's directory, log or report could not be made or read.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `sh` could not be started.
    #[error("starting the driver `{command}`: {source}")]
    Spawn {
        /// The rendered command.
        command: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The driver program under test.
#[derive(Debug, Clone)]
pub struct Driver {
    /// The shell command, with placeholders.
    pub command: String,
    /// The longest one run may take before the driver's group is killed.
    pub timeout: Duration,
    /// Where each run's report and log go.
    pub dir: PathBuf,
    /// Requests a fault cell's run asks for: enough for its three phases at the capacity
    /// ideal (set once the ideal is measured).
    pub fault_requests: u64,
    /// Every run so far, in order (a cell's measuring code sees only the [`Run`]).
    runs: Arc<Mutex<Vec<DriverRun>>>,
}

/// One run as the harness asks for it.
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    /// The nodes' base URLs.
    pub nodes: &'a [String],
    /// Concurrent callers.
    pub workers: usize,
    /// Requests over all callers.
    pub requests: u64,
    /// The request ids' prefix.
    pub run_id: &'a str,
}

/// How the driver ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    /// It exited with this code (`None`: killed by a signal).
    Exited {
        /// The exit code.
        code: Option<i32>,
    },
    /// It ran past the timeout and its group was killed.
    TimedOut {
        /// The timeout, ms.
        after_ms: u64,
    },
    /// It could not be waited for (the error); its group was killed.
    Lost {
        /// What waiting for it said.
        error: String,
    },
}

impl Exit {
    /// Whether the driver exited 0.
    pub fn clean(&self) -> bool {
        *self == Exit::Exited { code: Some(0) }
    }
}

/// What one run of the driver showed besides its [`Run`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriverRun {
    /// The run's id prefix.
    pub run_id: String,
    /// Callers and requests asked for.
    pub workers: usize,
    /// Requests asked for.
    pub requests: u64,
    /// How it ended.
    pub exit: Exit,
    /// From start to exit, ms (the driver's start-up included).
    pub wall_ms: f64,
    /// The report's lines, counted.
    pub lines: Lines,
    /// The library's statistics against the nodes' served logs (`None`: it reported none).
    pub stats: Option<StatsCheck>,
    /// CPU time of the driver's processes (those it waited for), ms.
    pub driver_cpu_ms: f64,
    /// CPU time of the harness's own process over the run (the embedded nodes included), ms.
    pub harness_cpu_ms: f64,
    /// The last lines of its stdout and stderr.
    pub output_tail: String,
}

impl Driver {
    /// A driver run by `command`, its files in `dir`.
    pub fn new(command: &str, timeout: Duration, dir: &Path) -> Self {
        Self {
            command: command.to_owned(),
            timeout,
            dir: dir.to_owned(),
            fault_requests: 0,
            runs: Arc::default(),
        }
    }

    /// Every run so far.
    pub fn runs(&self) -> Vec<DriverRun> {
        self.runs.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Keeps `run` with the others (its stats check made by the caller, who has the nodes).
    pub fn keep(&self, run: DriverRun) {
        if let Ok(mut runs) = self.runs.lock() {
            runs.push(run);
        }
    }

    /// Runs the driver once: every request it was asked to send is in the [`Run`] (those it
    /// did not report as failed), and what it did besides in the [`DriverRun`].
    pub fn run(&self, ask: &Ask) -> Result<(Run, DriverRun, Reported), ClientError> {
        let io = |what, path: &Path| {
            let path = path.to_owned();
            move |source| ClientError::Io { what, path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io("creating", &self.dir))?;
        let report_path = self.dir.join(format!("{}.jsonl", ask.run_id));
        let log_path = self.dir.join(format!("{}.log", ask.run_id));
        // A report left by an earlier run of the same id would count as this one's.
        let _ = std::fs::remove_file(&report_path);
        let log = std::fs::File::create(&log_path).map_err(io("creating", &log_path))?;
        let vars = self.vars(ask, &report_path);
        let command = render(&self.command, &vars);
        let (cpu_before, own_before) = (cpu::children(), cpu::own());
        let (started, started_wall) = (Instant::now(), SystemTime::now());
        let child = child::spawn(&command, &vars, log).map_err(|source| ClientError::Spawn {
            command: command.clone(),
            source,
        })?;
        let exit = child::wait_bounded(child, self.timeout);
        let wall = started.elapsed();
        let mut reported = report::read(&report_path, ask).map_err(io("reading", &report_path))?;
        let run = timing::to_run(ask, &mut reported, started_wall, wall);
        let driver_run = DriverRun {
            run_id: ask.run_id.to_owned(),
            workers: ask.workers,
            requests: ask.requests,
            exit,
            wall_ms: wall.as_secs_f64() * 1e3,
            lines: reported.lines.clone(),
            stats: None,
            driver_cpu_ms: cpu::children().saturating_sub(cpu_before).as_secs_f64() * 1e3,
            harness_cpu_ms: cpu::own().saturating_sub(own_before).as_secs_f64() * 1e3,
            output_tail: child::tail(&log_path, TAIL_LINES),
        };
        Ok((run, driver_run, reported))
    }

    fn vars(&self, ask: &Ask, report: &Path) -> Vec<(&'static str, String)> {
        vec![
            ("nodes", ask.nodes.join(",")),
            ("workers", ask.workers.to_string()),
            ("requests", ask.requests.to_string()),
            ("run_id", ask.run_id.to_owned()),
            ("phase", phase_of(ask.run_id)),
            ("model", MODEL.to_owned()),
            ("report", report.display().to_string()),
        ]
    }
}

/// The run id without its repeat suffix (`distribution0` -> `distribution`; a scaling step's
/// `s12g0` -> `s12g`, the two-node cell's runs `one-node` and `two-node`): for the driver's own
/// logs only.
fn phase_of(run_id: &str) -> String {
    run_id
        .trim_end_matches(|c: char| c.is_ascii_digit())
        .to_owned()
}

/// `command` with each `{name}` replaced by its value, as one shell word (a report path under
/// an `--out` with spaces stays one argument).
fn render(command: &str, vars: &[(&'static str, String)]) -> String {
    vars.iter().fold(command.to_owned(), |text, (name, value)| {
        text.replace(&format!("{{{name}}}"), &shell_word(value))
    })
}

/// `value` as one `sh` word: as it is when it holds only characters the shell leaves alone,
/// else in single quotes.
fn shell_word(value: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-.,:/=@+".contains(c);
    if !value.is_empty() && value.chars().all(plain) {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rendered_and_the_phase_drops_the_repeat() {
        let vars = vec![("nodes", "a,b".to_owned()), ("run_id", "x".to_owned())];
        assert_eq!(
            render("go {nodes} {run_id} {other}", &vars),
            "go a,b x {other}"
        );
        assert_eq!(phase_of("slow-node-3x2"), "slow-node-3x");
        assert_eq!(phase_of("distribution0"), "distribution");
    }
}
