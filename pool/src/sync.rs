//! The one place that decides which synchronisation primitives the ledgers use.
//!
//! Both ledgers are generic over a [`SyncFamily`]: production code uses [`StdSync`] (std atomics,
//! `std::sync::Mutex`, `arc-swap`), while the loom models in `src/tests/` instantiate the *same*
//! ledger code with loom's primitives, so a plain `cargo test` model-checks what ships, with no
//! `--cfg loom` and no RUSTFLAGS (pattern A of the research notes; tokio's `src/loom/` shim is the
//! model for keeping the choice in one module).
//!
//! The facade defines the API and every backend adapts to it: locks are closure-scoped and never
//! poison (a panic inside a critical section must not turn every later request into an error), and
//! the RCU cell is read through a closure so no backend has to hand out a guard type.

use std::sync::atomic::Ordering;

/// An atomic `u64`, as the ledgers use it.
pub trait Counter: Send + Sync + std::fmt::Debug {
    /// A counter starting at `value`.
    fn new(value: u64) -> Self;
    /// Atomic load.
    fn load(&self, order: Ordering) -> u64;
    /// Atomic store.
    fn store(&self, value: u64, order: Ordering);
    /// Atomic add; returns the previous value.
    fn fetch_add(&self, value: u64, order: Ordering) -> u64;
    /// Atomic subtract; returns the previous value.
    fn fetch_sub(&self, value: u64, order: Ordering) -> u64;
}

/// A mutual-exclusion lock with a closure-scoped critical section.
pub trait Lock<T>: Send + Sync {
    /// A lock around `value`.
    fn new(value: T) -> Self;
    /// Runs `f` with exclusive access. A poisoned lock is recovered, not propagated.
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R;
}

/// A read-copy-update cell: readers never block, writers publish a whole new value.
pub trait Rcu<T>: Send + Sync {
    /// A cell holding `value`.
    fn new(value: T) -> Self;
    /// Runs `f` on the current value.
    fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R;
    /// Replaces the value with `f(current)`; `f` may run more than once under contention.
    fn update(&self, f: impl FnMut(&T) -> T);
}

/// A family of primitives the ledgers are generic over.
pub trait SyncFamily: Send + Sync + std::fmt::Debug + 'static {
    /// Atomic counter type.
    type Counter: Counter;
    /// Lock type. `Clone` on the guarded value costs production nothing and lets the test-only
    /// `Split` twin copy the value out and write it back later (a critical section split in two).
    type Lock<T: Send + Clone>: Lock<T>;
    /// RCU cell type.
    type Rcu<T: Send + Sync + 'static>: Rcu<T>;
    /// Lets another thread run (the racy canary yields inside its read-modify-write to widen
    /// the race; under loom a spin-wait must yield, or loom reports a livelock).
    #[cfg(test)]
    fn yield_now();
    /// A sequentially consistent fence. The node-removal handshake is a Dekker pattern; loom
    /// treats `SeqCst` accesses as `AcqRel` (a documented false alarm for Dekker) but models
    /// `SeqCst` fences exactly, so the handshake is written with fences.
    fn fence();
    /// Waits a little before polling again (draining a removed node waits for HTTP requests,
    /// which take milliseconds: spinning would steal a core from them).
    fn backoff();
}

/// Production primitives: std atomics, `std::sync::Mutex`, `arc_swap::ArcSwap`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdSync;

/// Implements [`Counter`] for an atomic type with std's method names (std's and loom's).
macro_rules! delegate_counter {
    ($atomic:ty) => {
        impl Counter for $atomic {
            fn new(value: u64) -> Self {
                <$atomic>::new(value)
            }
            fn load(&self, order: Ordering) -> u64 {
                <$atomic>::load(self, order)
            }
            fn store(&self, value: u64, order: Ordering) {
                <$atomic>::store(self, value, order)
            }
            fn fetch_add(&self, value: u64, order: Ordering) -> u64 {
                <$atomic>::fetch_add(self, value, order)
            }
            fn fetch_sub(&self, value: u64, order: Ordering) -> u64 {
                <$atomic>::fetch_sub(self, value, order)
            }
        }
    };
}

delegate_counter!(std::sync::atomic::AtomicU64);

