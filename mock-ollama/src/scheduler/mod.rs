//! Ollama's scheduling semantics on one node: model loads, parallel slots, and the wait queue.
//!
//! Real Ollama gives each loaded model a semaphore of `OLLAMA_NUM_PARALLEL` slots (one for
//! embedding models) with an unbounded FIFO wait, loads one model at a time, and unloads a model
//! after `keep_alive` idle. This module reproduces that with a FIFO `tokio` semaphore per model and
//! a node-wide count of waiting requests checked against `max_queue` when a request arrives at a
//! wait. [`QueueMode::Ollama`] counts only waits for a model load toward the bound (Ollama's
//! `OLLAMA_MAX_QUEUE` since loaded models bypass its scheduler queue); [`QueueMode::Bounded`]
//! counts slot waits too, so a benchmark can provoke the 503 of an overflowing queue.

mod load;
mod runner;

pub use load::Acquired;
pub use runner::{InUse, ModelRuntime};

use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use tokio::sync::OwnedSemaphorePermit;

use crate::config::{Jitter, NodeConfig, QueueMode};
use crate::embedding::{EmbeddingTable, splitmix64};
use crate::hold::Holds;
use crate::metrics::{Limit, Metrics, Wait};
use crate::models::{self, ModelKind};
use crate::residency::{Events, Timeline};

/// The node's queue is full: answer 503 with Ollama's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// A slot held for one inference item.
#[derive(Debug)]
pub struct Slot {
    model: Arc<ModelRuntime>,
    /// How long the item waited for the slot.
    pub waited: Duration,
    /// When the item's service starts: now for a slot that was free, or, for an item that
    /// waited, the moment the slot's previous item was due to finish (see [`Slot::finished_on_time`])
    /// or was freed, but never before the item asked. Service times count from here, so neither
    /// handing a busy slot to the next waiter (a task wake-up, tens of microseconds in this
    /// simulator, nothing on a GPU) nor the OS waking the node's timer late eats into the node's
    /// capacity: back-to-back items on a slot take exactly their service times.
    pub started: std::time::Instant,
    /// When the item's service was due to end, once it ended by its timer alone.
    due: Option<std::time::Instant>,
    /// The prompt-cache slot it holds, if it took one.
    cache: Option<usize>,
    // Declared last: the permit goes back after `Drop` has recorded the release.
    _permit: OwnedSemaphorePermit,
}

impl Slot {
    /// The item's service ended by its timer, which was due at `due` (the precise timer fires
    /// close to it, usually a little after, sometimes a little before): the slot counts as freed
    /// at `due`, so the next waiter's service starts there and the timer's error does not carry
    /// over. Not called when a test held the service
    /// ([`crate::hold`]): a held slot is freed when it is really let go.
    pub fn finished_on_time(&mut self, due: std::time::Instant) {
        self.due = Some(due);
    }

    /// Takes this slot's prompt cache for `prompt` when the node has the cache on: the
    /// characters of `prompt` it already held (0 with the cache off).
    pub fn use_cache(&mut self, prompt: &str, on: bool) -> usize {
        if !on {
            return 0;
        }
        let (index, shared) = self.model.take_cache(prompt);
        self.cache = Some(index);
        shared
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(index) = self.cache {
            self.model.return_cache(index);
        }
        let freed = self.due.unwrap_or_else(std::time::Instant::now);
        let mut released = self
            .model
            .released
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if released.len() < self.model.slots_total.load(Ordering::Relaxed) {
            released.push_back(freed);
        }
    }
}

/// The runtimes of `config`'s catalogue: a model already in `had` with the same description
/// keeps its runtime (loaded state, cache, slots); a new or changed one starts unloaded; one no
/// longer listed is gone for new requests (those in flight finish with it).
fn runtimes(config: &NodeConfig, had: &[Arc<ModelRuntime>]) -> Vec<Arc<ModelRuntime>> {
    config
        .models
        .iter()
        .map(|spec| {
            if let Some(kept) = had.iter().find(|m| m.spec == *spec) {
                return Arc::clone(kept);
            }
            let slots = config.slots.slots_for(spec.is_embedding());
            let embeddings = match spec.kind {
                ModelKind::Embedding { dim } => Some(EmbeddingTable::shared(&spec.name, dim)),
                ModelKind::Generation => None,
            };
            Arc::new(ModelRuntime::new(spec.clone(), embeddings, slots))
        })
        .collect()
}

