//! The gateways' results side by side, for REPORT.md: one row per file in `results/gateways/`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;

use super::GatewayResult;
use super::bounds::Measure;

/// Recomputes the verdicts of every result in `dir/gateways/` and `dir/clients/` from its figures and
/// rewrites the files whose verdicts changed; returns how many changed.
pub fn refresh_verdicts(dir: &Path) -> anyhow::Result<usize> {
    let mut changed = 0;
    for sub in ["gateways", "clients"] {
        for result in read_in(dir, sub)? {
            let verdicts = super::verdicts_of(&result);
            if verdicts != result.verdicts {
                super::write_under(dir, sub, &GatewayResult { verdicts, ..result })?;
                changed += 1;
            }
        }
    }
    Ok(changed)
}

/// Every gateway result in `dir/gateways/`, by label.
pub fn read(dir: &Path) -> anyhow::Result<Vec<GatewayResult>> {
    read_in(dir, "gateways")
}

/// Every result in `dir/sub/` (`gateways` or `clients`), by label.
pub fn read_in(dir: &Path, sub: &str) -> anyhow::Result<Vec<GatewayResult>> {
    let dir = dir.join(sub);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut results = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let result: GatewayResult = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            results.push(result);
        }
    }
    results.sort_by(|a, b| a.label.cmp(&b.label));
    Ok(results)
}

/// The REPORT.md section, or an empty string when no gateway was measured.
pub fn report_section(dir: &Path) -> anyhow::Result<String> {
    let results = read(dir)?;
    if results.is_empty() {
        return Ok(String::new());
    }
    let mut out = String::from("\n## Gateways (`harness gateway`)\n");
    out.push_str(&tables(&results, "gateways"));
    let drawn = super::charts::draw(dir, &results).context("drawing the gateway charts")?;
    out.push('\n');
    for (file, caption) in drawn {
        let _ = writeln!(out, "![{caption}]({file})");
    }
    out.push_str(&measured_on(&results));
    Ok(out)
}

/// The at-a-glance columns: title, cell, measure, decimals.
const COLUMNS: [(&str, &str, Measure, usize); 9] = [
    ("equal nodes", "distribution", Measure::Efficiency, 2),
    ("a node 3x slower", "slow-node-3x", Measure::Efficiency, 2),
    ("a node 7x slower", "slow-node-7x", Measure::Efficiency, 2),
    (
        "spare slots, most workers",
        "scaling",
        Measure::Efficiency,
        2,
    ),
    ("p99 ms at 95% load", "open-loop", Measure::P99Ms, 1),
    (
        "busy node (503): client failures",
        "node-busy",
        Measure::ClientFailures,
        0,
    ),
    (
        "refusing node: after / before",
        "node-refuse",
        Measure::AfterOverBefore,
        2,
    ),
    (
        "hung node: after / before",
        "node-hang",
        Measure::AfterOverBefore,
        2,
    ),
    ("added p50 ms", "overhead", Measure::AddedP50Ms, 3),
];

/// The at-a-glance row of one result (empty when it lacks a default cell), for the terminal.
pub fn glance(result: &GatewayResult) -> String {
    glance_table(std::slice::from_ref(result))
}

/// One row per gateway measured with the default cells: the figures that tell gateways apart,
/// medians over repeats.
fn glance_table(results: &[GatewayResult]) -> String {
    use super::bounds::value_in;
    let full: Vec<&GatewayResult> = results
        .iter()
        .filter(|r| {
            COLUMNS
                .iter()
                .all(|(_, cell, ..)| r.cells.iter().any(|c| c.name == *cell))
        })
        .collect();
    if full.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\nAt a glance, every gateway measured with the default cells (efficiency is throughput \
         over the capacity ideal; (gw): the cell ran at the gateway's own ceiling, so the figure \
         is the gateway's throughput, not a grade of its routing; the ceiling is the gateway's \
         rate at zero service time; fault cells are 3 phases of `--phase`, the fault in the \
         middle; memory and CPU are the gateway's process group when the harness ran it; \
         medians over repeats; details below):\n\n| gateway |",
    );
    for (title, ..) in COLUMNS {
        let _ = write!(out, " {title} |");
    }
    for title in FOOTPRINT_COLUMNS {
        let _ = write!(out, " {title} |");
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(COLUMNS.len() + FOOTPRINT_COLUMNS.len()));
    out.push('\n');
    for r in full {
        match &r.server {
            Some(server) => {
                let _ = write!(out, "| {} ({server}) |", r.label);
            }
            None => {
                let _ = write!(out, "| {} |", r.label);
            }
        }
        let limits = super::Limits::of(r);
        for (_, cell, measure, decimals) in COLUMNS {
            let text = value_in(r, cell, measure)
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"));
            let bound = measure == Measure::Efficiency
                && r.cells
                    .iter()
                    .find(|c| c.name == cell)
                    .and_then(|c| super::ceiling::at_ceiling(c, limits))
                    .is_some();
            let _ = write!(out, " {text}{} |", if bound { " (gw)" } else { "" });
        }
        for text in footprint_cells(r) {
            let _ = write!(out, " {text} |");
        }
        out.push('\n');
    }
    out
}

