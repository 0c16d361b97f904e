//! The sentences printed after a gateway run and kept in its result: each computed from the
//! cell's numbers, in the order the cells ran. A cell that ran at the gateway's own ceiling
//! ([`super::ceiling`]) says so instead of grading the routing.

use super::{Audit, Cell, Limits};
use crate::summary::Summary;
use crate::wording::ratio;

fn fault(cell: &Cell, limits: Limits) -> Option<String> {
    let reports = &cell.faults;
    let first = reports.first()?;
    let median = |f: &dyn Fn(&super::faults::FaultReport) -> f64| {
        Summary::of(reports.iter().map(f).collect()).median
    };
    let during = ratio(median(&|r| r.throughput[1] / r.throughput[0].max(1e-9)));
    let after = ratio(median(&|r| r.throughput[2] / r.throughput[0].max(1e-9)));
    let failures = median(&|r| r.client_failures as f64);
    let failed = if failures == 0.0 {
        "no request failed at the client".to_owned()
    } else {
        let rate = median(&|r| r.during_fault.1 as f64 / r.during_fault.0.max(1) as f64);
        let until = median(&|r| r.failures_for_ms.unwrap_or(0.0));
        format!(
            "{failures:.0} requests failed at the client ({:.1}% of those sent during the fault), the last sent {until:.0} ms into it",
            rate * 100.0
        )
    };
    let retries = median(&|r| r.audit.retries as f64);
    let sent = reports
        .iter()
        .filter_map(|r| r.sent_to_node_for_ms)
        .collect::<Vec<_>>();
    let sent = if sent.is_empty() {
        String::new()
    } else {
        format!(
            "; the node got work until {:.0} ms into the fault",
            Summary::of(sent).median
        )
    };
    let back = reports
        .iter()
        .filter_map(|r| r.back_in_use_after_ms)
        .collect::<Vec<_>>();
    let back = if back.is_empty() {
        "the node got no work after it came back".to_owned()
    } else {
        format!(
            "work reached the recovered node {:.0} ms after it came back",
            Summary::of(back).median
        )
    };
    let mid_stream = first.tokens.is_some();
    let what = match first.fault {
        super::faults::NodeFault::Stall { ms } if mid_stream => format!(
            " ({ms} ms stall {} tokens into each stream)",
            super::faults::MID_STREAM_TOKENS
        ),
        super::faults::NodeFault::Reset if mid_stream => format!(
            " (reset {} tokens into each stream)",
            super::faults::MID_STREAM_TOKENS
        ),
        super::faults::NodeFault::Stall { ms } => format!(" ({ms} ms stall per request)"),
        _ => String::new(),
    };
    let streams = if mid_stream {
        let cut = median(&|r| {
            r.tokens
                .as_ref()
                .map_or(0.0, |t| t.cut_after_first_token as f64)
        });
        let spliced = median(&|r| r.spliced_streams.unwrap_or(0) as f64);
        format!(
            "; {cut:.0} streams cut after their first token reached the client, {spliced:.0} whole ones spliced from a retried stream (more tokens than asked)"
        )
    } else {
        String::new()
    };
    Some(format!(
        "{}{what}: throughput during the fault {during} and after it {after} of before; {failed}{streams}; {retries:.0} retries{sent}; {back} ({} of 3 x {} ms).{unused}{settle}{bound}",
        cell.name,
        crate::wording::medians_of(reports.len(), "run", "runs"),
        first.phase_ms,
        unused = unused_node(reports),
        settle = settle(reports),
        bound = at_ceiling(cell, limits, median(&|r| r.throughput[0])),
    ))
}

/// How long the gateway took to use every node again before the runs, when that was long.
fn settle(reports: &[super::faults::FaultReport]) -> String {
    let measured = reports.iter().filter(|r| !r.fresh_start);
    let settled: Vec<f64> = measured
        .clone()
        .filter_map(|r| r.settled_after_ms)
        .collect();
    let unsettled = measured.count() - settled.len();
    let slowest = settled.iter().copied().fold(0.0, f64::max);
    if unsettled > 0 {
        format!(
            " Before {unsettled} of the runs the gateway did not send every node work within {:.0} s of what came before (after the first such run the rest started without waiting).",
            super::faults::SETTLE_LIMIT.as_secs_f64()
        )
    } else if slowest > 1_000.0 {
        format!(
            " Before the runs the gateway took up to {:.1} s to send every node work again after what came before.",
            slowest / 1e3
        )
    } else {
        String::new()
    }
}

