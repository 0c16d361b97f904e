//! One model's runtime state on a node: whether its runner is loaded, with which options and
//! keep-alive, who is using it, and the guard that marks a request as one of its users.
//!
//! Everything a load, an eviction or an expiry decides on sits behind one mutex per model
//! ([`Runner`]), so a request that becomes a user and an eviction that waits for none cannot
//! miss each other; it is taken briefly, never across an `.await`.

use std::collections::VecDeque;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use crate::embedding::EmbeddingTable;
use crate::models::ModelSpec;
use crate::residency::RunnerOptions;

/// How far away "forever" is: a negative `keep_alive` (Ollama's "never unload") is
/// `Duration::MAX`, which no clock can add; 30 years is what tokio uses for a timer that never
/// fires.
pub(super) const FOREVER: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `at + by`, with `by` capped at [`FOREVER`] (a clock that could not hold even that would give
/// `at` itself).
pub(super) fn later(at: Instant, by: Duration) -> Instant {
    at.checked_add(by.min(FOREVER)).unwrap_or(at)
}

/// The state of a model's runner.
#[derive(Debug, Default)]
pub(super) struct Runner {
    /// When the model last became idle or was loaded; `None` while unloaded.
    pub(super) last_used: Option<Instant>,
    /// Requests using the model now (they keep it loaded whatever its keep-alive).
    pub(super) users: u64,
    /// The keep-alive the last request that set one gave the loaded model; `None`: the node's.
    /// As Ollama's runner keeps its `sessionDuration` (`useLoadedRunner` in `server/sched.go`,
    /// ollama/ollama@09f1587): a request without `keep_alive` leaves it as it is, a load starts
    /// from the loading request's or the server's default.
    pub(super) keep_alive: Option<Duration>,
    /// The options the loaded runner was started with.
    pub(super) options: RunnerOptions,
    /// Chosen for an eviction or a reload: no new request uses it, they wait for what follows.
    pub(super) evicting: bool,
    /// A load is under way: the runner takes memory but cannot be evicted yet.
    pub(super) loading: bool,
}

impl Runner {
    /// Marks the runner unloaded and forgets the keep-alive its requests gave it: the next load
    /// starts from its own request's or the node's.
    pub(super) fn unload(&mut self) {
        self.last_used = None;
        self.keep_alive = None;
    }
}

/// Runtime state of one model on one node.
#[derive(Debug)]
pub struct ModelRuntime {
    /// The model's description.
    pub spec: ModelSpec,
    /// Pre-formatted vectors, for embedding models.
    pub embeddings: Option<Arc<EmbeddingTable>>,
    pub(super) slots: Arc<Semaphore>,
    /// Slots the model has now (the semaphore's size, changed by the control API).
    pub(super) slots_total: AtomicUsize,
    /// Serialises this model's cold path, so concurrent first requests wait for one load.
    pub(super) loading: tokio::sync::Mutex<()>,
    pub(super) runner: Mutex<Runner>,
    /// Woken when the last user leaves, for an eviction waiting on it.
    pub(super) idle: Notify,
    /// When each recently freed slot was freed, oldest first (at most one per slot).
    pub(super) released: Mutex<VecDeque<std::time::Instant>>,
    /// The prompt each slot last processed, for the prompt cache.
    caches: Mutex<Vec<CacheSlot>>,
}

/// What one slot's prompt cache holds.
#[derive(Debug, Default)]
struct CacheSlot {
    /// The prompt it last processed.
    text: String,
    /// Taken by a request now.
    in_use: bool,
}

/// Characters two texts share from their start.
fn common_prefix(a: &str, b: &str) -> usize {
    a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count()
}

impl ModelRuntime {
    /// A model not loaded, with `slots` slots.
    pub(super) fn new(
        spec: ModelSpec,
        embeddings: Option<Arc<EmbeddingTable>>,
        slots: usize,
    ) -> Self {
        Self {
            spec,
            embeddings,
            slots: Arc::new(Semaphore::new(slots)),
            slots_total: AtomicUsize::new(slots),
            loading: tokio::sync::Mutex::new(()),
            runner: Mutex::default(),
            idle: Notify::new(),
            released: Mutex::new(VecDeque::with_capacity(slots)),
            caches: Mutex::default(),
        }
    }

    /// Takes the free cache slot sharing the longest prefix with `prompt` (the first on a tie),
    /// as Ollama's runner does (`findLongestCacheSlot` in `runner/ollamarunner/cache.go`,
    /// v0.24.0), and gives it `prompt`: its index and the characters it already held.
    pub(super) fn take_cache(&self, prompt: &str) -> (usize, usize) {
        let mut caches = self.caches.lock().unwrap_or_else(PoisonError::into_inner);
        let slots = self.slots_total.load(std::sync::atomic::Ordering::Relaxed);
        if caches.iter().filter(|c| !c.in_use).count() == 0 || caches.len() < slots {
            caches.push(CacheSlot::default());
        }
        // The longest shared prefix; on a tie the first slot, as Ollama's strict `>` keeps it.
        let (index, shared) = caches
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.in_use)
            .map(|(i, c)| (i, common_prefix(&c.text, prompt)))
            .min_by_key(|&(i, n)| (std::cmp::Reverse(n), i))
            .unwrap_or((0, 0));
        let cache = &mut caches[index];
        cache.in_use = true;
        cache.text.clear();
        cache.text.push_str(prompt);
        (index, shared)
    }

    /// Gives a cache slot back.
    pub(super) fn return_cache(&self, index: usize) {
        let mut caches = self.caches.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(cache) = caches.get_mut(index) {
            cache.in_use = false;
        }
    }

    /// Unloads the runner: not loaded, its keep-alive forgotten, its slots' caches empty.
    pub(super) fn unload(&self) {
        self.runner().unload();
        self.clear_caches();
    }

    /// Empties every slot's cache (the runner was unloaded).
    pub(super) fn clear_caches(&self) {
        let mut caches = self.caches.lock().unwrap_or_else(PoisonError::into_inner);
        for cache in caches.iter_mut() {
            cache.text.clear();
        }
    }

    pub(super) fn runner(&self) -> MutexGuard<'_, Runner> {
        self.runner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The oldest recorded slot release, if any.
    pub(super) fn take_release(&self) -> Option<std::time::Instant> {
        self.released
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }

    /// Waits until no request uses the model; new ones must already be kept away (`evicting`).
    pub(super) async fn until_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a user leaving in between still wakes this.
            notified.as_mut().enable();
            if self.runner().users == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Keeps a model marked in use; on drop the keep-alive clock restarts.
#[derive(Debug)]
pub struct InUse(pub(super) Arc<ModelRuntime>);

impl InUse {
    /// Counts one more user of `model` (the caller holds its runner lock as `runner`).
    pub(super) fn enter(model: &Arc<ModelRuntime>, runner: &mut Runner) -> Self {
        runner.users += 1;
        Self(Arc::clone(model))
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        // Restarts the keep-alive clock of a loaded model. A model whose load never finished
        // (its only request left during the load) stays unloaded: the next request loads it.
        let mut runner = self.0.runner();
        if let Some(at) = runner.last_used.as_mut() {
            *at = Instant::now();
        }
        runner.users = runner.users.saturating_sub(1);
        let idle = runner.users == 0;
        drop(runner);
        if idle {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ModelSpec;

    /// The free slot with the longest shared prefix is taken; a slot in use is skipped even
    /// when it shares more; an unload empties every cache.
    #[test]
    fn the_free_cache_with_the_longest_prefix_is_taken() {
        let model = ModelRuntime::new(ModelSpec::generation("m", "llama", "1B", 1), None, 3);
        let (a, _) = model.take_cache("the cat sat");
        let (b, _) = model.take_cache("the dog ran");
        let (c, _) = model.take_cache("a bird flew");
        assert_eq!([a, b, c], [0, 1, 2], "three slots, each new");
        for index in [a, b, c] {
            model.return_cache(index);
        }
        assert_eq!(model.take_cache("the dog ran far"), (1, 11));
        // Slot 1 is in use: of the free ones, "the cat sat" shares "the ".
        assert_eq!(model.take_cache("the dog sat"), (0, 4));
        model.return_cache(0);
        model.return_cache(1);
        model.clear_caches();
        assert_eq!(model.take_cache("the dog ran far").1, 0);
    }
}
