//! The scenarios: each answers one question about a pool with measured figures.
//!
//! A scenario takes a [`Ctx`] (the user's overrides, the output folder, progress display) and
//! returns a [`ScenarioResult`]; it never prints. Defaults are the (the plan's) settings;
//! every one can be overridden from the command line.

pub mod contention;
pub mod explain;
pub mod open_loop;
pub mod plan_test1;
pub mod scaling;
pub mod stress;
pub mod two_node;

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pool::{ProbeConfig, Strategy};

use crate::machine::Machine;
use crate::results::{Accounting, Row, SCHEMA, ScenarioResult};
use crate::variant::{PoolOptions, Variant};

/// Scenario names in report order.
pub const NAMES: [&str; 7] = [
    "two-node",
    "scaling",
    "plan-test1",
    "stress",
    "contention",
    "explain",
    "open-loop",
];

/// The scenarios of the main job (`harness` with no command): the plan's targets, in under five
/// minutes. `explain` and `open-loop` take a few minutes each and run on request.
pub const MAIN: [&str; 5] = ["two-node", "scaling", "plan-test1", "stress", "contention"];

/// The user's overrides; `None` means the scenario's default.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Worker threads.
    pub workers: Option<usize>,
    /// Requests per run (operations, for in-memory scenarios).
    pub requests: Option<usize>,
    /// Base service time per embed input.
    pub service: Option<Duration>,
    /// Slots per node.
    pub slots: Option<usize>,
    /// Nodes.
    pub nodes: Option<usize>,
    /// Measurements per figure.
    pub repeats: usize,
    /// Routing strategy.
    pub strategy: Strategy,
    /// Variants to compare.
    pub variants: Vec<Variant>,
    /// Existing nodes to use instead of embedded mocks.
    pub external: Vec<String>,
    /// Stop sending after this long in one run.
    pub cap: Option<Duration>,
    /// Health-probe interval of pools with stats.
    pub probe_interval: Duration,
    /// Show progress bars (on a terminal).
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            workers: None,
            requests: None,
            service: None,
            slots: None,
            nodes: None,
            repeats: 5,
            strategy: Strategy::RoundRobin,
            variants: Variant::ALL.to_vec(),
            external: Vec::new(),
            cap: None,
            probe_interval: Duration::from_secs(1),
            progress: true,
        }
    }
}

/// What a scenario runs with.
#[derive(Debug)]
pub struct Ctx {
    /// Overrides.
    pub opts: Options,
    /// The machine, read once.
    pub machine: Machine,
}

impl Ctx {
    /// A context for `opts`.
    pub fn new(opts: Options) -> Self {
        Self {
            opts,
            machine: Machine::detect(),
        }
    }

    /// Pool settings for a scenario: the user's strategy, probing every `probe_interval`.
    pub fn pool_options(&self) -> PoolOptions {
        PoolOptions {
            strategy: self.opts.strategy,
            probe: Some(ProbeConfig {
                interval: self.opts.probe_interval,
                timeout: Duration::from_secs(2),
            }),
            ..PoolOptions::default()
        }
    }

    /// A progress bar over `steps` steps, hidden when not on a terminal or when disabled.
    pub fn progress(&self, label: &str, steps: usize) -> ProgressBar {
        let target = if self.opts.progress {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(steps as u64), target);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_owned());
        bar
    }

    /// Assembles a scenario's result.
    #[allow(clippy::too_many_arguments)]
    pub fn result(
        &self,
        scenario: &str,
        title: &str,
        question: &str,
        repeats: usize,
        params: serde_json::Value,
        rows: Vec<Row>,
        verdicts: Vec<String>,
        accounting: Accounting,
    ) -> ScenarioResult {
        ScenarioResult {
            schema: SCHEMA.into(),
            scenario: scenario.into(),
            title: title.into(),
            question: question.into(),
            machine: self.machine.clone(),
            repeats,
            params,
            rows,
            verdicts,
            accounting,
        }
    }
}

/// Runs the scenario called `name`.
pub fn run(name: &str, ctx: &Ctx) -> anyhow::Result<ScenarioResult> {
    match name {
        "two-node" => two_node::run(ctx),
        "scaling" => scaling::run(ctx),
        "plan-test1" => plan_test1::run(ctx),
        "stress" => stress::run(ctx),
        "contention" => contention::run(ctx),
        "explain" => explain::run(ctx),
        "open-loop" => open_loop::run(ctx),
        other => anyhow::bail!(
            "unknown scenario {other:?}; expected one of {}",
            NAMES.join(", ")
        ),
    }
}

/// "reaches the ideal", "about SOLLOL's 1.1x", ...: how a speedup compares with its ideal.
pub fn judge_speedup(speedup: f64, ideal: f64) -> &'static str {
    if speedup.is_nan() {
        "not measured"
    } else if speedup >= 0.9 * ideal {
        "reaches the capacity ideal"
    } else if speedup < 1.2 {
        "gains nothing from the extra capacity (SOLLOL measured 1.12x)"
    } else {
        "gains part of the extra capacity"
    }
}
