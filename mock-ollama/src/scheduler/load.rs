//! A request's way to its model: straight through when the model is resident with the
//! request's options (Ollama's fast path for loaded runners, ollama/ollama#7758), else the cold
//! path: wait for the model's other loads, make room (evict or reload, as
//! [`crate::residency`] decides), load, and record each step on the node's timeline.
//!
//! The cold path takes the node's scheduling lock for its decisions and any eviction wait, as
//! Ollama's `processPending` handles one pending request at a time and queues every other load
//! behind an eviction (`server/sched.go`, ollama/ollama@000ce02). With no limits set no one
//! waits there, so models load side by side unless `serial_loads` is set; with limits, loads
//! are one at a time (memory is only known once a load ends: Ollama's
//! `filterGPUsWithoutLoadingModels`).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::runner::{InUse, ModelRuntime, later};
use super::{Busy, Scheduler};
use crate::config::QueueMode;
use crate::hold::Held;
use crate::metrics::{Limit, LoadCount, Metrics, Wait};
use crate::residency::{self, EventKind, Loaded, RunnerOptions, Unload};

/// A request's hold on its model, and what getting it cost.
#[derive(Debug)]
pub struct Acquired {
    /// Keeps the model in use until dropped.
    pub in_use: InUse,
    /// How long the request waited for the model (Ollama's `load_duration`).
    pub waited: Duration,
    /// Whether the model was resident with the request's options when it arrived.
    pub resident: bool,
    /// Other models this request's load evicted.
    pub evicted: u32,
    /// The option that made this request reload the model, if it did.
    pub reload: Option<&'static str>,
}

/// Marks a runner chosen for eviction; dropped, it is usable again (the request that chose it
/// left, or the eviction is done and the runner unloaded).
struct Evicting<'a>(&'a ModelRuntime);

impl Drop for Evicting<'_> {
    fn drop(&mut self) {
        self.0.runner().evicting = false;
    }
}

/// A load in progress; dropped before [`Loading::finished`], the load was aborted.
struct Loading<'a> {
    scheduler: &'a Scheduler,
    model: &'a ModelRuntime,
    count: Option<LoadCount<'a>>,
}

impl Loading<'_> {
    fn finished(mut self) {
        if let Some(count) = self.count.take() {
            count.finished();
        }
        self.scheduler
            .timeline
            .record(Instant::now(), &self.model.spec.name, EventKind::Loaded);
    }
}

impl Drop for Loading<'_> {
    fn drop(&mut self) {
        self.model.runner().loading = false;
        if self.count.is_some() {
            let name = &self.model.spec.name;
            let timeline = &self.scheduler.timeline;
            timeline.record(Instant::now(), name, EventKind::LoadAborted);
        }
    }
}

impl Scheduler {
    /// Marks `model` in use, loading it first if it is not resident with the request's runner
    /// options (`wanted`), and gives it the request's `keep_alive` when it has one
    /// (`Duration::MAX`: forever). [`Busy`] when the model is cold and the queue is full (both
    /// queue modes count load waits).
    pub async fn acquire_model(
        &self,
        model: &Arc<ModelRuntime>,
        metrics: &Metrics,
        wanted: RunnerOptions,
        keep_alive: Option<Duration>,
    ) -> Result<Acquired, Busy> {
        let start = Instant::now();
        let warm = |in_use, resident| Acquired {
            in_use,
            waited: start.elapsed(),
            resident,
            evicted: 0,
            reload: None,
        };
        if let Some(in_use) = self.enter_if_ready(model, &wanted, keep_alive) {
            return Ok(warm(in_use, true));
        }
        let limit = match self.config().queue {
            QueueMode::Ollama => Limit::Loading(self.config().max_queue),
            QueueMode::Bounded => Limit::Queued(self.config().max_queue),
        };
        let _queued = metrics.try_enqueue(Wait::Load, limit).ok_or(Busy)?;
        let _model_cold_path = model.loading.lock().await;
        // Another request may have loaded it while this one waited.
        if let Some(in_use) = self.enter_if_ready(model, &wanted, keep_alive) {
            return Ok(warm(in_use, false));
        }
        // Taken after the model's own lock, and only that lock's holder waits for it, so no
        // two cold paths wait on each other in a cycle.
        let node = self.node_lock.lock().await;
        let (evicted, reload) = self.make_room(model, &wanted, metrics).await;
        let config = self.config();
        let _node = (config.serial_loads || config.residency.any()).then_some(node);
        let in_use = {
            let mut runner = model.runner();
            runner.loading = true;
            runner.options = wanted;
            InUse::enter(model, &mut runner)
        };
        self.timeline
            .record(Instant::now(), &model.spec.name, EventKind::LoadStarted);
        let loading = Loading {
            scheduler: self,
            model,
            count: Some(metrics.load_started()),
        };
        let took = config.load_time_of(model.spec.size);
        if !took.is_zero() {
            tokio::time::sleep(took).await;
        }
        self.holds.released(Held::Load).await;
        {
            let mut runner = model.runner();
            runner.last_used = Some(Instant::now());
            runner.keep_alive = keep_alive;
        }
        loading.finished();
        Ok(Acquired {
            in_use,
            waited: start.elapsed(),
            resident: false,
            evicted,
            reload,
        })
    }