/// The remark for a fault cell whose failing node the gateway never used: it has nothing to
/// show about the fault (not for the slow control plane, which every node has).
fn unused_node(reports: &[super::faults::FaultReport]) -> &'static str {
    let faulty: u64 = reports
        .iter()
        .map(|r| r.audit.nodes.last().map_or(0, |n| n.attempts))
        .sum();
    let every_node = reports
        .first()
        .is_some_and(|r| matches!(r.fault, super::faults::NodeFault::SlowControlPlane));
    if faulty == 0 && !every_node {
        " The gateway sent the failing node no request in any run, so this cell cannot say what it does with a failing node."
    } else {
        ""
    }
}

/// The remark for a fault cell whose "before" phase (at `before` req/s) ran at the gateway's
/// own ceiling.
fn at_ceiling(cell: &Cell, limits: Limits, before: f64) -> String {
    super::ceiling::at_ceiling(cell, limits).map_or_else(String::new, |(c, ideal)| {
        format!(
            " Before the fault the cell ran at {before:.0} req/s, at the gateway's own ceiling \
             ({c:.0} req/s, {} of the {ideal:.0} req/s ideal): what the fault took away is \
             measured from that ceiling, not from what the nodes could serve.",
            ratio(c / ideal.max(1e-9)),
        )
    })
}

/// Every cell's verdicts, in the order the cells were measured.
pub(super) fn all(cells: &[Cell], service_ms: f64, limits: Limits) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(c) = limits.ceiling {
        out.push(format!(
            "ceiling: at zero service time the gateway passes {c:.0} req/s, {} of the {:.0} req/s capacity ideal{}.",
            ratio(c / limits.ideal.max(1e-9)),
            limits.ideal,
            if c < super::ceiling::BELOW_IDEAL * limits.ideal {
                ": cells that reach it measure the gateway, not its routing"
            } else {
                ""
            }
        ));
    }
    let direct = cells.iter().find(|c| c.name == "direct");
    for cell in cells {
        out.extend(tokens(cell, direct));
        out.extend(fault(cell, limits));
        out.extend(super::overhead::verdict(cell, service_ms));
        out.extend(super::streaming::verdict(cell));
        out.extend(super::scaling::verdict(cell, limits));
        out.extend(super::open_loop::verdict(cell, service_ms));
        out.extend(distribution(cell, limits));
        let own = super::cells::kind_of(&cell.name);
        out.extend(
            own.into_iter()
                .flat_map(|k| k.verdicts(cell, limits, service_ms)),
        );
        if let Some(a) = cell
            .audit
            .as_ref()
            .filter(|a| cell.efficiency.is_none() && !a.clean())
        {
            out.push(audit_line(&cell.name, a));
        }
    }
    out
}

/// A streamed workload's token figures through the gateway against straight at a node.
fn tokens(cell: &Cell, direct: Option<&Cell>) -> Option<String> {
    let t = cell.tokens.as_ref().filter(|_| cell.name != "direct")?;
    let d = direct.and_then(|d| d.tokens.as_ref())?;
    let goodput = match (t.goodput, t.meeting_slo, t.slo) {
        (Some(rate), Some(met), Some(slo)) => format!(
            "; goodput {rate:.1} req/s, {met} of {} within {}",
            t.requests,
            String::from(slo)
        ),
        _ => String::new(),
    };
    let cut = match t.cut_after_first_token {
        0 => String::new(),
        n => format!("; {n} streams cut after their first token"),
    };
    let work = cell.audit.as_ref().map_or(String::new(), |a| {
        node_work(&a.work) + &ttft_by_view(&a.ttft_by_view)
    });
    Some(format!(
        "{}: time to first token p50 {:.1} ms, p99 {:.1} ms through the gateway against {:.1} and {:.1} ms straight at a node carrying its even share of the workers; inter-token p99 {:.1} against {:.1} ms; {:.0} output tokens/s{goodput}{cut} (last run){work}.",
        cell.name,
        t.ttft.p50,
        t.ttft.p99,
        d.ttft.p50,
        d.ttft.p99,
        t.itl.p99,
        d.itl.p99,
        t.output_tokens_per_s,
    ))
}

