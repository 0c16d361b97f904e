//! The sentences on a driver's runs, computed from the kept [`DriverRun`]s alone (so `harness
//! report` rewords them without a re-run): how its runs ended, what its reports lacked, whether
//! the library's statistics agree with the nodes, and whose CPU a figure is.

use super::{DriverRun, Exit};

/// The verdicts on `runs` (none without runs: a gateway's result).
pub fn verdicts(runs: &[DriverRun]) -> Vec<String> {
    if runs.is_empty() {
        return Vec::new();
    }
    let mut out = vec![exits(runs)];
    out.extend(lines(runs));
    out.extend(stats(runs));
    out.push(cpu(runs));
    out
}

fn exits(runs: &[DriverRun]) -> String {
    let bad: Vec<&DriverRun> = runs.iter().filter(|r| !r.exit.clean()).collect();
    let Some(first) = bad.first() else {
        return format!("The driver exited 0 in all {} runs.", runs.len());
    };
    let how = match first.exit {
        Exit::Exited { code: Some(code) } => format!("exited with code {code}"),
        Exit::Exited { code: None } => "was killed by a signal".to_owned(),
        Exit::Lost { ref error } => format!("could not be waited for ({error})"),
        Exit::TimedOut { after_ms } => {
            format!(
                "ran past the timeout and was killed after {:.0} s",
                after_ms as f64 / 1e3
            )
        }
    };
    let last = first.output_tail.lines().last().unwrap_or("(no output)");
    format!(
        "The driver did not end cleanly in {} of {} runs: run {} {how}; its last output: {last}",
        bad.len(),
        runs.len(),
        first.run_id,
    )
}

fn lines(runs: &[DriverRun]) -> Option<String> {
    let sum = |f: fn(&DriverRun) -> u64| runs.iter().map(f).sum::<u64>();
    let asked = sum(|r| r.requests);
    let unreported = sum(|r| r.lines.unreported);
    let (twice, foreign, malformed, untimed) = (
        sum(|r| r.lines.reported_twice),
        sum(|r| r.lines.foreign),
        sum(|r| r.lines.malformed),
        sum(|r| r.lines.untimed),
    );
    if unreported + twice + foreign + malformed + untimed == 0 {
        return None;
    }
    let example = runs
        .iter()
        .find_map(|r| r.lines.first_malformed.as_deref())
        .map(|l| format!(" (the first malformed: {l:?})"))
        .unwrap_or_default();
    Some(format!(
        "The driver's reports lacked {unreported} of the {asked} requests asked for (counted as failed), repeated {twice} ids, named {foreign} ids it was not given, had {malformed} malformed lines{example} and {untimed} requests without a send time within the run (their runs' throughput counts the driver's start-up)."
    ))
}

fn stats(runs: &[DriverRun]) -> Option<String> {
    let checked: Vec<_> = runs
        .iter()
        .filter_map(|r| Some((r, r.stats.as_ref()?)))
        .collect();
    if checked.is_empty() {
        return Some("The driver reported no library statistics to check.".to_owned());
    }
    let requests: u64 = checked.iter().map(|(_, s)| s.sent).sum();
    let differences: u64 = checked.iter().map(|(_, s)| s.differences).sum();
    if differences == 0 {
        return Some(format!(
            "The library's statistics agree with the nodes' served logs: 0 differences over {requests} requests in {} runs.",
            checked.len()
        ));
    }
    let (run, first) = checked.iter().find(|(_, s)| s.differences > 0)?;
    let said = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    Some(format!(
        "The library's statistics differ from the nodes' served logs by {differences} over {requests} requests in {} runs; the first, run {}: total_requests {} against {} sent, successful_requests {} against {} served.",
        checked.len(),
        run.run_id,
        said(first.library.total_requests),
        first.sent,
        said(first.library.successful_requests),
        first.served,
    ))
}

/// A least-squares line through `(requests, cpu_ms)` of the runs: its intercept (the start-up,
/// ms) and its slope (per request, us). One start-up run subtracted from every run would not do:
/// a Python driver's start-up moves by more between runs than a short run's requests cost.
/// `None` with fewer than two distinct request counts.
fn fitted(runs: &[DriverRun], cpu_ms: fn(&DriverRun) -> f64) -> Option<(f64, f64)> {
    let n = runs.len() as f64;
    let mean_x = runs.iter().map(|r| r.requests as f64).sum::<f64>() / n;
    let mean_y = runs.iter().map(cpu_ms).sum::<f64>() / n;
    let (mut sxx, mut sxy) = (0.0, 0.0);
    for r in runs {
        let dx = r.requests as f64 - mean_x;
        sxx += dx * dx;
        sxy += dx * (cpu_ms(r) - mean_y);
    }
    (sxx > 0.0).then(|| {
        let slope = sxy / sxx;
        (mean_y - slope * mean_x, slope * 1e3)
    })
}

/// CPU per request, us, of the driver and of the harness: the fitted slope, or the plain mean
/// when every run asked for as many requests.
pub(super) fn per_request_cpu(runs: &[DriverRun]) -> (f64, f64) {
    let requests = runs.iter().map(|r| r.requests).sum::<u64>().max(1) as f64;
    let per = |cpu_ms: fn(&DriverRun) -> f64| {
        fitted(runs, cpu_ms).map_or_else(
            || runs.iter().map(cpu_ms).sum::<f64>() * 1e3 / requests,
            |(_, slope)| slope,
        )
    };
    (per(|r| r.driver_cpu_ms), per(|r| r.harness_cpu_ms))
}

fn cpu(runs: &[DriverRun]) -> String {
    let (driver, harness) = per_request_cpu(runs);
    let start = fitted(runs, |r| r.driver_cpu_ms).map_or_else(String::new, |(start, _)| {
        format!(" and {:.0} ms to start", start.max(0.0))
    });
    format!(
        "CPU, fitted over the {} runs (start-up plus requests x per request): the driver's processes {driver:.0} us per request{start}, the harness's process (load bookkeeping and the embedded nodes) {harness:.0} us per request.",
        runs.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(requests: u64, cpu_ms: f64) -> DriverRun {
        DriverRun {
            run_id: format!("r{requests}"),
            workers: 1,
            requests,
            exit: Exit::Exited { code: Some(0) },
            wall_ms: 0.0,
            lines: Default::default(),
            stats: None,
            driver_cpu_ms: cpu_ms,
            harness_cpu_ms: 0.0,
            output_tail: String::new(),
        }
    }

    /// A start-up that moves between runs does not leak into the per-request figure.
    #[test]
    fn the_fit_separates_start_up_from_requests() {
        // About 2 s to start, moving by 50 ms, and 1 ms per request.
        let runs = [
            run(0, 2_050.0),
            run(100, 2_050.0),
            run(600, 2_600.0),
            run(240, 2_240.0),
        ];
        let (start, per_us) = fitted(&runs, |r| r.driver_cpu_ms).expect("distinct counts");
        assert!((start - 2_000.0).abs() < 100.0, "{start}");
        assert!((per_us - 1_000.0).abs() < 250.0, "{per_us}");
        assert_eq!(fitted(&runs[..1], |r| r.driver_cpu_ms), None);
    }
}