/// The columns after [`COLUMNS`]: the gateway's ceiling and its own footprint.
const FOOTPRINT_COLUMNS: [&str; 3] = [
    "ceiling req/s (of ideal)",
    "memory MiB: ready / peak",
    "CPU us per request at ceiling",
];

fn footprint_cells(r: &GatewayResult) -> [String; 3] {
    let ideal: f64 = r.capacity.iter().sum();
    let ceiling = r.ceiling.as_ref().map_or_else(
        || "-".to_owned(),
        |c| {
            format!(
                "{:.0} ({})",
                c.median,
                crate::wording::ratio(c.median / ideal.max(1e-9))
            )
        },
    );
    let f = r.footprint.as_ref();
    let memory = f.map_or_else(
        || "-".to_owned(),
        |f| format!("{:.0} / {:.0}", f.idle_rss_mib, f.peak_rss_mib),
    );
    let cpu = f
        .and_then(|f| f.cpu_us_per_request_at_ceiling)
        .map_or_else(|| "-".to_owned(), |us| format!("{us:.0}"));
    [ceiling, memory, cpu]
}

fn node_description(r: &GatewayResult) -> String {
    let p = &r.params;
    let mut text = format!(
        "{} x {} slot, {} ms",
        p["nodes"], p["slots"], p["service_ms"]
    );
    let load = &p["workload"];
    if let Some(per_token) = load["per_token_ms"].as_f64() {
        let _ = write!(
            text,
            "; {} at {per_token} ms a token",
            load["name"].as_str().unwrap_or("?")
        );
    }
    for (key, name) in [("speeds", "speeds"), ("error_rates", "500 rates")] {
        if let Some(list) = p[key].as_array().filter(|l| !l.is_empty()) {
            let values: Vec<String> = list.iter().map(ToString::to_string).collect();
            let _ = write!(text, "; {name} {}", values.join(","));
        }
    }
    text
}