    /// A hold on `model` if it is resident, unexpired, not being evicted and loaded with
    /// `wanted`; the request's `keep_alive` becomes the model's.
    fn enter_if_ready(
        &self,
        model: &Arc<ModelRuntime>,
        wanted: &RunnerOptions,
        keep_alive: Option<Duration>,
    ) -> Option<InUse> {
        let mut runner = model.runner();
        let now = Instant::now();
        let node_keep_alive = self.config().keep_alive;
        let unexpired = runner.last_used.is_some_and(|last| {
            runner.users > 0 || later(last, runner.keep_alive.unwrap_or(node_keep_alive)) > now
        });
        let ready = unexpired && !runner.evicting && runner.options.reload_reason(wanted).is_none();
        if !ready {
            return None;
        }
        if keep_alive.is_some() {
            runner.keep_alive = keep_alive;
        }
        Some(InUse::enter(model, &mut runner))
    }

    /// Evicts or reloads until `model` may load with `wanted`: the number of other models
    /// evicted, and the option that made it reload itself.
    async fn make_room(
        &self,
        model: &Arc<ModelRuntime>,
        wanted: &RunnerOptions,
        metrics: &Metrics,
    ) -> (u32, Option<&'static str>) {
        let (mut evicted, mut reload) = (0, None);
        loop {
            self.sweep_expired();
            let differs = {
                let runner = model.runner();
                runner
                    .last_used
                    .and_then(|_| runner.options.reload_reason(wanted))
            };
            if let Some(field) = differs {
                reload = Some(field);
                let why = Unload::Reload {
                    field: field.to_owned(),
                };
                self.evict(model, why).await;
                metrics.reloaded();
                continue;
            }
            let Some((victim, pressure)) = self.victim_for(model, wanted) else {
                return (evicted, reload);
            };
            let why = Unload::Evicted {
                pressure,
                for_model: model.spec.name.clone(),
            };
            self.evict(&victim, why).await;
            metrics.evicted();
            evicted += 1;
        }
    }

    /// The runner to evict before `model` loads with `wanted`, and the limit that asks for it;
    /// `None` when there is room (or nothing that could be evicted).
    fn victim_for(
        &self,
        model: &Arc<ModelRuntime>,
        wanted: &RunnerOptions,
    ) -> Option<(Arc<ModelRuntime>, residency::Pressure)> {
        let config = self.config();
        let footprint_of = |m: &ModelRuntime, num_ctx: u64| self.footprint(m, num_ctx);
        let models = self.models();
        let others: Vec<Loaded<'_>> = models
            .iter()
            .filter(|m| !Arc::ptr_eq(m, model))
            .filter_map(|m| {
                let runner = m.runner();
                (runner.last_used.is_some() || runner.loading).then(|| Loaded {
                    model: &m.spec.name,
                    keep_alive: runner.keep_alive.unwrap_or(config.keep_alive),
                    users: runner.users,
                    footprint: footprint_of(m, runner.options.num_ctx),
                    loading: runner.loading,
                })
            })
            .collect();
        let pressure = residency::pressure(
            config.residency,
            &others,
            footprint_of(model, wanted.num_ctx),
        )?;
        let victim = residency::victim(&others)?;
        let victim = models.iter().find(|m| m.spec.name == victim.model)?;
        Some((Arc::clone(victim), pressure))
    }

