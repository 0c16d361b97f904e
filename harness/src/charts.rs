//! SVG charts (plotters, SVG backend only, so no font files are needed): each scenario's headline
//! figures against the ideal.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use crate::results::{Row, ScenarioResult};

/// Chart files a scenario produces (none for a name this harness does not know).
pub fn charts_for(scenario: &str) -> Vec<String> {
    crate::scenarios::named(scenario).map_or_else(Vec::new, |s| {
        s.charts().iter().map(|c| (*c).to_owned()).collect()
    })
}

/// Named lines of (x, y) points.
pub type Series = BTreeMap<String, Vec<(f64, f64)>>;

/// Strong, distinguishable colours (plotters' `Palette99` includes pale ones that vanish on white).
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
    RGBColor(188, 189, 34),
    RGBColor(64, 64, 64),
];

fn color(i: usize) -> RGBAColor {
    COLORS[i % COLORS.len()].to_rgba()
}

fn series(result: &ScenarioResult, metric: &str, x_of: impl Fn(&str) -> Option<f64>) -> Series {
    let mut out = Series::new();
    for r in result.rows.iter().filter(|r| r.metric == metric) {
        if let Some(x) = x_of(&r.case) {
            out.entry(r.variant.clone())
                .or_default()
                .push((x, r.value.median));
        }
    }
    out
}

/// p50, p90, p99, p99.9 and max as (percentile, ms) points.
pub fn spectrum_points(l: &crate::summary::Latency) -> Vec<(f64, f64)> {
    vec![
        (50.0, l.p50),
        (90.0, l.p90),
        (99.0, l.p99),
        (99.9, l.p999),
        (100.0, l.max),
    ]
}

/// A latency percentile spectrum, one line per series, log latency axis.
pub fn draw_spectrum(path: &Path, title: &str, series: Series) -> anyhow::Result<()> {
    draw_lines(
        path,
        Lines {
            title,
            x_label: "percentile",
            y_label: "latency (ms)",
            log_x: false,
            log_y: true,
            series,
            ideal: None,
        },
    )
}

fn number_after(case: &str, prefix: &str) -> Option<f64> {
    case.strip_prefix(prefix)?.parse().ok()
}

/// One line chart.
pub(crate) struct Lines<'a> {
    /// Caption.
    pub title: &'a str,
    /// X axis.
    pub x_label: &'a str,
    /// Y axis.
    pub y_label: &'a str,
    /// Log-scale x axis.
    pub log_x: bool,
    /// Log-scale y axis.
    pub log_y: bool,
    /// The lines.
    pub series: Series,
    /// A black line with no markers.
    pub ideal: Option<Vec<(f64, f64)>>,
}

fn bounds(lines: &Lines) -> ((f64, f64), (f64, f64)) {
    let points = lines
        .series
        .values()
        .flatten()
        .chain(lines.ideal.iter().flatten());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in points.filter(|(x, y)| x.is_finite() && y.is_finite()) {
        (x0, x1, y0, y1) = (x0.min(*x), x1.max(*x), y0.min(*y), y1.max(*y));
    }
    if x0 > x1 {
        return ((1.0, 2.0), (1.0, 2.0));
    }
    let y0 = if lines.log_y {
        (y0 * 0.7).max(1e-3)
    } else {
        0.0
    };
    ((x0, x1.max(x0 + 1.0)), (y0, y1 * 1.15))
}

