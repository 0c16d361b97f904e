//! The served-request log: per inference request, who asked (its ids), when it arrived, got a
//! slot, started and ended its service, and how it ended. The audit of a gateway joins this log
//! with what its client sent, request by request.
//!
//! A caller marks a request with `[rid:ID]` in its text (the last complete `[rid:...]` in the
//! body: a conversation that repeats its earlier turns carries their markers too, and the newest
//! message, which comes last, is this request's) and/or an `x-request-id` header. Both are
//! recorded; the marker is the join key, because proxies set or overwrite `X-Request-ID`. Ids
//! longer than [`MAX_ID_BYTES`] are cut (at a character boundary) and flagged.
//!
//! An entry is written when the request is over: when its answer has been handed to the server
//! for a plain answer, when its last line is written or its client left for a stream (the
//! stream's task holds the live record). So entries are in completion order; `seq` numbers them
//! from 0 without gaps. Times are nanoseconds on a monotonic clock since the node started; the
//! node's wall-clock start time comes with every read. Memory is bounded: a ring of the last
//! `capacity` entries, grown as it fills (not allocated up front), and a count of entries dropped
//! from its front, so a reader knows when exact accounting is no longer possible.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Longest id kept, in bytes.
pub const MAX_ID_BYTES: usize = 128;
/// Entries kept by default.
pub const DEFAULT_CAPACITY: usize = 1_000_000;
/// The header a caller's id may travel in.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A 2xx answer after its service time.
    Served,
    /// A 2xx answer without any service (a preload or unload, an empty input).
    Answered,
    /// 503: the queue was full.
    Busy,
    /// Another non-2xx answer (an injected 500, a bad request, an unknown model).
    Error,
    /// The connection was aborted on purpose (an injected reset).
    Reset,
    /// The client left before the answer was complete.
    Cancelled,
    /// The node was hanging: the request was read and never answered.
    Hung,
}

/// One finished request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the log, from 0.
    pub seq: u64,
    /// The route (`/api/embed`, `/v1/chat/completions`, ...): borrowed from the router's table
    /// on the node, owned when read back over HTTP.
    pub endpoint: Cow<'static, str>,
    /// The `[rid:...]` marker in the body, if any.
    pub marker: Option<String>,
    /// The `x-request-id` header, if any.
    pub header_id: Option<String>,
    /// Whether an id was longer than [`MAX_ID_BYTES`] and was cut.
    pub id_truncated: bool,
    /// How it ended.
    pub outcome: Outcome,
    /// The HTTP status answered, if one was.
    pub status: Option<u16>,
    /// Whether an injected stall delayed it.
    pub stalled: bool,
    /// Inference items served (embed inputs; 1 for a generation).
    pub items: u32,
    /// When it arrived (ns since the node started).
    pub arrival_ns: u64,
    /// When it first got a slot.
    pub slot_ns: Option<u64>,
    /// When its (first item's) service started.
    pub service_start_ns: Option<u64>,
    /// When its (last item's) service ended.
    pub service_end_ns: Option<u64>,
    /// When it was over.
    pub end_ns: u64,
    /// The model it asked for, once found (logs from before this field read as none).
    #[serde(default)]
    pub model: Option<String>,
    /// How long it waited for its model, ns: the load it paid or waited on, or next to nothing
    /// when the model was resident.
    #[serde(default)]
    pub load_ns: Option<u64>,
    /// Whether its model was resident, with its runner options, when it arrived (`false`: it
    /// paid or waited for a load).
    #[serde(default)]
    pub resident: Option<bool>,
    /// Other models its load evicted to make room.
    #[serde(default)]
    pub evicted: Option<u32>,
    /// The runner option that made it reload its model (`num_ctx`, ...), if it did.
    #[serde(default)]
    pub reload: Option<String>,
    /// Prompt (or embed input) tokens in its request.
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    /// Of those, tokens the slot's prompt cache already held, so not evaluated again.
    #[serde(default)]
    pub cached_tokens: Option<u64>,
    /// Tokens it generated (none for embeddings).
    #[serde(default)]
    pub output_tokens: Option<u64>,
    /// For a stream whose client left: how long the node went on working after it left, ns (0
    /// when it stopped at once; see `NodeConfig::leave`).
    #[serde(default)]
    pub after_leave_ns: Option<u64>,
}

/// A page of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page {
    /// Entries with `seq >= since`, at most `limit`.
    pub entries: Vec<Entry>,
    /// The `since` to read the next page with.
    pub next: u64,
    /// Entries dropped from the ring so far (0 while accounting is exact).
    pub dropped: u64,
    /// The node's start, Unix nanoseconds (wall clock), to place the monotonic times.
    pub started_unix_ns: u128,
    /// Requests received but not yet logged when the page was read (still served, or still
    /// worked on after their client left): 0 means every request received before the read is
    /// in the log. Read before the entries, so an entry written meanwhile is never missed.
    pub open: u64,
}