tokio::task_local! {
    /// The settings current when the request being handled arrived.
    static ARRIVAL: Arc<NodeConfig>;
}

/// Runs `fut` (one request) under `config`, the settings current when it arrived: a change
/// through the control API applies to requests that arrive afterwards, and a request in flight
/// finishes under the settings it started with.
pub async fn with_settings_of_arrival<F: Future>(config: Arc<NodeConfig>, fut: F) -> F::Output {
    ARRIVAL.scope(config, fut).await
}

/// The node's models, queue and random source.
#[derive(Debug)]
pub struct Scheduler {
    /// The current settings; the control API swaps them while requests run.
    config: ArcSwap<NodeConfig>,
    /// The catalogue's runtimes, in the configuration's order; swapped when the control API
    /// changes the catalogue (a request in flight keeps the runtime it resolved).
    models: ArcSwap<Vec<Arc<ModelRuntime>>>,
    /// Request sequence number, mixed into the seed so every request draws its own reproducible
    /// random stream without a lock around a shared generator.
    sequence: AtomicU64,
    /// Test holds on services, loads and control-plane answers ([`crate::hold`]).
    holds: Arc<Holds>,
    /// The node's scheduling lock (see [`load`]).
    node_lock: tokio::sync::Mutex<()>,
    /// What happened to which model when.
    timeline: Timeline,
}

impl Scheduler {
    /// Builds the runtime state for every configured model; the residency timeline counts
    /// from `started` (the served log's start).
    pub fn new(config: Arc<NodeConfig>, started: std::time::Instant) -> Self {
        let models = runtimes(&config, &[]);
        Self {
            config: ArcSwap::new(config),
            models: ArcSwap::from_pointee(models),
            sequence: AtomicU64::new(0),
            holds: Arc::default(),
            node_lock: tokio::sync::Mutex::new(()),
            timeline: Timeline::new(tokio::time::Instant::from_std(started)),
        }
    }

    /// The node's residency events so far (expiries noticed first).
    pub fn residency_events(&self) -> Events {
        self.sweep_expired();
        self.timeline.read()
    }

    /// The node's test holds ([`crate::hold`]).
    pub(crate) fn holds(&self) -> &Arc<Holds> {
        &self.holds
    }

    /// The settings a request runs under: those current when it arrived (see
    /// [`with_settings_of_arrival`]), or the current ones outside a request.
    pub fn config(&self) -> Arc<NodeConfig> {
        ARRIVAL
            .try_with(Arc::clone)
            .unwrap_or_else(|_| self.config.load_full())
    }

    /// The settings now, whatever a request arrived under.
    pub fn current(&self) -> Arc<NodeConfig> {
        self.config.load_full()
    }

    /// Makes `config` the node's settings for requests that arrive from now on, and resizes
    /// every model's slots to match (a shrink takes effect as busy slots are freed).
    pub fn replace_config(&self, config: NodeConfig) {
        if config.models != self.current().models {
            self.models
                .store(Arc::new(runtimes(&config, &self.models())));
        }
        for model in self.models().iter() {
            let want = config.slots.slots_for(model.spec.is_embedding());
            let had = model.slots_total.swap(want, Ordering::Relaxed);
            if want > had {
                model.slots.add_permits(want - had);
            } else if want < had {
                let surplus = had - want;
                let gone = model.slots.forget_permits(surplus);
                if gone < surplus {
                    // The rest are held by requests: take them as they are released.
                    let slots = Arc::clone(&model.slots);
                    let missing = (surplus - gone) as u32;
                    tokio::spawn(async move {
                        if let Ok(permits) = slots.acquire_many_owned(missing).await {
                            permits.forget();
                        }
                    });
                }
            }
        }
        self.config.store(Arc::new(config));
    }

    /// Every model with its runtime state.
    pub fn models(&self) -> Arc<Vec<Arc<ModelRuntime>>> {
        self.models.load_full()
    }

