//! What a simulated node does: its service-time model, slots, queue, cold starts and faults.
//!
//! One [`NodeConfig`] describes one node. The binary builds it from flags, the library's users build
//! it in code; both go through [`NodeConfig::validate`], so a nonsensical setting (a negative rate,
//! a zero speed) is an error before the node starts rather than a surprise during a benchmark.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::control::ControlAccess;
use crate::models::{ModelSpec, default_models};
use crate::residency::Limits;

/// How a request's service time spreads around its nominal value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Jitter {
    /// Exactly the nominal time: the right choice when a benchmark compares ratios.
    Fixed,
    /// Uniform in `nominal * [1 - spread, 1 + spread]`, `spread` in `[0, 1]`.
    Uniform {
        /// Half-width of the interval as a fraction of the nominal time.
        spread: f64,
    },
    /// Log-normal with median at the nominal time and shape `sigma` (a long right tail, as real
    /// inference latencies have).
    LogNormal {
        /// Standard deviation of the underlying normal distribution.
        sigma: f64,
    },
}

/// The form [`Jitter`]'s `FromStr` reads back (`fixed`, `uniform:0.2`, `lognormal:0.5`).
impl std::fmt::Display for Jitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Jitter::Fixed => write!(f, "fixed"),
            Jitter::Uniform { spread } => write!(f, "uniform:{spread}"),
            Jitter::LogNormal { sigma } => write!(f, "lognormal:{sigma}"),
        }
    }
}

impl std::str::FromStr for Jitter {
    type Err = String;

    /// Parses `fixed`, `uniform:0.2` or `lognormal:0.5`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (kind, arg) = text.split_once(':').unwrap_or((text, ""));
        let number = |default: f64| -> Result<f64, String> {
            if arg.is_empty() {
                Ok(default)
            } else {
                arg.parse::<f64>()
                    .map_err(|_| format!("invalid jitter parameter {arg:?}"))
            }
        };
        match kind {
            "fixed" => Ok(Jitter::Fixed),
            "uniform" => Ok(Jitter::Uniform {
                spread: number(0.2)?,
            }),
            "lognormal" | "log-normal" => Ok(Jitter::LogNormal {
                sigma: number(0.5)?,
            }),
            _ => Err(format!(
                "unknown jitter {text:?}: expected fixed, uniform[:SPREAD] or lognormal[:SIGMA]"
            )),
        }
    }
}

/// The nominal service time of one inference item: `base + per_token * tokens`, spread by
/// `jitter`, divided by the node's speed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyModel {
    /// Fixed cost of every request (per input for embed batches).
    pub base: Duration,
    /// Cost of every token, prompt and generated (prompt tokens only when `prompt_rate` is not
    /// set).
    pub per_token: Duration,
    /// Prompt evaluation's own rate, tokens per second; `None` charges prompt tokens
    /// `per_token` each, as generated ones (the mock's behaviour before this setting). Ollama's
    /// runner evaluates the prompt in batches, far faster per token than it generates.
    pub prompt_rate: Option<f64>,
    /// Spread around the nominal time.
    pub jitter: Jitter,
}

impl LatencyModel {
    /// The nominal time to evaluate `tokens` prompt tokens, before jitter and speed.
    pub fn prompt_time(&self, tokens: u64) -> Duration {
        match self.prompt_rate {
            Some(rate) => {
                Duration::try_from_secs_f64(tokens as f64 / rate).unwrap_or(Duration::MAX)
            }
            None => self
                .per_token
                .saturating_mul(u32::try_from(tokens).unwrap_or(u32::MAX)),
        }
    }
}

impl Default for LatencyModel {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(20),
            per_token: Duration::ZERO,
            prompt_rate: None,
            jitter: Jitter::Fixed,
        }
    }
}

