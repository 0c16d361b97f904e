//! Node selection: SOLLOL's four simple strategies plus throughput-weighted routing.
//!
//! Selection is a pure function of per-node [`NodeReading`]s and a ticket, shared line for line
//! by both ledgers: the mutex ledger reads its book under the lock, the atomic ledger reads
//! atomics, and both call [`choose`]. Whatever differs between the variants is then
//! synchronisation, never routing.

use serde::{Deserialize, Serialize};

/// What a strategy needs to know about one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeReading {
    /// Requests in flight to the node now.
    pub active: u64,
    /// Attempts the node has finished (succeeded or failed).
    pub total: u64,
    /// Attempts that failed on the node.
    pub failed: u64,
    /// Sum of successful attempts' latencies, microseconds.
    pub latency_sum_us: u64,
    /// Number of latencies in the sum.
    pub latency_count: u64,
    /// Last health probe's verdict (true until a probe says otherwise).
    pub available: bool,
}

impl NodeReading {
    /// Mean latency of successful attempts in microseconds; `None` before the first one.
    pub fn mean_latency_us(&self) -> Option<f64> {
        (self.latency_count > 0).then(|| self.latency_sum_us as f64 / self.latency_count as f64)
    }

    /// Fraction of finished attempts that succeeded; 1.0 before the first one.
    pub fn success_rate(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            (self.total - self.failed.min(self.total)) as f64 / self.total as f64
        }
    }
}

/// How the pool picks a node for each attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Next node in turn.
    #[default]
    RoundRobin,
    /// Fewest requests in flight.
    LeastLoaded,
    /// Lowest mean latency, ignoring what is in flight (SOLLOL's latency-first: bursts land on
    /// one node while the others idle). A node not yet measured counts as the measured average.
    LatencyFirst,
    /// Fewest finished requests, ignoring what is in flight (SOLLOL's fairness).
    Fairness,
    /// Smallest expected wait, `(active + 1) x mean latency`: each node gets work in proportion
    /// to its measured throughput, which is what a heterogeneous cluster needs. A node not yet
    /// measured counts as the measured average.
    Weighted,
}

impl Strategy {
    /// Every strategy, in a fixed order.
    pub const ALL: [Strategy; 5] = [
        Strategy::RoundRobin,
        Strategy::LeastLoaded,
        Strategy::LatencyFirst,
        Strategy::Fairness,
        Strategy::Weighted,
    ];

    /// The name used in stats JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::LeastLoaded => "least_loaded",
            Strategy::LatencyFirst => "latency_first",
            Strategy::Fairness => "fairness",
            Strategy::Weighted => "weighted",
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wanted = text.trim().replace('-', "_");
        Strategy::ALL.into_iter().find(|s| s.name() == wanted).ok_or_else(|| {
            format!("unknown strategy {text:?}: expected round_robin, least_loaded, latency_first, fairness or weighted")
        })
    }
}

/// Picks one of `n` nodes. `reading(i)` is `None` for a node that is not a candidate (already
/// tried by this request, or removed). `ticket` is a per-selection counter: round-robin uses it
/// directly, the other strategies start their scan at it so that ties rotate instead of always
/// favouring the first node.
///
/// Nodes whose last probe failed are avoided while any healthy candidate remains; a probe can be
/// wrong, so they are still tried rather than failing the request outright.
pub fn choose(
    strategy: Strategy,
    n: usize,
    ticket: u64,
    reading: impl Fn(usize) -> Option<NodeReading>,
) -> Option<usize> {
    if n == 0 {
        return None;
    }
    let start = (ticket % n as u64) as usize;
    let order = (0..n).map(|k| (start + k) % n);
    let healthy = pick(
        strategy,
        order
            .clone()
            .filter_map(|i| reading(i).filter(|r| r.available).map(|r| (i, r))),
    );
    healthy.or_else(|| pick(strategy, order.filter_map(|i| reading(i).map(|r| (i, r)))))
}

fn pick(
    strategy: Strategy,
    mut candidates: impl Iterator<Item = (usize, NodeReading)> + Clone,
) -> Option<usize> {
    match strategy {
        // The ticket already rotated the scan: the first candidate is the next in turn.
        Strategy::RoundRobin => candidates.next().map(|(i, _)| i),
        Strategy::LeastLoaded => min_by_key(candidates, |r| r.active as f64),
        Strategy::Fairness => min_by_key(candidates, |r| r.total as f64),
        Strategy::LatencyFirst => {
            let typical = typical_latency(candidates.clone());
            min_by_key(candidates, |r| r.mean_latency_us().unwrap_or(typical))
        }
        Strategy::Weighted => {
            let typical = typical_latency(candidates.clone());
            min_by_key(candidates, |r| {
                (r.active + 1) as f64 * r.mean_latency_us().unwrap_or(typical)
            })
        }
    }
}

/// The latency an unmeasured node is assumed to have: the mean of the measured nodes' means (1 us
/// when none is measured, which makes every node equal). Scoring an unmeasured node 0 instead would
/// pile every request onto it until its first answer arrives (a 7x slower node would collect the
/// whole opening burst). One extra pass over the candidates, no allocation, and only for the two
/// strategies that read latency.
fn typical_latency(candidates: impl Iterator<Item = (usize, NodeReading)>) -> f64 {
    let (sum, n) = candidates
        .filter_map(|(_, r)| r.mean_latency_us())
        .fold((0.0, 0u32), |(sum, n), mean| (sum + mean, n + 1));
    if n == 0 { 1.0 } else { sum / f64::from(n) }
}