    /// Finds a model by name, with or without `:latest`.
    pub fn resolve(&self, name: &str) -> Option<Arc<ModelRuntime>> {
        let full = models::with_tag(name);
        self.models().iter().find(|m| m.spec.name == full).cloned()
    }

    /// A fresh random stream for one request, reproducible from the seed and arrival order.
    pub fn request_rng(&self) -> SmallRng {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        SmallRng::seed_from_u64(splitmix64(self.config().seed ^ splitmix64(n)))
    }

    /// Service time of one item of `tokens` tokens: the latency model, jittered, over the speed.
    pub fn service_time(&self, tokens: u64, rng: &mut SmallRng) -> Duration {
        let config = self.config();
        let model = &config.latency;
        let nominal = model.base
            + model
                .per_token
                .saturating_mul(tokens.min(u64::from(u32::MAX)) as u32);
        self.scaled(nominal, rng)
    }

    /// `nominal` with one jitter draw applied, divided by the node's speed.
    pub fn scaled(&self, nominal: Duration, rng: &mut SmallRng) -> Duration {
        let factor = match self.config().latency.jitter {
            Jitter::Fixed => 1.0,
            Jitter::Uniform { spread } => 1.0 + spread * rng.random_range(-1.0..=1.0),
            Jitter::LogNormal { sigma } => {
                LogNormal::new(0.0, sigma).map_or(1.0, |d| d.sample(rng))
            }
        };
        nominal.mul_f64(factor.max(0.0) / self.config().speed)
    }

