//! Bounds on a gateway's result, for a gateway project's own CI: `harness gateway … --bounds FILE`
//! measures and then judges; `harness gate --gateway RESULT.json --bounds FILE` judges a result
//! already written.
//!
//! Names follow the one grammar ([`crate::bounds`]): `gateway.CELL.MEASURE`,
//! `gateway.distribution.served_more_than_once` or `gateway.node-busy.client_failures`; cell and
//! measure are checked when the file is read, so a typo is an error, not a bound that never
//! applies. A bound on a cell the result lacks fails (the run did not measure what the bounds ask
//! for), as does a measure the cell does not carry.
//!
//! Audit classes are totals over the cell's repeats (a single served-twice request is a
//! finding); every other measure is the median over repeats.

use std::fmt;
use std::str::FromStr;

use super::{Cell, GatewayResult};
use crate::bounds::{self, Judged, Name};
use crate::summary::Summary;

/// The experiment's name in bound names.
const EXPERIMENT: &str = "gateway";

/// What a bound measures in its cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Measure {
    /// Throughput over the capacity ideal (distribution, slow-node cells; the scaling cell's at
    /// its most workers).
    Efficiency,
    /// Requests/s through the gateway.
    Throughput,
    /// Audit class totals.
    ServedMoreThanOnce,
    /// Audit class totals.
    AnsweredWithoutNode,
    /// Audit class totals.
    FailedButServed,
    /// Audit class totals.
    NeverServed,
    /// Node-side attempts beyond one per client request.
    Retries,
    /// Fault cells: requests that failed at the client.
    ClientFailures,
    /// Fault cells: throughput during the fault over before it.
    DuringOverBefore,
    /// Fault cells: throughput after the fault over before it.
    AfterOverBefore,
    /// Overhead cell: p50 added at low load, ms.
    AddedP50Ms,
    /// Overhead cell: p99 added at low load, ms.
    AddedP99Ms,
    /// Overhead cell: peak through the gateway over direct.
    PeakRatio,
    /// Open-loop cell: p99 at the highest load, ms.
    P99Ms,
    /// Streamed workloads: time to first token, p50, ms (last repeat).
    TtftP50Ms,
    /// Streamed workloads: time to first token, p99, ms (last repeat).
    TtftP99Ms,
    /// Streamed workloads: inter-token latency, p99, ms (last repeat).
    ItlP99Ms,
    /// Streamed workloads: whole answers within the SLO per second (last repeat).
    Goodput,
    /// Streamed workloads: streams cut after their first token (last repeat).
    CutStreams,
    /// Audit class total: streams the client left that a node served whole anyway.
    LeftButServed,
    /// Fault cells under a streamed workload: whole answers spliced from a retried stream
    /// (median over runs).
    SplicedStreams,
    /// A figure of the cell's own (`Cell::figures`), named by its kind
    /// ([`super::CellSpec::figures`]).
    Figure(&'static str),
}

impl Measure {
    /// Its name in bound names.
    pub fn name(self) -> &'static str {
        match self {
            Measure::Figure(name) => name,
            m => MEASURES
                .iter()
                .find(|(known, _)| *known == m)
                .map_or("?", |(_, n)| n),
        }
    }
}

const MEASURES: [(Measure, &str); 21] = [
    (Measure::Efficiency, "efficiency"),
    (Measure::Throughput, "throughput"),
    (Measure::ServedMoreThanOnce, "served_more_than_once"),
    (Measure::AnsweredWithoutNode, "answered_without_node"),
    (Measure::FailedButServed, "failed_but_served"),
    (Measure::NeverServed, "never_served"),
    (Measure::Retries, "retries"),
    (Measure::ClientFailures, "client_failures"),
    (Measure::DuringOverBefore, "during_over_before"),
    (Measure::AfterOverBefore, "after_over_before"),
    (Measure::AddedP50Ms, "added_p50_ms"),
    (Measure::AddedP99Ms, "added_p99_ms"),
    (Measure::PeakRatio, "peak_ratio"),
    (Measure::P99Ms, "p99_ms"),
    (Measure::TtftP50Ms, "ttft_p50_ms"),
    (Measure::TtftP99Ms, "ttft_p99_ms"),
    (Measure::ItlP99Ms, "itl_p99_ms"),
    (Measure::Goodput, "goodput"),
    (Measure::CutStreams, "cut_streams"),
    (Measure::LeftButServed, "left_but_served"),
    (Measure::SplicedStreams, "spliced_streams"),
];

