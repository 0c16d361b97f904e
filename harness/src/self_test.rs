//! `harness gate --self-test`: the gate's proof of its own sensitivity.
//!
//! Each [`Injection`] builds a deliberately worse pool through the pool's own seams
//! (`pool::testing::Degradation`, an HTTP setting, or a variant that holds its lock across
//! requests), runs the gate's metrics on it, and must see the gate fail on the metric that
//! regression moves; the clean pool, measured the same way in the same run, must pass. Every
//! measurement is real (release build, embedded nodes), so this runs in CI beside the gate rather
//! than in `cargo test`.

use std::num::NonZeroU64;
use std::time::Duration;

use pool::testing::SlowPath;

use crate::gate::{self, GateReport, GateSettings, Metric};
use crate::scenarios::{Ctx, Options};
use crate::variant::Variant;

/// A regression the gate must catch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injection {
    /// Nothing injected: every selected metric must pass.
    Clean,
    /// The pool holds its lock across each HTTP exchange (the plan's "before").
    SerialisedLock,
    /// 1 ms of blocking work before every attempt (a logging call on the request path).
    AttemptDelay,
    /// No keep-alive: a new TCP connection for every attempt (a dependency bump's default).
    NoKeepAlive,
    /// One request in 50 waits 20 ms before its first attempt (a lock a few requests wait on).
    SlowPath,
    /// The round-robin cursor never advances.
    StuckRoundRobin,
}

impl Injection {
    /// Every case, the clean one first.
    pub const ALL: [Injection; 6] = [
        Injection::Clean,
        Injection::SerialisedLock,
        Injection::AttemptDelay,
        Injection::NoKeepAlive,
        Injection::SlowPath,
        Injection::StuckRoundRobin,
    ];

    /// The metrics that must fail on this injection.
    pub fn must_fail(self) -> Vec<Metric> {
        let atomic = Variant::Atomic;
        match self {
            Injection::Clean => vec![],
            Injection::SerialisedLock => {
                vec![Metric::TwoNodeSpeedup(atomic), Metric::Scaling12(atomic)]
            }
            Injection::AttemptDelay => vec![Metric::Overhead(atomic)],
            Injection::NoKeepAlive => vec![Metric::ConnectionsPerRequest(atomic)],
            Injection::SlowPath => vec![Metric::LatencyAddedP99(atomic)],
            Injection::StuckRoundRobin => vec![Metric::TwoNodeSpeedup(atomic)],
        }
    }

    /// The metrics measured for this injection: the two-node speedup and the cost figures for
    /// every case; the serialised pool also runs scaling and the correctness checks (which must
    /// still pass: a lock scope must not lose updates).
    fn measures(self, metric: Metric) -> bool {
        let atomic = Variant::Atomic;
        let everyone = [
            Metric::TwoNodeSpeedup(atomic),
            Metric::Overhead(atomic),
            Metric::ConnectionsPerRequest(atomic),
            Metric::LatencyAddedP50(atomic),
            Metric::LatencyAddedP99(atomic),
        ];
        let serialised = [
            Metric::Scaling12(atomic),
            Metric::StressLost,
            Metric::StressActiveAfter,
            Metric::CountersLost,
        ];
        everyone.contains(&metric)
            || (self == Injection::SerialisedLock && serialised.contains(&metric))
    }

    /// The variant measured where the atomic pool goes.
    fn candidate(self) -> Variant {
        match self {
            Injection::SerialisedLock => Variant::MutexRequest,
            _ => Variant::Atomic,
        }
    }

    /// `base` with this injection's pool settings.
    fn options(self, base: &Options) -> Options {
        let mut opts = base.clone();
        match self {
            Injection::Clean | Injection::SerialisedLock => {}
            Injection::AttemptDelay => {
                opts.degradation.attempt_delay = Duration::from_millis(1);
            }
            Injection::NoKeepAlive => opts.keep_alive = false,
            Injection::SlowPath => {
                opts.degradation.slow_path = NonZeroU64::new(50).map(|every| SlowPath {
                    every,
                    delay: Duration::from_millis(20),
                });
            }
            Injection::StuckRoundRobin => opts.degradation.stuck_round_robin = true,
        }
        opts
    }
}

