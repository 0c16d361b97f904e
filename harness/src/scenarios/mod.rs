//! The scenarios: each answers one question about a pool with measured figures.
//!
//! [`SCENARIOS`] is the one registry: each scenario is a [`ScenarioSpec`] in its own file (name on
//! the command line, title, question, whether the main job runs it, how it measures, its
//! charts); adding one is its file, its `mod` line and its entry. A scenario function takes a [`Ctx`] (the
//! user's overrides, progress display) and returns its [`Findings`]; it never prints. Defaults are
//! the (the plan's) settings; every one can be overridden from the command line.

pub mod calibrate;
pub mod contention;
pub mod explain;
pub mod open_loop;
pub mod peak;
pub mod plan_test1;
pub mod scaling;
pub mod soak;
pub mod stress;
pub mod two_node;

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pool::{ProbeConfig, Strategy};

use crate::machine::Machine;
use crate::results::{Accounting, Row, SCHEMA, ScenarioResult};
use crate::variant::{PoolOptions, Variant};
use pool::testing::Degradation;

/// One question, answered with measured figures: each is a file here, listed in [`SCENARIOS`].
pub trait ScenarioSpec: Sync + Send {
    /// Name on the command line and in `results/` (`two-node`).
    fn name(&self) -> &'static str;
    /// Title in reports.
    fn title(&self) -> &'static str;
    /// The question it answers.
    fn question(&self) -> &'static str;
    /// Whether the main job (`harness` with no command) runs it: the plan's targets, in under
    /// five minutes; the others run on request.
    fn in_main_job(&self) -> bool {
        false
    }
    /// Measures it.
    fn measure(&self, ctx: &Ctx) -> anyhow::Result<Findings>;
    /// The chart files [`ScenarioSpec::draw`] writes.
    fn charts(&self) -> &'static [&'static str] {
        &[]
    }
    /// Draws its charts of `result` into `dir`.
    fn draw(&self, _dir: &std::path::Path, _result: &ScenarioResult) -> anyhow::Result<()> {
        Ok(())
    }
    /// Its verdicts computed again from `result`'s stored figures, so `harness report` can
    /// reword a result without measuring it again; `None` where the verdicts still need what
    /// only the measurement had (they stay as written then).
    fn reword(&self, _result: &ScenarioResult) -> Option<Vec<String>> {
        None
    }
}

/// A scenario, as the command line and the report hold it.
pub type Scenario = &'static dyn ScenarioSpec;

impl std::fmt::Debug for dyn ScenarioSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for dyn ScenarioSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Every scenario, in report order.
pub static SCENARIOS: &[Scenario] = &[
    &two_node::TwoNode,
    &scaling::Scaling,
    &plan_test1::PlanTest1,
    &stress::Stress,
    &contention::Contention,
    &explain::Explain,
    &open_loop::OpenLoop,
    &soak::Soak,
    &calibrate::Calibrate,
    &peak::Peak,
];

/// The scenario named `name`.
pub fn named(name: &str) -> Option<Scenario> {
    SCENARIOS.iter().copied().find(|s| s.name() == name)
}

/// Measures `scenario` and assembles its result.
pub fn run(scenario: Scenario, ctx: &Ctx) -> anyhow::Result<ScenarioResult> {
    let findings = scenario.measure(ctx)?;
    Ok(ScenarioResult {
        schema: SCHEMA.into(),
        scenario: scenario.name().into(),
        title: scenario.title().into(),
        question: scenario.question().into(),
        machine: ctx.machine.clone(),
        repeats: findings.repeats,
        params: findings.params,
        rows: findings.rows,
        verdicts: findings.verdicts,
        accounting: findings.accounting,
    })
}

/// What a scenario measured; [`run`] adds the name, title, question and machine.
#[derive(Debug)]
pub struct Findings {
    /// Measurements per figure.
    pub repeats: usize,
    /// The settings it ran with.
    pub params: serde_json::Value,
    /// The figures.
    pub rows: Vec<Row>,
    /// Sentences computed from the figures.
    pub verdicts: Vec<String>,
    /// Whether client, pool and nodes agreed on every request.
    pub accounting: Accounting,
}

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
    /// Deliberate regressions built into every pool (the gate's self-test); none by default.
    pub degradation: Degradation,
    /// Pools keep connections alive (`false` only in the gate's self-test).
    pub keep_alive: bool,
    /// Blocking HTTP clients per pool (`pool::HttpConfig::clients`).
    pub http_clients: usize,
    /// Which HTTP client carries the pools' requests; `None` is the default client, and both
    /// in `peak`.
    pub http_client: Option<pool::HttpClient>,
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
            degradation: Degradation::default(),
            keep_alive: true,
            http_clients: 1,
            http_client: None,
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

/// The plan's service time of one embed: every scenario's default (`--service` overrides it), and
/// what the bookkeeping costs are compared with.
pub const PLAN_SERVICE: Duration = Duration::from_millis(20);

impl Ctx {
    /// The service time per embed input: `--service`, or the plan's.
    pub fn service(&self) -> Duration {
        self.opts.service.unwrap_or(PLAN_SERVICE)
    }

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
            degradation: self.opts.degradation,
            keep_alive: self.opts.keep_alive,
            http_clients: self.opts.http_clients,
            http_client: self.opts.http_client.unwrap_or_default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found_and_charts_are_svg() {
        let mut names: Vec<&str> = SCENARIOS.iter().map(|s| s.name()).collect();
        for name in &names {
            assert_eq!(named(name).map(|s| s.name()), Some(*name));
        }
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "two scenarios share a name");
        assert!(named("warp-speed").is_none());
        for s in SCENARIOS {
            assert!(s.charts().iter().all(|c| c.ends_with(".svg")), "{s}");
        }
        let main: Vec<&str> = SCENARIOS
            .iter()
            .filter(|s| s.in_main_job())
            .map(|s| s.name())
            .collect();
        assert_eq!(
            main,
            ["two-node", "scaling", "plan-test1", "stress", "contention"]
        );
    }

    /// Rewording the committed results from their figures gives the verdicts the measurement
    /// wrote, and a changed figure changes its verdict: the report rewords, it does not copy.
    #[test]
    fn reworded_verdicts_equal_the_measured_ones_and_follow_the_figures() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../results");
        for name in ["two-node", "plan-test1", "scaling", "contention"] {
            let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).expect(name);
            let mut result: ScenarioResult = serde_json::from_str(&text).expect(name);
            let scenario = named(name).expect(name);
            assert_eq!(
                scenario.reword(&result).as_ref(),
                Some(&result.verdicts),
                "{name}"
            );
            let before = result.verdicts.clone();
            for row in &mut result.rows {
                row.value.median *= 0.5;
            }
            assert_ne!(
                scenario.reword(&result),
                Some(before),
                "{name} follows its figures"
            );
        }
    }
}