    /// Takes one slot of `model`, waiting in FIFO order. In [`QueueMode::Bounded`], when `admit`
    /// is set (the request's first item) and it must wait, it is refused with [`Busy`] if the
    /// node's queue is full; later items of an admitted batch always wait, as in Ollama. In
    /// [`QueueMode::Ollama`] slot waits are counted but never refused.
    pub async fn slot(
        &self,
        model: &Arc<ModelRuntime>,
        metrics: &Metrics,
        admit: bool,
    ) -> Result<Slot, Busy> {
        let start = Instant::now();
        let asked = std::time::Instant::now();
        if let Ok(permit) = Arc::clone(&model.slots).try_acquire_owned() {
            // A free slot: its last release (if any) is history, service starts now.
            model.take_release();
            return Ok(Slot {
                model: Arc::clone(model),
                waited: Duration::ZERO,
                started: asked,
                due: None,
                cache: None,
                _permit: permit,
            });
        }
        let limit = if admit && self.config().queue == QueueMode::Bounded {
            Limit::Queued(self.config().max_queue)
        } else {
            Limit::Unbounded
        };
        let _queued = metrics.try_enqueue(Wait::Slot, limit).ok_or(Busy)?;
        let permit = Arc::clone(&model.slots)
            .acquire_owned()
            .await
            .map_err(|_| Busy)?;
        // The slot was freed while this item waited: service starts at that moment.
        let started = model
            .take_release()
            .filter(|freed| *freed >= asked)
            .unwrap_or_else(std::time::Instant::now);
        Ok(Slot {
            model: Arc::clone(model),
            waited: start.elapsed(),
            started,
            due: None,
            cache: None,
            _permit: permit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LatencyModel;
    use crate::residency::RunnerOptions;

    fn scheduler(config: NodeConfig) -> Scheduler {
        Scheduler::new(Arc::new(config), std::time::Instant::now())
    }

    /// `acquire_model` with the default runner options, as a (hold, wait) pair.
    async fn acquire(
        s: &Scheduler,
        model: &Arc<ModelRuntime>,
        metrics: &Metrics,
        keep_alive: Option<Duration>,
    ) -> Result<(InUse, Duration), Busy> {
        let acquired = s
            .acquire_model(model, metrics, RunnerOptions::default(), keep_alive)
            .await?;
        Ok((acquired.in_use, acquired.waited))
    }

    #[test]
    fn service_time_applies_tokens_and_speed() {
        let s = scheduler(NodeConfig {
            latency: LatencyModel {
                base: Duration::from_millis(10),
                per_token: Duration::from_millis(1),
                prompt_rate: None,
                jitter: Jitter::Fixed,
            },
            speed: 2.0,
            ..NodeConfig::default()
        });
        let mut rng = s.request_rng();
        // (10 ms + 30 x 1 ms) / 2. Ignoring the tokens gives 5 ms, ignoring the speed 40 ms, and
        // ignoring both 10 ms: each mistake gives another value.
        assert_eq!(s.service_time(30, &mut rng), Duration::from_millis(20));
    }

    #[test]
    fn jitter_is_seeded_and_bounded() {
        let config = NodeConfig {
            latency: LatencyModel {
                base: Duration::from_millis(100),
                per_token: Duration::ZERO,
                prompt_rate: None,
                jitter: Jitter::Uniform { spread: 0.5 },
            },
            ..NodeConfig::default()
        };
        let draws = |s: &Scheduler| {
            (0..50)
                .map(|_| s.service_time(0, &mut s.request_rng()))
                .collect::<Vec<_>>()
        };
        let a = draws(&scheduler(config.clone()));
        assert_eq!(
            a,
            draws(&scheduler(config.clone())),
            "same seed, same draws"
        );
        assert!(
            a.iter()
                .all(|d| *d >= Duration::from_millis(50) && *d <= Duration::from_millis(150))
        );
        assert!(a.iter().any(|d| *d != a[0]), "uniform jitter must vary");
        let other = scheduler(NodeConfig { seed: 99, ..config });
        assert_ne!(a, draws(&other), "another seed, other draws");
    }

    #[tokio::test]
    async fn one_slot_for_embeddings_and_queue_bound() {
        let s = scheduler(NodeConfig {
            max_queue: 1,
            queue: QueueMode::Bounded,
            ..NodeConfig::default()
        });
        let metrics = Metrics::default();
        let model = s.resolve("all-minilm").unwrap();
        let first = s.slot(&model, &metrics, true).await.unwrap();
        // The second admitted item must wait: run it concurrently and check it is queued.
        let waiting = {
            let model = Arc::clone(&model);
            let s = &s;
            let metrics = &metrics;
            async move { s.slot(&model, metrics, true).await }
        };
        tokio::pin!(waiting);
        assert!(futures_util::poll!(&mut waiting).is_pending());
        assert_eq!(metrics.snapshot().queued, 1);
        assert_eq!(
            s.slot(&model, &metrics, true).await.err(),
            Some(Busy),
            "queue of 1 is full"
        );
        drop(first);
        let second = waiting.await.unwrap();
        assert_eq!(metrics.snapshot().queued, 0);
        drop(second);
    }

    #[tokio::test(start_paused = true)]
    async fn cold_start_pays_load_time_once_then_expires() {
        let s = scheduler(NodeConfig {
            load_time: Duration::from_secs(2),
            keep_alive: Duration::from_secs(10),
            ..NodeConfig::default()
        });
        let model = s.resolve("llama3.2").unwrap();
        let metrics = Metrics::default();
        let (use1, waited) = acquire(&s, &model, &metrics, None).await.unwrap();
        assert!(
            waited >= Duration::from_secs(2),
            "cold load waited {waited:?}"
        );
        drop(use1);
        let (use2, waited) = acquire(&s, &model, &metrics, None).await.unwrap();
        assert!(
            waited < Duration::from_millis(1),
            "warm model waited {waited:?}"
        );
        drop(use2);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!s.is_loaded(&model), "keep-alive expired");
        let (_use3, waited) = acquire(&s, &model, &metrics, None).await.unwrap();
        assert!(waited >= Duration::from_secs(2), "reload waited {waited:?}");
    }

    /// With a load rate, a model's load costs `load_time` plus its size at that rate: the
    /// 2 GB generation model loads for longer than the 46 MB embedding one, where `load_time`
    /// alone (the twin without a rate) charges both the same.
    #[tokio::test(start_paused = true)]
    async fn a_load_rate_charges_each_model_its_size() {
        let waits = |load_rate: Option<f64>| async move {
            let s = scheduler(NodeConfig {
                load_time: Duration::from_secs(1),
                load_rate,
                ..NodeConfig::default()
            });
            let metrics = Metrics::default();
            let mut waited = Vec::new();
            for name in ["llama3.2", "all-minilm"] {
                let model = s.resolve(name).unwrap();
                let (_in_use, took) = acquire(&s, &model, &metrics, None).await.unwrap();
                let expected = s.config().load_time_of(model.spec.size);
                // tokio's timer rounds a sleep up to the millisecond.
                assert!(
                    took >= expected && took < expected + Duration::from_millis(1),
                    "{name}: {took:?} for {expected:?}"
                );
                waited.push(took);
            }
            waited
        };
        let rated = waits(Some(1e9)).await;
        assert!(rated[0] > rated[1] + Duration::from_secs(1), "{rated:?}");
        assert!(rated[1] > Duration::from_secs(1), "{rated:?}");
        assert_eq!(waits(None).await, [Duration::from_secs(1); 2]);
    }

    /// With serial loads two cold models load one after the other; without, side by side.
    #[tokio::test(start_paused = true)]
    async fn serial_loads_make_a_second_model_wait_for_the_first() {
        let waits = |serial_loads: bool| async move {
            let s = scheduler(NodeConfig {
                load_time: Duration::from_secs(3),
                serial_loads,
                ..NodeConfig::default()
            });
            let metrics = Metrics::default();
            let (a, b) = (
                &s.resolve("llama3.2").unwrap(),
                &s.resolve("all-minilm").unwrap(),
            );
            let (a, b) = tokio::join!(
                acquire(&s, a, &metrics, None),
                acquire(&s, b, &metrics, None)
            );
            let mut waits = [a.unwrap().1, b.unwrap().1];
            waits.sort();
            waits
        };
        let three = Duration::from_secs(3);
        assert_eq!(waits(false).await, [three, three]);
        assert_eq!(waits(true).await, [three, 2 * three]);
    }

    /// A request's `keep_alive` is the model's from then on (Ollama's `sessionDuration`): a
    /// later request without one keeps it, `0` unloads as soon as the model is idle, a negative
    /// one (`Duration::MAX`) never does, and an unload forgets it.
    #[tokio::test(start_paused = true)]
    async fn a_requests_keep_alive_stays_with_the_model_until_it_unloads() {
        let s = scheduler(NodeConfig {
            keep_alive: Duration::from_secs(300),
            ..NodeConfig::default()
        });
        let model = s.resolve("llama3.2").unwrap();
        let metrics = Metrics::default();
        let short = Some(Duration::from_secs(1));
        drop(acquire(&s, &model, &metrics, short).await.unwrap());
        // No keep_alive of its own: the model keeps the 1 s, not the node's 300 s.
        drop(acquire(&s, &model, &metrics, None).await.unwrap());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!s.is_loaded(&model), "the request's 1 s applied, not 300 s");
        // Loaded afresh without one: the node's default again.
        drop(acquire(&s, &model, &metrics, None).await.unwrap());
        tokio::time::advance(Duration::from_secs(200)).await;
        assert!(s.is_loaded(&model), "an unload forgot the 1 s");
        // Forever: a negative keep_alive arrives as Duration::MAX.
        drop(
            acquire(&s, &model, &metrics, Some(Duration::MAX))
                .await
                .unwrap(),
        );
        tokio::time::advance(Duration::from_secs(86_400 * 365)).await;
        assert!(s.is_loaded(&model), "forever is still loaded after a year");
        let in_use = acquire(&s, &model, &metrics, Some(Duration::ZERO))
            .await
            .unwrap();
        assert!(s.is_loaded(&model), "0 keeps the model while it is in use");
        drop(in_use);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!s.is_loaded(&model), "0: unloaded once idle");
    }