/// Parallel slots per loaded model, with Ollama's rule that embedding models get one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotPolicy {
    /// `OLLAMA_NUM_PARALLEL`: slots for generation models (Ollama's default is 1).
    pub parallel: usize,
    /// Ollama always loads embedding models with one slot; `true` gives them `parallel` slots too,
    /// which is how a benchmark simulates a node that really runs embeds in parallel.
    pub force_embed_parallel: bool,
}

impl Default for SlotPolicy {
    fn default() -> Self {
        Self {
            parallel: 1,
            force_embed_parallel: false,
        }
    }
}

impl SlotPolicy {
    /// Slots a model of this kind gets on the node.
    pub fn slots_for(&self, embedding: bool) -> usize {
        if embedding && !self.force_embed_parallel {
            1
        } else {
            self.parallel
        }
    }
}

/// How a node times its service (see [`crate::timer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Timer {
    /// A timer thread that wakes at each deadline, to the microsecond.
    #[default]
    Precise,
    /// tokio's timer: millisecond ticks, and controlled by tokio's paused clock in tests.
    Tokio,
}

impl std::str::FromStr for Timer {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "precise" => Ok(Timer::Precise),
            "tokio" => Ok(Timer::Tokio),
            other => Err(format!(
                "unknown timer {other:?}; expected precise or tokio"
            )),
        }
    }
}

/// What a node does when a generation's client leaves (a stream's reader goes away, or a
/// non-streamed answer's connection closes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Leave {
    /// Stops at once, whatever it was doing (the mock's behaviour before this setting).
    #[default]
    AtOnce,
    /// As Ollama's own runner behaves (reported in ollama/ollama#11889): its completion handler
    /// closes `seq.quit` when the request's context ends, and the batch loop reads `seq.quit`
    /// only in `sendResponse`/`flushPending`, when it hands a token over
    /// (`runner/ollamarunner/runner.go`; read in public copies of the runner, not pinned to
    /// v0.24.0's commit). So prompt evaluation runs to its end and generation stops after the
    /// token in progress.
    AtNextToken,
}

impl std::str::FromStr for Leave {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "at-once" => Ok(Leave::AtOnce),
            "at-next-token" => Ok(Leave::AtNextToken),
            other => Err(format!(
                "unknown leave mode {other:?}; expected at-once or at-next-token"
            )),
        }
    }
}

/// Which waiting requests count toward `max_queue` (and get Ollama's 503 when it is full).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueMode {
    /// As Ollama does it since its scheduler lets requests for a loaded model straight through
    /// (ollama/ollama#7758): only requests waiting for a model to load count, checked when they
    /// arrive; waits for a slot of a loaded model are an unbounded FIFO.
    #[default]
    Ollama,
    /// An idealised bounded queue: every request that must wait, for a load or for a slot,
    /// counts, checked when it arrives. Scenarios that need 503s under load ask for this.
    Bounded,
}

impl std::str::FromStr for QueueMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "ollama" => Ok(QueueMode::Ollama),
            "bounded" => Ok(QueueMode::Bounded),
            other => Err(format!(
                "unknown queue mode {other:?}; expected ollama or bounded"
            )),
        }
    }
}

/// Injected failures, each as a probability per inference request.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultConfig {
    /// Probability of answering 500 instead of serving the request.
    pub error_rate: f64,
    /// Probability of holding the request for `stall` before serving it.
    pub stall_rate: f64,
    /// How long a stalled request is held.
    pub stall: Duration,
    /// Probability of aborting the connection instead of answering.
    pub reset_rate: f64,
    /// For generations: stalls and resets strike after this many tokens of the answer instead
    /// of before it (a stream cut or held mid-way); `None`: before (the mock's behaviour before
    /// this setting). Embeddings are always struck before their answer.
    pub after_tokens: Option<u32>,
}

