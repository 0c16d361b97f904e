//! Server-side ground truth: what each node served, by endpoint and status.
//!
//! A benchmark of a client-side pool must check the pool's own statistics against something the
//! pool cannot influence. Ollama has no metrics endpoint, so the mock keeps its own counters,
//! readable in-process ([`Metrics::snapshot`]) and over HTTP as Prometheus text ([`Metrics::render`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::connections::Connections;

/// Upper bounds (seconds) of the service-time histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How a request ended, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Label {
    /// Answered with this HTTP status.
    Status(u16),
    /// The mock aborted the connection on purpose (an injected reset).
    Reset,
    /// The client went away before the answer.
    Cancelled,
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Label::Status(code) => write!(f, "{code}"),
            Label::Reset => f.write_str("reset"),
            Label::Cancelled => f.write_str("cancelled"),
        }
    }
}

/// Live counters of one node. Gauges and the histogram are atomics; the per-status table is a
/// small map with `Copy` keys under a mutex taken once per request (tens of nanoseconds, no
/// allocation once a key exists, and it keeps the label set open).
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, Label), u64>>,
    in_flight: AtomicU64,
    queued: AtomicU64,
    in_service: AtomicU64,
    loading: AtomicU64,
    rejected_busy: AtomicU64,
    streams_abandoned: AtomicU64,
    loads: AtomicU64,
    loads_aborted: AtomicU64,
    evictions: AtomicU64,
    reloads: AtomicU64,
    service_buckets: [AtomicU64; BUCKETS.len()],
    service_count: AtomicU64,
    service_sum_ns: AtomicU64,
    /// How long items really held their slot, microseconds (created on first use).
    served: Mutex<Option<hdrhistogram::Histogram<u64>>>,
    /// TCP connections accepted and closed, counted by the node's listener.
    connections: Arc<Connections>,
}

/// One model load in progress; see [`Metrics::load_started`].
#[derive(Debug)]
pub(crate) struct LoadCount<'a> {
    metrics: &'a Metrics,
    finished: bool,
}

impl LoadCount<'_> {
    /// The load finished: the model is resident.
    pub(crate) fn finished(mut self) {
        self.finished = true;
        self.metrics.loads.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for LoadCount<'_> {
    fn drop(&mut self) {
        // Relaxed: plain tallies, read by snapshots that need no order with anything else.
        if !self.finished {
            self.metrics.loads_aborted.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A copy of a node's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// Finished requests by endpoint path and status label (`"200"`, `"503"`, `"reset"`, ...).
    pub requests: BTreeMap<(String, String), u64>,
    /// Requests being handled now.
    pub in_flight: u64,
    /// Inference items waiting for a slot now.
    pub queued: u64,
    /// Inference items holding a slot now (the slots in use).
    pub in_service: u64,
    /// Of those, requests waiting for a model to load.
    pub loading: u64,
    /// Requests refused with 503 because the queue was full.
    pub rejected_busy: u64,
    /// Streamed answers whose client left before the last line, and non-streamed ones under
    /// `Leave::AtNextToken` whose client left before the answer.
    pub streams_abandoned: u64,
    /// Model loads that finished (the model became resident).
    pub loads: u64,
    /// Model loads abandoned before they finished: their only request left (Ollama logs a 499),
    /// so the model stayed cold and the next request pays the load again.
    pub loads_aborted: u64,
    /// Runners unloaded to make room for another model (`max_loaded_models` or memory).
    pub evictions: u64,
    /// Runners unloaded to load the same model again with a request's other options.
    pub reloads: u64,
    /// Inference items served (each embed input counts once).
    pub items_served: u64,
    /// TCP connections the node accepted.
    pub connections_accepted: u64,
    /// TCP connections that have closed (either side).
    pub connections_closed: u64,
}

impl CountersSnapshot {
    /// Requests to `endpoint` that finished with a status label satisfying `pred`.
    pub fn count(&self, endpoint: &str, pred: impl Fn(&str) -> bool) -> u64 {
        self.requests
            .iter()
            .filter(|((e, s), _)| e == endpoint && pred(s))
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests to `endpoint` answered 2xx.
    pub fn succeeded(&self, endpoint: &str) -> u64 {
        self.count(endpoint, |s| s.starts_with('2'))
    }

    /// Requests to `endpoint` that did not get a 2xx (errors, resets, cancellations).
    pub fn failed(&self, endpoint: &str) -> u64 {
        self.count(endpoint, |s| !s.starts_with('2'))
    }

    /// All finished requests to `endpoint`.
    pub fn total(&self, endpoint: &str) -> u64 {
        self.count(endpoint, |_| true)
    }
}

/// RAII gauge: +1 now, -1 when dropped, so every exit path (including a dropped future when the
/// client disconnects) restores the gauge.
#[derive(Debug)]
pub struct GaugeGuard<'a>(&'a AtomicU64);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a request is about to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// A model load.
    Load,
    /// A slot of a loaded model.
    Slot,
}

/// Which count a new wait is checked against before it joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Never refused.
    Unbounded,
    /// Refused when this many requests already wait, for anything.
    Queued(usize),
    /// Refused when this many requests already wait for a model load.
    Loading(usize),
}

