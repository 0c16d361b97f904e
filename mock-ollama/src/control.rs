//! Changing a running node, toxiproxy-style: its settings (speed, latency, slots, queue, fault
//! rates, control-plane latency) and its availability (up, busy, hanging, refusing), from the
//! library ([`crate::MockNode::update`], [`crate::MockNode::set_availability`]) or over HTTP under
//! `/mock/` (`api/control.rs`), a prefix Ollama never uses.
//!
//! A change applies to requests that arrive afterwards; a request in flight finishes under the
//! settings it arrived with (the scheduler keeps a per-request snapshot). Ways down, as real nodes
//! fail, each with its policy for open connections:
//! - **busy**: every inference request answers Ollama's 503 at once; control-plane calls answer;
//! - **hang**: every request except `/mock/` is read, logged as hung and not answered while the
//!   node hangs (a client needs its own timeout); when the node leaves hang, the connections of
//!   its hung requests are reset, as a restarted process drops them, so a proxy that kept them
//!   open does not carry them into what follows;
//! - **refuse**: the node stops listening (open keep-alive connections are closed once their
//!   requests finish, new connects are refused) and comes back on the same port. Over HTTP it
//!   must say for how long, since a refusing node cannot be reached to bring it back. While down
//!   the port is unbound, so another process could take it.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Jitter, Leave, NodeConfig};
use crate::models::ModelSpec;

/// Whether and how a node answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    /// Serving normally.
    #[default]
    Up,
    /// Inference answers 503 with Ollama's text.
    Busy,
    /// Requests are read and never answered.
    Hang,
}

/// The node's availability, readable on every request without a lock; hung requests wait on
/// `changed` for the node to leave hang.
#[derive(Debug, Default)]
pub struct AvailabilityCell {
    state: AtomicU8,
    changed: tokio::sync::Notify,
}

impl AvailabilityCell {
    /// The current state.
    pub fn get(&self) -> Availability {
        match self.state.load(Ordering::Relaxed) {
            1 => Availability::Busy,
            2 => Availability::Hang,
            _ => Availability::Up,
        }
    }

    /// Sets the state for requests that arrive from now on, and wakes every
    /// [`AvailabilityCell::left`] waiter to look again.
    pub fn set(&self, state: Availability) {
        let code = match state {
            Availability::Up => 0,
            Availability::Busy => 1,
            Availability::Hang => 2,
        };
        self.state.store(code, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    /// Returns once the state is no longer `state`.
    pub async fn left(&self, state: Availability) {
        loop {
            // Registered before the state is read, so a change between the two still wakes it.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.get() != state {
                return;
            }
            changed.await;
        }
    }
}

/// Who may use the control API.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ControlAccess {
    /// Anyone who can connect (the default, refused on a non-loopback address).
    #[default]
    Open,
    /// Requests with `Authorization: Bearer TOKEN`.
    Token(String),
    /// Nobody: the `/mock/` control routes answer 404.
    Off,
}

/// A change of settings; absent fields keep their value. On the wire (`PATCH /mock/config`)
/// durations are text (`5ms`, `1.5s`) and jitter is `fixed`, `uniform[:SPREAD]` or
/// `lognormal[:SIGMA]`; here they are typed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    /// Speed factor.
    pub speed: Option<f64>,
    /// Base service time.
    #[serde(default, with = "crate::duration::text")]
    pub latency: Option<Duration>,
    /// Extra time per token.
    #[serde(default, with = "crate::duration::text")]
    pub per_token: Option<Duration>,
    /// Prompt evaluation's own rate, tokens/s; `0` charges prompt tokens `per_token` again.
    pub prompt_rate: Option<f64>,
    /// How service times spread.
    #[serde(default, with = "jitter_text")]
    pub jitter: Option<Jitter>,
    /// Slots per model (embedding models keep one unless forced).
    pub parallel: Option<usize>,
    /// Waits allowed before 503.
    pub max_queue: Option<usize>,
    /// Probability of a 500.
    pub error_rate: Option<f64>,
    /// Probability of a stall.
    pub stall_rate: Option<f64>,
    /// Length of a stall.
    #[serde(default, with = "crate::duration::text")]
    pub stall: Option<Duration>,
    /// Probability of a reset.
    pub reset_rate: Option<f64>,
    /// Latency of `/api/tags`, `/api/ps` and `/v1/models`.
    #[serde(default, with = "crate::duration::text")]
    pub control_latency: Option<Duration>,
    /// Cold-start time of every model's load.
    #[serde(default, with = "crate::duration::text")]
    pub load_time: Option<Duration>,
    /// Bytes/s a model loads at on top of `load_time`; `0`: every model loads in `load_time`.
    pub load_rate: Option<f64>,
    /// One load at a time on the node.
    pub serial_loads: Option<bool>,
    /// Idle time before a model unloads, for models no request gave a keep-alive of its own.
    #[serde(default, with = "crate::duration::text")]
    pub keep_alive: Option<Duration>,
    /// Runners held at once; `0`: no limit.
    pub max_loaded_models: Option<usize>,
    /// Memory runners may take, bytes; `0`: no limit.
    pub vram: Option<u64>,
    /// Whether slots keep a prompt cache.
    pub prompt_cache: Option<bool>,
    /// What a stream does when its client leaves (`at-once`, `at-next-token`).
    pub leave: Option<Leave>,
    /// Tokens into a generation's answer at which stalls and resets strike; `-1`: before it.
    pub fault_after_tokens: Option<i64>,
    /// The node's catalogue, whole: models kept unchanged keep their state (loaded, cached);
    /// new or changed ones start unloaded; removed ones answer Ollama's not-found from now on.
    pub models: Option<Vec<ModelSpec>>,
}

