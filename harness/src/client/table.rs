//! The client libraries' tables in REPORT.md: at a glance (the plan's targets and the faults, one
//! row per library), and how each library's driver runs went.

use std::fmt::Write as _;

use super::DriverRun;
use super::verdict::per_request_cpu;
use crate::gateway::{Cell, GatewayResult};

/// The at-a-glance table: one row per result with the default cells.
pub fn glance(results: &[GatewayResult]) -> String {
    let mut out = String::from(
        "\n| library | equal nodes | a node 3x slower | 7x slower | Target 1: 2 nodes / 1 (plan 1.8x) | Target 2: 12 workers / 1 (plan 10-12x) | refused node: throughput during / before | failed at the client (refused node) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in results {
        let cell = |name: &str| r.cells.iter().find(|c| c.name == name);
        let efficiency = |name: &str| {
            cell(name)
                .and_then(|c| c.efficiency.as_ref())
                .map_or_else(|| "-".to_owned(), |e| format!("{:.2}", e.median))
        };
        let speedup = cell("two-node")
            .and_then(|c| c.figures.get("speedup"))
            .map_or_else(|| "-".to_owned(), |s| range(s.median, s.min, s.max));
        let refused = cell("node-refuse");
        let during = refused.map_or_else(
            || "-".to_owned(),
            |c| median(c, |f| f.throughput[1] / f.throughput[0].max(1e-9), 2),
        );
        let failed = refused.map_or_else(
            || "-".to_owned(),
            |c| median(c, |f| f.client_failures as f64, 0),
        );
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {speedup} | {} | {during} | {failed} |",
            r.label,
            efficiency("distribution"),
            efficiency("slow-node-3x"),
            efficiency("slow-node-7x"),
            cell("scaling").map_or_else(|| "-".to_owned(), scaling),
        );
    }
    out
}

fn range(median: f64, min: f64, max: f64) -> String {
    format!("**{median:.2}x** ({min:.2}-{max:.2})")
}

/// The median over a fault cell's runs of `of`, with `decimals`.
fn median(
    cell: &Cell,
    of: fn(&crate::gateway::faults::FaultReport) -> f64,
    decimals: usize,
) -> String {
    let values: Vec<f64> = cell.faults.iter().map(of).collect();
    format!("{:.decimals$}", crate::summary::Summary::of(values).median)
}

/// The most workers' throughput over one worker's, each repeat paired with its own.
fn scaling(cell: &Cell) -> String {
    let Some(steps) = cell.scaling.as_ref().map(|s| &s.steps) else {
        return "-".to_owned();
    };
    let (Some(first), Some(last)) = (steps.first(), steps.last()) else {
        return "-".to_owned();
    };
    let ratios: Vec<f64> = last
        .throughput
        .samples
        .iter()
        .zip(&first.throughput.samples)
        .map(|(many, one)| many / one.max(1e-9))
        .collect();
    let s = crate::summary::Summary::of(ratios);
    format!("{} at {}", range(s.median, s.min, s.max), last.workers)
}

/// The REPORT.md table of the drivers' runs, one row per result: how the runs ended, what the
/// reports lacked, the library's statistics against the nodes, and whose CPU per request.
pub fn runs(results: &[GatewayResult]) -> String {
    let mut out = String::from(
        "\n| library | driver runs | ended cleanly | requests asked | unreported | malformed lines | statistics checked (requests) | differences | CPU/request, fitted: driver / harness us |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in results.iter().filter(|r| !r.driver_runs.is_empty()) {
        let runs = &r.driver_runs;
        let sum = |f: &dyn Fn(&DriverRun) -> u64| runs.iter().map(f).sum::<u64>();
        let asked = sum(&|d| d.requests);
        let checked = sum(&|d| d.stats.as_ref().map_or(0, |s| s.sent));
        let (driver_cpu, harness_cpu) = per_request_cpu(runs);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {asked} | {} | {} | {checked} | {} | {:.0} / {:.0} |",
            r.label,
            runs.len(),
            runs.iter().filter(|d| d.exit.clean()).count(),
            sum(&|d| d.lines.unreported),
            sum(&|d| d.lines.malformed),
            sum(&|d| d.stats.as_ref().map_or(0, |s| s.differences)),
            driver_cpu,
            harness_cpu,
        );
    }
    for r in results {
        if let Some(run) = r.driver_runs.iter().find(|d| !d.exit.clean()) {
            let _ = write!(
                out,
                "\n{}: run {} ended {:?}; the end of its output:\n\n```\n{}\n```\n",
                r.label, run.run_id, run.exit, run.output_tail
            );
        }
    }
    out
}