/// Everything one simulated node needs to start.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// Address to bind; loopback by default.
    pub host: IpAddr,
    /// Port to bind; 0 lets the OS choose (read it back from [`crate::MockNode::addr`]).
    pub port: u16,
    /// Service-time model.
    pub latency: LatencyModel,
    /// Speed factor: service times are divided by it (2.0 is twice as fast as 1.0).
    pub speed: f64,
    /// Seed for jitter and fault draws, so runs are reproducible.
    pub seed: u64,
    /// Parallel slots per model.
    pub slots: SlotPolicy,
    /// `OLLAMA_MAX_QUEUE`: waiting requests allowed before new ones get 503 (which waits count
    /// is the `queue` mode's choice).
    pub max_queue: usize,
    /// Which waits count toward `max_queue`.
    pub queue: QueueMode,
    /// How service times, stalls and control-plane latency are timed (model loads and
    /// keep-alive always use tokio's clock).
    pub timer: Timer,
    /// What a generation does when its client leaves.
    pub leave: Leave,
    /// Each slot keeps the prompt it last processed, and a generation whose prompt shares a
    /// prefix with a free slot's is charged prompt evaluation only for the rest (Ollama's
    /// runner). `false`: every prompt is evaluated whole (the mock's behaviour before this
    /// setting).
    pub prompt_cache: bool,
    /// Time the first request for a model waits while it "loads" (every model alike unless
    /// `load_rate` is set).
    pub load_time: Duration,
    /// Bytes per second a model loads at (disk to GPU): a load then takes `load_time` plus the
    /// model's size at this rate, so a 4.7 GB model costs more than a 45 MB one. `None`: every
    /// model loads in `load_time` (the mock's behaviour before this setting).
    pub load_rate: Option<f64>,
    /// One load at a time on the node: a cold model waits for another model's load to end.
    /// Ollama's scheduler does not start a load on a GPU where another model is still loading
    /// (`filterGPUsWithoutLoadingModels` in `server/sched.go`, ollama/ollama@000ce02; the
    /// request is re-queued until it ends), which on a one-GPU node serialises loads. `false`:
    /// different models load in parallel (the mock's behaviour before this setting).
    pub serial_loads: bool,
    /// Idle time after which a loaded model is unloaded (and the next request pays `load_time`).
    pub keep_alive: Duration,
    /// How many runners the node holds at once, and in how much memory (see
    /// [`crate::residency`]); unlimited by default (the mock's behaviour before these settings).
    pub residency: Limits,
    /// Latency of `/api/tags` and `/api/ps` (Ollama answers these instantly; a slow value models a
    /// struggling node's control plane).
    pub control_latency: Duration,
    /// Injected faults.
    pub faults: FaultConfig,
    /// Output tokens of a generate or chat request when it does not set `options.num_predict`.
    pub default_output_tokens: u32,
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Entries the served-request log keeps (the oldest are dropped and counted beyond it); 0
    /// turns it off.
    pub served_log_capacity: usize,
    /// Who may use the `/mock/` control API.
    pub control: ControlAccess,
    /// Models the node serves.
    pub models: Vec<ModelSpec>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            latency: LatencyModel::default(),
            speed: 1.0,
            seed: 0x5eed,
            slots: SlotPolicy::default(),
            max_queue: 512,
            queue: QueueMode::default(),
            timer: Timer::default(),
            leave: Leave::AtOnce,
            prompt_cache: false,
            load_time: Duration::ZERO,
            load_rate: None,
            serial_loads: false,
            keep_alive: Duration::from_secs(300),
            residency: Limits::default(),
            control_latency: Duration::ZERO,
            faults: FaultConfig::default(),
            default_output_tokens: 16,
            max_body_bytes: 2 * 1024 * 1024,
            served_log_capacity: crate::served::DEFAULT_CAPACITY,
            control: ControlAccess::Open,
            models: default_models(),
        }
    }
}