    /// Keeps new requests off `victim`, waits until its users are done, unloads it, and records
    /// why.
    async fn evict(&self, victim: &ModelRuntime, why: Unload) {
        victim.runner().evicting = true;
        let evicting = Evicting(victim);
        victim.until_idle().await;
        victim.unload();
        drop(evicting);
        self.timeline.record(
            Instant::now(),
            &victim.spec.name,
            EventKind::Unloaded { why },
        );
    }

    /// Marks unloaded every idle model whose keep-alive ran out, recording when it did.
    pub(crate) fn sweep_expired(&self) {
        let now = Instant::now();
        let node_keep_alive = self.config().keep_alive;
        for model in self.models().iter() {
            let mut runner = model.runner();
            let Some(last) = runner.last_used else {
                continue;
            };
            let expired_at = later(last, runner.keep_alive.unwrap_or(node_keep_alive));
            if runner.users == 0 && expired_at <= now {
                runner.unload();
                drop(runner);
                model.clear_caches();
                let why = Unload::Expired;
                let kind = EventKind::Unloaded { why };
                self.timeline.record(expired_at, &model.spec.name, kind);
            }
        }
    }

    /// Unloads `model` at a request's asking (`keep_alive: 0` with an empty prompt).
    pub fn unload(&self, model: &ModelRuntime) {
        let was_loaded = model.runner().last_used.is_some();
        model.unload();
        if was_loaded {
            let kind = EventKind::Unloaded {
                why: Unload::Requested,
            };
            self.timeline.record(Instant::now(), &model.spec.name, kind);
        }
    }

    /// Whether the model is resident: loaded and either in use or idle for less than keep-alive.
    pub fn is_loaded(&self, model: &ModelRuntime) -> bool {
        self.expires_at(model).is_some_and(|t| t > Instant::now())
    }

    /// When an idle model will unload; far in the future while it is in use.
    pub fn expires_at(&self, model: &ModelRuntime) -> Option<Instant> {
        let runner = model.runner();
        let last = runner.last_used?;
        let keep_alive = runner.keep_alive.unwrap_or(self.config().keep_alive);
        if runner.users > 0 {
            return Some(later(
                Instant::now(),
                keep_alive.max(Duration::from_secs(1)),
            ));
        }
        Some(later(last, keep_alive))
    }

    /// The memory a runner of `model` with a context of `num_ctx` takes on this node.
    pub fn footprint(&self, model: &ModelRuntime, num_ctx: u64) -> u64 {
        let slots = self.config().slots.slots_for(model.spec.is_embedding());
        let spec = &model.spec;
        residency::footprint(spec.size, spec.kv_bytes_per_token, num_ctx, slots)
    }