/// The mean time to first token of requests served after a model load against warm, and with
/// cached prompt tokens against without, where both sides have requests (all repeats).
fn ttft_by_view(v: &super::audit::TtftByView) -> String {
    let pair = |what: &str, a: &super::audit::TtftSum, b: &super::audit::TtftSum, b_what: &str| {
        Some(format!(
            "{what} {:.1} ms ({} requests) against {:.1} ms {b_what} ({})",
            a.mean_ms()?,
            a.requests,
            b.mean_ms()?,
            b.requests
        ))
    };
    let parts: Vec<String> = [
        pair("after a model load", &v.loaded, &v.warm, "warm"),
        pair(
            "with cached prompt tokens",
            &v.cached,
            &v.uncached,
            "without",
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    match parts.is_empty() {
        true => String::new(),
        false => format!("; mean time to first token {}", parts.join(", ")),
    }
}

/// The nodes' own account of what the cell's requests cost them, where it holds anything beyond
/// warm, uncached work (all repeats).
fn node_work(w: &super::audit::NodeWork) -> String {
    let mut parts = Vec::new();
    if w.loads > 0 {
        parts.push(format!(
            "{} model loads ({} reloads, {} evictions) waited {:.1} s in all",
            w.loads,
            w.reloads,
            w.evictions,
            w.load_wait_us as f64 / 1e6
        ));
    }
    if w.cached_tokens > 0 {
        parts.push(format!(
            "{:.0}% of {} prompt tokens came from the nodes' prompt caches",
            100.0 * w.cached_tokens as f64 / w.prompt_tokens.max(1) as f64,
            w.prompt_tokens
        ));
    }
    if w.worked_after_leave_us > 0 {
        parts.push(format!(
            "nodes worked {:.1} s on streams after their clients left",
            w.worked_after_leave_us as f64 / 1e6
        ));
    }
    match parts.is_empty() {
        true => String::new(),
        false => format!("; the nodes' logs: {}", parts.join(", ")),
    }
}

/// Efficiency, shares and the audit of a cell measured against the capacity ideal.
fn distribution(cell: &Cell, limits: Limits) -> Vec<String> {
    let (Some(eff), Some(a)) = (&cell.efficiency, &cell.audit) else {
        return Vec::new();
    };
    let shares: Vec<String> = cell
        .shares
        .iter()
        .enumerate()
        .map(|(i, (work, cap))| {
            format!(
                "node {i} {:.0}% of the work for {:.0}% of the capacity",
                work * 100.0,
                cap * 100.0
            )
        })
        .collect();
    let bound = super::ceiling::limit_clause(cell, limits)
        .map_or_else(String::new, |clause| format!("; {clause}"));
    vec![
        format!(
            "{}: {:.0} req/s through the gateway, {} of the capacity ideal (median of {}; range {}-{}){bound}.",
            cell.name,
            cell.throughput.median,
            ratio(eff.median),
            eff.samples.len(),
            ratio(eff.min),
            ratio(eff.max)
        ),
        format!("{}: {}.", cell.name, shares.join("; ")),
        audit_line(&cell.name, a),
    ]
}

fn audit_line(name: &str, a: &Audit) -> String {
    format!(
        "{name}: of {} requests, {} served once, {} served more than once, {} answered without a node, {} failed but served, {} never served{}; {} retries, {} recovered after a failed attempt{}.",
        a.requests,
        a.served_once,
        a.served_more_than_once,
        a.answered_without_node,
        a.failed_but_served,
        a.never_served,
        match (a.left, a.left_but_served) {
            (0, 0) => String::new(),
            (left, served) => format!(
                ", {} left by the client on purpose ({served} of them served in full anyway)",
                left + served
            ),
        },
        a.retries,
        a.recovered,
        if a.incomplete {
            " (a node's log dropped entries, or a node was still working when read: not exact)"
        } else {
            ""
        }
    )
}
