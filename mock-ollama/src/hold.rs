//! Holds: a test hook that keeps a node's work from finishing until the test lets it.
//!
//! A test that must observe a node in a state ("one request served, one queued", "a model
//! loading") could make that state last long (a 300 ms service) and hope its poller looks in
//! time, which a slow or loaded machine breaks. A [`HoldGuard`] makes the state last exactly as long
//! as the test wants instead: while one is alive, every service, model load or control-plane
//! answer of its kind that reaches its end waits there, holding its slot, until the guard drops.
//! With no guard alive the cost is one uncontended read of a `watch` cell per wait.

use std::sync::Arc;

use tokio::sync::watch;

/// What a hold stops from finishing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Inference services: each embed item, each non-streamed generation (streamed answers pace
    /// their own tokens and are not held).
    Service,
    /// Model loads (a cold model's `load_time`).
    Load,
    /// `/api/tags` and `/api/ps` answers (the control plane).
    ControlPlane,
}

/// The hold counts of one node, one per [`Held`] kind.
#[derive(Debug)]
pub(crate) struct Holds([watch::Sender<u32>; 3]);

impl Default for Holds {
    fn default() -> Self {
        Self(std::array::from_fn(|_| watch::Sender::new(0)))
    }
}

impl Holds {
    fn cell(&self, what: Held) -> &watch::Sender<u32> {
        &self.0[what as usize]
    }

    /// Returns once no hold of kind `what` is alive: `false` at once when none was, `true`
    /// after waiting for the last one to drop.
    pub(crate) async fn released(&self, what: Held) -> bool {
        let cell = self.cell(what);
        if *cell.borrow() == 0 {
            return false;
        }
        // The sender lives in `self`, so the wait can only end by the count reaching 0.
        let _ = cell.subscribe().wait_for(|holds| *holds == 0).await;
        true
    }

    /// Holds work of kind `what` until the guard drops.
    pub(crate) fn hold(self: &Arc<Self>, what: Held) -> HoldGuard {
        self.cell(what).send_modify(|holds| *holds += 1);
        HoldGuard {
            holds: Arc::clone(self),
            what,
        }
    }
}

/// Keeps one kind of a node's work from finishing while alive ([`crate::MockNode::hold`]).
#[derive(Debug)]
#[must_use = "the hold ends when the guard drops"]
pub struct HoldGuard {
    holds: Arc<Holds>,
    what: Held,
}

impl Drop for HoldGuard {
    fn drop(&mut self) {
        self.holds
            .cell(self.what)
            .send_modify(|holds| *holds = holds.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_ends_only_when_every_hold_of_its_kind_is_released() {
        let holds = Arc::new(Holds::default());
        let first = holds.hold(Held::Service);
        let second = holds.hold(Held::Service);
        let waiter = tokio::spawn({
            let holds = Arc::clone(&holds);
            async move { holds.released(Held::Service).await }
        });
        // Another kind is not held.
        holds.released(Held::ControlPlane).await;
        drop(first);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one hold is still alive");
        drop(second);
        waiter.await.unwrap();
        holds.released(Held::Service).await;
    }
}
