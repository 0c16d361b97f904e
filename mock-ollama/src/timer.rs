//! Service times met to the microsecond: one timer thread for the process, instead of tokio's
//! millisecond timer wheel.
//!
//! tokio rounds every sleep up to its 1 ms tick and wakes the task on the next turn of a worker,
//! so a 500 us service took 1.28 ms and a 5 ms one 6.7 ms (issue 12): the mock could not simulate
//! a fast node, and every capacity it reported was off by a third to a half. Here a sleep
//! registers its deadline with a dedicated thread that parks until the earliest deadline
//! (`thread::park_timeout`, a futex wait with an absolute high-resolution timeout) and completes
//! the due sleeps through oneshot channels. The thread never spins: one wake-up per deadline
//! (several deadlines due together share one), so its CPU cost grows with the sleep rate, not the
//! precision. On Linux it sets its timer slack to 1 ns; with the default 50 us slack every wake-up
//! would be up to 50 us late. What is left is wake-up latency (the timer thread's, then the tokio
//! worker's, larger after a longer idle): each length of sleep learns how late it ends and the
//! thread fires that much earlier (`Lead`), so most sleeps end a few microseconds late and
//! about one in ten a little early. `harness run calibrate` measures the precision and the CPU cost of
//! this timer against tokio's, side by side.
//!
//! Which timer a node uses is [`crate::config::Timer`]; tests that run on tokio's paused clock use
//! [`Timer::Tokio`], whose sleeps the paused clock controls.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::config::Timer;

/// Sleeps `duration` with `timer`. Cancel-safe: dropping the future abandons the sleep.
pub async fn sleep(timer: Timer, duration: Duration) {
    if duration.is_zero() {
        return;
    }
    match timer {
        Timer::Tokio => tokio::time::sleep(duration).await,
        Timer::Precise => precise(duration).await,
    }
}

/// Sleeps until `deadline` with `timer` (at once if it has passed).
pub async fn sleep_until(timer: Timer, deadline: Instant) {
    sleep(timer, deadline.saturating_duration_since(Instant::now())).await;
}

/// Completes at `deadline`: the timer thread fires early by the lead of this length of sleep,
/// and how late the sleeping task resumed teaches the lead.
async fn precise(duration: Duration) {
    let deadline = Instant::now() + duration;
    let class = Lead::class(duration);
    let fire_at = deadline - Lead::of(class).min(duration);
    let (done, wait) = oneshot::channel();
    register(Pending {
        fire_at,
        slack: (duration / SLACK_DIVISOR).min(MAX_SLACK),
        order: 0,
        done,
    });
    // The sender is only dropped after sending (or if the timer thread died, which ends the
    // sleep early rather than hanging it).
    let _ = wait.await;
    Lead::learn(class, Instant::now(), deadline);
}

/// How early to fire, learnt per class of sleep length (a power of two of microseconds): a sleep
/// of seconds wakes the CPU from a deeper idle state than one of microseconds, and is later by
/// more. The lead tracks the **10th percentile** of how late sleeping tasks resume (the timer
/// thread's wake-up plus the hand-off to a runtime worker), by stochastic approximation: a late
/// resume raises it by 1 us, an early or on-time one lowers it by 9 us, which settles where 10%
/// of resumes are early. So at most about a tenth of sleeps end early, by little, and the
/// typical one ends a few microseconds late. Three versions were measured before this one: a
/// mean of resume lateness (a few millisecond-late wake-ups on this VM pulled it so far that
/// typical sleeps ended 20% early), a bounded-step mean (under load, when every resume waits
/// for a busy worker, it climbed until a 200 us service took 55 us), and the timer thread's own
/// wake-up only (never early, but 25-40 us late: one node then served 0.957 of its capacity at
/// 2 ms). It is capped at 2 ms.
struct Lead;