    #[tokio::test]
    async fn a_waiter_starts_its_service_when_the_slot_was_freed() {
        let s = scheduler(NodeConfig::default());
        let metrics = Metrics::default();
        let model = s.resolve("all-minilm").unwrap();
        let first = s.slot(&model, &metrics, true).await.unwrap();
        let mut waiting = Box::pin(s.slot(&model, &metrics, true));
        assert!(futures_util::poll!(waiting.as_mut()).is_pending());
        let before_release = std::time::Instant::now();
        drop(first);
        let after_release = std::time::Instant::now();
        let second = waiting.await.unwrap();
        assert!(
            (before_release..=after_release).contains(&second.started),
            "service starts at the release, not when the waiter ran"
        );
        drop(second);
        // A slot taken when free starts now, however long ago it was released.
        let asked = std::time::Instant::now();
        let third = s.slot(&model, &metrics, true).await.unwrap();
        assert!(third.started >= asked);
    }

    #[tokio::test]
    async fn a_slot_that_ended_on_time_hands_its_due_time_to_the_next_waiter() {
        let s = scheduler(NodeConfig::default());
        let metrics = Metrics::default();
        let model = s.resolve("all-minilm").unwrap();
        let mut first = s.slot(&model, &metrics, true).await.unwrap();
        let mut waiting = Box::pin(s.slot(&model, &metrics, true));
        assert!(futures_util::poll!(waiting.as_mut()).is_pending());
        // The first item was due a moment ago, after the second asked; its timer woke late.
        let due = std::time::Instant::now();
        first.finished_on_time(due);
        drop(first);
        let mut second = waiting.await.unwrap();
        assert_eq!(second.started, due, "the lateness does not carry over");
        // Due before the next waiter asked: that waiter cannot start before it asked.
        let early = std::time::Instant::now() - Duration::from_millis(1);
        let mut third_waiting = Box::pin(s.slot(&model, &metrics, true));
        assert!(futures_util::poll!(third_waiting.as_mut()).is_pending());
        second.finished_on_time(early);
        drop(second);
        let third = third_waiting.await.unwrap();
        assert!(third.started > early, "never before the item asked");
    }