/// `std::sync::Mutex` without poisoning.
#[derive(Debug, Default)]
pub struct StdLock<T>(std::sync::Mutex<T>);

impl<T: Send> Lock<T> for StdLock<T> {
    fn new(value: T) -> Self {
        Self(std::sync::Mutex::new(value))
    }
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let mut guard = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }
}

/// `arc_swap::ArcSwap`: lock-free reads, so adding or removing a node never blocks a request.
#[derive(Debug)]
pub struct StdRcu<T>(arc_swap::ArcSwap<T>);

impl<T: Send + Sync + 'static> Rcu<T> for StdRcu<T> {
    fn new(value: T) -> Self {
        Self(arc_swap::ArcSwap::from_pointee(value))
    }
    fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.0.load())
    }
    fn update(&self, mut f: impl FnMut(&T) -> T) {
        self.0.rcu(|current| f(current));
    }
}

impl SyncFamily for StdSync {
    type Counter = std::sync::atomic::AtomicU64;
    type Lock<T: Send + Clone> = StdLock<T>;
    type Rcu<T: Send + Sync + 'static> = StdRcu<T>;
    #[cfg(test)]
    fn yield_now() {
        std::thread::yield_now();
    }
    fn fence() {
        std::sync::atomic::fence(Ordering::SeqCst);
    }
    fn backoff() {
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

#[cfg(test)]
pub(crate) mod test_families {
    //! Families that exist only for tests: loom's primitives, the racy canary, and the broken
    //! twins (orderings weakened, fences removed) that each checker must be seen catching.

    use super::*;
    use std::marker::PhantomData;

    /// The `SyncFamily` functions a twin takes unchanged from the family `$f` it wraps (all three,
    /// or those named).
    macro_rules! forward_to {
        ($f:ident) => {
            forward_to!($f, yield_now, fence, backoff);
        };
        ($f:ident, $($name:ident),+) => {
            $(fn $name() {
                $f::$name();
            })+
        };
    }
    use std::sync::Arc;

    /// loom's primitives, so loom explores every interleaving of the real ledger code.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct LoomSync;

    delegate_counter!(loom::sync::atomic::AtomicU64);

    /// loom's mutex (which never poisons).
    #[derive(Debug)]
    pub struct LoomLock<T>(loom::sync::Mutex<T>);

    impl<T: Send> Lock<T> for LoomLock<T> {
        fn new(value: T) -> Self {
            Self(loom::sync::Mutex::new(value))
        }
        fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
            f(&mut self.0.lock().unwrap())
        }
    }

    /// RCU modelled as a loom mutex around an `Arc`: arc-swap is not loom-aware, so the model
    /// checks the ledger's use of "publish a new list" rather than arc-swap's internals.
    #[derive(Debug)]
    pub struct LoomRcu<T>(loom::sync::Mutex<Arc<T>>);

    impl<T: Send + Sync + 'static> Rcu<T> for LoomRcu<T> {
        fn new(value: T) -> Self {
            Self(loom::sync::Mutex::new(Arc::new(value)))
        }
        fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
            let current = Arc::clone(&self.0.lock().unwrap());
            f(&current)
        }
        fn update(&self, mut f: impl FnMut(&T) -> T) {
            let mut current = self.0.lock().unwrap();
            *current = Arc::new(f(&current));
        }
    }

    impl SyncFamily for LoomSync {
        type Counter = loom::sync::atomic::AtomicU64;
        type Lock<T: Send + Clone> = LoomLock<T>;
        type Rcu<T: Send + Sync + 'static> = LoomRcu<T>;
        fn yield_now() {
            loom::thread::yield_now();
        }
        fn fence() {
            loom::sync::atomic::fence(Ordering::SeqCst);
        }
        fn backoff() {
            loom::thread::yield_now();
        }
    }

    /// Broken twin: `F`'s primitives with every ordering the ledgers ask for replaced by
    /// `Relaxed` (fences kept). The snapshot model must catch it.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Unordered<F>(PhantomData<F>);

    /// A counter that ignores the ordering it is given.
    #[derive(Debug)]
    pub struct UnorderedCounter<F: SyncFamily>(F::Counter);

    impl<F: SyncFamily> Counter for UnorderedCounter<F> {
        fn new(value: u64) -> Self {
            Self(F::Counter::new(value))
        }
        fn load(&self, _: Ordering) -> u64 {
            self.0.load(Ordering::Relaxed)
        }
        fn store(&self, value: u64, _: Ordering) {
            self.0.store(value, Ordering::Relaxed)
        }
        fn fetch_add(&self, value: u64, _: Ordering) -> u64 {
            self.0.fetch_add(value, Ordering::Relaxed)
        }
        fn fetch_sub(&self, value: u64, _: Ordering) -> u64 {
            self.0.fetch_sub(value, Ordering::Relaxed)
        }
    }

    impl<F: SyncFamily> SyncFamily for Unordered<F> {
        type Counter = UnorderedCounter<F>;
        type Lock<T: Send + Clone> = F::Lock<T>;
        type Rcu<T: Send + Sync + 'static> = F::Rcu<T>;
        forward_to!(F);
    }

    /// Broken twin: `F`'s primitives without the `SeqCst` fences of the node-removal handshake.
    /// The removal model must catch it.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Unfenced<F>(PhantomData<F>);

    impl<F: SyncFamily> SyncFamily for Unfenced<F> {
        type Counter = F::Counter;
        type Lock<T: Send + Clone> = F::Lock<T>;
        type Rcu<T: Send + Sync + 'static> = F::Rcu<T>;
        forward_to!(F, yield_now, backoff);
        fn fence() {}
    }

    /// Broken twin: `F`'s primitives with each critical section split in two, as in Python's
    /// `with lock: seen = self.book` then `self.book = changed(seen)` outside it: the value is
    /// copied out under the lock, changed with the lock released, and written back under it, so a
    /// concurrent section's changes are overwritten. Every lost-update checker must catch it on the
    /// mutex ledger, whose counters are plain integers behind its one lock.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Split<F>(PhantomData<F>);

    /// A lock whose critical section does not exclude: copy out, change, write back.
    pub struct SplitLock<F: SyncFamily, T: Send + Clone>(F::Lock<T>);

    impl<F: SyncFamily, T: Send + Clone> Lock<T> for SplitLock<F, T> {
        fn new(value: T) -> Self {
            Self(F::Lock::new(value))
        }
        fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
            let mut copy = self.0.with(|value| value.clone());
            F::yield_now();
            let result = f(&mut copy);
            self.0.with(|value| *value = copy);
            result
        }
    }

    impl<F: SyncFamily> SyncFamily for Split<F> {
        type Counter = F::Counter;
        type Lock<T: Send + Clone> = SplitLock<F, T>;
        type Rcu<T: Send + Sync + 'static> = F::Rcu<T>;
        forward_to!(F);
    }

    /// The canary: `F`'s primitives, except that `fetch_add`/`fetch_sub` are a load, a yield and
    /// a store, the way Python's `self.x += 1` behaves without a lock. Any checker that claims to
    /// catch lost updates must catch this one.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Racy<F>(PhantomData<F>);

    /// A counter whose read-modify-write is not atomic.
    #[derive(Debug)]
    pub struct RacyCounter<F: SyncFamily>(F::Counter);

    impl<F: SyncFamily> Counter for RacyCounter<F> {
        fn new(value: u64) -> Self {
            Self(F::Counter::new(value))
        }
        fn load(&self, order: Ordering) -> u64 {
            self.0.load(order)
        }
        fn store(&self, value: u64, order: Ordering) {
            self.0.store(value, order)
        }
        fn fetch_add(&self, value: u64, _: Ordering) -> u64 {
            let seen = self.0.load(Ordering::Relaxed);
            F::yield_now();
            self.0.store(seen.wrapping_add(value), Ordering::Relaxed);
            seen
        }
        fn fetch_sub(&self, value: u64, _: Ordering) -> u64 {
            let seen = self.0.load(Ordering::Relaxed);
            F::yield_now();
            self.0.store(seen.wrapping_sub(value), Ordering::Relaxed);
            seen
        }
    }

    impl<F: SyncFamily> SyncFamily for Racy<F> {
        type Counter = RacyCounter<F>;
        type Lock<T: Send + Clone> = F::Lock<T>;
        type Rcu<T: Send + Sync + 'static> = F::Rcu<T>;
        forward_to!(F);
    }
}
