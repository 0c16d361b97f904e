//! The cells measured through the gateway, in one registry ([`CELLS`]): each kind is a
//! [`CellSpec`] that names itself, measures its cells and may add figures a bound can name and
//! verdicts of its own. Adding a cell is its file beside this one, its `mod` line and its entry
//! in [`CELLS`]; `--cells`, bounds files, Bencher's output and the report's table of cell figures
//! find it through the registry (`large_answers.rs` was added so).
//!
//! The cells that predate the registry are listed here over the functions that measure them;
//! their verdicts and report tables still live in `verdicts.rs` and `table.rs`, which read the
//! figures each cell carries.

use std::fmt;

use super::faults::NodeFault;
use super::{Cell, Limits, Nodes, SLOWDOWNS, Settings};
use crate::engine::Engine;
use crate::workload::Workload;

/// What a cell measures with.
pub struct Context<'a> {
    /// The load engine.
    pub engine: &'a Engine,
    /// The nodes behind the gateway.
    pub nodes: &'a Nodes<'a>,
    /// The run's settings.
    pub settings: &'a Settings,
    /// Each node's capacity, measured straight at it.
    pub capacity: &'a [f64],
    /// The capacity ideal and the gateway's ceiling.
    pub limits: Limits,
}

/// One kind of cell.
pub trait CellSpec: Sync + Send {
    /// Its name in `--cells`.
    fn name(&self) -> &'static str;
    /// One line for `--help` and the docs.
    fn about(&self) -> &'static str;
    /// Whether it runs when `--cells` is not given.
    fn by_default(&self) -> bool {
        true
    }
    /// Whether it measures a streamed workload (chat, trace); the others send embeds only.
    fn streams(&self) -> bool {
        false
    }
    /// Whether `harness client` can run it: it needs no address to send to (the ceiling,
    /// overhead, open-loop and streaming cells measure a gateway's own) and sends embeddings.
    fn for_clients(&self) -> bool {
        false
    }
    /// The names of the cells it measures (one, its own, unless it measures several).
    fn cell_names(&self) -> Vec<String> {
        vec![self.name().to_owned()]
    }
    /// Measures its cells.
    fn measure(&self, cx: &Context) -> anyhow::Result<Vec<Cell>>;
    /// The names of its own figures (`Cell::figures`), each one a bound may name.
    fn figures(&self) -> &'static [&'static str] {
        &[]
    }
    /// Its verdicts on one of its cells, from the figures alone (so `harness report` can reword
    /// results already measured).
    fn verdicts(&self, _cell: &Cell, _limits: Limits, _service_ms: f64) -> Vec<String> {
        Vec::new()
    }
}

/// The names of the kinds for which `keep` holds, comma-separated.
fn names_where(keep: fn(&dyn CellSpec) -> bool) -> String {
    let names: Vec<&str> = CELLS
        .iter()
        .filter(|c| keep(**c))
        .map(|c| c.name())
        .collect();
    names.join(", ")
}

/// Refuses cells that cannot measure the settings' workload, naming the ones that can.
pub fn check_workload(settings: &Settings) -> anyhow::Result<()> {
    if !settings.workload.streams() {
        return Ok(());
    }
    let refused: Vec<&str> = settings
        .cells
        .iter()
        .filter(|c| !c.streams())
        .map(|c| c.name())
        .collect();
    anyhow::ensure!(
        refused.is_empty(),
        "--workload {} runs the cells {}; {} measure the embed workload only (pass --cells)",
        settings.workload.workload.name(),
        names_where(|c| c.streams()),
        refused.join(", ")
    );
    let replays = settings.cells.iter().any(|c| c.name() == "trace");
    anyhow::ensure!(
        !replays || matches!(settings.workload.workload, Workload::Trace(_)),
        "the trace cell replays a trace: run it with --workload trace --trace FILE"
    );
    Ok(())
}

/// A kind of cell, as settings and the command line hold it.
pub type CellKind = &'static dyn CellSpec;

impl fmt::Debug for dyn CellSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

mod large_answers;
mod trace;
mod two_node;