/// A node as an experiment describes it: the figures that set its capacity and its error rate,
/// everything else at [`NodeConfig::default`]. The one mapping from such a description to a
/// configuration, so every harness cell and scenario builds its nodes the same way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeSpec {
    /// Service time of one embed input at speed 1.0.
    pub service: Duration,
    /// Parallel slots, embedding models included (Ollama itself gives those one: the nodes stand
    /// for whatever is balanced, so the slots are the experiment's choice).
    pub slots: usize,
    /// Speed factor (service times are divided by it).
    pub speed: f64,
    /// Injected 500s per request.
    pub error_rate: f64,
    /// Latency of `/api/tags`, `/api/ps` and `/v1/models`.
    pub control_latency: Duration,
}

impl NodeSpec {
    /// A node with `slots` slots and a `service` time, at speed 1, without faults.
    pub fn new(service: Duration, slots: usize) -> Self {
        Self {
            service,
            slots,
            speed: 1.0,
            error_rate: 0.0,
            control_latency: Duration::ZERO,
        }
    }

    /// The configuration of the `index`-th node of a cluster so described: each node its own
    /// seed, so nodes do not draw the same jitter and faults for their k-th request.
    pub fn config(&self, index: usize) -> NodeConfig {
        NodeConfig {
            latency: LatencyModel {
                base: self.service,
                ..LatencyModel::default()
            },
            speed: self.speed,
            seed: 0x5eed + index as u64,
            slots: SlotPolicy {
                parallel: self.slots,
                force_embed_parallel: true,
            },
            control_latency: self.control_latency,
            faults: FaultConfig {
                error_rate: self.error_rate,
                ..FaultConfig::default()
            },
            ..NodeConfig::default()
        }
    }
}

/// Why a configuration cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// Speed must be a positive, finite number.
    #[error("speed must be positive and finite, got {0}")]
    Speed(f64),
    /// A probability outside `[0, 1]`.
    #[error("{name} must be a probability in [0, 1], got {value}")]
    Rate {
        /// Which rate.
        name: &'static str,
        /// The offending value.
        value: f64,
    },
    /// A jitter parameter out of range.
    #[error("jitter parameter out of range: {0:?}")]
    Jitter(Jitter),
    /// A load rate that is not a positive, finite number of bytes per second.
    #[error("the load rate must be positive and finite bytes/s, got {0}")]
    LoadRate(f64),
    /// A prompt rate that is not a positive, finite number of tokens per second.
    #[error("the prompt rate must be positive and finite tokens/s, got {0}")]
    PromptRate(f64),
    /// Zero parallel slots would never serve anything.
    #[error("parallel slots must be at least 1")]
    Parallel,
    /// `max_loaded_models` of 0 would never load anything.
    #[error("max loaded models must be at least 1")]
    MaxLoaded,
    /// A model the node cannot serve as described.
    #[error("model {name:?}: {problem}")]
    Model {
        /// The model's name as given.
        name: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// No models configured.
    #[error("a node needs at least one model")]
    NoModels,
    /// An open control API on an address other machines can reach.
    #[error(
        "the control API changes the node's behaviour: on {0}, which other machines can reach, set a token (--control-token) or turn it off (--no-control)"
    )]
    OpenControl(IpAddr),
}

impl NodeConfig {
    /// How long loading a model of `size` bytes takes: `load_time`, plus the size at
    /// `load_rate` when one is set.
    pub fn load_time_of(&self, size: u64) -> Duration {
        let transfer = self.load_rate.map_or(Duration::ZERO, |rate| {
            Duration::try_from_secs_f64(size as f64 / rate).unwrap_or(Duration::MAX)
        });
        self.load_time.saturating_add(transfer)
    }

    /// A node with a fixed service time and everything else at its default.
    pub fn with_latency(base: Duration) -> Self {
        Self {
            latency: LatencyModel {
                base,
                ..LatencyModel::default()
            },
            ..Self::default()
        }
    }