/// The cells a result can hold, by name: `direct` and every registered kind's cells
/// ([`super::cells::CELLS`]), so a new cell is boundable as soon as it exists.
fn cells() -> Vec<String> {
    let kinds = super::cells::CELLS.iter();
    std::iter::once("direct".to_owned())
        .chain(kinds.flat_map(|k| k.cell_names()))
        .collect()
}

/// `gateway[.WORKLOAD].CELL.MEASURE`: a bound judges only results of its workload.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Metric {
    /// The workload (`embed` when the name has none).
    pub workload: &'static str,
    /// The cell's name.
    pub cell: String,
    /// What is measured in it.
    pub measure: Measure,
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Embed bounds keep the names they had before workloads were named.
        if self.workload != bounds::WORKLOADS[0] {
            write!(f, "{EXPERIMENT}.{}.", self.workload)?;
        } else {
            write!(f, "{EXPERIMENT}.")?;
        }
        write!(f, "{}.{}", self.cell, self.measure.name())
    }
}

impl FromStr for Metric {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let name = Name::split(text)?;
        if name.experiment != EXPERIMENT {
            return Err(Name::unknown(
                text,
                "experiment",
                name.experiment,
                &[EXPERIMENT.to_owned()],
            ));
        }
        let cells = cells();
        if !cells.iter().any(|c| c == name.cell) {
            return Err(Name::unknown(text, "cell", name.cell, &cells));
        }
        // A cell's own figure comes first: it may share a name with another cell's measure
        // (`peak_ratio`), and only its own is in the cell.
        let own = super::cells::kind_of(name.cell).map_or(&[][..], |k| k.figures());
        let measure = own
            .iter()
            .find(|f| **f == name.measure)
            .map(|f| Measure::Figure(f))
            .or_else(|| {
                let common = MEASURES.iter().find(|(_, n)| *n == name.measure);
                common.map(|(m, _)| *m)
            })
            .ok_or_else(|| {
                let names = MEASURES.iter().map(|(_, n)| (*n).to_owned());
                let names: Vec<String> = names.chain(own.iter().map(|f| (*f).to_owned())).collect();
                Name::unknown(text, "measure", name.measure, &names)
            })?;
        let workload = name.workload.unwrap_or(bounds::WORKLOADS[0]);
        Ok(Metric {
            // `Name::split` refused any workload not in the list.
            workload: bounds::WORKLOADS
                .into_iter()
                .find(|w| *w == workload)
                .unwrap_or(bounds::WORKLOADS[0]),
            cell: name.cell.to_owned(),
            measure,
        })
    }
}

/// Every bound of a gateway bounds file, by metric.
pub type Bounds = bounds::Bounds<Metric>;

/// Parses a gateway bounds file's text.
pub fn parse(text: &str) -> anyhow::Result<Bounds> {
    bounds::parse(text)
}

fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let values: Vec<f64> = values.collect();
    (!values.is_empty()).then(|| Summary::of(values).median)
}

/// The value of `measure` in `result`'s cell named `cell`, if it has that cell and the cell
/// carries the measure.
pub(super) fn value_in(result: &GatewayResult, cell: &str, measure: Measure) -> Option<f64> {
    // Without clients that leave, nothing can be left but served: not measured, not 0.
    if measure == Measure::LeftButServed && result.params["workload"]["leave"].is_null() {
        return None;
    }
    let cell = result.cells.iter().find(|c| c.name == cell)?;
    value(cell, measure)
}

