//! CPU time of the harness's process and of the children it has waited for, from `/proc`.
//!
//! A driver's processes are gone by the time its run is judged, so their CPU time cannot be
//! sampled from their own `/proc` entries; the kernel adds a waited-for child's time (and that of
//! its waited-for descendants: `sh` waits for the driver, the driver for its workers) to the
//! parent's `cutime`/`cstime`. The harness starts no other children while a driver runs, so the
//! difference over a run is the driver's. Elsewhere than Linux both read zero.

use std::time::Duration;

/// User plus system time of the waited-for children so far.
#[cfg(target_os = "linux")]
pub fn children() -> Duration {
    read(|s| s.cutime + s.cstime)
}

/// User plus system time of this process so far (every thread: embedded nodes included).
#[cfg(target_os = "linux")]
pub fn own() -> Duration {
    read(|s| (s.utime + s.stime) as i64)
}

#[cfg(target_os = "linux")]
fn read(ticks: impl Fn(&procfs::process::Stat) -> i64) -> Duration {
    let per_second = procfs::ticks_per_second().max(1) as f64;
    procfs::process::Process::myself()
        .and_then(|p| p.stat())
        .map_or(Duration::ZERO, |s| {
            Duration::from_secs_f64(ticks(&s).max(0) as f64 / per_second)
        })
}

/// Not measured here.
#[cfg(not(target_os = "linux"))]
pub fn children() -> Duration {
    Duration::ZERO
}

/// Not measured here.
#[cfg(not(target_os = "linux"))]
pub fn own() -> Duration {
    Duration::ZERO
}
