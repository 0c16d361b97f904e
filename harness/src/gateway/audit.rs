//! Accounting by request id: the client's outcome of every request joined with every node's
//! served log, so what a gateway did with each request is known, not inferred from totals.
//!
//! A request is **served** on a node when the node's log says `served` (a 2xx after its service
//! time). Each request lands in exactly one class:
//!
//! | client | nodes that served it | class |
//! |---|---|---|
//! | 2xx | one | served once |
//! | 2xx | two or more | served more than once (a retry after the work was done) |
//! | 2xx | none | answered without a node (a cache, or a fabricated answer) |
//! | failed | one or more | failed at the client but served (wasted work) |
//! | failed | none | never served |
//! | left on purpose | none | left (the node stopped, or never got that far) |
//! | left on purpose | one or more | left but served (the node generated the rest for nobody) |
//!
//! Attempts that did not end in `served` (a 500, a 503, a reset, a client that left) are counted
//! per node beside the classes; a request's attempts beyond its first are the gateway's retries.

use std::collections::HashMap;

use mock_ollama::{ServedEntry, ServedOutcome};
use serde::{Deserialize, Serialize};

use crate::engine::Run;

/// The class of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// 2xx at the client, served by exactly one node.
    ServedOnce,
    /// 2xx at the client, served by two or more nodes (or twice by one).
    ServedMoreThanOnce,
    /// 2xx at the client, served by no node.
    AnsweredWithoutNode,
    /// Failed at the client, yet served by a node.
    FailedButServed,
    /// Failed at the client and served by no node.
    NeverServed,
    /// Left by the client on purpose (`--leave-after`), served in full by no node.
    Left,
    /// Left by the client on purpose, yet served in full by a node that generated more tokens
    /// than the client read: the gateway kept the upstream request open, or the node did not
    /// notice, and the rest was generated for nobody. (A client that left after the last token
    /// wasted nothing: that request is `Left`.)
    LeftButServed,
}

/// What happened on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAudit {
    /// Attempts of this run's requests the node logged, whatever their outcome.
    pub attempts: u64,
    /// Of those, served.
    pub served: u64,
    /// Logged entries with no id of this run (another client, or an id the gateway rewrote).
    pub foreign: u64,
}

/// The audit of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    /// Requests the client sent.
    pub requests: u64,
    /// Requests per class.
    pub served_once: u64,
    /// See [`Class::ServedMoreThanOnce`].
    pub served_more_than_once: u64,
    /// See [`Class::AnsweredWithoutNode`].
    pub answered_without_node: u64,
    /// See [`Class::FailedButServed`].
    pub failed_but_served: u64,
    /// See [`Class::NeverServed`].
    pub never_served: u64,
    /// See [`Class::Left`]; results from before it read 0.
    #[serde(default)]
    pub left: u64,
    /// See [`Class::LeftButServed`].
    #[serde(default)]
    pub left_but_served: u64,
    /// Requests served once after at least one attempt that was not served (retried elsewhere
    /// or on the same node, successfully).
    pub recovered: u64,
    /// Node-side attempts beyond each request's first (sent again after a failure, or twice).
    pub retries: u64,
    /// Per node, in node order.
    pub nodes: Vec<NodeAudit>,
    /// Whether any node's log dropped entries, or a node still worked on requests when its log
    /// was read (then the classes are not exact).
    pub incomplete: bool,
    /// What the nodes' logs say they did for this run's requests, every attempt counted.
    #[serde(default)]
    pub work: NodeWork,
    /// The client's time to first token joined with how the node that served it did so.
    #[serde(default)]
    pub ttft_by_view: TtftByView,
}

/// Times to first token summed over a set of requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtftSum {
    /// Requests with a first token.
    pub requests: u64,
    /// Their times to first token added up, us.
    pub total_us: u64,
}

impl TtftSum {
    fn add(&mut self, ttft_us: u64) {
        self.requests += 1;
        self.total_us = self.total_us.saturating_add(ttft_us);
    }

    fn merge(&mut self, other: TtftSum) {
        self.requests += other.requests;
        self.total_us = self.total_us.saturating_add(other.total_us);
    }

    /// The mean, ms (`None`: no request).
    pub fn mean_ms(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.total_us as f64 / self.requests as f64 / 1e3)
    }
}

/// The client's time to first token of each streamed request, joined on its id with the entry
/// of the node that served it: what a cold load and a prompt-cache hit cost or saved, as the
/// client saw it. Sums rather than percentiles, so repeats merge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtftByView {
    /// Served with the model resident.
    pub warm: TtftSum,
    /// Served after waiting for the model's load (a cold load or a reload).
    pub loaded: TtftSum,
    /// Served with part of the prompt from the slot's cache.
    pub cached: TtftSum,
    /// Served with the whole prompt evaluated.
    pub uncached: TtftSum,
}