const CLASSES: usize = 24;
const MAX_LEAD_NS: i64 = 2_000_000;
/// The target quantile is UP / (UP + DOWN) = 0.1.
const UP_NS: i64 = 1_000;
const DOWN_NS: i64 = 9_000;
static LEADS: [AtomicI64; CLASSES] = [const { AtomicI64::new(0) }; CLASSES];

impl Lead {
    fn class(duration: Duration) -> usize {
        let us = duration.as_micros().max(1);
        (127 - us.leading_zeros() as usize).min(CLASSES - 1)
    }

    fn of(class: usize) -> Duration {
        Duration::from_nanos(LEADS[class].load(Ordering::Relaxed).max(0) as u64)
    }

    /// `resumed` is when the task sleeping until `deadline` ran again.
    fn learn(class: usize, resumed: Instant, deadline: Instant) {
        let step = if resumed > deadline { UP_NS } else { -DOWN_NS };
        // Relaxed: each lead is one independent estimate; a lost race costs one update.
        let _ = LEADS[class].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |lead| {
            Some((lead + step).clamp(0, MAX_LEAD_NS))
        });
    }
}

/// How early a sleep may end to share its timer thread's wake-up with an earlier one: a
/// thousandth of its length, at most 50 us. A 50 ms token may end 50 us early; a 500 us service
/// only 0.5 us. With a thousand streams pacing their tokens, many deadlines fall within that of
/// each other, and each wake-up the thread saves is a futex wait and a context switch (the
/// precise timer cost 1.98x a plain handler's CPU per token before this, 2 x 18 us of 45 us;
/// `benches/stream_cost.rs`).
const SLACK_DIVISOR: u32 = 1_000;
const MAX_SLACK: Duration = Duration::from_micros(50);

/// A pending sleep: when to fire it (its deadline minus the lead), how much earlier it may be
/// fired with another, an order of arrival (ties in the heap), and how to end it.
struct Pending {
    fire_at: Instant,
    slack: Duration,
    order: u64,
    done: oneshot::Sender<()>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.fire_at, self.order) == (other.fire_at, other.order)
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.fire_at, self.order).cmp(&(other.fire_at, other.order))
    }
}

/// The pending sleeps, earliest first.
struct Queue {
    heap: BinaryHeap<Reverse<Pending>>,
    next_order: u64,
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue {
    heap: BinaryHeap::new(),
    next_order: 0,
});

/// The timer thread, started on first use; `None` if it could not be started.
fn timer_thread() -> Option<&'static Thread> {
    static THREAD: OnceLock<Option<Thread>> = OnceLock::new();
    THREAD
        .get_or_init(|| {
            std::thread::Builder::new()
                .name("mock-timer".into())
                .spawn(run)
                .ok()
                .map(|handle| handle.thread().clone())
        })
        .as_ref()
}

/// Starts the timer thread if it is not running yet. Nodes on the precise timer call it when
/// they start, so the thread (one per process, never stopped) exists from then on rather than
/// appearing at the first request.
pub fn start() {
    let _ = timer_thread();
}

fn queue() -> std::sync::MutexGuard<'static, Queue> {
    QUEUE.lock().unwrap_or_else(PoisonError::into_inner)
}

fn register(mut pending: Pending) {
    let Some(thread) = timer_thread() else {
        // No timer thread: the sleep ends at once. A node that cannot time its service answers
        // too fast; it does not hang.
        let _ = pending.done.send(());
        return;
    };
    let mut queue = queue();
    let earliest = queue
        .heap
        .peek()
        .is_none_or(|Reverse(p)| pending.fire_at < p.fire_at);
    pending.order = queue.next_order;
    queue.next_order += 1;
    queue.heap.push(Reverse(pending));
    drop(queue);
    // Only a new earliest deadline changes how long the thread must park.
    if earliest {
        thread.unpark();
    }
}