/// The fault cells: one row per gateway and fault, medians over repeats.
fn fault_table(results: &[GatewayResult]) -> String {
    let mut out = String::from(
        "\nA fault for the middle of three phases, set through the nodes' control API with the \
         gateway not restarted: the last node refusing, busy (503), hanging, resetting, stalling \
         every request, or answering 5% with 500; or every node's control plane answering in 1 s. \
         Retries are node-side attempts beyond one per client request; under a streamed workload \
         (`--workload chat|trace`) the reset and the stall strike 2 tokens into each answer, and \
         streams cut after their first token and whole ones spliced from a retried stream are \
         counted (else -); medians over repeats:\n\n\
         | gateway | fault | throughput during / before | after / before | failed at the client (% of those sent during the fault) | failures until (ms into the fault) | retries | faulty node sent work until (ms into the fault) | recovered node used again after (ms) | streams cut / spliced |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut any = false;
    for r in results {
        for cell in r.cells.iter().filter(|c| !c.faults.is_empty()) {
            any = true;
            let median = |f: &dyn Fn(&super::faults::FaultReport) -> Option<f64>| {
                let values: Vec<f64> = cell.faults.iter().filter_map(f).collect();
                if values.is_empty() {
                    "-".to_owned()
                } else {
                    format!("{:.0}", crate::summary::Summary::of(values).median)
                }
            };
            let ratio = |i: usize| {
                let values: Vec<f64> = cell
                    .faults
                    .iter()
                    .map(|f| f.throughput[i] / f.throughput[0].max(1e-9))
                    .collect();
                crate::summary::Summary::of(values).median
            };
            let failed_during = crate::summary::Summary::of(
                cell.faults
                    .iter()
                    .map(|f| 100.0 * f.during_fault.1 as f64 / f.during_fault.0.max(1) as f64)
                    .collect(),
            )
            .median;
            let _ = writeln!(
                out,
                "| {} | {} | {:.2} | {:.2} | {} ({failed_during:.1}%) | {} | {} | {} | {} | {} / {} |",
                r.label,
                cell.name,
                ratio(1),
                ratio(2),
                median(&|f| Some(f.client_failures as f64)),
                median(&|f| f.failures_for_ms),
                median(&|f| Some(f.audit.retries as f64)),
                median(&|f| f.sent_to_node_for_ms),
                median(&|f| f.back_in_use_after_ms),
                median(&|f| f.tokens.as_ref().map(|t| t.cut_after_first_token as f64)),
                median(&|f| f.spliced_streams.map(|n| n as f64)),
            );
        }
    }
    if any { out } else { String::new() }
}

/// The scaling cells: efficiency per worker count, medians over repeats.
fn scaling_table(results: &[GatewayResult]) -> String {
    let mut out = String::from(
        "\nThe `scaling` cell: every node given enough slots for the most workers spread evenly \
         (`max(--slots, workers / nodes)`), closed-loop workers doubling; \
         efficiency is requests/s over workers x one worker straight at a node; medians over \
         repeats:\n\n| gateway | slots per node | workers: efficiency (req/s) |\n|---|---:|---|\n",
    );
    let mut any = false;
    for r in results {
        for s in r.cells.iter().filter_map(|c| c.scaling.as_ref()) {
            any = true;
            let steps: Vec<String> = s
                .steps
                .iter()
                .map(|step| {
                    format!(
                        "{}: **{:.2}** ({:.0})",
                        step.workers, step.efficiency.median, step.throughput.median
                    )
                })
                .collect();
            let _ = writeln!(out, "| {} | {} | {} |", r.label, s.slots, steps.join(", "));
        }
    }
    if any { out } else { String::new() }
}

/// The open-loop cells: latency from the intended send at each load, medians over repeats.
fn open_loop_table(results: &[GatewayResult]) -> String {
    let mut out = String::from(
        "\nThe `open-loop` cell: Poisson arrivals at fractions of the capacity ideal for one phase \
         each, latency from the intended send time (p50 of the last repeat, p99 median over \
         repeats):\n\n| gateway | ideal req/s | load: p50 / p99 ms | late sends | failed |\n|---|---:|---|---:|---:|\n",
    );
    let mut any = false;
    for r in results {
        for o in r.cells.iter().filter_map(|c| c.open_loop.as_ref()) {
            any = true;
            let steps: Vec<String> = o
                .steps
                .iter()
                .map(|s| {
                    format!(
                        "{:.0}%: {:.1} / **{:.1}**",
                        s.load * 100.0,
                        s.latency.p50,
                        s.p99_ms.median
                    )
                })
                .collect();
            let late: u64 = o.steps.iter().map(|s| s.late).sum();
            let failed: u64 = o.steps.iter().map(|s| s.failed).sum();
            let _ = writeln!(
                out,
                "| {} | {:.0} | {} | {late} | {failed} |",
                r.label,
                o.ideal,
                steps.join(", ")
            );
        }
    }
    if any { out } else { String::new() }
}

/// The overhead cells: latency added at low load and the peak rate, medians over repeats.
fn overhead_table(results: &[GatewayResult]) -> String {
    let mut out = String::from(
        "\nWhat the gateway itself costs (the `overhead` cell): latency added at low load (1 \
         worker, the nodes' service time) and requests/s at zero service time, each paired with \
         the same load straight at one node; medians over repeats:\n\n\
         | gateway | added p50 ms | added p99 ms | direct p50 ms | peak through the gateway req/s | peak direct req/s | ratio |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut any = false;
    for r in results {
        for o in r.cells.iter().filter_map(|c| c.overhead.as_ref()) {
            any = true;
            let _ = writeln!(
                out,
                "| {} | {:.3} | {:.3} | {:.3} | {:.0} | {:.0} | {:.2} |",
                r.label,
                o.added_p50_ms.median,
                o.added_p99_ms.median,
                o.direct_latency.p50,
                o.gateway_peak.median,
                o.direct_peak.median,
                o.gateway_peak.median / o.direct_peak.median.max(1e-9),
            );
        }
    }
    if any { out } else { String::new() }
}

/// Every cell's own figures ([`super::CellSpec::figures`]), one row per gateway and cell: the
/// report's place for a cell that brings no table of its own.
fn figures_table(results: &[GatewayResult]) -> String {
    let mut out = String::from(
        "\nCells' own figures (named as in bounds files), medians over repeats (range):\n\n\
         | gateway | cell | figures |\n|---|---|---|\n",
    );
    let mut any = false;
    for r in results {
        for cell in r.cells.iter().filter(|c| !c.figures.is_empty()) {
            any = true;
            let figures: Vec<String> = cell
                .figures
                .iter()
                .map(|(name, s)| format!("{name} {:.3} ({:.3}-{:.3})", s.median, s.min, s.max))
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                r.label,
                cell.name,
                figures.join("; ")
            );
        }
    }
    if any { out } else { String::new() }
}

/// The streamed workloads' token figures, each cell beside the baseline straight at a node
/// carrying its even share of the workers (the `direct` cell's), last repeat of each.
fn tokens_table(results: &[GatewayResult]) -> String {
    let mut out = String::from(
        "\nStreamed workloads (`--workload chat|trace`): time to first token (TTFT), between \
         tokens (ITL) and per output token (TPOT), through the gateway, with the same figure \
         straight at a node carrying its even share of the workers in brackets; goodput counts \
         whole answers within the SLO (default: 3x those direct p50s). Last repeat of each \
         cell:\n\n\
         | gateway | workload | cell | TTFT p50 / p99 ms | ITL p50 / p99 ms | TPOT p50 ms | output tokens/s | goodput req/s (SLO) | whole / sent | cut after first token | left on purpose |\n\
         |---|---|---|---:|---:|---:|---:|---|---:|---:|---:|\n",
    );
    let mut any = false;
    for r in results {
        let direct = r.cells.iter().find(|c| c.name == "direct");
        let Some(d) = direct.and_then(|c| c.tokens.as_ref()) else {
            continue;
        };
        for cell in r.cells.iter().filter(|c| c.name != "direct") {
            let Some(t) = &cell.tokens else { continue };
            any = true;
            let goodput = match (t.goodput, t.slo) {
                (Some(rate), Some(slo)) => format!("{rate:.1} ({})", String::from(slo)),
                _ => "-".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.1} / {:.1} ({:.1} / {:.1}) | {:.2} / {:.2} ({:.2} / {:.2}) | {:.2} ({:.2}) | {:.0} | {goodput} | {} / {} | {} | {} |",
                r.label,
                r.params["workload"]["name"].as_str().unwrap_or("embed"),
                cell.name,
                t.ttft.p50,
                t.ttft.p99,
                d.ttft.p50,
                d.ttft.p99,
                t.itl.p50,
                t.itl.p99,
                d.itl.p50,
                d.itl.p99,
                t.tpot.p50,
                d.tpot.p50,
                t.output_tokens_per_s,
                t.whole,
                t.requests,
                t.cut_after_first_token,
                t.left,
            );
        }
    }
    if any { out } else { String::new() }
}

