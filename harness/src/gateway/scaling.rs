//! The `scaling` cell: nodes with spare slots, closed-loop workers 1, 2, 4, … up to `--workers`
//! through the gateway.
//!
//! Every node gets enough slots for the most workers spread evenly, `max(--slots, workers /
//! nodes)` (set through the control API, restored after), so a gateway that spreads the load
//! queues nothing: an ideal one passes `w` workers at `w` times the rate of one worker straight
//! at a node. That one-worker rate is measured, not
//! computed from the configured service time, so the ideal carries the nodes' own overhead. A
//! gateway that serialises (one upstream connection, a global lock) falls behind as `w` grows.
//!
//! Requests per run grow with the workers, so each run lasts about as long as the others.

use mock_ollama::SettingsPatch;
use serde::{Deserialize, Serialize};

use super::audit::Audit;
use super::{Cell, Limits, Nodes, Settings, log_heads, logs_since, merge, run_once, while_patched};
use crate::engine::Engine;
use crate::summary::{Latency, Summary};

/// One worker count's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScalingStep {
    /// Closed-loop workers.
    pub workers: usize,
    /// Requests/s through the gateway, per repeat.
    pub throughput: Summary,
    /// Throughput over `workers` times one worker's direct rate, per repeat.
    pub efficiency: Summary,
    /// Latency of the last repeat, ms.
    pub latency: Latency,
}

/// What the scaling cell measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScalingReport {
    /// Slots per node during the cell.
    pub slots: usize,
    /// One worker straight at node 0, requests/s per repeat: the ideal's unit.
    pub one_worker_direct: Summary,
    /// Each worker count, in increasing order.
    pub steps: Vec<ScalingStep>,
}

/// 1, 2, 4, … and `max` itself.
fn worker_counts(max: usize) -> Vec<usize> {
    let mut counts: Vec<usize> = std::iter::successors(Some(1usize), |w| w.checked_mul(2))
        .take_while(|w| *w < max)
        .collect();
    counts.push(max.max(1));
    counts
}

/// Measures the cell.
pub(super) fn scaling(engine: &Engine, nodes: &Nodes, settings: &Settings) -> anyhow::Result<Cell> {
    let slots = settings
        .slots
        .max(settings.workers.div_ceil(nodes.len().max(1)));
    let parallel = |n: usize| SettingsPatch {
        parallel: Some(n),
        ..SettingsPatch::default()
    };
    while_patched(
        nodes,
        0..nodes.len(),
        |_| parallel(slots),
        || measure(engine, nodes, settings, slots),
    )
}

fn measure(
    engine: &Engine,
    nodes: &Nodes,
    settings: &Settings,
    slots: usize,
) -> anyhow::Result<Cell> {
    let node0 = nodes.urls().first().cloned().unwrap_or_default();
    let per_worker = (settings.requests / settings.workers.max(1) as u64).max(20);
    let mut unit = Vec::new();
    for r in 0..settings.repeats {
        unit.push(
            run_once(engine, &node0, settings, 1, per_worker, &format!("s1d{r}"))?.throughput(),
        );
    }
    let unit = Summary::of(unit);
    let mut total = Audit::default();
    let mut steps = Vec::new();
    for workers in worker_counts(settings.workers) {
        let (mut throughput, mut efficiency, mut latency) = (Vec::new(), Vec::new(), None);
        for r in 0..settings.repeats {
            let heads = log_heads(nodes)?;
            let requests = per_worker * workers as u64;
            let id = format!("s{workers}g{r}");
            let run = super::system::through(engine, nodes, settings, workers, requests, &id)?;
            merge(
                &mut total,
                super::audit::audit(&run, &logs_since(nodes, &heads)?),
            );
            throughput.push(run.throughput());
            efficiency.push(run.throughput() / (unit.median * workers as f64).max(1e-9));
            latency = Some(Latency::of(&run.latency));
        }
        steps.push(ScalingStep {
            workers,
            throughput: Summary::of(throughput),
            efficiency: Summary::of(efficiency),
            latency: latency.unwrap_or_else(|| Latency::of(&crate::summary::new_histogram())),
        });
    }
    let (throughput, latency) =
        super::last_step_figures(steps.last().map(|s| (&s.throughput, s.latency)));
    Ok(Cell {
        audit: Some(total),
        scaling: Some(ScalingReport {
            slots,
            one_worker_direct: unit,
            steps,
        }),
        ..Cell::new("scaling", throughput, latency)
    })
}

/// The cell's verdict: efficiency at the most workers, and where it first fell below 0.9; or,
/// when the most workers ran at the gateway's own ceiling, that.
pub(super) fn verdict(cell: &Cell, limits: Limits) -> Option<String> {
    use crate::wording::{count, medians_of, ratio};
    let s = cell.scaling.as_ref()?;
    let last = s.steps.last()?;
    let knee = s
        .steps
        .iter()
        .find(|step| step.efficiency.median < 0.9)
        .map_or_else(
            || "never below 0.9 of the ideal".to_owned(),
            |step| {
                format!(
                    "first below 0.9 of the ideal at {}",
                    count(step.workers as u64, "worker", "workers")
                )
            },
        );
    let knee = match super::ceiling::limit_clause(cell, limits) {
        Some(clause) => format!("{knee}; {clause}"),
        None => knee,
    };
    Some(format!(
        "scaling: with {} per node, {} pass {:.0} req/s, {} of {} x one worker straight at a node ({:.0} req/s); {knee} ({}).",
        count(s.slots as u64, "slot", "slots"),
        count(last.workers as u64, "worker", "workers"),
        last.throughput.median,
        ratio(last.efficiency.median),
        last.workers,
        s.one_worker_direct.median,
        medians_of(last.efficiency.samples.len(), "run", "runs"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_counts_double_up_to_the_maximum() {
        assert_eq!(worker_counts(1), vec![1]);
        assert_eq!(worker_counts(8), vec![1, 2, 4, 8]);
        assert_eq!(worker_counts(12), vec![1, 2, 4, 8, 12]);
    }
}