impl std::fmt::Display for Injection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Injection::Clean => "clean pool",
            Injection::SerialisedLock => "lock held across requests",
            Injection::AttemptDelay => "1 ms more per attempt",
            Injection::NoKeepAlive => "no keep-alive",
            Injection::SlowPath => "1 request in 50 waits 20 ms",
            Injection::StuckRoundRobin => "stuck round-robin",
        })
    }
}

/// What one case showed.
#[derive(Debug)]
pub struct CaseOutcome {
    /// The case.
    pub injection: Injection,
    /// The gate's report on it.
    pub report: GateReport,
    /// What went wrong with the gate's verdict (empty: the gate behaved).
    pub problems: Vec<String>,
}

/// The self-test's sizes: the gate's three samples per figure (its bounds were set from the
/// spread of three-sample medians; single cost samples stray past them), with smaller two-node,
/// stress and contention runs, which the injections move far past their bounds.
pub fn settings() -> GateSettings {
    GateSettings {
        repeats: 3,
        two_node_requests: 48,
        service_ms: 5,
        stress_requests: 400,
        contention_ops: 5_000,
        ..GateSettings::default()
    }
}

/// Runs one case and judges the gate's verdict on it.
pub fn run_case(base: &Options, injection: Injection) -> anyhow::Result<CaseOutcome> {
    let ctx = Ctx::new(injection.options(base));
    let candidate = Some(injection.candidate());
    let report = gate::run_selected(&ctx, candidate, settings(), None, |m| injection.measures(m))?;
    let failures = report.failures();
    let mut problems = Vec::new();
    for metric in injection.must_fail() {
        let name = metric.to_string();
        if !failures.contains(&name.as_str()) {
            problems.push(format!("{name} did not fail"));
        }
    }
    if injection == Injection::Clean {
        problems.extend(
            failures
                .iter()
                .map(|f| format!("{f} failed on a clean pool")),
        );
    }
    if injection == Injection::SerialisedLock {
        // Typed, so a renamed metric cannot leave this check reading a name no report has.
        for correctness in [
            Metric::StressLost,
            Metric::StressActiveAfter,
            Metric::CountersLost,
        ] {
            let name = correctness.to_string();
            if !report.metrics.get(&name).is_some_and(|m| m.pass) {
                problems.push(format!(
                    "{correctness} failed: a lock scope must not lose updates"
                ));
            }
        }
    }
    Ok(CaseOutcome {
        injection,
        report,
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The self-test can only prove what the gate bounds: every metric an injection must fail is
    /// in the bounds file with a real bound (not "report") and is among the metrics it measures.
    #[test]
    fn every_injection_must_fail_a_bounded_metric_it_measures() {
        let bounds = gate::bounds().unwrap();
        for injection in Injection::ALL {
            let must_fail = injection.must_fail();
            assert_eq!(
                must_fail.is_empty(),
                injection == Injection::Clean,
                "{injection}: only the clean pool may have nothing to fail"
            );
            for metric in must_fail {
                let bound = bounds
                    .get(&metric)
                    .unwrap_or_else(|| panic!("{metric} unbounded"));
                assert_ne!(
                    bound.op,
                    crate::bounds::Op::Report,
                    "{injection}: {metric} only reported"
                );
                assert!(
                    injection.measures(metric),
                    "{injection}: {metric} not measured"
                );
            }
        }
    }

    /// Each injection changes what it says it changes, and the clean case nothing.
    #[test]
    fn injections_degrade_the_pool_settings_they_name() {
        let base = Options::default();
        let clean = Injection::Clean.options(&base);
        assert!(clean.degradation.is_none() && clean.keep_alive);
        assert!(!Injection::NoKeepAlive.options(&base).keep_alive);
        assert!(
            Injection::StuckRoundRobin
                .options(&base)
                .degradation
                .stuck_round_robin
        );
        assert!(
            !Injection::AttemptDelay
                .options(&base)
                .degradation
                .attempt_delay
                .is_zero()
        );
        assert!(
            Injection::SlowPath
                .options(&base)
                .degradation
                .slow_path
                .is_some()
        );
        assert_eq!(Injection::SerialisedLock.candidate(), Variant::MutexRequest);
    }
}
