//! The scenarios: each answers one question about a pool with measured figures.
//!
//! [`Scenario`] is the one registry: its name on the command line, title, question, whether the
//! main job runs it, and the function that measures it. A scenario function takes a [`Ctx`] (the
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

/// Every scenario, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Scenario {
    /// The plan's Target 1: two nodes vs one.
    TwoNode,
    /// The plan's Target 2: throughput vs workers.
    Scaling,
    /// The plan's Test 1: 1,000 embeds from 12 workers.
    PlanTest1,
    /// The plan's Target 3: no lost updates, over HTTP and in memory.
    Stress,
    /// Bookkeeping cost without I/O.
    Contention,
    /// Which mechanism serialises a pool (lock scope x node speed x strategy).
    Explain,
    /// Latency at a fixed arrival rate, with and without coordinated omission.
    OpenLoop,
    /// Faults and a node down and back at full size: nothing lost, nothing leaked.
    Soak,
    /// The nodes' served time against the configured one, per timer, and what timing costs.
    Calibrate,
    /// Requests/s and CPU per request of every client at zero service time, by layer.
    Peak,
}

impl Scenario {
    /// Every scenario, in report order.
    pub const ALL: [Scenario; 10] = [
        Scenario::TwoNode,
        Scenario::Scaling,
        Scenario::PlanTest1,
        Scenario::Stress,
        Scenario::Contention,
        Scenario::Explain,
        Scenario::OpenLoop,
        Scenario::Soak,
        Scenario::Calibrate,
        Scenario::Peak,
    ];

    /// Whether the main job (`harness` with no command) runs it: the plan's targets, in under
    /// five minutes. `explain` and `open-loop` take a few minutes each and run on request.
    pub fn in_main_job(self) -> bool {
        !matches!(
            self,
            Scenario::Explain
                | Scenario::OpenLoop
                | Scenario::Soak
                | Scenario::Calibrate
                | Scenario::Peak
        )
    }

    /// Name on the command line and in `results/` (`two-node`).
    pub fn name(self) -> &'static str {
        match self {
            Scenario::TwoNode => "two-node",
            Scenario::Scaling => "scaling",
            Scenario::PlanTest1 => "plan-test1",
            Scenario::Stress => "stress",
            Scenario::Contention => "contention",
            Scenario::Explain => "explain",
            Scenario::OpenLoop => "open-loop",
            Scenario::Soak => "soak",
            Scenario::Calibrate => "calibrate",
            Scenario::Peak => "peak",
        }
    }

    /// Title in reports.
    pub fn title(self) -> &'static str {
        match self {
            Scenario::TwoNode => "Target 1: two nodes vs one",
            Scenario::Scaling => "Target 2: throughput vs workers",
            Scenario::PlanTest1 => "The plan's Test 1: 1,000 embeds from 12 workers",
            Scenario::Stress => "Target 3: zero lost updates",
            Scenario::Contention => "Bookkeeping cost without I/O",
            Scenario::Explain => "Which mechanism serialises a pool",
            Scenario::OpenLoop => "Open-loop latency at 50/80/95% of capacity",
            Scenario::Soak => "Faults and a node down and back: nothing lost, nothing leaked",
            Scenario::Calibrate => "Service-time calibration: configured vs served, per timer",
            Scenario::Peak => "Peak rate and CPU per request of each client, by layer",
        }
    }

    /// The question it answers.
    pub fn question(self) -> &'static str {
        match self {
            Scenario::TwoNode => {
                "Does a second node make a batch of embeddings ~1.8x faster, as the plan expects, and which variants get there?"
            }
            Scenario::Scaling => {
                "Does throughput grow linearly with worker threads (10-12x at 12 workers, as the plan expects) when the nodes have capacity to spare?"
            }
            Scenario::PlanTest1 => {
                "Which variants land in the plan's 'before' (5-10 req/s) and 'after' (80-120 req/s) bands, and by which mechanism?"
            }
            Scenario::Stress => {
                "Are all requests counted exactly (client, pool and nodes agree) under 100 threads, over HTTP and in memory?"
            }
            Scenario::Contention => {
                "What does the lock itself cost per request, apart from the network, and how does that compare with a request?"
            }
            Scenario::Explain => {
                "Lock scope, node heterogeneity or routing: which cells reproduce SOLLOL's ~1.1x on two nodes, and which reach the capacity ideal?"
            }
            Scenario::OpenLoop => {
                "At a fixed arrival rate, what latency does a caller really see (from the intended send time), and how much does a closed-loop measurement hide?"
            }
            Scenario::Soak => {
                "With 500s, stalls, resets and a node that goes down and comes back, does every request keep an exact account on client, pool and nodes, and does the process get its threads and descriptors back?"
            }
            Scenario::Calibrate => {
                "Does a node take the service time it was told to take, from 250 us to 1 s, does one node deliver its configured capacity, and what CPU does timing cost?"
            }
            Scenario::Peak => {
                "At zero service time, how many requests/s does each pool variant and the load engine reach from 1 to 100 workers, and which layer (node, client, pool) sets the ceiling?"
            }
        }
    }

    /// Measures the scenario and assembles its result.
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<ScenarioResult> {
        let findings = match self {
            Scenario::TwoNode => two_node::run(ctx)?,
            Scenario::Scaling => scaling::run(ctx)?,
            Scenario::PlanTest1 => plan_test1::run(ctx)?,
            Scenario::Stress => stress::run(ctx)?,
            Scenario::Contention => contention::run(ctx)?,
            Scenario::Explain => explain::run(ctx)?,
            Scenario::OpenLoop => open_loop::run(ctx)?,
            Scenario::Soak => soak::run(ctx)?,
            Scenario::Calibrate => calibrate::run(ctx)?,
            Scenario::Peak => peak::run(ctx)?,
        };
        Ok(ScenarioResult {
            schema: SCHEMA.into(),
            scenario: self.name().into(),
            title: self.title().into(),
            question: self.question().into(),
            machine: ctx.machine.clone(),
            repeats: findings.repeats,
            params: findings.params,
            rows: findings.rows,
            verdicts: findings.verdicts,
            accounting: findings.accounting,
        })
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a scenario measured; [`Scenario::run`] adds the name, title, question and machine.
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
    use clap::ValueEnum as _;

    #[test]
    fn command_line_names_are_the_report_names() {
        for scenario in Scenario::ALL {
            let on_cli = scenario.to_possible_value().expect("not skipped");
            assert_eq!(on_cli.get_name(), scenario.name());
            assert_eq!(Scenario::from_str(scenario.name(), false), Ok(scenario));
        }
        assert_eq!(Scenario::value_variants(), Scenario::ALL);
    }
}