    /// The options of `model`'s loaded runner, if it is loaded.
    pub fn runner_options(&self, model: &ModelRuntime) -> Option<RunnerOptions> {
        let runner = model.runner();
        runner.last_used.map(|_| runner.options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;
    use crate::models::ModelSpec;
    use crate::residency::{Limits, Pressure};

    /// A node with three chat models of `sizes` bytes (named a, b, c), `limits`, and a 1 s load.
    fn node(sizes: [u64; 3], limits: Limits) -> Scheduler {
        let models = ["a", "b", "c"]
            .iter()
            .zip(sizes)
            .map(|(name, size)| ModelSpec::generation(name, "llama", "1B", size))
            .collect();
        let config = NodeConfig {
            models,
            residency: limits,
            load_time: Duration::from_secs(1),
            ..NodeConfig::default()
        };
        Scheduler::new(Arc::new(config), std::time::Instant::now())
    }

    /// A node of three 1-byte models that holds one runner at a time.
    fn one_runner() -> Scheduler {
        let limits = Limits {
            max_loaded: Some(1),
            memory: None,
        };
        node([1, 1, 1], limits)
    }

    fn model(s: &Scheduler, name: &str) -> Arc<ModelRuntime> {
        s.resolve(name).expect("configured")
    }

    async fn take(
        s: &Scheduler,
        name: &str,
        metrics: &Metrics,
        keep_alive: Option<Duration>,
    ) -> Acquired {
        let m = model(s, name);
        s.acquire_model(&m, metrics, RunnerOptions::default(), keep_alive)
            .await
            .expect("admitted")
    }

    fn loaded(s: &Scheduler) -> Vec<String> {
        s.models()
            .iter()
            .filter(|m| s.is_loaded(m))
            .map(|m| m.spec.name.clone())
            .collect()
    }

    fn unloads(s: &Scheduler) -> Vec<(String, Unload)> {
        s.residency_events()
            .events
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::Unloaded { why } => Some((e.model, why)),
                _ => None,
            })
            .collect()
    }

    /// With two runners allowed, a third model evicts the idle one with the shortest
    /// keep-alive; without the limit all three stay.
    #[tokio::test(start_paused = true)]
    async fn a_model_past_max_loaded_evicts_the_idle_one_with_the_shortest_keep_alive() {
        for max_loaded in [Some(2), None] {
            let s = node(
                [1, 1, 1],
                Limits {
                    max_loaded,
                    memory: None,
                },
            );
            let metrics = Metrics::default();
            drop(take(&s, "b", &metrics, Some(Duration::from_secs(600))).await);
            drop(take(&s, "a", &metrics, Some(Duration::from_secs(900))).await);
            let c = take(&s, "c", &metrics, None).await;
            assert!(!c.resident);
            if max_loaded.is_none() {
                assert_eq!(loaded(&s), ["a:latest", "b:latest", "c:latest"]);
                assert_eq!((c.evicted, metrics.snapshot().evictions), (0, 0));
                continue;
            }
            // c's keep-alive is the node's 300 s, but c is the newcomer; of a (900 s) and b
            // (600 s), b goes.
            assert_eq!(loaded(&s), ["a:latest", "c:latest"]);
            assert_eq!((c.evicted, metrics.snapshot().evictions), (1, 1));
            let evicted = Unload::Evicted {
                pressure: Pressure::MaxLoaded,
                for_model: "c:latest".into(),
            };
            assert_eq!(unloads(&s), [("b:latest".to_owned(), evicted)]);
        }
    }

    /// When every runner is busy, the load waits for the victim's requests to finish, never
    /// fails; the eviction is recorded before the new load starts.
    #[tokio::test(start_paused = true)]
    async fn with_no_idle_runner_the_load_waits_for_the_victims_requests() {
        let s = one_runner();
        let metrics = Metrics::default();
        let busy = take(&s, "a", &metrics, None).await;
        let mut b = Box::pin(take(&s, "b", &metrics, None));
        assert!(futures_util::poll!(b.as_mut()).is_pending());
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(
            futures_util::poll!(b.as_mut()).is_pending(),
            "a is still busy"
        );
        // A new request for the victim is kept off it (it would wait for the load that follows).
        let mut a_again = Box::pin(take(&s, "a", &metrics, None));
        assert!(futures_util::poll!(a_again.as_mut()).is_pending());
        drop(busy);
        let b = b.await;
        assert!(b.waited >= Duration::from_secs(31), "30 s busy + 1 s load");
        assert_eq!(b.evicted, 1);
        let kinds: Vec<_> = s
            .residency_events()
            .events
            .into_iter()
            .map(|e| (e.model, e.kind))
            .collect();
        let b_load = kinds
            .iter()
            .position(|k| *k == ("b:latest".into(), EventKind::LoadStarted))
            .expect("b loaded");
        let a_out = kinds
            .iter()
            .position(|(m, k)| m == "a:latest" && matches!(k, EventKind::Unloaded { .. }))
            .expect("a evicted");
        assert!(a_out < b_load, "{kinds:?}");
        drop(b);
        // a comes back by evicting b, as a cold load.
        let a_again = a_again.await;
        assert!(!a_again.resident && a_again.evicted == 1);
    }