/// The first candidate with the smallest key (stable, so scan order breaks ties).
fn min_by_key(
    candidates: impl Iterator<Item = (usize, NodeReading)>,
    key: impl Fn(&NodeReading) -> f64,
) -> Option<usize> {
    candidates
        .fold(None, |best: Option<(usize, f64)>, (i, r)| {
            let k = key(&r);
            match best {
                Some((_, best_key)) if best_key <= k => best,
                _ => Some((i, k)),
            }
        })
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(active: u64, total: u64, mean_us: Option<u64>) -> NodeReading {
        NodeReading {
            active,
            total,
            failed: 0,
            latency_sum_us: mean_us.unwrap_or(0),
            latency_count: u64::from(mean_us.is_some()),
            available: true,
        }
    }

    fn pick_from(strategy: Strategy, nodes: &[NodeReading], ticket: u64) -> Option<usize> {
        choose(strategy, nodes.len(), ticket, |i| Some(nodes[i]))
    }

    #[test]
    fn round_robin_follows_the_ticket_and_skips_non_candidates() {
        let nodes = [node(0, 0, None); 3];
        let picks: Vec<_> = (0..6)
            .map(|t| pick_from(Strategy::RoundRobin, &nodes, t).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        assert_eq!(
            choose(Strategy::RoundRobin, 3, 1, |i| (i != 1).then_some(nodes[i])),
            Some(2)
        );
        assert_eq!(choose(Strategy::RoundRobin, 3, 0, |_| None), None);
        assert_eq!(choose(Strategy::RoundRobin, 0, 0, |_| Some(nodes[0])), None);
    }

    #[test]
    fn least_loaded_picks_fewest_active_and_rotates_ties() {
        let nodes = [node(3, 0, None), node(1, 0, None), node(1, 0, None)];
        assert_eq!(pick_from(Strategy::LeastLoaded, &nodes, 0), Some(1));
        assert_eq!(
            pick_from(Strategy::LeastLoaded, &nodes, 2),
            Some(2),
            "tie broken by ticket"
        );
    }

    #[test]
    fn latency_first_ignores_in_flight_work() {
        let nodes = [node(10, 5, Some(1_000)), node(0, 5, Some(2_000))];
        assert_eq!(
            pick_from(Strategy::LatencyFirst, &nodes, 1),
            Some(0),
            "busy but fast still wins"
        );
        let fresh = [node(0, 5, Some(1_000)), node(0, 0, None)];
        assert_eq!(
            pick_from(Strategy::LatencyFirst, &fresh, 1),
            Some(1),
            "an unmeasured node counts as typical and is reached when the ticket rotates to it"
        );
        let slow_unmeasured = [node(6, 5, Some(1_000)), node(3, 0, None)];
        assert_eq!(
            pick_from(Strategy::Weighted, &slow_unmeasured, 0),
            Some(1),
            "weighted still counts an unmeasured node's queue: 4 x typical < 7 x 1000"
        );
        let busy_unmeasured = [node(1, 5, Some(1_000)), node(5, 0, None)];
        assert_eq!(
            pick_from(Strategy::Weighted, &busy_unmeasured, 1),
            Some(0),
            "an unmeasured node with a queue is not free"
        );
    }

    #[test]
    fn fairness_picks_fewest_finished() {
        let nodes = [node(0, 9, None), node(7, 2, None)];
        assert_eq!(pick_from(Strategy::Fairness, &nodes, 0), Some(1));
    }

    #[test]
    fn weighted_spreads_by_throughput() {
        // A node 7x slower gets work only once the fast one has 7 requests queued.
        let fast = |active| node(active, 10, Some(1_000));
        let slow = node(0, 10, Some(7_000));
        assert_eq!(pick_from(Strategy::Weighted, &[fast(5), slow], 0), Some(0));
        assert_eq!(pick_from(Strategy::Weighted, &[fast(7), slow], 0), Some(1));
    }

    #[test]
    fn unhealthy_nodes_are_a_last_resort() {
        let mut sick = node(0, 0, None);
        sick.available = false;
        let nodes = [sick, node(5, 0, None)];
        assert_eq!(pick_from(Strategy::LeastLoaded, &nodes, 0), Some(1));
        assert_eq!(
            choose(Strategy::LeastLoaded, 2, 0, |i| (i == 0)
                .then_some(nodes[0])),
            Some(0)
        );
    }

    #[test]
    fn names_round_trip() {
        for s in Strategy::ALL {
            assert_eq!(s.name().parse::<Strategy>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        }
        assert_eq!(
            "least-loaded".parse::<Strategy>().unwrap(),
            Strategy::LeastLoaded
        );
        assert!("random".parse::<Strategy>().is_err());
    }

    #[test]
    fn reading_derived_values() {
        let r = NodeReading {
            total: 4,
            failed: 1,
            latency_sum_us: 300,
            latency_count: 3,
            ..NodeReading::default()
        };
        assert_eq!(r.mean_latency_us(), Some(100.0));
        assert_eq!(r.success_rate(), 0.75);
        assert_eq!(NodeReading::default().success_rate(), 1.0);
    }
}
