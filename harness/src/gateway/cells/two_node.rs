//! `two-node`: the plan's Target 1 for a client-side pool (`harness client` only): the driver
//! told one node, then two, the same workers and requests each time; the figure is the second
//! run's throughput over the first's. On equal one-slot nodes a pool that spreads its work
//! evenly reaches 2.0x; the plan expected 1.8x of SOLLOL's pool. A gateway is configured with its
//! nodes, so it cannot be told one.

use std::collections::BTreeMap;

use super::{CellSpec, Context};
use crate::engine::Run;
use crate::gateway::system::{NOT_A_GATEWAY_CELL, System, driven};
use crate::gateway::{Audit, Cell, Limits, log_heads, merge, settled_logs_since};
use crate::summary::{Latency, Summary};

pub(super) struct TwoNode;

/// The figure: two nodes' throughput over one node's, per repeat.
const SPEEDUP: &str = "speedup";

impl CellSpec for TwoNode {
    fn for_clients(&self) -> bool {
        true
    }
    fn name(&self) -> &'static str {
        "two-node"
    }
    fn about(&self) -> &'static str {
        "Client libraries only: the driver told one node, then two (the plan's Target 1 expected 1.8x)."
    }
    fn by_default(&self) -> bool {
        false
    }
    fn figures(&self) -> &'static [&'static str] {
        &[SPEEDUP]
    }
    fn measure(&self, cx: &Context) -> anyhow::Result<Vec<Cell>> {
        let System::Driver(driver) = &cx.settings.system else {
            anyhow::bail!(NOT_A_GATEWAY_CELL);
        };
        anyhow::ensure!(
            cx.nodes.len() >= 2,
            "the two-node cell needs at least 2 nodes"
        );
        let (workers, requests) = (cx.settings.workers, cx.settings.requests);
        let mut audit = Audit::default();
        // One run told the first `told` nodes, audited like every other cell's.
        let mut run = |told: usize, id: String| -> anyhow::Result<Run> {
            let heads = log_heads(cx.nodes)?;
            let run = driven(driver, cx.nodes, told, workers, requests, &id)?;
            let logs = settled_logs_since(cx.nodes, &heads)?;
            merge(&mut audit, crate::gateway::audit::audit(&run, &logs));
            Ok(run)
        };
        let (mut one, mut two, mut speedup, mut latency) =
            (Vec::new(), Vec::new(), Vec::new(), None);
        for r in 0..cx.settings.repeats {
            let single = run(1, format!("one-node{r}"))?;
            let pair = run(2, format!("two-node{r}"))?;
            one.push(single.throughput());
            two.push(pair.throughput());
            speedup.push(pair.throughput() / single.throughput().max(1e-9));
            latency = Some(Latency::of(&pair.latency));
        }
        let figures = BTreeMap::from([
            (SPEEDUP.to_owned(), Summary::of(speedup)),
            ("one_node".to_owned(), Summary::of(one)),
        ]);
        let latency = latency.unwrap_or_else(|| Latency::of(&crate::summary::new_histogram()));
        Ok(vec![Cell {
            figures,
            audit: Some(audit),
            ..Cell::new(self.name(), Summary::of(two), latency)
        }])
    }
    fn verdicts(&self, cell: &Cell, _limits: Limits, _service_ms: f64) -> Vec<String> {
        let Some(s) = cell.figures.get(SPEEDUP) else {
            return Vec::new();
        };
        vec![format!(
            "two-node: told two nodes instead of one, the library's throughput went up {:.2}x (median of {}, {:.2}-{:.2}); equal one-slot nodes allow 2.0x, the plan expected 1.8x.",
            s.median,
            s.samples.len(),
            s.min,
            s.max
        )]
    }
}