impl TtftByView {
    /// Adds `other`'s requests.
    pub fn merge(&mut self, other: TtftByView) {
        self.warm.merge(other.warm);
        self.loaded.merge(other.loaded);
        self.cached.merge(other.cached);
        self.uncached.merge(other.uncached);
    }

    fn add(&mut self, ttft_us: u64, entry: &ServedEntry) {
        match entry.resident {
            Some(true) => self.warm.add(ttft_us),
            Some(false) => self.loaded.add(ttft_us),
            None => {}
        }
        match entry.cached_tokens {
            Some(0) => self.uncached.add(ttft_us),
            Some(_) => self.cached.add(ttft_us),
            None => {}
        }
    }
}

/// The nodes' own view of the work a run's requests cost them, summed over every attempt the
/// logs hold (from each entry's model, prompt-cache and leave fields).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeWork {
    /// Attempts that found their model not resident (with their options) and paid or waited
    /// for a load: cold loads and reloads.
    pub loads: u64,
    /// Of them, reloads forced by a runner option (`num_ctx`, ...).
    pub reloads: u64,
    /// Models unloaded to make room for the loads.
    pub evictions: u64,
    /// Time those attempts waited for their model, us.
    pub load_wait_us: u64,
    /// Prompt tokens in the attempts.
    pub prompt_tokens: u64,
    /// Of them, found in a slot's prompt cache and not evaluated again.
    pub cached_tokens: u64,
    /// Time nodes went on working on streams after their clients left, us.
    pub worked_after_leave_us: u64,
}

impl NodeWork {
    fn add(&mut self, entry: &ServedEntry) {
        if entry.resident == Some(false) {
            self.loads += 1;
            self.load_wait_us += entry.load_ns.unwrap_or(0) / 1_000;
        }
        self.reloads += u64::from(entry.reload.is_some());
        self.evictions += u64::from(entry.evicted.unwrap_or(0));
        self.prompt_tokens += entry.prompt_tokens.unwrap_or(0);
        self.cached_tokens += entry.cached_tokens.unwrap_or(0);
        self.worked_after_leave_us += entry.after_leave_ns.unwrap_or(0) / 1_000;
    }

    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: NodeWork) {
        self.loads += other.loads;
        self.reloads += other.reloads;
        self.evictions += other.evictions;
        self.load_wait_us += other.load_wait_us;
        self.prompt_tokens += other.prompt_tokens;
        self.cached_tokens += other.cached_tokens;
        self.worked_after_leave_us += other.worked_after_leave_us;
    }
}

impl Audit {
    /// Whether every request was served exactly once, or left by its client and then served
    /// by no node, and nothing else happened.
    pub fn clean(&self) -> bool {
        self.served_once + self.left == self.requests && !self.incomplete
    }

    fn count(&mut self, class: Class) {
        *match class {
            Class::ServedOnce => &mut self.served_once,
            Class::ServedMoreThanOnce => &mut self.served_more_than_once,
            Class::AnsweredWithoutNode => &mut self.answered_without_node,
            Class::FailedButServed => &mut self.failed_but_served,
            Class::NeverServed => &mut self.never_served,
            Class::Left => &mut self.left,
            Class::LeftButServed => &mut self.left_but_served,
        } += 1;
    }
}

/// The class of a request with a client outcome `ok` that nodes served `served` times.
pub fn classify(ok: bool, served: u32) -> Class {
    match (ok, served) {
        (true, 1) => Class::ServedOnce,
        (true, 0) => Class::AnsweredWithoutNode,
        (true, _) => Class::ServedMoreThanOnce,
        (false, 0) => Class::NeverServed,
        (false, _) => Class::FailedButServed,
    }
}

