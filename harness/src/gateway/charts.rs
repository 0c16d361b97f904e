//! SVG charts of every gateway result side by side, in `results/gateways/`: efficiency per cell,
//! each node's share of the work against its share of the capacity, the latency the gateway adds
//! at low load, efficiency per worker count, and p99 per open-loop load.

use std::path::Path;

use super::GatewayResult;
use crate::charts::{self, Lines, PointRow, Series};

/// The chart files, relative to the results directory, with a caption each.
pub const FILES: [(&str, &str); 5] = [
    (
        "gateways/efficiency.svg",
        "efficiency against the capacity ideal, per cell",
    ),
    (
        "gateways/shares.svg",
        "each node's share of the work (point) and of the capacity (tick)",
    ),
    (
        "gateways/overhead.svg",
        "latency at low load, through each gateway and direct",
    ),
    (
        "gateways/scaling.svg",
        "efficiency per worker count, spare slots",
    ),
    (
        "gateways/open-loop.svg",
        "p99 from the intended send, per load",
    ),
];

/// Draws every chart that has data into `dir/gateways/`; returns the files drawn, with captions.
pub fn draw(
    dir: &Path,
    results: &[GatewayResult],
) -> anyhow::Result<Vec<(&'static str, &'static str)>> {
    let mut drawn = Vec::new();
    let mut chart = |i: usize, has_data: bool, draw: &dyn Fn(&Path) -> anyhow::Result<()>| {
        if has_data {
            draw(&dir.join(FILES[i].0))?;
            drawn.push(FILES[i]);
        }
        anyhow::Ok(())
    };
    let efficiency = efficiency_rows(results);
    chart(0, !efficiency.is_empty(), &|p| {
        charts::draw_points(
            p,
            "Gateways: throughput over the capacity ideal (median, min-max)",
            "efficiency",
            &efficiency,
            None,
        )
    })?;
    let shares = share_rows(results);
    chart(1, !shares.is_empty(), &|p| {
        charts::draw_points(
            p,
            "Gateways: share of the work per node (tick: share of the capacity)",
            "share of the served work",
            &shares,
            None,
        )
    })?;
    let overhead = overhead_series(results);
    chart(2, !overhead.is_empty(), &|p| {
        charts::draw_spectrum(
            p,
            "Low load (1 worker): latency percentiles through each gateway and direct",
            overhead.clone(),
        )
    })?;
    let (scaling, max_workers) = scaling_series(results);
    chart(3, !scaling.is_empty(), &|p| {
        charts::draw_lines(
            p,
            Lines {
                title: "Gateways with spare slots: efficiency per worker count (ideal 1.0)",
                x_label: "workers",
                y_label: "throughput / (workers x one worker direct)",
                log_x: true,
                log_y: false,
                series: scaling.clone(),
                ideal: Some(vec![(1.0, 1.0), (max_workers, 1.0)]),
            },
        )
    })?;
    let open_loop = open_loop_series(results);
    chart(4, !open_loop.is_empty(), &|p| {
        charts::draw_lines(
            p,
            Lines {
                title: "Gateways, open loop: p99 latency from the intended send",
                x_label: "load (% of the capacity ideal, or of the gateway's ceiling if lower)",
                y_label: "p99 (ms)",
                log_x: false,
                log_y: true,
                series: open_loop.clone(),
                ideal: None,
            },
        )
    })?;
    Ok(drawn)
}

fn efficiency_rows(results: &[GatewayResult]) -> Vec<PointRow> {
    let mut rows = Vec::new();
    for r in results {
        for cell in &r.cells {
            if let Some(e) = &cell.efficiency {
                rows.push(PointRow {
                    name: format!("{}: {}", r.label, cell.name),
                    median: e.median,
                    min: e.min,
                    max: e.max,
                    ideal: Some(1.0),
                });
            }
        }
    }
    rows
}

fn share_rows(results: &[GatewayResult]) -> Vec<PointRow> {
    let mut rows = Vec::new();
    for r in results {
        for cell in r.cells.iter().filter(|c| !c.shares.is_empty()) {
            for (i, (work, capacity)) in cell.shares.iter().enumerate() {
                rows.push(PointRow {
                    name: format!("{}: {} node {i}", r.label, cell.name),
                    median: *work,
                    min: *work,
                    max: *work,
                    ideal: Some(*capacity),
                });
            }
        }
    }
    rows
}

fn overhead_series(results: &[GatewayResult]) -> Series {
    let mut series = Series::new();
    for r in results {
        if let Some(o) = r.cells.iter().find_map(|c| c.overhead.as_ref()) {
            series.insert(r.label.clone(), charts::spectrum_points(&o.gateway_latency));
            series
                .entry("direct".into())
                .or_insert_with(|| charts::spectrum_points(&o.direct_latency));
        }
    }
    series
}

fn scaling_series(results: &[GatewayResult]) -> (Series, f64) {
    let mut series = Series::new();
    let mut max_workers: f64 = 1.0;
    for r in results {
        if let Some(s) = r.cells.iter().find_map(|c| c.scaling.as_ref()) {
            let points: Vec<(f64, f64)> = s
                .steps
                .iter()
                .map(|step| (step.workers as f64, step.efficiency.median))
                .collect();
            max_workers = points.iter().map(|p| p.0).fold(max_workers, f64::max);
            series.insert(r.label.clone(), points);
        }
    }
    (series, max_workers)
}

fn open_loop_series(results: &[GatewayResult]) -> Series {
    let mut series = Series::new();
    for r in results {
        if let Some(o) = r.cells.iter().find_map(|c| c.open_loop.as_ref()) {
            let points = o
                .steps
                .iter()
                .map(|s| (s.load * 100.0, s.p99_ms.median))
                .collect();
            series.insert(r.label.clone(), points);
        }
    }
    series
}