/// The log of one node.
#[derive(Debug)]
pub struct ServedLog {
    started: Instant,
    started_unix_ns: u128,
    capacity: usize,
    ring: Mutex<Ring>,
    /// Requests whose entry is not written yet (see [`Page::open`]).
    open: AtomicU64,
}

#[derive(Debug, Default)]
struct Ring {
    entries: VecDeque<Entry>,
    next_seq: u64,
    dropped: u64,
}

impl ServedLog {
    /// An empty log keeping the last `capacity` entries; 0 turns the log off (nothing is
    /// recorded, for measuring what the log costs).
    pub fn new(capacity: usize) -> Self {
        Self {
            started: Instant::now(),
            started_unix_ns: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
            capacity,
            ring: Mutex::new(Ring::default()),
            open: AtomicU64::new(0),
        }
    }

    fn ns(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_nanos() as u64
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the node started: the zero of every time in the log.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Whether requests are recorded.
    pub fn is_on(&self) -> bool {
        self.capacity > 0
    }

    fn push(&self, mut entry: Entry) {
        if !self.is_on() {
            return;
        }
        let mut ring = self.ring();
        entry.seq = ring.next_seq;
        ring.next_seq += 1;
        if ring.entries.len() == self.capacity {
            ring.entries.pop_front();
            ring.dropped += 1;
        }
        ring.entries.push_back(entry);
    }

    /// Up to `limit` entries from `since` on.
    pub fn read(&self, since: u64, limit: usize) -> Page {
        // Acquire, before the ring: a trace pushes its entry before its Release decrement, so a
        // count read here covers every entry the ring below may lack.
        let open = self.open.load(Ordering::Acquire);
        let ring = self.ring();
        // Past the end reads as the end: `next` is then where the next entry will be.
        let since = since.min(ring.next_seq);
        let first = ring.entries.front().map_or(ring.next_seq, |e| e.seq);
        let skip = since.saturating_sub(first) as usize;
        let entries: Vec<Entry> = ring
            .entries
            .iter()
            .skip(skip)
            .take(limit)
            .cloned()
            .collect();
        let next = entries.last().map_or(since.max(first), |e| e.seq + 1);
        Page {
            entries,
            next,
            dropped: ring.dropped,
            started_unix_ns: self.started_unix_ns,
            open,
        }
    }

    /// Entries written so far (including dropped ones).
    pub fn len(&self) -> u64 {
        self.ring().next_seq
    }

    /// Whether nothing was logged yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What is known about a request while it runs.
#[derive(Debug, Default)]
struct Live {
    marker: Option<String>,
    header_id: Option<String>,
    id_truncated: bool,
    stalled: bool,
    items: u32,
    slot: Option<Instant>,
    service_start: Option<Instant>,
    service_end: Option<Instant>,
    status: Option<u16>,
    reset: bool,
    abandoned: bool,
    hung: bool,
    model: Option<String>,
    load: Option<std::time::Duration>,
    resident: Option<bool>,
    evicted: Option<u32>,
    reload: Option<&'static str>,
    prompt_tokens: Option<u64>,
    cached_tokens: Option<u64>,
    output_tokens: Option<u64>,
    after_leave: Option<std::time::Duration>,
}

/// The live record of one request; written to the log when the last holder drops it.
#[derive(Debug)]
pub(crate) struct Trace {
    log: Arc<ServedLog>,
    endpoint: &'static str,
    arrival: Instant,
    live: Mutex<Live>,
}

impl Trace {
    /// A record of a request to `endpoint` that arrived now, with its header id.
    pub(crate) fn start(log: Arc<ServedLog>, endpoint: &'static str, header: Option<&str>) -> Self {
        let mut live = Live::default();
        if let Some(id) = header {
            let (id, cut) = cap(id);
            live.header_id = Some(id);
            live.id_truncated |= cut;
        }
        // Relaxed: only the decrement after the push needs to order anything.
        log.open.fetch_add(1, Ordering::Relaxed);
        Self {
            log,
            endpoint,
            arrival: Instant::now(),
            live: Mutex::new(live),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Live) -> T) -> T {
        f(&mut self.live.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The answer's status, or a reset, as the server hands it out.
    pub(crate) fn finish(&self, status: Option<u16>, reset: bool) {
        self.with(|live| {
            live.status = status;
            live.reset = reset;
        });
    }

    fn outcome(live: &Live) -> Outcome {
        match live.status {
            _ if live.hung => Outcome::Hung,
            _ if live.reset => Outcome::Reset,
            None => Outcome::Cancelled,
            Some(_) if live.abandoned => Outcome::Cancelled,
            Some(s) if (200..300).contains(&s) && live.service_end.is_some() => Outcome::Served,
            Some(s) if (200..300).contains(&s) => Outcome::Answered,
            Some(503) => Outcome::Busy,
            Some(_) => Outcome::Error,
        }
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        let end = Instant::now();
        let live = std::mem::take(&mut *self.live.lock().unwrap_or_else(PoisonError::into_inner));
        let ns = |at: Option<Instant>| at.map(|at| self.log.ns(at));
        let entry = Entry {
            seq: 0,
            endpoint: Cow::Borrowed(self.endpoint),
            outcome: Self::outcome(&live),
            status: live.status,
            stalled: live.stalled,
            items: live.items,
            arrival_ns: self.log.ns(self.arrival),
            slot_ns: ns(live.slot),
            service_start_ns: ns(live.service_start),
            service_end_ns: ns(live.service_end),
            end_ns: self.log.ns(end),
            marker: live.marker,
            header_id: live.header_id,
            id_truncated: live.id_truncated,
            model: live.model,
            load_ns: live
                .load
                .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            resident: live.resident,
            evicted: live.evicted,
            reload: live.reload.map(str::to_owned),
            prompt_tokens: live.prompt_tokens,
            cached_tokens: live.cached_tokens,
            output_tokens: live.output_tokens,
            after_leave_ns: live
                .after_leave
                .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        };
        self.log.push(entry);
        self.log.open.fetch_sub(1, Ordering::Release);
    }
}

/// `id` cut to [`MAX_ID_BYTES`] at a character boundary, and whether it was cut.
fn cap(id: &str) -> (String, bool) {
    if id.len() <= MAX_ID_BYTES {
        return (id.to_owned(), false);
    }
    let mut end = MAX_ID_BYTES;
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    (id[..end].to_owned(), true)
}

/// The id in the last `[rid:...]` of `body` that is closed within a capped length; `None` when
/// there is none.
fn find_marker(body: &[u8]) -> Option<(String, bool)> {
    const OPEN: &[u8] = b"[rid:";
    let mut before = body.len();
    while let Some(open) = body[..before].windows(OPEN.len()).rposition(|w| w == OPEN) {
        let rest = &body[open + OPEN.len()..];
        // Look a little past the cap so a long id is cut and flagged rather than ignored.
        let window = &rest[..rest.len().min(4 * MAX_ID_BYTES)];
        if let Some(end) = window.iter().position(|b| *b == b']') {
            return Some(cap(&String::from_utf8_lossy(&window[..end])));
        }
        // Not closed: an earlier marker may still be.
        before = open;
    }
    None
}

tokio::task_local! {
    static CURRENT: Arc<Trace>;
}

/// Runs `fut` with `trace` as the current request's record.
pub(crate) async fn scope<F: Future>(trace: Arc<Trace>, fut: F) -> F::Output {
    CURRENT.scope(trace, fut).await
}

/// The current request's record, to hand to a task that outlives the handler (a stream).
pub(crate) fn current() -> Option<Arc<Trace>> {
    CURRENT.try_with(Arc::clone).ok()
}

fn note(f: impl FnOnce(&mut Live)) {
    let _ = CURRENT.try_with(|trace| trace.with(f));
}

/// Reads the marker from a request body (the first one wins).
pub(crate) fn note_body(body: &[u8]) {
    let Some((id, cut)) = find_marker(body) else {
        return;
    };
    note(|live| {
        if live.marker.is_none() {
            live.marker = Some(id);
            live.id_truncated |= cut;
        }
    });
}

/// The request has its model, `model`, as `acquired` says it got it.
pub(crate) fn note_model(model: &str, acquired: &crate::scheduler::Acquired) {
    note(|live| {
        live.model = Some(model.to_owned());
        live.load = Some(acquired.waited);
        live.resident = Some(acquired.resident);
        live.evicted = Some(acquired.evicted);
        live.reload = acquired.reload;
    });
}

/// The request's prompt tokens, how many of them came from the slot's cache, and, for a
/// generation, its output tokens.
pub(crate) fn note_tokens(prompt: u64, cached: u64, output: Option<u64>) {
    note(|live| {
        live.prompt_tokens = Some(prompt);
        live.cached_tokens = Some(cached);
        live.output_tokens = output;
    });
}

/// An injected stall delayed the request.
pub(crate) fn note_stall() {
    note(|live| live.stalled = true);
}

/// One item got its slot at `slot` and its service runs from `started`.
pub(crate) fn note_service_start(slot: Instant, started: Instant) {
    note(|live| service_start(live, slot, started));
}

fn service_start(live: &mut Live, slot: Instant, started: Instant) {
    live.slot.get_or_insert(slot);
    live.service_start.get_or_insert(started);
}

/// One item's service ended at `at`: now, or the time it was due when its timer ended it (the
/// node's timeline, which the timer's wake-up lateness does not stretch; see
/// [`crate::scheduler::Slot::finished_on_time`]).
pub(crate) fn note_service_end(at: Instant) {
    note(|live| service_end(live, at));
}

fn service_end(live: &mut Live, at: Instant) {
    live.items += 1;
    live.service_end = Some(at);
}

impl Trace {
    /// For a stream's task, which runs outside the request's scope.
    pub(crate) fn service_start(&self, slot: Instant, started: Instant) {
        self.with(|live| service_start(live, slot, started));
    }

    /// For a stream's task: its last line was written.
    pub(crate) fn service_end(&self) {
        self.with(|live| service_end(live, Instant::now()));
    }

    /// The node is hanging: this request will not be answered.
    pub(crate) fn hung(&self) {
        self.with(|live| live.hung = true);
    }

    /// For a stream's task: an injected fault cut the stream mid-way.
    pub(crate) fn reset(&self) {
        self.with(|live| live.reset = true);
    }

    /// For a stream's task: an injected stall held the stream mid-way.
    pub(crate) fn stalled(&self) {
        self.with(|live| live.stalled = true);
    }

    /// For a stream's task: the client left before the last line, and the node worked `after`
    /// more before it stopped.
    pub(crate) fn abandoned(&self, after: std::time::Duration) {
        self.with(|live| {
            live.abandoned = true;
            live.after_leave = Some(after);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(log: &Arc<ServedLog>, status: Option<u16>) {
        let trace = Trace::start(Arc::clone(log), "/api/embed", None);
        trace.finish(status, false);
    }

    #[test]
    fn markers_are_found_capped_and_flagged() {
        assert_eq!(
            find_marker(br#"{"input":"a [rid:r-1] b"}"#),
            Some(("r-1".into(), false))
        );
        assert_eq!(
            find_marker(b"[rid:first] [rid:second]").map(|m| m.0),
            Some("second".into())
        );
        // A conversation repeats its earlier turns: the newest message's marker is the request's.
        let chat = br#"{"messages":[{"role":"user","content":"hi [rid:turn-1]"},{"role":"assistant","content":"hello"},{"role":"user","content":"more [rid:turn-2]"}]}"#;
        assert_eq!(find_marker(chat).map(|m| m.0), Some("turn-2".into()));
        assert_eq!(find_marker(b"[rid:never closed"), None);
        assert_eq!(
            find_marker(b"[rid:good] then [rid:never closed").map(|m| m.0),
            Some("good".into()),
            "an unclosed last marker leaves the last closed one"
        );
        assert_eq!(find_marker(b"no marker at all"), None);
        let long = format!("[rid:{}]", "x".repeat(300));
        assert_eq!(
            find_marker(long.as_bytes()),
            Some(("x".repeat(MAX_ID_BYTES), true))
        );
        let (cut, flagged) = cap(&"é".repeat(100));
        assert!(flagged && cut.len() <= MAX_ID_BYTES && cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn the_ring_drops_from_the_front_and_counts_it() {
        let log = Arc::new(ServedLog::new(3));
        for _ in 0..5 {
            finished(&log, Some(200));
        }
        let page = log.read(0, 10);
        assert_eq!(page.dropped, 2);
        assert_eq!(
            page.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [2, 3, 4]
        );
        assert_eq!(page.next, 5);
        let later = log.read(3, 1);
        assert_eq!(later.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [3]);
        assert_eq!(later.next, 4);
        assert!(log.read(5, 10).entries.is_empty());
        assert_eq!(log.read(5, 10).next, 5);
        assert_eq!(
            log.read(u64::MAX, 0).next,
            5,
            "past the end reads as the end"
        );
    }

    #[test]
    fn outcomes_follow_status_reset_and_service() {
        let log = Arc::new(ServedLog::new(10));
        let served = Trace::start(Arc::clone(&log), "/api/embed", Some("h"));
        served.service_start(Instant::now(), Instant::now());
        served.service_end();
        served.finish(Some(200), false);
        drop(served);
        finished(&log, Some(200));
        finished(&log, Some(503));
        finished(&log, Some(500));
        finished(&log, None);
        let reset = Trace::start(Arc::clone(&log), "/api/embed", None);
        reset.finish(Some(200), true);
        drop(reset);
        let outcomes: Vec<Outcome> = log.read(0, 10).entries.iter().map(|e| e.outcome).collect();
        use Outcome::*;
        assert_eq!(outcomes, [Served, Answered, Busy, Error, Cancelled, Reset]);
        assert_eq!(log.read(0, 1).entries[0].header_id.as_deref(), Some("h"));
    }
}