/// What each gateway asked the nodes on its own during its whole measurement.
fn control_plane_lines(results: &[GatewayResult]) -> String {
    let mut out = String::from(
        "\nControl-plane requests each gateway sent the nodes on its own (health checks, model \
         lists), over its whole measurement:\n\n",
    );
    for r in results {
        let seen = match &r.control_plane {
            None => "not measured (an earlier result)".to_owned(),
            Some(traffic) if traffic.is_empty() => "none".to_owned(),
            Some(traffic) => traffic
                .iter()
                .map(|t| format!("`{}` {} ({:.1}/s)", t.endpoint, t.requests, t.per_second))
                .collect::<Vec<_>>()
                .join(", "),
        };
        let _ = writeln!(out, "- {}: {seen}", r.label);
    }
    out
}

/// The REPORT.md section of the client libraries (`results/clients/`), or an empty string.
pub fn clients_section(dir: &Path) -> anyhow::Result<String> {
    let results = read_in(dir, "clients")?;
    if results.is_empty() {
        return Ok(String::new());
    }
    let mut out = String::from(
        "\n## Client libraries (`harness client`)\n\nThe same cells, audit and columns as the \
         gateways', with the load sent by the library's own pool from the user's driver \
         program (`docs/clients.md`); then how its driver runs ended and whether the library's \
         own statistics agree with the nodes' served logs.\n",
    );
    out.push_str(&crate::client::table::glance(&results));
    // The shared tables name their first column for gateways.
    out.push_str(&tables(&results, "clients").replace("| gateway |", "| library |"));
    out.push_str(&crate::client::table::runs(&results));
    out.push_str(&measured_on(&results));
    Ok(out)
}