/// The value of `measure` in `cell`, if the cell carries it.
fn value(cell: &Cell, measure: Measure) -> Option<f64> {
    let audit = cell.audit.as_ref();
    let faults = || cell.faults.iter();
    match measure {
        Measure::Efficiency => cell.efficiency.as_ref().map(|e| e.median).or_else(|| {
            let s = cell.scaling.as_ref()?;
            Some(s.steps.last()?.efficiency.median)
        }),
        Measure::Throughput => Some(cell.throughput.median),
        Measure::TtftP50Ms => cell.tokens.as_ref().map(|t| t.ttft.p50),
        Measure::TtftP99Ms => cell.tokens.as_ref().map(|t| t.ttft.p99),
        Measure::ItlP99Ms => cell.tokens.as_ref().map(|t| t.itl.p99),
        Measure::Goodput => cell.tokens.as_ref().and_then(|t| t.goodput),
        Measure::CutStreams => cell.tokens.as_ref().map(|t| t.cut_after_first_token as f64),
        Measure::ServedMoreThanOnce => audit.map(|a| a.served_more_than_once as f64),
        Measure::AnsweredWithoutNode => audit.map(|a| a.answered_without_node as f64),
        Measure::FailedButServed => audit.map(|a| a.failed_but_served as f64),
        Measure::NeverServed => audit.map(|a| a.never_served as f64),
        Measure::Retries => audit.map(|a| a.retries as f64),
        Measure::LeftButServed => audit.map(|a| a.left_but_served as f64),
        Measure::SplicedStreams => {
            median(faults().filter_map(|f| f.spliced_streams.map(|n| n as f64)))
        }
        Measure::ClientFailures => median(faults().map(|f| f.client_failures as f64)),
        Measure::DuringOverBefore => {
            median(faults().map(|f| f.throughput[1] / f.throughput[0].max(1e-9)))
        }
        Measure::AfterOverBefore => {
            median(faults().map(|f| f.throughput[2] / f.throughput[0].max(1e-9)))
        }
        Measure::AddedP50Ms => cell.overhead.as_ref().map(|o| o.added_p50_ms.median),
        Measure::AddedP99Ms => cell.overhead.as_ref().map(|o| o.added_p99_ms.median),
        Measure::PeakRatio => cell
            .overhead
            .as_ref()
            .map(|o| o.gateway_peak.median / o.direct_peak.median.max(1e-9)),
        Measure::P99Ms => Some(cell.open_loop.as_ref()?.steps.last()?.p99_ms.median),
        Measure::Figure(name) => cell.figures.get(name).map(|s| s.median),
    }
}

/// Judges `result` against `bounds`, sorted by cell and measure.
pub fn judge(result: &GatewayResult, bounds: &Bounds) -> Vec<Judged> {
    bounds
        .iter()
        .map(|(metric, bound)| {
            // A result of another workload has no value for the bound: it fails as unmeasured.
            let value = (workload_of(result) == metric.workload)
                .then(|| value_in(result, &metric.cell, metric.measure))
                .flatten();
            Judged::of(metric.to_string(), bound, value)
        })
        .collect()
}

/// The workload `result` was measured with (results from before workloads say none: `embed`).
fn workload_of(result: &GatewayResult) -> &str {
    result.params["workload"]["name"]
        .as_str()
        .unwrap_or(bounds::WORKLOADS[0])
}