/// Serde for the patch's jitter as its text form.
mod jitter_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::config::Jitter;

    pub fn serialize<S: Serializer>(j: &Option<Jitter>, s: S) -> Result<S::Ok, S::Error> {
        match j {
            Some(j) => s.serialize_str(&j.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Jitter>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| text.parse::<Jitter>().map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Why a change was refused (nothing changed).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatchError {
    /// A value the node cannot run with.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl SettingsPatch {
    /// The change that puts back, as `before` reports them, every field this one changes: what
    /// a caller applies after a temporary change, whatever the change was.
    pub fn undo(&self, before: &Settings) -> SettingsPatch {
        let ns = Duration::from_nanos;
        SettingsPatch {
            speed: self.speed.map(|_| before.speed),
            latency: self.latency.map(|_| ns(before.latency_ns)),
            per_token: self.per_token.map(|_| ns(before.per_token_ns)),
            prompt_rate: self.prompt_rate.map(|_| before.prompt_rate),
            // A node older than the jitter field reports none: leave the jitter as it is.
            jitter: self.jitter.and(before.jitter.parse().ok()),
            parallel: self.parallel.map(|_| before.parallel),
            max_queue: self.max_queue.map(|_| before.max_queue),
            error_rate: self.error_rate.map(|_| before.error_rate),
            stall_rate: self.stall_rate.map(|_| before.stall_rate),
            stall: self.stall.map(|_| ns(before.stall_ns)),
            reset_rate: self.reset_rate.map(|_| before.reset_rate),
            control_latency: self.control_latency.map(|_| ns(before.control_latency_ns)),
            load_time: self.load_time.map(|_| ns(before.load_time_ns)),
            load_rate: self.load_rate.map(|_| before.load_rate),
            serial_loads: self.serial_loads.map(|_| before.serial_loads),
            keep_alive: self.keep_alive.map(|_| ns(before.keep_alive_ns)),
            max_loaded_models: self.max_loaded_models.map(|_| before.max_loaded_models),
            vram: self.vram.map(|_| before.vram),
            prompt_cache: self.prompt_cache.map(|_| before.prompt_cache),
            leave: self.leave.map(|_| before.leave),
            fault_after_tokens: self.fault_after_tokens.map(|_| before.fault_after_tokens),
            models: self.models.as_ref().map(|_| before.models.clone()),
        }
    }

    /// `config` with this change applied and validated.
    pub fn apply(&self, config: &NodeConfig) -> Result<NodeConfig, PatchError> {
        let mut next = config.clone();
        if let Some(speed) = self.speed {
            next.speed = speed;
        }
        if let Some(latency) = self.latency {
            next.latency.base = latency;
        }
        if let Some(per_token) = self.per_token {
            next.latency.per_token = per_token;
        }
        if let Some(rate) = self.prompt_rate {
            next.latency.prompt_rate = (rate != 0.0).then_some(rate);
        }
        if let Some(jitter) = self.jitter {
            next.latency.jitter = jitter;
        }
        if let Some(parallel) = self.parallel {
            next.slots.parallel = parallel;
        }
        if let Some(max_queue) = self.max_queue {
            next.max_queue = max_queue;
        }
        let faults = &mut next.faults;
        for (value, slot) in [
            (self.error_rate, &mut faults.error_rate),
            (self.stall_rate, &mut faults.stall_rate),
            (self.reset_rate, &mut faults.reset_rate),
        ] {
            if let Some(value) = value {
                *slot = value;
            }
        }
        if let Some(stall) = self.stall {
            next.faults.stall = stall;
        }
        if let Some(control_latency) = self.control_latency {
            next.control_latency = control_latency;
        }
        if let Some(load_time) = self.load_time {
            next.load_time = load_time;
        }
        if let Some(rate) = self.load_rate {
            next.load_rate = (rate != 0.0).then_some(rate);
        }
        if let Some(serial) = self.serial_loads {
            next.serial_loads = serial;
        }
        if let Some(keep_alive) = self.keep_alive {
            next.keep_alive = keep_alive;
        }
        if let Some(max) = self.max_loaded_models {
            next.residency.max_loaded = (max != 0).then_some(max);
        }
        if let Some(vram) = self.vram {
            next.residency.memory = (vram != 0).then_some(vram);
        }
        if let Some(on) = self.prompt_cache {
            next.prompt_cache = on;
        }
        if let Some(leave) = self.leave {
            next.leave = leave;
        }
        if let Some(after) = self.fault_after_tokens {
            next.faults.after_tokens = u32::try_from(after).ok();
        }
        if let Some(models) = &self.models {
            next.models = models
                .iter()
                .map(|m| ModelSpec {
                    name: crate::models::with_tag(&m.name),
                    ..m.clone()
                })
                .collect();
        }
        next.validate()?;
        Ok(next)
    }
}

/// The settings the control API reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Whether and how the node answers.
    pub availability: Availability,
    /// Speed factor.
    pub speed: f64,
    /// Base service time, ns.
    pub latency_ns: u64,
    /// Extra time per token, ns.
    pub per_token_ns: u64,
    /// Prompt evaluation's own rate, tokens/s; 0: prompt tokens cost `per_token` (and from a
    /// node older than this field).
    #[serde(default)]
    pub prompt_rate: f64,
    /// Spread of service times (`fixed`, `uniform:S`, `lognormal:S`; empty from a node older
    /// than this field).
    #[serde(default)]
    pub jitter: String,
    /// Slots per model (as configured; embedding models keep one unless forced).
    pub parallel: usize,
    /// Waits allowed before 503.
    pub max_queue: usize,
    /// Probability of a 500.
    pub error_rate: f64,
    /// Probability of a stall.
    pub stall_rate: f64,
    /// Length of a stall, ns.
    pub stall_ns: u64,
    /// Probability of a reset.
    pub reset_rate: f64,
    /// Latency of the control plane, ns.
    pub control_latency_ns: u64,
    /// Cold-start time of a load, ns (0 from a node older than this field).
    #[serde(default)]
    pub load_time_ns: u64,
    /// Bytes/s a model loads at on top of the load time; 0: none.
    #[serde(default)]
    pub load_rate: f64,
    /// One load at a time on the node.
    #[serde(default)]
    pub serial_loads: bool,
    /// The node's idle time before a model unloads, ns (0 from a node older than this field).
    #[serde(default)]
    pub keep_alive_ns: u64,
    /// Runners held at once; 0: no limit.
    #[serde(default)]
    pub max_loaded_models: usize,
    /// Memory runners may take, bytes; 0: no limit.
    #[serde(default)]
    pub vram: u64,
    /// Whether slots keep a prompt cache.
    #[serde(default)]
    pub prompt_cache: bool,
    /// What a stream does when its client leaves.
    #[serde(default)]
    pub leave: Leave,
    /// Tokens into a generation's answer at which stalls and resets strike; -1: before it.
    #[serde(default = "before_the_answer")]
    pub fault_after_tokens: i64,
    /// The catalogue (empty from a node older than this field).
    #[serde(default)]
    pub models: Vec<ModelSpec>,
}

/// What a node older than `fault_after_tokens` does.
fn before_the_answer() -> i64 {
    -1
}

impl Settings {
    /// What `config` and `availability` say.
    pub fn of(config: &NodeConfig, availability: Availability) -> Self {
        let ns = |d: Duration| d.as_nanos() as u64;
        Self {
            availability,
            speed: config.speed,
            latency_ns: ns(config.latency.base),
            per_token_ns: ns(config.latency.per_token),
            prompt_rate: config.latency.prompt_rate.unwrap_or(0.0),
            jitter: config.latency.jitter.to_string(),
            parallel: config.slots.parallel,
            max_queue: config.max_queue,
            error_rate: config.faults.error_rate,
            stall_rate: config.faults.stall_rate,
            stall_ns: ns(config.faults.stall),
            reset_rate: config.faults.reset_rate,
            control_latency_ns: ns(config.control_latency),
            load_time_ns: ns(config.load_time),
            load_rate: config.load_rate.unwrap_or(0.0),
            serial_loads: config.serial_loads,
            keep_alive_ns: ns(config.keep_alive),
            max_loaded_models: config.residency.max_loaded.unwrap_or(0),
            vram: config.residency.memory.unwrap_or(0),
            prompt_cache: config.prompt_cache,
            leave: config.leave,
            fault_after_tokens: config.faults.after_tokens.map_or(-1, i64::from),
            models: config.models.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A patch of every field, undone from the settings it found, gives back the configuration.
    #[test]
    fn undo_restores_every_field_a_patch_changes() {
        let config = NodeConfig::default();
        let patch = SettingsPatch {
            speed: Some(0.5),
            latency: Some(Duration::from_millis(7)),
            per_token: Some(Duration::from_millis(3)),
            prompt_rate: Some(2_000.0),
            jitter: Some(Jitter::LogNormal { sigma: 0.7 }),
            parallel: Some(3),
            max_queue: Some(9),
            error_rate: Some(0.1),
            stall_rate: Some(0.2),
            stall: Some(Duration::from_secs(1)),
            reset_rate: Some(0.3),
            control_latency: Some(Duration::from_millis(250)),
            load_time: Some(Duration::from_secs(4)),
            load_rate: Some(2e9),
            serial_loads: Some(true),
            keep_alive: Some(Duration::from_secs(60)),
            max_loaded_models: Some(2),
            vram: Some(16 << 30),
            prompt_cache: Some(true),
            leave: Some(Leave::AtNextToken),
            fault_after_tokens: Some(3),
            models: Some(vec![ModelSpec::generation("only", "llama", "8B", 5 << 30)]),
        };
        let changed = patch.apply(&config).expect("valid");
        assert_ne!(changed, config);
        let undo = patch.undo(&Settings::of(&config, Availability::Up));
        assert_eq!(undo.apply(&changed).expect("valid"), config);
        let only_speed = SettingsPatch {
            speed: Some(2.0),
            ..SettingsPatch::default()
        };
        let undo = only_speed.undo(&Settings::of(&config, Availability::Up));
        assert_eq!(
            undo,
            SettingsPatch {
                speed: Some(config.speed),
                ..SettingsPatch::default()
            },
            "only the fields the patch changes"
        );
    }

    #[test]
    fn a_patch_changes_only_its_fields_and_refuses_bad_values_whole() {
        let config = NodeConfig::default();
        let patch = SettingsPatch {
            speed: Some(0.5),
            latency: Some(Duration::from_millis(7)),
            parallel: Some(3),
            error_rate: Some(0.1),
            ..SettingsPatch::default()
        };
        let next = patch.apply(&config).expect("valid");
        assert_eq!(next.speed, 0.5);
        assert_eq!(next.latency.base, Duration::from_millis(7));
        assert_eq!((next.slots.parallel, next.faults.error_rate), (3, 0.1));
        assert_eq!(next.max_queue, config.max_queue);
        let bad = SettingsPatch {
            speed: Some(0.0),
            ..patch.clone()
        };
        assert!(matches!(bad.apply(&config), Err(PatchError::Config(_))));
        let bad = serde_json::from_str::<SettingsPatch>(r#"{"stall": "soon"}"#)
            .expect_err("a duration that does not parse");
        assert!(
            bad.to_string().contains("invalid duration \"soon\""),
            "{bad}"
        );
        let wire = serde_json::to_string(&patch).expect("json");
        assert_eq!(
            serde_json::from_str::<SettingsPatch>(&wire).expect("round trip"),
            patch,
            "{wire}"
        );
    }

    #[test]
    fn availability_round_trips() {
        let cell = AvailabilityCell::default();
        for state in [Availability::Busy, Availability::Hang, Availability::Up] {
            cell.set(state);
            assert_eq!(cell.get(), state);
        }
    }
}
