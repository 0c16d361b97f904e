//! Which models a node holds: the runner options that force a reload, the memory a runner
//! takes, which runner to evict to make room, and the timeline of residency events.
//!
//! The rules follow Ollama's scheduler (`server/sched.go` at ollama/ollama@000ce02):
//! - `processPending`: a model not loaded needs room; there is none when `OLLAMA_MAX_LOADED_MODELS`
//!   runners are loaded or when it does not fit the memory the loaded runners leave. The first
//!   model always loads, fit or not (Ollama then offloads part of it to the CPU).
//! - `findRunnerToUnload`: the loaded runners sorted by keep-alive, shortest first (a negative,
//!   "forever", one last, as Ollama's `uint64` cast makes it), ties by name; the first idle one, or
//!   when none is idle the first, whose requests are then waited for. Never a failure.
//! - `needsReload`: a loaded runner whose options differ from the request's is unloaded and loaded
//!   again; `num_gpu` is ignored when the request's is negative ("auto").
//!
//! Pure functions over plain data, so each rule is tested without a runtime.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The options of Ollama's `api.Runner` a loaded runner was started with; a request whose
/// options differ makes the node reload the model. Unset fields hold Ollama's defaults
/// (`api.DefaultOptions`), so a request that leaves one out matches a runner loaded with the
/// default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunnerOptions {
    /// Context length, after clamping to the model's training context.
    pub num_ctx: u64,
    /// Prompt batch size (default 512).
    pub num_batch: i64,
    /// Layers on the GPU; negative: Ollama decides (the default, -1).
    pub num_gpu: i64,
    /// The GPU that holds the small tensors (default 0).
    pub main_gpu: i64,
    /// Whether to memory-map the model file; unset by default.
    pub use_mmap: Option<bool>,
    /// CPU threads; 0: Ollama decides (the default).
    pub num_thread: i64,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            num_ctx: crate::api::validate::DEFAULT_CONTEXT,
            num_batch: 512,
            num_gpu: -1,
            main_gpu: 0,
            use_mmap: None,
            num_thread: 0,
        }
    }
}

impl RunnerOptions {
    /// The first field in which a request's options (`wanted`) differ from this loaded runner's,
    /// by its Ollama name; `None`: the runner serves the request as it is.
    pub fn reload_reason(&self, wanted: &RunnerOptions) -> Option<&'static str> {
        let gpu_differs = wanted.num_gpu >= 0 && wanted.num_gpu != self.num_gpu;
        [
            (self.num_ctx != wanted.num_ctx, "num_ctx"),
            (self.num_batch != wanted.num_batch, "num_batch"),
            (gpu_differs, "num_gpu"),
            (self.main_gpu != wanted.main_gpu, "main_gpu"),
            (self.use_mmap != wanted.use_mmap, "use_mmap"),
            (self.num_thread != wanted.num_thread, "num_thread"),
        ]
        .into_iter()
        .find_map(|(differs, field)| differs.then_some(field))
    }
}

/// The memory a runner of a model takes: the weights plus a KV cache of `num_ctx` tokens for
/// each of its `slots` (Ollama sizes the cache as `num_ctx x OLLAMA_NUM_PARALLEL`).
pub fn footprint(size: u64, kv_bytes_per_token: u64, num_ctx: u64, slots: usize) -> u64 {
    let cache = kv_bytes_per_token
        .saturating_mul(num_ctx)
        .saturating_mul(slots as u64);
    size.saturating_add(cache)
}

/// Reads a size: bytes, or a number with a unit (`B`, `KB`, `MB`, `GB`, `TB` in powers of
/// 1000; `KiB`, `MiB`, `GiB`, `TiB` in powers of 1024), as `16GiB` or `7.5 GB`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("invalid size {text:?}: expected a number of bytes, as 16GiB"))?;
    let scale = match unit.trim() {
        "" | "B" => 1u64,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        other => return Err(format!("unknown size unit {other:?} in {text:?}")),
    };
    let bytes = number * scale as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("size {text:?} is too large"));
    }
    Ok(bytes as u64)
}

/// A node's limits on what it holds at once; `None` fields do not limit (the mock's
/// behaviour before these settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// `OLLAMA_MAX_LOADED_MODELS`.
    pub max_loaded: Option<usize>,
    /// The memory runners may take, bytes (a GPU's VRAM).
    pub memory: Option<u64>,
}

impl Limits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.max_loaded.is_some() || self.memory.is_some()
    }
}

