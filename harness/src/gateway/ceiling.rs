//! The gateway's own ceiling, and which cells it bounds.
//!
//! Every node is set to zero service time (through its control API, restored after; under a
//! streamed workload no time per token and none for the prompt either, so a stream is its lines
//! written at once) and `--workers` closed-loop workers go through the gateway: whatever rate passes then is the most
//! the gateway (with the nodes and the load engine on the same cores) sustains, whatever the
//! nodes' capacity. A gateway whose ceiling is below the capacity ideal cannot show its routing
//! in a cell that runs at that ceiling: the cell measures the gateway's throughput, and its
//! verdict says so instead of grading the routing.

use mock_ollama::SettingsPatch;

use super::{Cell, Limits, Nodes, Settings, run_once, while_patched};
use crate::engine::Engine;
use crate::summary::Summary;

/// A cell at or above this fraction of the ceiling runs at the ceiling.
pub const AT_CEILING: f64 = 0.9;
/// A ceiling below this fraction of the capacity ideal bounds the cells that reach it.
pub const BELOW_IDEAL: f64 = 0.9;

/// Requests/s through the gateway at zero service time, per repeat, and the requests sent.
pub(super) fn measure(
    engine: &Engine,
    nodes: &Nodes,
    settings: &Settings,
) -> anyhow::Result<(Summary, u64)> {
    let streams = settings.workload.streams();
    let instant = |_: &mock_ollama::NodeSettings| SettingsPatch {
        latency: Some(std::time::Duration::ZERO),
        per_token: streams.then_some(std::time::Duration::ZERO),
        // 0: prompt tokens cost the per-token time, now zero.
        prompt_rate: streams.then_some(0.0),
        ..SettingsPatch::default()
    };
    let samples = while_patched(nodes, 0..nodes.len(), instant, || {
        (0..settings.repeats)
            .map(|r| {
                let id = format!("ceil{r}");
                let run = run_once(
                    engine,
                    &settings.target,
                    settings,
                    settings.workers,
                    settings.requests,
                    &id,
                )?;
                Ok((run.throughput(), run.records.len() as u64))
            })
            .collect::<anyhow::Result<Vec<(f64, u64)>>>()
    })?;
    let sent = samples.iter().map(|(_, n)| n).sum();
    Ok((
        Summary::of(samples.into_iter().map(|(t, _)| t).collect()),
        sent,
    ))
}

/// Whether a cell that passed `throughput` against `ideal` ran at the gateway's `ceiling`
/// rather than at what its routing allowed.
pub fn bound(throughput: f64, ceiling: Option<f64>, ideal: f64) -> bool {
    ceiling.is_some_and(|c| throughput >= AT_CEILING * c && c < BELOW_IDEAL * ideal)
}

/// A cell's throughput and the ideal it is judged against: a closed-loop cell's own ideal
/// (throughput over efficiency: a slowed node's cell re-measures the capacity), the scaling
/// cell's most workers against that many times one worker direct, a fault cell's throughput
/// before the fault against the capacity ideal. `None` for cells without one.
fn figures(cell: &Cell, capacity_ideal: f64) -> Option<(f64, f64)> {
    if let Some(s) = &cell.scaling {
        let last = s.steps.last()?;
        let ideal = s.one_worker_direct.median * last.workers as f64;
        return Some((last.throughput.median, ideal));
    }
    if let Some(e) = &cell.efficiency {
        let throughput = cell.throughput.median;
        return Some((throughput, throughput / e.median.max(1e-12)));
    }
    if !cell.faults.is_empty() {
        let before = Summary::of(cell.faults.iter().map(|f| f.throughput[0]).collect());
        return Some((before.median, capacity_ideal));
    }
    None
}

/// The ceiling and the ideal of a cell that ran at the gateway's ceiling; `None` when it did
/// not (or has no throughput to judge). The open-loop cell is never "at" it: its rates are
/// fractions of the ceiling when that is the lower, and its verdict says so.
pub fn at_ceiling(cell: &Cell, limits: Limits) -> Option<(f64, f64)> {
    let (throughput, ideal) = figures(cell, limits.ideal)?;
    let ceiling = limits.ceiling?;
    bound(throughput, Some(ceiling), ideal).then_some((ceiling, ideal))
}

/// What limited a cell, when the gateway's ceiling is below the cell's ideal: the gateway
/// (the cell ran at its ceiling: [`clause`]), or the routing (the cell stayed below the
/// ceiling, so the gateway could have passed more). `None` when the ceiling is not below the
/// ideal (or not measured): the efficiency then grades the routing alone.
pub fn limit_clause(cell: &Cell, limits: Limits) -> Option<String> {
    if let Some((c, ideal)) = at_ceiling(cell, limits) {
        return Some(clause(c, ideal));
    }
    let (throughput, ideal) = figures(cell, limits.ideal)?;
    let c = limits.ceiling.filter(|c| *c < BELOW_IDEAL * ideal)?;
    Some(format!(
        "{} of the gateway's own {c:.0} req/s ceiling, which it did not reach: the routing, not \
         the gateway's ceiling, cost the rest",
        crate::wording::ratio(throughput / c.max(1e-9))
    ))
}

/// The clause a verdict carries for a cell that ran at the ceiling: what it measured instead.
pub fn clause(ceiling: f64, ideal: f64) -> String {
    format!(
        "gateway-bound: the gateway's own ceiling is {ceiling:.0} req/s ({} of the {ideal:.0} req/s \
         ideal) and this cell ran at it, so the figure is the gateway's throughput, not a grade of \
         its routing",
        crate::wording::ratio(ceiling / ideal.max(1e-9))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_is_bound_only_at_a_ceiling_below_the_ideal() {
        // At its ceiling, the ceiling well below the ideal.
        assert!(bound(120.0, Some(130.0), 400.0));
        // Far below its ceiling: the routing limited it.
        assert!(!bound(60.0, Some(130.0), 400.0));
        // At a ceiling that is the ideal: nothing to say about the gateway.
        assert!(!bound(390.0, Some(395.0), 400.0));
        // No ceiling measured.
        assert!(!bound(120.0, None, 400.0));
    }

    /// A closed-loop cell that passed `throughput` at `efficiency` of its ideal.
    fn cell(throughput: f64, efficiency: f64) -> Cell {
        Cell {
            efficiency: Some(Summary::of(vec![efficiency])),
            ..Cell::new(
                "distribution",
                Summary::of(vec![throughput]),
                super::super::no_latency(),
            )
        }
    }

    #[test]
    fn a_clause_names_the_gateway_or_the_routing_as_the_limit() {
        let low = Limits {
            ceiling: Some(100.0),
            ideal: 400.0,
        };
        let at = limit_clause(&cell(95.0, 95.0 / 400.0), low).expect("a clause");
        assert!(at.starts_with("gateway-bound"), "{at}");
        let below = limit_clause(&cell(60.0, 60.0 / 400.0), low).expect("a clause");
        assert!(
            below.starts_with("0.60 of the gateway's own 100 req/s ceiling")
                && below.contains("routing"),
            "{below}"
        );
        let high = Limits {
            ceiling: Some(5000.0),
            ideal: 400.0,
        };
        assert_eq!(
            limit_clause(&cell(390.0, 0.975), high),
            None,
            "the routing alone"
        );
    }
}
