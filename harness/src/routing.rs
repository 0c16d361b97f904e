//! Routing quality on unequal nodes, for the gate: a load-aware strategy on a fast node and a
//! slower one (3x or 7x), judged by what a load-blind one cannot reach.
//!
//! Two one-slot nodes, the second `k` times slower, take a closed loop of more workers than
//! slots, so every node can be kept busy and only routing decides whether it is. Two figures:
//! - **efficiency**: requests/s within the window over the cluster's capacity
//!   ([`ClusterSpec::capacity`]); a strategy that reads in-flight counts keeps both nodes busy
//!   (near 1.0), round-robin is held to twice the slow node's rate (0.5 at 3x, 0.25 at 7x).
//! - **slow share**: the slow node's share of the answers over its share of the capacity,
//!   `1/(k+1)`: near 1.0 when work follows capacity, 2.0 or 4.0 under round-robin, near 0 when
//!   everything goes to the node with the best latency. It counts every answer, the few that
//!   finish after the window included (at most one per worker), where efficiency counts those
//!   within it.
//!
//! The nodes' own counters give the shares, so a pool that misreports cannot hide its routing.

use std::time::Duration;

use anyhow::Context as _;
use pool::Strategy;
use serde::{Deserialize, Serialize};

use crate::load::Workload;
use crate::measure::measure;
use crate::nodes::{ClusterSpec, Nodes};
use crate::results::Accounting;
use crate::variant::{PoolOptions, Variant};

/// The strategies the pool ships that read the nodes' load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Router {
    /// Fewest requests in flight.
    LeastLoaded,
    /// Smallest expected wait, in-flight count times mean latency.
    Weighted,
}

impl Router {
    fn strategy(self) -> Strategy {
        match self {
            Router::LeastLoaded => Strategy::LeastLoaded,
            Router::Weighted => Strategy::Weighted,
        }
    }
}

/// How much slower the second node is: the two the gateway audit also runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slower {
    /// Three times the fast node's service time.
    X3,
    /// Seven times.
    X7,
}

impl Slower {
    fn factor(self) -> f64 {
        match self {
            Slower::X3 => 3.0,
            Slower::X7 => 7.0,
        }
    }
}

/// One routing cell: a strategy and how much slower the second node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cell {
    /// The strategy under test.
    pub router: Router,
    /// How much slower the second node is.
    pub slower: Slower,
}

impl Cell {
    /// Every cell the gate measures.
    pub const ALL: [Cell; 4] = [
        Cell::new(Router::LeastLoaded, Slower::X3),
        Cell::new(Router::LeastLoaded, Slower::X7),
        Cell::new(Router::Weighted, Slower::X3),
        Cell::new(Router::Weighted, Slower::X7),
    ];

    const fn new(router: Router, slower: Slower) -> Self {
        Self { router, slower }
    }

    /// `least-loaded-3x`: the cell part of a gate metric's name.
    pub fn name(self) -> &'static str {
        match (self.router, self.slower) {
            (Router::LeastLoaded, Slower::X3) => "least-loaded-3x",
            (Router::LeastLoaded, Slower::X7) => "least-loaded-7x",
            (Router::Weighted, Slower::X3) => "weighted-3x",
            (Router::Weighted, Slower::X7) => "weighted-7x",
        }
    }

    /// The slow node's share of the cluster's capacity.
    fn slow_capacity_share(self) -> f64 {
        1.0 / (self.slower.factor() + 1.0)
    }
}

/// How big one routing sample is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoutingSettings {
    /// Closed-loop workers (more than the two slots, so routing decides who is busy).
    pub workers: usize,
    /// How long each sample sends, milliseconds.
    pub window_ms: u64,
    /// The fast node's service time, milliseconds.
    pub service_ms: u64,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        Self {
            workers: 6,
            window_ms: 1_000,
            service_ms: 4,
        }
    }
}

/// One sample of a cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoutingSample {
    /// Requests/s within the window over the capacity ideal.
    pub efficiency: f64,
    /// The slow node's share of answers over its share of capacity.
    pub slow_share: f64,
}

/// Measures one sample of `cell` through a fresh `variant` pool built with `options` (its
/// strategy replaced by the cell's) on fresh nodes.
pub fn sample(
    cell: Cell,
    variant: Variant,
    options: PoolOptions,
    settings: &RoutingSettings,
) -> anyhow::Result<RoutingSample> {
    let spec = ClusterSpec {
        speeds: vec![1.0, 1.0 / cell.slower.factor()],
        ..ClusterSpec::uniform(2, 1, Duration::from_millis(settings.service_ms))
    };
    let nodes = Nodes::start(&spec, &[])?;
    let window = Duration::from_millis(settings.window_ms);
    let workload = Workload {
        workers: settings.workers,
        // More than the window can take, so the window ends the run.
        requests: (spec.capacity() * window.as_secs_f64() * 4.0) as usize + 100,
        cap: Some(window),
        model: "all-minilm".into(),
        text: None,
    };
    let options = PoolOptions {
        strategy: cell.router.strategy(),
        ..options
    };
    let mut accounting = Accounting::default();
    let measured = measure(variant, &nodes, options, &workload, &mut accounting)?;
    anyhow::ensure!(
        measured.lost == 0 && measured.run.failed() == 0,
        "{}: {} lost, {} failed",
        cell.name(),
        measured.lost,
        measured.run.failed()
    );
    let served = nodes.tally().context("routing needs embedded nodes")?;
    let slow_url = &nodes.urls()[1];
    let slow_ok = served
        .iter()
        .find(|(addr, _)| slow_url.ends_with(addr.as_str()))
        .map(|(_, t)| t.ok)
        .context("the slow node's tally")?;
    let total: u64 = served.values().map(|t| t.ok).sum();
    anyhow::ensure!(total > 0, "{}: no request was served", cell.name());
    Ok(RoutingSample {
        efficiency: measured.run.throughput() / spec.capacity(),
        slow_share: slow_ok as f64 / total as f64 / cell.slow_capacity_share(),
    })
}