/// A request counted as waiting until the guard drops.
#[derive(Debug)]
pub struct Waiting<'a> {
    _queued: GaugeGuard<'a>,
    _loading: Option<GaugeGuard<'a>>,
}

impl Metrics {
    /// Counts one finished request.
    pub fn record(&self, endpoint: &'static str, label: Label) {
        let mut table = self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *table.entry((endpoint, label)).or_insert(0) += 1;
    }

    /// Marks a request in flight until the guard drops.
    pub fn in_flight(&self) -> GaugeGuard<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        GaugeGuard(&self.in_flight)
    }

    /// Marks an inference item holding a slot until the guard drops.
    pub fn in_service(&self) -> GaugeGuard<'_> {
        self.in_service.fetch_add(1, Ordering::Relaxed);
        GaugeGuard(&self.in_service)
    }

    /// Marks a request waiting until the guard drops; returns `None` (and counts a busy
    /// rejection) when `limit` says the queue is full. The check and the increment are one atomic
    /// step, so concurrent arrivals never overshoot the bound.
    pub fn try_enqueue(&self, wait: Wait, limit: Limit) -> Option<Waiting<'_>> {
        let (queued_bound, loading_bound) = match limit {
            Limit::Unbounded => (None, None),
            Limit::Queued(b) => (Some(b), None),
            Limit::Loading(b) => (None, Some(b)),
        };
        let loading = match wait {
            Wait::Load => Some(self.join(&self.loading, loading_bound)?),
            Wait::Slot => None,
        };
        Some(Waiting {
            _queued: self.join(&self.queued, queued_bound)?,
            _loading: loading,
        })
    }

    /// The node's connection counts, shared with its listener.
    pub fn connections(&self) -> Arc<Connections> {
        Arc::clone(&self.connections)
    }

    /// Counts a streamed answer whose client left early.
    pub fn stream_abandoned(&self) {
        self.streams_abandoned.fetch_add(1, Ordering::Relaxed);
    }

    /// A model load starts: counted as finished by [`LoadCount::finished`], as aborted if the
    /// guard is dropped first (its request left during the load).
    pub(crate) fn load_started(&self) -> LoadCount<'_> {
        LoadCount {
            metrics: self,
            finished: false,
        }
    }

    /// Counts a runner evicted for another model.
    pub(crate) fn evicted(&self) {
        self.evictions.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a runner unloaded to be loaded again with other options.
    pub(crate) fn reloaded(&self) {
        self.reloads.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds one to `gauge` unless it already holds `bound` (then counts a busy rejection).
    fn join<'a>(&'a self, gauge: &'a AtomicU64, bound: Option<usize>) -> Option<GaugeGuard<'a>> {
        let before = gauge.fetch_add(1, Ordering::Relaxed);
        if bound.is_some_and(|b| before >= b as u64) {
            gauge.fetch_sub(1, Ordering::Relaxed);
            self.rejected_busy.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(GaugeGuard(gauge))
    }

    /// Records how long one item really held its slot, from its service start to the end of its
    /// sleep: what `harness run calibrate` compares with the configured service time.
    pub fn observe_served(&self, held: Duration) {
        let mut served = self
            .served
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // 1 us to 1 h at 3 significant figures: the bounds are valid, so `new_with_bounds`
        // cannot fail; if it ever did, the node would only stop recording this figure.
        if served.is_none() {
            *served = hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3).ok();
        }
        if let Some(h) = served.as_mut() {
            h.saturating_record((held.as_micros() as u64).max(1));
        }
    }

    /// The `q` quantile of the recorded served times, or `None` before the first.
    pub fn served_quantile(&self, q: f64) -> Option<Duration> {
        let served = self
            .served
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let h = served.as_ref().filter(|h| !h.is_empty())?;
        Some(Duration::from_micros(h.value_at_quantile(q)))
    }

    /// Records one item's service time (time holding a slot).
    pub fn observe_service(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.service_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.service_count.fetch_add(1, Ordering::Relaxed);
        self.service_sum_ns
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> CountersSnapshot {
        let table = self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        CountersSnapshot {
            requests: table
                .iter()
                .map(|((e, label), n)| ((e.to_string(), label.to_string()), *n))
                .collect(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            in_service: self.in_service.load(Ordering::Relaxed),
            loading: self.loading.load(Ordering::Relaxed),
            rejected_busy: self.rejected_busy.load(Ordering::Relaxed),
            streams_abandoned: self.streams_abandoned.load(Ordering::Relaxed),
            loads: self.loads.load(Ordering::Relaxed),
            loads_aborted: self.loads_aborted.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            reloads: self.reloads.load(Ordering::Relaxed),
            items_served: self.service_count.load(Ordering::Relaxed),
            connections_accepted: self.connections.accepted(),
            connections_closed: self.connections.closed(),
        }
    }

    /// Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let snap = self.snapshot();
        let mut out = String::new();
        out.push_str(
            "# HELP mock_ollama_requests_total Finished HTTP requests by endpoint and status.\n",
        );
        out.push_str("# TYPE mock_ollama_requests_total counter\n");
        for ((endpoint, status), n) in &snap.requests {
            let _ = writeln!(
                out,
                "mock_ollama_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
            );
        }
        let (gauges, counters) = scalars(&snap);
        let kinds = gauges.iter().map(|g| ("gauge", g));
        for (kind, (name, help, value)) in kinds.chain(counters.iter().map(|c| ("counter", c))) {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        self.render_service_histogram(&mut out);
        out
    }

    /// The service-time histogram, cumulative buckets as Prometheus wants them.
    fn render_service_histogram(&self, out: &mut String) {
        use std::fmt::Write as _;
        out.push_str("# HELP mock_ollama_service_seconds Time an inference item held a slot.\n");
        out.push_str("# TYPE mock_ollama_service_seconds histogram\n");
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.service_buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "mock_ollama_service_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.service_count.load(Ordering::Relaxed);
        let sum = self.service_sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(
            out,
            "mock_ollama_service_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(out, "mock_ollama_service_seconds_sum {sum}");
        let _ = writeln!(out, "mock_ollama_service_seconds_count {count}");
    }
}

/// One scalar series: name, help text, value.
type Scalar = (&'static str, &'static str, u64);

/// The gauges and counters of `snap`, as `render` writes them.
fn scalars(snap: &CountersSnapshot) -> ([Scalar; 4], [Scalar; 8]) {
    let gauges = [
        (
            "mock_ollama_in_flight",
            "Requests being handled.",
            snap.in_flight,
        ),
        (
            "mock_ollama_queued",
            "Requests waiting for a model load or a slot.",
            snap.queued,
        ),
        (
            "mock_ollama_in_service",
            "Inference items holding a slot.",
            snap.in_service,
        ),
        (
            "mock_ollama_loading",
            "Requests waiting for a model load.",
            snap.loading,
        ),
    ];
    let counters = [
        (
            "mock_ollama_rejected_busy_total",
            "Requests refused with 503 (queue full).",
            snap.rejected_busy,
        ),
        (
            "mock_ollama_streams_abandoned_total",
            "Streamed answers whose client left early.",
            snap.streams_abandoned,
        ),
        (
            "mock_ollama_loads_total",
            "Model loads that finished.",
            snap.loads,
        ),
        (
            "mock_ollama_loads_aborted_total",
            "Model loads abandoned by their request before they finished.",
            snap.loads_aborted,
        ),
        (
            "mock_ollama_evictions_total",
            "Runners unloaded to make room for another model.",
            snap.evictions,
        ),
        (
            "mock_ollama_reloads_total",
            "Runners unloaded to load the model again with other options.",
            snap.reloads,
        ),
        (
            "mock_ollama_connections_accepted_total",
            "TCP connections accepted.",
            snap.connections_accepted,
        ),
        (
            "mock_ollama_connections_closed_total",
            "TCP connections closed, by either side.",
            snap.connections_closed,
        ),
    ];
    (gauges, counters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_bound_rejects_and_guard_releases() {
        let m = Metrics::default();
        let a = m
            .try_enqueue(Wait::Slot, Limit::Queued(1))
            .expect("first fits");
        assert!(
            m.try_enqueue(Wait::Slot, Limit::Queued(1)).is_none(),
            "second must be refused"
        );
        assert_eq!(m.snapshot().rejected_busy, 1);
        drop(a);
        assert!(
            m.try_enqueue(Wait::Slot, Limit::Queued(1)).is_some(),
            "slot freed by drop"
        );
        assert_eq!(m.snapshot().queued, 0);
    }

    #[test]
    fn a_loading_limit_counts_only_load_waits() {
        let m = Metrics::default();
        let slots: Vec<_> = (0..3)
            .map(|_| m.try_enqueue(Wait::Slot, Limit::Unbounded).unwrap())
            .collect();
        let load = m.try_enqueue(Wait::Load, Limit::Loading(1));
        assert!(load.is_some(), "slot waits do not fill the load bound");
        assert!(m.try_enqueue(Wait::Load, Limit::Loading(1)).is_none());
        let snap = m.snapshot();
        assert_eq!((snap.queued, snap.loading, snap.rejected_busy), (4, 1, 1));
        drop((slots, load));
        assert_eq!((m.snapshot().queued, m.snapshot().loading), (0, 0));
    }

    #[test]
    fn render_has_counters_and_cumulative_histogram() {
        let m = Metrics::default();
        m.record("/api/embed", Label::Status(200));
        m.record("/api/embed", Label::Status(200));
        m.record("/api/embed", Label::Status(503));
        m.observe_service(Duration::from_millis(3));
        m.observe_service(Duration::from_millis(30));
        let text = m.render();
        assert!(
            text.contains("mock_ollama_requests_total{endpoint=\"/api/embed\",status=\"200\"} 2")
        );
        assert!(text.contains("mock_ollama_service_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("mock_ollama_service_seconds_bucket{le=\"0.05\"} 2"));
        assert!(text.contains("mock_ollama_service_seconds_count 2"));
        let snap = m.snapshot();
        assert_eq!(
            (snap.succeeded("/api/embed"), snap.failed("/api/embed")),
            (2, 1)
        );
    }
}