pub(crate) fn draw_lines(path: &Path, lines: Lines) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let ((x0, x1), (y0, y1)) = bounds(&lines);
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(lines.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64);
    macro_rules! plot {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(lines.x_label)
                .y_desc(lines.y_label)
                .draw()?;
            if let Some(ideal) = &lines.ideal {
                chart
                    .draw_series(LineSeries::new(
                        ideal.iter().copied(),
                        BLACK.stroke_width(1),
                    ))?
                    .label("ideal")
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK));
            }
            for (i, (name, points)) in lines.series.iter().enumerate() {
                let color = color(i);
                chart
                    .draw_series(LineSeries::new(
                        points.iter().copied(),
                        color.stroke_width(2),
                    ))?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
                chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperLeft)
                .draw()?;
        }};
    }
    match (lines.log_x, lines.log_y) {
        (true, true) => {
            plot!(builder.build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())?)
        }
        (true, false) => plot!(builder.build_cartesian_2d((x0..x1).log_scale(), y0..y1)?),
        (false, true) => plot!(builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale())?),
        (false, false) => plot!(builder.build_cartesian_2d(x0..x1, y0..y1)?),
    }
    root.present()?;
    Ok(())
}

/// One row of a [`draw_points`] chart: a median with its min-max bar, and the row's own ideal.
pub struct PointRow {
    /// Label on the left.
    pub name: String,
    /// The point.
    pub median: f64,
    /// Left end of the bar.
    pub min: f64,
    /// Right end of the bar.
    pub max: f64,
    /// A black tick where the row would be if nothing were lost.
    pub ideal: Option<f64>,
}

/// A vertical reference line across every row, with its legend text.
pub struct Reference<'a> {
    /// Where.
    pub x: f64,
    /// Legend.
    pub label: &'a str,
}

/// Speedups as horizontal points with min-max bars, each beside its own ideal (black tick) and
/// SOLLOL's measured 1.12x (red line).
pub(crate) fn draw_speedups(
    path: &Path,
    result: &ScenarioResult,
    metric: &str,
    title: &str,
) -> anyhow::Result<()> {
    let rows: Vec<PointRow> = result
        .rows
        .iter()
        .filter(|r| r.metric == metric)
        .map(|r| PointRow {
            name: format!("{}: {}", r.variant, r.case),
            median: r.value.median,
            min: r.value.min,
            max: r.value.max,
            ideal: r.ideal,
        })
        .collect();
    let sollol = Reference {
        x: 1.12,
        label: "SOLLOL measured 1.12x",
    };
    draw_points(path, title, "speedup (x)", &rows, Some(sollol))
}