/// Where the first of `results` was measured, for a section's last line.
fn measured_on(results: &[GatewayResult]) -> String {
    results.first().map_or_else(String::new, |first| {
        format!(
            "\nMeasured on {}; parameters of each run in its JSON file.\n",
            first.machine.one_line()
        )
    })
}

/// The tables every result in `results/SUB/` gets: at a glance, per cell with its audit,
/// scaling, open loop, faults, overhead, a cell's own figures, tokens, control plane.
fn tables(results: &[GatewayResult], sub: &str) -> String {
    let mut out = glance_table(results);
    out.push_str(&format!(
        "\nEach row is one `results/{sub}/LABEL.json`: load through the system under test against the \
         capacity ideal (each node's throughput measured straight at it, summed), each node's \
         share of the served work beside its share of the capacity, and every request classified \
         by joining the client's outcome with the nodes' served logs (left: streams the client \
         left on purpose, `--leave-after`, in brackets those a node still generated in full).\n\n\
         | gateway | nodes | efficiency | work share (capacity share) per node | served once | more than once | without a node | failed but served | never served | left (served) | retries | p50 / p99 ms |\n\
         |---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    ));
    for (r, cell) in results
        .iter()
        .flat_map(|r| r.cells.iter().map(move |c| (r, c)))
    {
        let (Some(eff), Some(a)) = (&cell.efficiency, &cell.audit) else {
            continue;
        };
        let shares: Vec<String> = cell
            .shares
            .iter()
            .map(|(work, cap)| format!("{:.0}% ({:.0}%)", work * 100.0, cap * 100.0))
            .collect();
        let _ = writeln!(
            out,
            "| {} {} | {} | **{:.2}** ({:.2}-{:.2}) | {} | {} | {} | {} | {} | {} | {} ({}) | {} | {:.1} / {:.1} |",
            r.label,
            if cell.name == "distribution" {
                String::new()
            } else {
                format!("({})", cell.name)
            },
            node_description(r),
            eff.median,
            eff.min,
            eff.max,
            shares.join(", "),
            a.served_once,
            a.served_more_than_once,
            a.answered_without_node,
            a.failed_but_served,
            a.never_served,
            a.left + a.left_but_served,
            a.left_but_served,
            a.retries,
            cell.latency.p50,
            cell.latency.p99,
        );
    }
    out.push_str(&scaling_table(results));
    out.push_str(&open_loop_table(results));
    out.push_str(&fault_table(results));
    out.push_str(&overhead_table(results));
    out.push_str(&figures_table(results));
    out.push_str(&tokens_table(results));
    out.push_str(&control_plane_lines(results));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A misspelt cell in the table would show "-" for every gateway: each column must name a
    /// cell and measure that bounds accept.
    #[test]
    fn every_glance_column_names_a_known_cell() {
        use super::super::bounds::Metric;
        for (title, cell, measure, _) in COLUMNS {
            let name = Metric {
                workload: crate::bounds::WORKLOADS[0],
                cell: cell.into(),
                measure,
            }
            .to_string();
            assert!(name.parse::<Metric>().is_ok(), "{title}: {name}");
        }
    }
}