/// Every kind of cell, in the order `--cells` lists them.
pub static CELLS: &[CellKind] = &[
    &Distribution,
    &super::overhead::Overhead,
    &Heterogeneous,
    &Scaling,
    &OpenLoop,
    &Fault {
        name: "node-refuse",
        about: "The last node refusing connections for the middle third of the run.",
        fault: |_| NodeFault::Refuse,
        for_clients: true,
    },
    &Fault {
        name: "node-busy",
        about: "The last node answering 503 busy for the middle third.",
        fault: |_| NodeFault::Busy,
        for_clients: true,
    },
    &Fault {
        name: "node-hang",
        about: "The last node hanging for the middle third.",
        fault: |_| NodeFault::Hang,
        for_clients: true,
    },
    &Fault {
        name: "node-reset",
        about: "The last node resetting every inference connection for the middle third.",
        fault: |_| NodeFault::Reset,
        for_clients: true,
    },
    &Fault {
        name: "node-stall",
        about: "The last node holding every inference request for --stall in the middle third.",
        fault: |s| NodeFault::Stall {
            ms: s.stall.as_millis() as u64,
        },
        for_clients: true,
    },
    &Fault {
        name: "node-errors",
        about: "The last node answering 5% of inference requests with 500 in the middle third.",
        fault: |_| NodeFault::Errors,
        for_clients: true,
    },
    &Fault {
        name: "slow-control-plane",
        about: "Every node's /api/tags, /api/ps and /v1/models taking 1 s in the middle third.",
        fault: |_| NodeFault::SlowControlPlane,
        for_clients: false,
    },
    &super::streaming::Streaming,
    &large_answers::LargeAnswers,
    &trace::TraceReplay,
    &two_node::TwoNode,
];

/// The cells `harness client` can measure, comma-separated.
pub fn for_clients() -> String {
    names_where(|c| c.for_clients())
}

/// The cells `harness client` runs when `--cells` is not given.
pub fn client_defaults() -> Vec<CellKind> {
    [
        "distribution",
        "heterogeneous",
        "two-node",
        "scaling",
        "node-refuse",
        "node-errors",
    ]
    .iter()
    .filter_map(|name| named(name).ok())
    .collect()
}

/// The kind named `name`.
pub fn named(name: &str) -> Result<CellKind, String> {
    CELLS
        .iter()
        .copied()
        .find(|c| c.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = CELLS.iter().map(|c| c.name()).collect();
            format!("no cell {name:?} (cells: {})", names.join(", "))
        })
}

/// The kinds that run by default.
pub fn defaults() -> Vec<CellKind> {
    CELLS.iter().copied().filter(|c| c.by_default()).collect()
}

/// The cells a streamed workload runs when `--cells` is not given: `distribution` and, for a
/// trace, its replay, else `heterogeneous`.
pub fn streamed_defaults(workload: &Workload) -> Vec<CellKind> {
    let third = match workload {
        Workload::Trace(_) => "trace",
        _ => "heterogeneous",
    };
    CELLS
        .iter()
        .copied()
        .filter(|c| ["distribution", third].contains(&c.name()))
        .collect()
}

/// The kind that measured the cell named `cell`.
pub fn kind_of(cell: &str) -> Option<CellKind> {
    CELLS
        .iter()
        .copied()
        .find(|c| c.cell_names().iter().any(|n| n == cell))
}

/// The `--cells` help: every kind with its line, defaults marked.
pub fn help() -> String {
    let lines: Vec<String> = CELLS
        .iter()
        .map(|c| {
            let default = if c.by_default() {
                ""
            } else {
                " (not by default)"
            };
            format!("{}: {}{default}", c.name(), c.about())
        })
        .collect();
    format!(
        "Cells through the gateway, after `direct`, comma-separated:\n{}",
        lines.join("\n")
    )
}

struct Distribution;

impl CellSpec for Distribution {
    fn streams(&self) -> bool {
        true
    }
    fn for_clients(&self) -> bool {
        true
    }
    fn name(&self) -> &'static str {
        "distribution"
    }
    fn about(&self) -> &'static str {
        "Equal nodes, closed loop: efficiency, shares, audit."
    }
    fn measure(&self, cx: &Context) -> anyhow::Result<Vec<Cell>> {
        let Context {
            engine,
            nodes,
            settings,
            capacity,
            ..
        } = cx;
        Ok(vec![super::distribution(
            self.name(),
            engine,
            nodes,
            settings,
            capacity,
        )?])
    }
}