/// Horizontal points with min-max bars, each beside its own ideal (black tick), and an optional
/// reference line (red).
// Long on purpose: plotters configures one figure through a sequence of builder calls; split up,
// each piece would only pass the drawing area on.
pub fn draw_points(
    path: &Path,
    title: &str,
    x_desc: &str,
    rows: &[PointRow],
    reference: Option<Reference>,
) -> anyhow::Result<()> {
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    let height = 120 + 34 * rows.len() as u32;
    let root = SVGBackend::new(path, (1100, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let right = rows
        .iter()
        .map(|r| r.max.max(r.ideal.unwrap_or(0.0)))
        .chain(reference.as_ref().map(|r| r.x))
        .fold(f64::MIN_POSITIVE, f64::max)
        * 1.1;
    let n = rows.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(360)
        .build_cartesian_2d(0f64..right, -0.5f64..(n - 0.5))?;
    chart
        .configure_mesh()
        .y_labels(rows.len())
        .y_label_formatter(&|y| {
            let i = y.round();
            if (y - i).abs() < 1e-6 && i >= 0.0 {
                names
                    .get(i as usize)
                    .map_or_else(String::new, |s| (*s).to_owned())
            } else {
                String::new()
            }
        })
        .x_desc(x_desc)
        .draw()?;
    if let Some(reference) = &reference {
        chart
            .draw_series(LineSeries::new(
                [(reference.x, -0.5), (reference.x, n - 0.5)],
                RED.stroke_width(1),
            ))?
            .label(reference.label)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED));
    }
    chart
        .draw_series(rows.iter().enumerate().filter_map(|(i, r)| {
            let y = i as f64;
            r.ideal.map(|ideal| {
                PathElement::new(
                    vec![(ideal, y - 0.35), (ideal, y + 0.35)],
                    BLACK.stroke_width(2),
                )
            })
        }))?
        .label("capacity ideal")
        .legend(|(x, y)| {
            PathElement::new(vec![(x + 9, y - 6), (x + 9, y + 6)], BLACK.stroke_width(2))
        });
    let bars = rows.iter().enumerate().map(|(i, r)| {
        let style = color(i).stroke_width(2);
        ErrorBar::new_horizontal(i as f64, r.min, r.median, r.max, style, 10)
    });
    chart.draw_series(bars)?;
    let medians = rows.iter().enumerate();
    chart.draw_series(
        medians.map(|(i, r)| Circle::new((r.median, i as f64), 5, color(i).filled())),
    )?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Draws every chart of `result` into `dir` (none for a scenario this harness does not know,
/// such as one a newer harness wrote).
pub fn draw(dir: &Path, result: &ScenarioResult) -> anyhow::Result<()> {
    crate::scenarios::named(&result.scenario).map_or(Ok(()), |s| s.draw(dir, result))
}

/// Throughput relative to one worker, per variant, against the ideal line.
pub(crate) fn draw_scaling(dir: &Path, result: &ScenarioResult) -> anyhow::Result<()> {
    let curves = series(result, "throughput_rel", |c| number_after(c, "workers="));
    let max_x = curves.values().flatten().map(|p| p.0).fold(1.0, f64::max);
    draw_lines(
        &dir.join("scaling.svg"),
        Lines {
            title: "Throughput relative to 1 worker (ideal: = workers)",
            x_label: "workers",
            y_label: "throughput / 1-worker throughput",
            log_x: true,
            log_y: true,
            series: curves,
            ideal: Some(vec![(1.0, 1.0), (max_x, max_x)]),
        },
    )
}

/// Bookkeeping cost per request against threads, per ledger.
pub(crate) fn draw_contention(dir: &Path, result: &ScenarioResult) -> anyhow::Result<()> {
    let curves = series(result, "bookkeeping", |c| number_after(c, "threads="));
    draw_lines(
        &dir.join("contention.svg"),
        Lines {
            title: "Bookkeeping cost per request without I/O",
            x_label: "threads",
            y_label: "ns per request",
            log_x: true,
            log_y: true,
            series: curves,
            ideal: None,
        },
    )
}

/// The two-node speedups and latency spectrum.
pub(crate) fn draw_two_node(dir: &Path, result: &ScenarioResult) -> anyhow::Result<()> {
    draw_speedups(
        &dir.join("two-node.svg"),
        result,
        "speedup",
        "Two nodes vs one: speedup per variant (median, min-max)",
    )?;
    let mut latency = Series::new();
    let two_nodes = |r: &&Row| r.metric == "throughput" && r.case == "2 nodes";
    for r in result.rows.iter().filter(two_nodes) {
        if let Some(l) = r.latency_ms {
            latency.insert(r.variant.clone(), spectrum_points(&l));
        }
    }
    draw_spectrum(
        &dir.join("two-node-latency.svg"),
        "Two nodes: latency percentiles (p50, p90, p99, p99.9, max)",
        latency,
    )
}

/// The open loop's latency spectrum at 95% of capacity, from the intended and the actual send.
pub(crate) fn draw_open_loop(dir: &Path, result: &ScenarioResult) -> anyhow::Result<()> {
    let mut spectrum = Series::new();
    let at_95 = |r: &&Row| r.case.starts_with("95%") && r.metric.starts_with("latency_p99");
    for r in result.rows.iter().filter(at_95) {
        if let Some(l) = r.latency_ms {
            let kind = if r.metric.ends_with("uncorrected") {
                "from actual send"
            } else {
                "from intended send"
            };
            spectrum.insert(format!("{} {kind}", r.variant), spectrum_points(&l));
        }
    }
    draw_spectrum(
        &dir.join("open-loop.svg"),
        "Open loop at 95% of capacity: latency percentiles (p50, p90, p99, p99.9, max)",
        spectrum,
    )
}
