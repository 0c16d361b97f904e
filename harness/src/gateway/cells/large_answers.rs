//! The `large-answers` cell: what the gateway costs when answers are large. Each request embeds
//! a batch of inputs with `mxbai-embed-large` (1024 dimensions), as many as make an answer of
//! about 64 KiB (counted on one probe straight at node 0), and is paired, interleaved, with the
//! same load straight at node 0: the latency added at low load (one worker, the nodes' service
//! time per input) and the peak rate at zero service time (`--workers` connections), gateway over
//! direct. The `overhead` cell measures the same two on answers of about 8 KiB.

use std::time::Duration;

use super::{CellSpec, Context};
use crate::engine::Template;
use crate::gateway::overhead::paired_costs;
use crate::gateway::{Api, Cell, Limits, run_target, target_with};
use crate::summary::Summary;

/// The answer size the batch is made for.
const ANSWER_BYTES: usize = 64 * 1024;
/// Requests per low-load run.
const LOW_LOAD_REQUESTS: u64 = 100;

/// The cell.
pub(super) struct LargeAnswers;

impl CellSpec for LargeAnswers {
    fn name(&self) -> &'static str {
        "large-answers"
    }
    fn about(&self) -> &'static str {
        "Answers of about 64 KiB (a batch of 1024-dimension embeddings): latency added at low load and peak rate, gateway over direct."
    }
    fn by_default(&self) -> bool {
        false
    }
    fn figures(&self) -> &'static [&'static str] {
        &["answer_kib", "added_p50_ms", "added_p99_ms", "peak_ratio"]
    }
    fn measure(&self, cx: &Context) -> anyhow::Result<Vec<Cell>> {
        let node0 = cx.nodes.urls().first().cloned().unwrap_or_default();
        let (inputs, answer) = batch_for(&node0, cx.settings.api)?;
        let body = template(inputs);
        let run = |url: &str, workers, requests, id: &str| {
            let target = target_with(url, cx.settings, body.clone());
            run_target(cx.engine, &target, workers, requests, id)
        };
        let costs = paired_costs(cx.nodes, cx.settings, LOW_LOAD_REQUESTS, "la", run)?;
        let gateway: Vec<f64> = costs.peaks.iter().map(|(_, g)| *g).collect();
        let ratios = costs.peaks.iter().map(|(d, g)| g / d.max(1e-9)).collect();
        let mut cell = Cell::new(self.name(), Summary::of(gateway), costs.latencies.1);
        cell.figures = [
            ("answer_kib", Summary::of(vec![answer as f64 / 1024.0])),
            ("added_p50_ms", Summary::of(costs.added_p50)),
            ("added_p99_ms", Summary::of(costs.added_p99)),
            ("peak_ratio", Summary::of(ratios)),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
        Ok(vec![cell])
    }
    fn verdicts(&self, cell: &Cell, _limits: Limits, service_ms: f64) -> Vec<String> {
        let figure = |name: &str| cell.figures.get(name).map_or(f64::NAN, |s| s.median);
        vec![format!(
            "large-answers: with answers of {:.0} KiB the gateway adds {:.3} ms at p50 and {:.3} ms at p99 at low load (1 worker, {service_ms} ms service per input), and at zero service time passes {} of the rate straight at one node ({:.0} req/s through it).",
            figure("answer_kib"),
            figure("added_p50_ms"),
            figure("added_p99_ms"),
            crate::wording::ratio(figure("peak_ratio")),
            cell.throughput.median,
        )]
    }
}

/// A batch of `inputs`, the first carrying the request's id for the audit's join.
fn template(inputs: usize) -> Template {
    let mut texts = vec![r#""large answer {rid} [rid:{rid}]""#.to_owned()];
    texts.extend((1..inputs).map(|i| format!(r#""filler {i}""#)));
    Template::new(&format!(
        r#"{{"model":"mxbai-embed-large","input":[{}]}}"#,
        texts.join(",")
    ))
}

/// How many inputs make an answer of about [`ANSWER_BYTES`] from the node at `url`, and that
/// answer's size: one probe of one input, scaled.
fn batch_for(url: &str, api: Api) -> anyhow::Result<(usize, usize)> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let probe = |inputs: usize| -> anyhow::Result<usize> {
        let body = template(inputs).render("probe");
        let answer = client
            .post(format!("{url}{}", api.embed_path()))
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()?
            .error_for_status()?
            .bytes()?;
        Ok(answer.len())
    };
    let one = probe(1)?.max(1);
    let inputs = ANSWER_BYTES.div_ceil(one).max(1);
    Ok((inputs, probe(inputs)?))
}