    /// A request that leaves while its eviction waits leaves the victim usable: the next
    /// request for it finds it resident.
    #[tokio::test(start_paused = true)]
    async fn a_request_leaving_an_eviction_wait_leaves_the_victim_usable() {
        let s = one_runner();
        let metrics = Metrics::default();
        let busy = take(&s, "a", &metrics, None).await;
        let mut b = Box::pin(take(&s, "b", &metrics, None));
        assert!(futures_util::poll!(b.as_mut()).is_pending());
        drop(b);
        let again = take(&s, "a", &metrics, None).await;
        assert!(again.resident, "the victim was released");
        drop((busy, again));
        assert_eq!(metrics.snapshot().evictions, 0);
    }

    /// Memory: runners are evicted until the new one fits, and the first model loads even
    /// when it does not fit at all.
    #[tokio::test(start_paused = true)]
    async fn a_model_that_does_not_fit_evicts_until_it_does() {
        let limits = Limits {
            max_loaded: None,
            memory: Some(10),
        };
        let s = node([4, 4, 6], limits);
        let metrics = Metrics::default();
        drop(take(&s, "a", &metrics, None).await);
        drop(take(&s, "b", &metrics, None).await);
        let c = take(&s, "c", &metrics, None).await;
        // 4 + 4 + 6 > 10: a (ties go by name) is evicted, and 4 + 6 fits.
        assert_eq!(c.evicted, 1);
        assert_eq!(loaded(&s), ["b:latest", "c:latest"]);
        drop(c);
        let huge = node([100, 1, 1], limits);
        let alone = take(&huge, "a", &metrics, None).await;
        assert!(
            huge.is_loaded(&model(&huge, "a")),
            "the first model always loads"
        );
        drop(alone);
    }

    /// A request with another `num_ctx` reloads the model (counted, with the field), each
    /// alternation again; the same options do not.
    #[tokio::test(start_paused = true)]
    async fn other_runner_options_reload_the_model_on_every_alternation() {
        let s = node([1, 1, 1], Limits::default());
        let metrics = Metrics::default();
        let a = model(&s, "a");
        let small = RunnerOptions::default();
        let large = RunnerOptions {
            num_ctx: 8192,
            ..small
        };
        let mut reloads = Vec::new();
        for options in [small, small, large, large, small] {
            let got = s.acquire_model(&a, &metrics, options, None).await.unwrap();
            reloads.push(got.reload);
        }
        assert_eq!(
            reloads,
            [None, None, Some("num_ctx"), None, Some("num_ctx")]
        );
        let counts = metrics.snapshot();
        assert_eq!((counts.reloads, counts.loads, counts.evictions), (2, 3, 0));
        assert_eq!(s.runner_options(&a), Some(small));
    }

    /// An idle model whose keep-alive ran out is recorded as expired at the moment it did, and
    /// no longer counts toward the limit.
    #[tokio::test(start_paused = true)]
    async fn an_expired_model_is_recorded_and_frees_its_place() {
        let s = one_runner();
        let metrics = Metrics::default();
        drop(take(&s, "a", &metrics, Some(Duration::from_secs(5))).await);
        tokio::time::advance(Duration::from_secs(60)).await;
        let b = take(&s, "b", &metrics, None).await;
        assert_eq!(b.evicted, 0, "a had expired");
        assert_eq!(unloads(&s), [("a:latest".to_owned(), Unload::Expired)]);
        let expired = s
            .residency_events()
            .events
            .into_iter()
            .find(|e| matches!(e.kind, EventKind::Unloaded { .. }))
            .expect("recorded");
        let loaded = s.residency_events().events[1].at_ns;
        // Loaded at 1 s (the load), idle from then, expired 5 s later.
        assert_eq!(expired.at_ns - loaded, 5_000_000_000);
    }
}