/// Bencher Metric Format entries: one benchmark per gateway and cell
/// (`gateway/LABEL/CELL`), one measure per figure the cell carries, named as in bounds files.
pub fn bmf(results: &[GatewayResult]) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    for result in results {
        for cell in &result.cells {
            let common = MEASURES
                .iter()
                .map(|(m, n)| ((*n).to_owned(), value(cell, *m)));
            let own = cell
                .figures
                .iter()
                .map(|(n, s)| (n.clone(), Some(s.median)));
            let measures: serde_json::Map<String, serde_json::Value> = common
                .chain(own)
                .filter_map(|(name, v)| {
                    let v = v.filter(|v| v.is_finite())?;
                    Some((name, serde_json::json!({ "value": v })))
                })
                .collect();
            out.insert(
                format!("gateway/{}/{}", result.label, cell.name),
                serde_json::Value::Object(measures),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_round_trip_and_typos_are_errors() {
        let m: Metric = "gateway.node-busy.client_failures".parse().expect("parses");
        assert_eq!(m.to_string(), "gateway.node-busy.client_failures");
        let embed: Metric = "gateway.embed.node-busy.client_failures"
            .parse()
            .expect("parses");
        assert_eq!(embed, m, "the default workload named or not is one metric");
        for (typo, error) in [
            ("gateway.distrbution.efficiency", "no cell"),
            ("gateway.distribution.eficiency", "no measure"),
            ("gatway.distribution.efficiency", "no experiment"),
            ("distribution.efficiency", "expected EXPERIMENT"),
            ("gateway.stream.distribution.efficiency", "no workload"),
        ] {
            let message = typo.parse::<Metric>().expect_err(typo);
            assert!(message.contains(error), "{typo}: {message}");
        }
        assert!(
            parse(r#"{"metrics": {"gateway.distribution.x": {"op": ">=", "value": 1}}}"#).is_err()
        );
    }

    #[test]
    fn a_bound_judges_only_results_of_its_workload() {
        let chat: Metric = "gateway.chat.distribution.ttft_p99_ms"
            .parse()
            .expect("parses");
        assert_eq!(chat.to_string(), "gateway.chat.distribution.ttft_p99_ms");
        let result = |workload: &str| -> GatewayResult {
            let tokens = serde_json::json!({
                "ttft": {"count": 1, "p50": 5.0, "p90": 6.0, "p99": 7.0, "p999": 8.0, "max": 9.0},
                "itl": {"count": 0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "p999": 0.0, "max": 0.0},
                "tpot": {"count": 0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "p999": 0.0, "max": 0.0},
                "output_tokens": 1, "output_tokens_per_s": 1.0, "requests": 1, "whole": 1,
                "cut_after_first_token": 0, "slo": null, "meeting_slo": null, "goodput": null
            });
            let cell = serde_json::json!({
                "name": "distribution",
                "throughput": {"median": 1.0, "min": 1.0, "max": 1.0, "samples": [1.0]},
                "efficiency": null,
                "latency": {"count": 1, "p50": 1.0, "p90": 1.0, "p99": 1.0, "p999": 1.0, "max": 1.0},
                "shares": [], "audit": null, "tokens": tokens
            });
            serde_json::from_value(serde_json::json!({
                "label": "x", "target": "t", "api": "ollama",
                "machine": crate::machine::Machine::detect(),
                "params": {"workload": {"name": workload}}, "capacity": [],
                "cells": [cell], "verdicts": []
            }))
            .expect("result")
        };
        let bounds = parse(
            r#"{"metrics": {"gateway.chat.distribution.ttft_p99_ms": {"op": "<=", "value": 10}}}"#,
        )
        .expect("bounds");
        let on_chat = judge(&result("chat"), &bounds);
        assert_eq!((on_chat[0].value, on_chat[0].pass), (Some(7.0), true));
        let on_embed = judge(&result("embed"), &bounds);
        assert_eq!(
            (on_embed[0].value, on_embed[0].pass),
            (None, false),
            "a chat bound never judges an embed result"
        );
    }

    #[test]
    fn a_bound_on_a_cell_not_measured_fails() {
        let result: GatewayResult = serde_json::from_value(serde_json::json!({
            "label": "x", "target": "t", "api": "ollama",
            "machine": crate::machine::Machine::detect(), "params": {}, "capacity": [],
            "cells": [], "verdicts": []
        }))
        .expect("result");
        let bounds = parse(
            r#"{"metrics": {"gateway.distribution.efficiency": {"op": ">=", "value": 0.5}}}"#,
        )
        .expect("bounds");
        let judged = judge(&result, &bounds);
        assert_eq!((judged[0].value, judged[0].pass), (None, false));
    }
}