/// A loaded runner as the eviction rule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded<'a> {
    /// Its model.
    pub model: &'a str,
    /// Its keep-alive (`Duration::MAX`: forever).
    pub keep_alive: Duration,
    /// Requests using it now.
    pub users: u64,
    /// The memory it takes.
    pub footprint: u64,
    /// Whether it is still loading (it takes memory but cannot be evicted).
    pub loading: bool,
}

/// Why the node needs room before a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pressure {
    /// `max_loaded` runners are loaded.
    MaxLoaded,
    /// The new runner does not fit the memory the others leave.
    Memory,
}

/// Whether loading a runner of `need` bytes next to `others` needs one of them evicted first.
pub fn pressure(limits: Limits, others: &[Loaded<'_>], need: u64) -> Option<Pressure> {
    if others.is_empty() {
        return None;
    }
    if limits.max_loaded.is_some_and(|max| others.len() >= max) {
        return Some(Pressure::MaxLoaded);
    }
    let used = others
        .iter()
        .fold(0u64, |sum, r| sum.saturating_add(r.footprint));
    limits
        .memory
        .filter(|memory| used.saturating_add(need) > *memory)
        .map(|_| Pressure::Memory)
}

/// The runner `findRunnerToUnload` picks among `loaded` (those still loading are skipped):
/// the idle one with the shortest keep-alive, else the busy one with the shortest, ties broken
/// by name. `None` when nothing can be evicted.
pub fn victim<'a>(loaded: &[Loaded<'a>]) -> Option<Loaded<'a>> {
    let mut candidates: Vec<Loaded<'a>> = loaded.iter().filter(|r| !r.loading).copied().collect();
    candidates.sort_by(|a, b| (a.keep_alive, a.model).cmp(&(b.keep_alive, b.model)));
    candidates
        .iter()
        .find(|r| r.users == 0)
        .or_else(|| candidates.first())
        .copied()
}

/// Why a runner left the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Unload {
    /// Its keep-alive ran out while it was idle.
    Expired,
    /// A request asked for it (`keep_alive: 0` with an empty prompt).
    Requested,
    /// Evicted to make room for another model.
    Evicted {
        /// The limit that was reached.
        pressure: Pressure,
        /// The model that needed the room.
        for_model: String,
    },
    /// Unloaded to load it again with other options.
    Reload {
        /// The first option that differed (`num_ctx`, ...).
        field: String,
    },
}

/// What happened to a model on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// A load started.
    LoadStarted,
    /// A load finished: the model is resident.
    Loaded,
    /// The request that started a load left before it finished; the model stays unloaded.
    LoadAborted,
    /// The model left the node.
    Unloaded {
        /// Why.
        #[serde(flatten)]
        why: Unload,
    },
}

/// One residency event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When, ns since the node started (the served log's clock).
    pub at_ns: u64,
    /// The model.
    pub model: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Events kept by default; the oldest are dropped (and counted) beyond it.
pub const EVENTS_KEPT: usize = 100_000;

/// The events of one node, oldest first, bounded.
#[derive(Debug)]
pub struct Timeline {
    started: tokio::time::Instant,
    ring: Mutex<(VecDeque<Event>, u64)>,
}

/// What a read of the timeline returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Events {
    /// The events kept, in time order.
    pub events: Vec<Event>,
    /// Events dropped from the front so far.
    pub dropped: u64,
}

impl Timeline {
    /// An empty timeline whose clock starts at `started`.
    pub fn new(started: tokio::time::Instant) -> Self {
        Self {
            started,
            ring: Mutex::new((VecDeque::new(), 0)),
        }
    }

    /// Records `kind` for `model` at `at`.
    pub fn record(&self, at: tokio::time::Instant, model: &str, kind: EventKind) {
        let at_ns = at.saturating_duration_since(self.started).as_nanos();
        let event = Event {
            at_ns: u64::try_from(at_ns).unwrap_or(u64::MAX),
            model: model.to_owned(),
            kind,
        };
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        if ring.0.len() == EVENTS_KEPT {
            ring.0.pop_front();
            ring.1 += 1;
        }
        ring.0.push_back(event);
    }