/// Ends every sleep that is due at `now`, or within its slack of it; returns when to fire next.
fn fire_due(now: Instant) -> Option<Instant> {
    let mut queue = queue();
    while let Some(Reverse(next)) = queue.heap.peek() {
        if next.fire_at > now + next.slack {
            return Some(next.fire_at);
        }
        if let Some(Reverse(due)) = queue.heap.pop() {
            // The receiver is gone when the sleep was cancelled: nothing to end.
            let _ = due.done.send(());
        }
    }
    None
}

/// The timer thread's loop: end what is due, park until the next deadline or a new earlier one
/// (a spurious wake-up only costs one more pass).
fn run() {
    lower_timer_slack();
    loop {
        match fire_due(Instant::now()) {
            Some(next) => std::thread::park_timeout(next.saturating_duration_since(Instant::now())),
            None => std::thread::park(),
        }
    }
}

/// Sets the calling thread's timer slack to 1 ns on Linux (nothing elsewhere), as the timer
/// thread does; the harness's calibration uses it to measure the OS's own wake-up floor.
#[cfg(target_os = "linux")]
pub fn lower_timer_slack() {
    // 1 ns: the thread's sleeps end when asked, not up to 50 us later. Failing to set it only
    // costs precision.
    let _ = nix::sys::prctl::set_timerslack(1);
}

/// Sets the calling thread's timer slack to 1 ns on Linux (nothing elsewhere).
#[cfg(not(target_os = "linux"))]
pub fn lower_timer_slack() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sleeps_end_in_deadline_order_whatever_the_order_they_start_in() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for (label, ms) in [("c", 30u64), ("a", 10), ("b", 20)] {
            let tx = tx.clone();
            tokio::spawn(async move {
                sleep(Timer::Precise, Duration::from_millis(ms)).await;
                let _ = tx.send(label);
            });
        }
        drop(tx);
        let mut order = Vec::new();
        while let Some(label) = rx.recv().await {
            order.push(label);
        }
        assert_eq!(order, ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn a_sleep_ends_no_earlier_than_its_lead_allows() {
        for us in [1u64, 50, 250, 1000, 3000] {
            let asked = Duration::from_micros(us);
            let lead = Lead::of(Lead::class(asked));
            let started = Instant::now();
            sleep(Timer::Precise, asked).await;
            assert!(
                started.elapsed() + lead >= asked,
                "{asked:?} ended before its deadline minus the learnt lead {lead:?}"
            );
        }
    }

    #[test]
    fn the_lead_follows_lateness_and_stays_in_bounds() {
        let class = CLASSES - 1;
        let deadline = Instant::now();
        Lead::learn(class, deadline + Duration::from_secs(1), deadline);
        assert_eq!(
            Lead::of(class),
            Duration::from_nanos(UP_NS as u64),
            "however late, one resume moves the lead by one step"
        );
        for _ in 0..3000 {
            Lead::learn(class, deadline + Duration::from_secs(1), deadline);
        }
        assert_eq!(
            Lead::of(class),
            Duration::from_nanos(MAX_LEAD_NS as u64),
            "capped"
        );
        for _ in 0..300 {
            Lead::learn(class, deadline, deadline + Duration::from_secs(1));
        }
        assert_eq!(Lead::of(class), Duration::ZERO, "never negative");
        assert_eq!(Lead::class(Duration::from_micros(1)), 0);
        assert_eq!(Lead::class(Duration::from_micros(1024)), 10);
    }

    #[tokio::test]
    async fn cancelled_sleeps_do_not_block_later_ones() {
        let abandoned: Vec<_> = (0..100)
            .map(|_| tokio::spawn(sleep(Timer::Precise, Duration::from_secs(3600))))
            .collect();
        for task in &abandoned {
            task.abort();
        }
        // A later, shorter sleep still ends (no lost wake-up behind the abandoned ones).
        sleep(Timer::Precise, Duration::from_millis(1)).await;
        for task in abandoned {
            assert!(task.await.is_err_and(|e| e.is_cancelled()));
        }
    }
}
