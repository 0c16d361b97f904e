//! Broken twins: every property a loom model claims, shown failing on a ledger broken in exactly
//! that way, so a model that stops checking breaks these tests.
//!
//! Each twin is the shipped ledger code instantiated with a test-only sync family (as the racy
//! canary is) or set up through the same seam the gate's degraded pools use:
//!
//! | model | twin | what is broken |
//! |---|---|---|
//! | `snapshot_is_consistent` | `AtomicCore<Unordered<LoomSync>>` | every `Release`/`Acquire` made `Relaxed` |
//! | `removal_is_safe` | `AtomicCore<Unfenced<LoomSync>>` | the `SeqCst` fences of the removal handshake |
//! | `round_robin_is_fair` | both ledgers with `stick_cursor` | a cursor that never advances |
//! | lost updates (`canary.rs`) | `AtomicCore<Racy<_>>` | read-modify-writes split into load and store |

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::loom_models::{removal_is_safe, round_robin_is_fair, snapshot_is_consistent};
use crate::ledger::{AtomicCore, MutexCore};
use crate::sync::test_families::{LoomSync, Unfenced, Unordered};

/// The panic message of `check`, or `None` when it passes (a loom model reports a violation by
/// panicking with the assertion that failed).
fn failure(check: impl FnOnce()) -> Option<String> {
    let payload = catch_unwind(AssertUnwindSafe(check)).err()?;
    Some(
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default(),
    )
}

/// Asserts that `check` fails with a message containing one of `reasons`: the model's own
/// assertion, not some other panic.
pub(crate) fn assert_caught(what: &str, check: impl FnOnce(), reasons: &[&str]) {
    let message = failure(check).unwrap_or_else(|| panic!("{what} passed the model"));
    assert!(
        reasons.iter().any(|r| message.contains(r)),
        "{what} failed for another reason: {message}"
    );
}

#[test]
fn the_snapshot_model_catches_relaxed_orderings() {
    assert_caught(
        "a snapshot with every ordering Relaxed",
        snapshot_is_consistent::<AtomicCore<Unordered<LoomSync>>>,
        &["effect before cause"],
    );
}

#[test]
fn the_removal_model_catches_a_missing_fence() {
    assert_caught(
        "removal without the Dekker fences",
        removal_is_safe::<AtomicCore<Unfenced<LoomSync>>>,
        &["in flight to it", "whose removal had completed"],
    );
}

#[test]
fn the_fairness_model_catches_a_stuck_cursor() {
    let ticket_twice = ["handed out a ticket twice"];
    assert_caught(
        "the atomic ledger with a stuck cursor",
        || round_robin_is_fair::<AtomicCore<LoomSync>>(AtomicCore::stick_cursor),
        &ticket_twice,
    );
    assert_caught(
        "the mutex ledger with a stuck cursor",
        || round_robin_is_fair::<MutexCore<LoomSync>>(MutexCore::stick_cursor),
        &ticket_twice,
    );
}