    #[tokio::test]
    async fn ollama_mode_never_refuses_a_slot_wait() {
        let s = scheduler(NodeConfig {
            max_queue: 1,
            ..NodeConfig::default()
        });
        let metrics = Metrics::default();
        let model = s.resolve("all-minilm").unwrap();
        let first = s.slot(&model, &metrics, true).await.unwrap();
        let mut waiting = Vec::new();
        for _ in 0..3 {
            let wait = Box::pin(s.slot(&model, &metrics, true));
            waiting.push(wait);
        }
        for wait in &mut waiting {
            assert!(futures_util::poll!(wait.as_mut()).is_pending());
        }
        assert_eq!(
            metrics.snapshot().queued,
            3,
            "three waits past a bound of 1"
        );
        drop(first);
        for wait in waiting {
            drop(wait.await.unwrap());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn load_waits_count_toward_the_bound_in_both_modes() {
        for queue in [QueueMode::Ollama, QueueMode::Bounded] {
            let s = scheduler(NodeConfig {
                max_queue: 1,
                queue,
                load_time: Duration::from_secs(5),
                ..NodeConfig::default()
            });
            let metrics = Metrics::default();
            let model = s.resolve("llama3.2").unwrap();
            let loading = Box::pin(acquire(&s, &model, &metrics, None));
            let mut loading = loading;
            assert!(futures_util::poll!(loading.as_mut()).is_pending());
            assert_eq!(
                acquire(&s, &model, &metrics, None).await.err(),
                Some(Busy),
                "{queue:?}: the one load wait fills a queue of 1"
            );
            drop(loading.await.unwrap());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_load_abandoned_by_its_request_leaves_the_model_unloaded() {
        let s = scheduler(NodeConfig {
            load_time: Duration::from_secs(5),
            ..NodeConfig::default()
        });
        let metrics = Metrics::default();
        let model = s.resolve("llama3.2").unwrap();
        let mut loading = Box::pin(acquire(&s, &model, &metrics, None));
        assert!(futures_util::poll!(loading.as_mut()).is_pending());
        drop(loading);
        assert!(!s.is_loaded(&model), "the load never finished");
        assert_eq!(metrics.snapshot().queued, 0, "the wait left the queue");
        assert_eq!(
            (metrics.snapshot().loads, metrics.snapshot().loads_aborted),
            (0, 1)
        );
        let (_in_use, waited) = acquire(&s, &model, &metrics, None).await.unwrap();
        assert!(
            waited >= Duration::from_secs(5),
            "the next request loads it: {waited:?}"
        );
        assert_eq!(
            (metrics.snapshot().loads, metrics.snapshot().loads_aborted),
            (1, 1),
            "the second load finished; a warm request counts none"
        );
        drop(acquire(&s, &model, &metrics, None).await.unwrap());
        assert_eq!(metrics.snapshot().loads, 1);
    }
}