/// Joins `run` with each node's log entries (`logs[i]` for node i, as read after the run) and
/// whether each log is not exact (it dropped entries, or its node still had requests open).
pub fn audit(run: &Run, logs: &[(Vec<ServedEntry>, bool)]) -> Audit {
    // Per request number: (served, attempts).
    let mut seen: HashMap<u64, (u32, u32)> = HashMap::with_capacity(run.records.len());
    // Per request number: the entry of a node that served it (any one, if several did: the TTFT
    // join below takes requests tried once only).
    let mut serving: HashMap<u64, &ServedEntry> = HashMap::new();
    let prefix = format!("{}-", run.run_id);
    let mut result = Audit {
        requests: run.records.len() as u64,
        nodes: vec![NodeAudit::default(); logs.len()],
        incomplete: logs.iter().any(|(_, dropped)| *dropped),
        ..Audit::default()
    };
    for (node, (entries, _)) in logs.iter().enumerate() {
        for entry in entries {
            // The text marker first (proxies may rewrite the header), the header when the body
            // carries none (`--repeat-inputs`).
            let n = entry
                .marker
                .as_deref()
                .or(entry.header_id.as_deref())
                .and_then(|m| m.strip_prefix(&prefix))
                .and_then(|n| n.parse::<u64>().ok());
            let Some(n) = n else {
                result.nodes[node].foreign += 1;
                continue;
            };
            let served = entry.outcome == ServedOutcome::Served;
            result.work.add(entry);
            let slot = seen.entry(n).or_default();
            slot.1 += 1;
            result.nodes[node].attempts += 1;
            if served {
                slot.0 += 1;
                result.nodes[node].served += 1;
                serving.insert(n, entry);
            }
        }
    }
    for record in &run.records {
        let (served, tried) = seen.get(&record.n).copied().unwrap_or_default();
        let entry = serving.get(&record.n);
        // A retried request's first token may come from an attempt that was not served.
        if let (Some(ttft), Some(entry), 1) = (record.ttft_us, entry, tried) {
            result.ttft_by_view.add(ttft, entry);
        }
        result.retries += u64::from(tried.saturating_sub(1));
        let unread =
            |e: &&ServedEntry| e.output_tokens.is_none_or(|n| n > u64::from(record.tokens));
        let class = match (record.left, served) {
            (true, 0) => Class::Left,
            (true, _) if entry.is_some_and(unread) => Class::LeftButServed,
            (true, _) => Class::Left,
            (false, _) => classify(record.ok(), served),
        };
        if class == Class::ServedOnce && tried > 1 {
            result.recovered += 1;
        }
        result.count(class);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Record;
    use crate::summary::new_histogram;

    fn run(outcomes: &[Option<u16>]) -> Run {
        Run {
            run_id: "r".into(),
            elapsed: std::time::Duration::from_secs(1),
            records: outcomes
                .iter()
                .enumerate()
                .map(|(n, status)| Record {
                    n: n as u64,
                    status: *status,
                    latency_us: 1,
                    sent_us: 0,
                    late_us: 0,
                    ttft_us: None,
                    tokens: 0,
                    left: false,
                })
                .collect(),
            latency: new_histogram(),
            ttft: new_histogram(),
            itl: new_histogram(),
            late: 0,
            window: None,
            capped: false,
        }
    }

    fn entry(marker: &str, outcome: ServedOutcome) -> ServedEntry {
        ServedEntry {
            seq: 0,
            endpoint: "/api/embed".into(),
            marker: Some(marker.into()),
            header_id: None,
            id_truncated: false,
            outcome,
            status: Some(200),
            stalled: false,
            items: 1,
            arrival_ns: 0,
            slot_ns: None,
            service_start_ns: None,
            service_end_ns: None,
            end_ns: 0,
            model: None,
            load_ns: None,
            resident: None,
            evicted: None,
            reload: None,
            prompt_tokens: None,
            cached_tokens: None,
            output_tokens: None,
            after_leave_ns: None,
        }
    }

    #[test]
    fn the_nodes_work_sums_every_attempt_of_the_run_and_nothing_else() {
        let cold = ServedEntry {
            resident: Some(false),
            load_ns: Some(2_000_000),
            evicted: Some(1),
            reload: Some("num_ctx".into()),
            prompt_tokens: Some(100),
            cached_tokens: Some(0),
            ..entry("r-0", ServedOutcome::Served)
        };
        let warm = ServedEntry {
            resident: Some(true),
            load_ns: Some(1_000),
            prompt_tokens: Some(100),
            cached_tokens: Some(60),
            after_leave_ns: Some(5_000_000),
            ..entry("r-1", ServedOutcome::Cancelled)
        };
        let foreign = ServedEntry {
            resident: Some(false),
            prompt_tokens: Some(999),
            ..entry("other-0", ServedOutcome::Served)
        };
        let audit = audit(
            &run(&[Some(200), None]),
            &[(vec![cold, warm, foreign], false)],
        );
        let expected = NodeWork {
            loads: 1,
            reloads: 1,
            evictions: 1,
            load_wait_us: 2_000,
            prompt_tokens: 200,
            cached_tokens: 60,
            worked_after_leave_us: 5_000,
        };
        assert_eq!(audit.work, expected);
    }

    /// Each request's TTFT lands beside what its serving node's entry says (a cancelled
    /// attempt's view does not count, a request without a first token adds nothing); the twin
    /// that joins by position instead of id was seen failing (request 1's 40 ms with the cold
    /// entry).
    #[test]
    fn the_client_ttft_is_joined_with_the_serving_nodes_view_by_id() {
        let mut client = run(&[Some(200), Some(200), Some(200), None]);
        for (record, ttft) in client.records.iter_mut().zip([900, 40, 50, 7]) {
            record.ttft_us = Some(ttft * 1_000);
        }
        let view = |marker: &str, resident: bool, cached: u64| ServedEntry {
            resident: Some(resident),
            cached_tokens: Some(cached),
            ..entry(marker, ServedOutcome::Served)
        };
        let cancelled = ServedEntry {
            resident: Some(false),
            ..entry("r-3", ServedOutcome::Cancelled)
        };
        let entries = vec![
            view("r-1", true, 30),
            view("r-0", false, 0),
            view("r-2", true, 0),
            cancelled,
        ];
        let v = audit(&client, &[(entries, false)]).ttft_by_view;
        assert_eq!(
            (v.loaded, v.warm),
            (
                TtftSum {
                    requests: 1,
                    total_us: 900_000
                },
                TtftSum {
                    requests: 2,
                    total_us: 90_000
                }
            )
        );
        assert_eq!((v.cached.requests, v.uncached.requests), (1, 2));
        assert_eq!(v.cached.mean_ms(), Some(40.0));
        assert_eq!(v.uncached.mean_ms(), Some(475.0));
    }

    /// A request its client left is `left` when no node served it whole and `left but served`
    /// when one did and generated tokens the client never read; neither is a failure, and only
    /// the first keeps the audit clean. A client that left after the last token wasted nothing.
    #[test]
    fn a_request_left_on_purpose_is_told_by_what_the_node_did_after() {
        let mut client = run(&[None, None, Some(200), None]);
        for (record, tokens) in client.records.iter_mut().zip([2, 2, 0, 4]) {
            record.left = record.status.is_none();
            record.tokens = tokens;
        }
        let asked = |marker: &str, outcome| ServedEntry {
            output_tokens: Some(4),
            ..entry(marker, outcome)
        };
        let read_to_the_end = asked("r-3", ServedOutcome::Served);
        let stopped = vec![
            asked("r-0", ServedOutcome::Cancelled),
            asked("r-1", ServedOutcome::Cancelled),
            asked("r-2", ServedOutcome::Served),
            read_to_the_end.clone(),
        ];
        let a = audit(&client, &[(stopped, false)]);
        assert_eq!((a.left, a.left_but_served, a.never_served), (3, 0, 0));
        assert!(a.clean(), "{a:?}");
        let kept_going = vec![
            asked("r-0", ServedOutcome::Cancelled),
            asked("r-1", ServedOutcome::Served),
            asked("r-2", ServedOutcome::Served),
            read_to_the_end,
        ];
        let a = audit(&client, &[(kept_going, false)]);
        assert_eq!((a.left, a.left_but_served, a.failed_but_served), (2, 1, 0));
        assert!(!a.clean(), "{a:?}");
    }

    #[test]
    fn each_request_lands_in_one_class() {
        use ServedOutcome::*;
        // 0 once, 1 twice, 2 never (cached), 3 failed but served, 4 failed never served,
        // 5 recovered after a 500 on node 0.
        let client = run(&[Some(200), Some(200), Some(200), Some(502), None, Some(200)]);
        let node0 = vec![
            entry("r-0", Served),
            entry("r-1", Served),
            entry("r-5", Error),
        ];
        let node1 = vec![
            entry("r-1", Served),
            entry("r-3", Served),
            entry("r-5", Served),
            entry("other-1", Served),
        ];
        let audit = audit(&client, &[(node0, false), (node1, false)]);
        assert_eq!(
            (
                audit.served_once,
                audit.served_more_than_once,
                audit.answered_without_node,
                audit.failed_but_served,
                audit.never_served
            ),
            (2, 1, 1, 1, 1)
        );
        assert_eq!(audit.recovered, 1);
        assert_eq!(audit.retries, 2, "r-1 and r-5 were each sent a second time");
        assert_eq!(audit.nodes[1].foreign, 1);
        assert_eq!((audit.nodes[0].attempts, audit.nodes[0].served), (3, 2));
        assert!(!audit.clean());
    }

    #[test]
    fn a_clean_run_is_clean_unless_a_log_dropped_entries() {
        let client = run(&[Some(200), Some(200)]);
        let logs = vec![
            entry("r-0", ServedOutcome::Served),
            entry("r-1", ServedOutcome::Served),
        ];
        assert!(audit(&client, &[(logs.clone(), false)]).clean());
        assert!(!audit(&client, &[(logs, true)]).clean());
    }
}