struct Heterogeneous;

impl CellSpec for Heterogeneous {
    fn streams(&self) -> bool {
        true
    }
    fn for_clients(&self) -> bool {
        true
    }
    fn name(&self) -> &'static str {
        "heterogeneous"
    }
    fn about(&self) -> &'static str {
        "The last node at 1/3 speed, then at 1/7 (capacity re-measured): cells slow-node-3x and slow-node-7x."
    }
    fn cell_names(&self) -> Vec<String> {
        SLOWDOWNS
            .iter()
            .map(|s| super::slow_node_name(*s))
            .collect()
    }
    fn measure(&self, cx: &Context) -> anyhow::Result<Vec<Cell>> {
        SLOWDOWNS
            .iter()
            .map(|s| super::slow_node(cx.engine, cx.nodes, cx.settings, *s))
            .collect()
    }
}

struct Scaling;

impl CellSpec for Scaling {
    fn for_clients(&self) -> bool {
        true
    }
    fn name(&self) -> &'static str {
        "scaling"
    }
    fn about(&self) -> &'static str {
        "Spare slots on every node, closed-loop workers 1, 2, 4, ... --workers."
    }
    fn measure(&self, cx: &Context) -> anyhow::Result<Vec<Cell>> {
        Ok(vec![super::scaling::scaling(
            cx.engine,
            cx.nodes,
            cx.settings,
        )?])
    }
}

struct OpenLoop;

impl CellSpec for OpenLoop {
    fn name(&self) -> &'static str {
        "open-loop"
    }
    fn about(&self) -> &'static str {
        "Poisson arrivals at 50%, 80% and 95% of the capacity ideal (or of the gateway's ceiling)."
    }
    fn measure(&self, cx: &Context) -> anyhow::Result<Vec<Cell>> {
        let cell = super::open_loop::open_loop(cx.engine, cx.nodes, cx.settings, cx.limits)?;
        Ok(vec![cell])
    }
}

/// A fault cell: the last node (or every node's control plane) failing as `fault` says in the
/// middle third of each repeat.
struct Fault {
    name: &'static str,
    about: &'static str,
    fault: fn(&Settings) -> NodeFault,
    /// Whether it faults an inference node (which a client library talks to), not a gateway's
    /// control-plane traffic.
    for_clients: bool,
}

impl CellSpec for Fault {
    fn streams(&self) -> bool {
        true
    }
    fn for_clients(&self) -> bool {
        self.for_clients
    }
    fn name(&self) -> &'static str {
        self.name
    }
    fn about(&self) -> &'static str {
        self.about
    }
    fn measure(&self, cx: &Context) -> anyhow::Result<Vec<Cell>> {
        let fault = (self.fault)(cx.settings);
        let cell = super::fault_cell(cx.engine, cx.nodes, cx.settings, self.name, fault)?;
        Ok(vec![cell])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        let mut names: Vec<String> = CELLS.iter().flat_map(|c| c.cell_names()).collect();
        names.push("direct".into());
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count, "two cells share a name");
        for kind in CELLS {
            assert_eq!(named(kind.name()).map(|k| k.name()), Ok(kind.name()));
            for cell in kind.cell_names() {
                assert_eq!(kind_of(&cell).map(|k| k.name()), Some(kind.name()));
            }
        }
        assert!(
            named("distrbution")
                .unwrap_err()
                .contains("cells: distribution")
        );
    }

    /// Every cell a client runs by default is one it can run, and none is lost to a misspelling.
    #[test]
    fn client_defaults_are_client_cells() {
        let defaults: Vec<&str> = client_defaults().iter().map(|c| c.name()).collect();
        assert_eq!(defaults.len(), 6, "{defaults:?}");
        assert!(
            client_defaults().iter().all(|d| d.for_clients()),
            "{defaults:?}"
        );
        assert_eq!(
            for_clients(),
            "distribution, heterogeneous, scaling, node-refuse, node-busy, node-hang, node-reset, node-stall, node-errors, two-node"
        );
    }
}