    /// Every event kept, in time order (an expiry is recorded when it is noticed, with the time
    /// it happened, so it may have been written after later events).
    pub fn read(&self) -> Events {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let mut events: Vec<Event> = ring.0.iter().cloned().collect();
        events.sort_by_key(|e| e.at_ns);
        Events {
            events,
            dropped: ring.1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(model: &str, keep_alive: u64, users: u64) -> Loaded<'_> {
        Loaded {
            model,
            keep_alive: Duration::from_secs(keep_alive),
            users,
            footprint: 1,
            loading: false,
        }
    }

    #[test]
    fn the_idle_runner_with_the_shortest_keep_alive_goes_first() {
        let loaded = [runner("a", 60, 0), runner("b", 10, 1), runner("c", 30, 0)];
        assert_eq!(victim(&loaded).map(|r| r.model), Some("c"));
        // None idle: the shortest keep-alive, whose requests are then waited for.
        let busy = [runner("a", 60, 1), runner("b", 10, 2)];
        assert_eq!(victim(&busy).map(|r| r.model), Some("b"));
        // Forever goes last; a tie goes by name.
        let forever = Loaded {
            keep_alive: Duration::MAX,
            ..runner("a", 0, 0)
        };
        assert_eq!(
            victim(&[forever, runner("z", 5, 0), runner("y", 5, 0)]).map(|r| r.model),
            Some("y")
        );
        let loading = Loaded {
            loading: true,
            ..runner("a", 0, 0)
        };
        assert_eq!(
            victim(&[loading]),
            None,
            "a loading runner is never evicted"
        );
    }

    #[test]
    fn pressure_counts_runners_and_memory_but_the_first_model_always_loads() {
        let limits = Limits {
            max_loaded: Some(2),
            memory: Some(10),
        };
        let one = [Loaded {
            footprint: 4,
            ..runner("a", 1, 0)
        }];
        assert_eq!(pressure(limits, &one, 6), None, "4 + 6 fits 10");
        assert_eq!(pressure(limits, &one, 7), Some(Pressure::Memory));
        let two = [one[0], one[0]];
        assert_eq!(pressure(limits, &two, 1), Some(Pressure::MaxLoaded));
        assert_eq!(pressure(limits, &[], 1_000), None, "the first always loads");
        assert_eq!(pressure(Limits::default(), &two, u64::MAX), None);
    }

    #[test]
    fn options_that_differ_name_the_field_and_auto_gpu_never_reloads() {
        let loaded = RunnerOptions::default();
        assert_eq!(loaded.reload_reason(&loaded), None);
        let ctx = RunnerOptions {
            num_ctx: 8192,
            ..loaded
        };
        assert_eq!(loaded.reload_reason(&ctx), Some("num_ctx"));
        let auto = RunnerOptions {
            num_gpu: -1,
            ..RunnerOptions {
                num_gpu: 20,
                ..loaded
            }
        };
        assert_eq!(
            RunnerOptions {
                num_gpu: 20,
                ..loaded
            }
            .reload_reason(&auto),
            None
        );
        let gpu = RunnerOptions {
            num_gpu: 10,
            ..loaded
        };
        assert_eq!(loaded.reload_reason(&gpu), Some("num_gpu"));
        let mmap = RunnerOptions {
            use_mmap: Some(false),
            ..loaded
        };
        assert_eq!(loaded.reload_reason(&mmap), Some("use_mmap"));
    }

    #[test]
    fn sizes_parse_with_and_without_units() {
        assert_eq!(parse_bytes("16GiB"), Ok(16 << 30));
        assert_eq!(parse_bytes("7.5 GB"), Ok(7_500_000_000));
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert!(parse_bytes("16 gigs").is_err());
        assert!(parse_bytes("GiB").is_err());
        assert!(parse_bytes("99999999999TiB").is_err());
    }

    #[test]
    fn footprint_adds_a_cache_per_slot() {
        assert_eq!(footprint(1_000, 10, 100, 4), 5_000);
        assert_eq!(footprint(u64::MAX, 10, 100, 4), u64::MAX);
    }

    #[test]
    fn the_timeline_is_bounded_and_read_in_time_order() {
        let start = tokio::time::Instant::now();
        let timeline = Timeline::new(start);
        timeline.record(start + Duration::from_secs(2), "a", EventKind::Loaded);
        timeline.record(
            start + Duration::from_secs(1),
            "b",
            EventKind::Unloaded {
                why: Unload::Expired,
            },
        );
        let read = timeline.read();
        assert_eq!(read.events[0].model, "b");
        let json = serde_json::to_value(&read.events[0]).unwrap();
        assert_eq!(json["kind"], "unloaded");
        assert_eq!(json["reason"], "expired");
        for _ in 0..EVENTS_KEPT {
            timeline.record(start, "c", EventKind::LoadStarted);
        }
        assert_eq!(timeline.read().dropped, 2);
        assert_eq!(timeline.read().events.len(), EVENTS_KEPT);
    }
}
