//! The gateway's own footprint when the harness runs it (`--cmd`): resident memory and CPU time
//! of its process group, sampled through the run.
//!
//! Every process whose process group is the gateway's counts (nginx's master and workers, a
//! Python proxy's server and workers, the `sh` that started them). CPU time is user plus system
//! time of the processes alive at each sample: a process that exits between two samples takes
//! its last interval with it, which the long-lived servers measured here do not do. Only Linux
//! has `/proc`; elsewhere nothing is sampled and the result has no footprint.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How often the group is read.
pub const INTERVAL: Duration = Duration::from_millis(250);

/// The group's use of the machine at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Resident memory, summed over the group, bytes.
    pub rss: u64,
    /// User plus system CPU time, summed over the group's live processes.
    pub cpu: Duration,
    /// Processes in the group.
    pub processes: usize,
}

/// Reads the usage of process group `group` now (`None` where `/proc` cannot be read).
pub fn usage(group: u32) -> Option<Usage> {
    #[cfg(target_os = "linux")]
    {
        let (ticks, page) = (procfs::ticks_per_second().max(1), procfs::page_size());
        let mut total = Usage::default();
        let mut cpu_ticks = 0u64;
        for process in procfs::process::all_processes().ok()?.flatten() {
            // A process can end between the listing and the read: skip it.
            let Ok(stat) = process.stat() else { continue };
            if i64::from(stat.pgrp) != i64::from(group) {
                continue;
            }
            total.rss += stat.rss * page;
            cpu_ticks += stat.utime + stat.stime;
            total.processes += 1;
        }
        total.cpu = Duration::from_secs_f64(cpu_ticks as f64 / ticks as f64);
        Some(total)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = group;
        None
    }
}

/// What the gateway used over a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Footprint {
    /// Resident memory when the gateway was ready, before any load, MiB.
    pub idle_rss_mib: f64,
    /// The most resident memory seen, MiB.
    pub peak_rss_mib: f64,
    /// Resident memory at the end of the run, MiB.
    pub end_rss_mib: f64,
    /// CPU time from ready to the end of the run, s.
    pub cpu_s: f64,
    /// Wall time from ready to the end of the run, s.
    pub wall_s: f64,
    /// CPU time per request while the ceiling was measured (the gateway saturated at zero
    /// service time), us; `None` when the ceiling was not measured with the sampler.
    pub cpu_us_per_request_at_ceiling: Option<f64>,
    /// The most processes seen in the group.
    pub processes: usize,
    /// Samples taken.
    pub samples: usize,
}

/// Samples a process group on a thread of its own until [`Sampler::finish`].
#[derive(Debug)]
pub struct Sampler {
    group: u32,
    stop: mpsc::Sender<()>,
    thread: JoinHandle<Vec<Usage>>,
    started: Instant,
}

impl Sampler {
    /// Starts sampling `group` every [`INTERVAL`]; `None` where it cannot be read.
    pub fn start(group: u32) -> Option<Self> {
        usage(group)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            loop {
                samples.extend(usage(group));
                // The channel is the clock: a tick every INTERVAL, and `finish` ends it at once.
                match stopped.recv_timeout(INTERVAL) {
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    _ => break,
                }
            }
            samples.extend(usage(group));
            samples
        });
        Some(Self {
            group,
            stop,
            thread,
            started: Instant::now(),
        })
    }

    /// The group's usage now (for CPU deltas around one measurement).
    pub fn now(&self) -> Option<Usage> {
        usage(self.group)
    }

    /// Stops sampling and sums up; `ceiling` is the CPU the gateway spent and the requests sent
    /// while its ceiling was measured.
    pub fn finish(self, ceiling: Option<(Duration, u64)>) -> Option<Footprint> {
        let _ = self.stop.send(());
        let samples = self.thread.join().ok()?;
        let (first, last) = (samples.first()?, samples.last()?);
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        Some(Footprint {
            idle_rss_mib: mib(first.rss),
            peak_rss_mib: mib(samples.iter().map(|s| s.rss).max().unwrap_or(0)),
            end_rss_mib: mib(last.rss),
            cpu_s: last.cpu.saturating_sub(first.cpu).as_secs_f64(),
            wall_s: self.started.elapsed().as_secs_f64(),
            cpu_us_per_request_at_ceiling: ceiling
                .filter(|(_, requests)| *requests > 0)
                .map(|(cpu, requests)| cpu.as_secs_f64() * 1e6 / requests as f64),
            processes: samples.iter().map(|s| s.processes).max().unwrap_or(0),
            samples: samples.len(),
        })
    }
}

/// The footprint's verdict line.
pub fn verdict(f: &Footprint) -> String {
    let per_request = f
        .cpu_us_per_request_at_ceiling
        .map_or_else(String::new, |us| {
            format!(", {us:.0} us of CPU per request at its ceiling")
        });
    format!(
        "footprint: the gateway's {} held {:.1} MiB resident when ready, {:.1} MiB at most and \
         {:.1} MiB at the end; {:.1} s of CPU over {:.0} s ({:.0}% of one core){per_request}.",
        crate::wording::count(f.processes as u64, "process", "processes"),
        f.idle_rss_mib,
        f.peak_rss_mib,
        f.end_rss_mib,
        f.cpu_s,
        f.wall_s,
        f.cpu_s / f.wall_s.max(1e-9) * 100.0,
    )
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_busy_group_shows_its_memory_and_cpu() {
        use std::os::unix::process::CommandExt as _;
        // A shell in a group of its own that burns CPU until killed.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .process_group(0)
            .spawn()
            .expect("sh");
        let group = child.id();
        let sampler = Sampler::start(group).expect("readable");
        // Wait on the group's own CPU counter (bounded), not on a sleep.
        let deadline = Instant::now() + Duration::from_secs(20);
        while sampler
            .now()
            .is_some_and(|u| u.cpu < Duration::from_millis(300))
            && Instant::now() < deadline
        {
            std::thread::yield_now();
        }
        let footprint = sampler.finish(Some((Duration::from_millis(500), 1000)));
        let _ = child.kill();
        let _ = child.wait();
        let f = footprint.expect("sampled");
        assert!(f.processes >= 1 && f.samples >= 2, "{f:?}");
        assert!(
            f.peak_rss_mib > 0.0 && f.peak_rss_mib >= f.idle_rss_mib,
            "{f:?}"
        );
        assert!(f.cpu_s >= 0.2, "the loop's CPU is counted: {f:?}");
        assert_eq!(f.cpu_us_per_request_at_ceiling, Some(500.0));
        assert!(
            usage(u32::MAX - 7).is_some_and(|u| u.processes == 0),
            "an empty group"
        );
    }
}
