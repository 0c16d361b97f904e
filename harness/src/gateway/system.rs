//! The system under test that a cell's load goes through: a gateway at a URL (`harness
//! gateway`), or a client library driven by the user's program against the nodes themselves
//! (`harness client`). Cells ask [`through`] for one closed-loop run and get the same [`Run`]
//! either way, so each cell is written once for both.

use crate::client::{Ask, Driver, LibraryStats, Reported, StatsCheck};
use mock_ollama::{ServedEntry, ServedOutcome};

use super::{Engine, Nodes, Run, Settings, log_heads, run_once, settled_logs_since};

/// Why a gateway cannot run the two-node cell.
pub const NOT_A_GATEWAY_CELL: &str =
    "the two-node cell tells a client library its nodes: run it with harness client";

/// What the load goes through.
#[derive(Debug, Clone, Default)]
pub enum System {
    /// The gateway at `Settings::target`.
    #[default]
    Gateway,
    /// A client library's driver program, told the nodes' URLs.
    Driver(Driver),
}

impl System {
    /// The driver, when the system is one.
    pub fn driver(&self) -> Option<&Driver> {
        match self {
            System::Gateway => None,
            System::Driver(d) => Some(d),
        }
    }
}

/// One closed loop of `workers` sending `requests` with ids `run_id-N` through the system
/// under test, to every node.
pub fn through(
    engine: &Engine,
    nodes: &Nodes,
    settings: &Settings,
    workers: usize,
    requests: u64,
    run_id: &str,
) -> anyhow::Result<Run> {
    match &settings.system {
        System::Gateway => run_once(
            engine,
            &settings.target,
            settings,
            workers,
            requests,
            run_id,
        ),
        System::Driver(driver) => driven(driver, nodes, nodes.len(), workers, requests, run_id),
    }
}

/// One run of `driver` told the first `told` of the nodes; its report kept with the driver,
/// the library's statistics checked against every node's served log.
pub fn driven(
    driver: &Driver,
    nodes: &Nodes,
    told: usize,
    workers: usize,
    requests: u64,
    run_id: &str,
) -> anyhow::Result<Run> {
    let heads = log_heads(nodes)?;
    let urls = nodes.urls();
    let ask = Ask {
        nodes: &urls[..told.min(urls.len())],
        workers,
        requests,
        run_id,
    };
    let (run, mut report, reported) = driver.run(&ask)?;
    let logs = settled_logs_since(nodes, &heads)?;
    report.stats = reported
        .stats
        .clone()
        .map(|stats| check_stats(stats, &reported, &logs, &urls, &ask));
    driver.keep(report);
    Ok(run)
}

/// The library's `stats` beside what the nodes' `logs` (node `i` at `urls[i]`) say of this run.
/// "Served" counts a request a node served and the driver reported answered (or, with no lines
/// reported, any a node served): a request a node served after the library gave up on it (a
/// stalled node, a client timeout) is not a success the library should have counted.
fn check_stats(
    stats: LibraryStats,
    reported: &Reported,
    logs: &[(Vec<ServedEntry>, bool)],
    urls: &[String],
    ask: &Ask,
) -> StatsCheck {
    let prefix = format!("{}-", ask.run_id);
    let number = |e: &ServedEntry| {
        let id = e.marker.as_deref().or(e.header_id.as_deref())?;
        id.strip_prefix(&prefix)?.parse::<u64>().ok()
    };
    let answered =
        |n: u64| reported.outcomes.is_empty() || reported.outcomes.get(&n).is_some_and(|o| o.ok);
    let mut seen = std::collections::HashSet::new();
    let mut served = std::collections::HashSet::new();
    let mut per_node = Vec::with_capacity(logs.len());
    for ((entries, _), url) in logs.iter().zip(urls) {
        let mut count = 0;
        for (n, entry) in entries.iter().filter_map(|e| Some((number(e)?, e))) {
            seen.insert(n);
            if entry.outcome == ServedOutcome::Served && answered(n) {
                served.insert(n);
                count += 1;
            }
        }
        per_node.push((url.clone(), count));
    }
    seen.extend(reported.outcomes.keys().copied());
    StatsCheck::of(stats, seen.len() as u64, served.len() as u64, &per_node)
}