    /// Checks every field for a value the simulation cannot honour.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.speed.is_finite() && self.speed > 0.0) {
            return Err(ConfigError::Speed(self.speed));
        }
        for (name, value) in [
            ("error rate", self.faults.error_rate),
            ("stall rate", self.faults.stall_rate),
            ("reset rate", self.faults.reset_rate),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(ConfigError::Rate { name, value });
            }
        }
        match self.latency.jitter {
            Jitter::Uniform { spread } if !(0.0..=1.0).contains(&spread) => {
                return Err(ConfigError::Jitter(self.latency.jitter));
            }
            Jitter::LogNormal { sigma } if !(sigma.is_finite() && sigma >= 0.0) => {
                return Err(ConfigError::Jitter(self.latency.jitter));
            }
            _ => {}
        }
        let bad_rate = |rate: Option<f64>| rate.filter(|r| !(r.is_finite() && *r > 0.0));
        if let Some(rate) = bad_rate(self.latency.prompt_rate) {
            return Err(ConfigError::PromptRate(rate));
        }
        if let Some(rate) = bad_rate(self.load_rate) {
            return Err(ConfigError::LoadRate(rate));
        }
        if self.slots.parallel == 0 {
            return Err(ConfigError::Parallel);
        }
        if self.residency.max_loaded == Some(0) {
            return Err(ConfigError::MaxLoaded);
        }
        if self.models.is_empty() {
            return Err(ConfigError::NoModels);
        }
        for (i, model) in self.models.iter().enumerate() {
            let problem = match model.kind {
                _ if model.name.trim().is_empty()
                    || model.name.starts_with(':')
                    || model.name.ends_with(':') =>
                {
                    Some("has no name")
                }
                crate::models::ModelKind::Embedding { dim: 0 } => Some("has dimension 0"),
                _ if model.context_length < 4 => Some("has a context under 4 tokens"),
                _ if self.models[..i].iter().any(|m| m.name == model.name) => {
                    Some("is listed twice")
                }
                _ => None,
            };
            if let Some(problem) = problem {
                return Err(ConfigError::Model {
                    name: model.name.clone(),
                    problem,
                });
            }
        }
        if self.control == ControlAccess::Open && !self.host.is_loopback() {
            return Err(ConfigError::OpenControl(self.host));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_parses_all_forms() {
        assert_eq!("fixed".parse::<Jitter>().unwrap(), Jitter::Fixed);
        assert_eq!(
            "uniform:0.3".parse::<Jitter>().unwrap(),
            Jitter::Uniform { spread: 0.3 }
        );
        assert_eq!(
            "lognormal".parse::<Jitter>().unwrap(),
            Jitter::LogNormal { sigma: 0.5 }
        );
        assert!("gaussian".parse::<Jitter>().is_err());
        assert!("uniform:x".parse::<Jitter>().is_err());
    }

    #[test]
    fn validate_rejects_impossible_settings() {
        let mut config = NodeConfig {
            speed: 0.0,
            ..NodeConfig::default()
        };
        assert_eq!(config.validate(), Err(ConfigError::Speed(0.0)));
        config.speed = 1.0;
        config.faults.error_rate = 1.5;
        assert!(matches!(config.validate(), Err(ConfigError::Rate { .. })));
        config.faults.error_rate = 0.0;
        config.slots.parallel = 0;
        assert_eq!(config.validate(), Err(ConfigError::Parallel));
        config.slots.parallel = 1;
        config.load_rate = Some(0.0);
        assert_eq!(config.validate(), Err(ConfigError::LoadRate(0.0)));
        config.load_rate = Some(1e9);
        config.latency.prompt_rate = Some(f64::INFINITY);
        assert!(matches!(config.validate(), Err(ConfigError::PromptRate(_))));
        config.latency.prompt_rate = None;
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn embedding_models_get_one_slot_unless_forced() {
        let policy = SlotPolicy {
            parallel: 4,
            force_embed_parallel: false,
        };
        assert_eq!(policy.slots_for(true), 1);
        assert_eq!(policy.slots_for(false), 4);
        let forced = SlotPolicy {
            force_embed_parallel: true,
            ..policy
        };
        assert_eq!(forced.slots_for(true), 4);
    }
}
