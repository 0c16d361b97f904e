//! `calibrate`'s verdicts, computed from its rows alone, so `harness report` can reword a
//! stored result without measuring again.

use crate::results::Row;
use crate::summary::Summary;

/// Every verdict, in the order the measurement takes its parts.
pub(super) fn verdicts(rows: &[Row]) -> Vec<String> {
    let mut out = vec![os_floor(rows)];
    for timer in ["precise", "tokio"] {
        if timer == "precise"
            && let Some(view) = client_view(rows)
        {
            out.push(view);
        }
        out.push(accuracy(rows, timer));
        out.push(capacity(rows, timer));
        out.extend(cpu(rows, timer));
    }
    out
}

/// The rows of `variant` with `metric`, in order.
fn of<'a>(rows: &'a [Row], variant: &'a str, metric: &'a str) -> impl Iterator<Item = &'a Row> {
    rows.iter()
        .filter(move |r| r.variant == variant && r.metric == metric)
}

/// The median of the row of `variant`, `case` and `metric`.
fn value(rows: &[Row], variant: &str, case: &str, metric: &str) -> Option<f64> {
    of(rows, variant, metric)
        .find(|r| r.case == case)
        .map(|r| r.value.median)
}

/// A setting's label (`1.5 ms`) from its case (`configured 1.5 ms`).
fn label(case: &str) -> &str {
    case.strip_prefix("configured ").unwrap_or(case)
}

fn os_floor(rows: &[Row]) -> String {
    let floors: Vec<String> = of(rows, "os-floor", "late_p50")
        .map(|r| {
            let sleep = r
                .case
                .trim_start_matches("thread::sleep(")
                .trim_end_matches(')');
            let p99 = value(rows, "os-floor", &r.case, "late_p99").unwrap_or(f64::NAN);
            format!(
                "{sleep} sleeps end {:.0} us late at p50 and {p99:.0} us at p99",
                r.value.median
            )
        })
        .collect();
    format!(
        "This machine's own floor (a plain thread, 1 ns timer slack, 1,000 sleeps): {}.",
        floors.join("; ")
    )
}

/// Served time at p50 within max(2%, 50 us) and p99 within max(10%, 200 us) of the configured
/// time (the row's ideal), at every setting.
fn accuracy(rows: &[Row], timer: &str) -> String {
    let settings: Vec<&Row> = of(rows, timer, "served_p50").collect();
    let misses: Vec<String> = settings
        .iter()
        .filter_map(|r| {
            let configured = r.ideal?;
            let (p50, p99) = (r.value.median, value(rows, timer, &r.case, "served_p99")?);
            let p50_ok = (p50 - configured).abs() <= (0.02 * configured).max(50.0);
            let p99_ok = (p99 - configured).abs() <= (0.10 * configured).max(200.0);
            let (p50, p99) = (p50 / 1e3, p99 / 1e3);
            (!(p50_ok && p99_ok))
                .then(|| format!("{} (p50 {p50:.3}, p99 {p99:.3} ms)", label(&r.case)))
        })
        .collect();
    format!(
        "{timer} timer: served time within max(2%, 50 us) at p50 and max(10%, 200 us) at p99 of the configured time at {} of {} settings{}.",
        settings.len() - misses.len(),
        settings.len(),
        if misses.is_empty() {
            String::new()
        } else {
            format!("; missed at {}", misses.join(", "))
        }
    )
}

fn capacity(rows: &[Row], timer: &str) -> String {
    let mut repeats = 0;
    let ratios: Vec<String> = of(rows, timer, "capacity_ratio")
        .map(|r| {
            let Summary {
                median,
                min,
                max,
                samples,
            } = &r.value;
            repeats = samples.len();
            let service = r.case.trim_start_matches("1 slot, ");
            let service = service.trim_end_matches(", 4 workers");
            format!("{service}: {median:.3} ({min:.3}-{max:.3})")
        })
        .collect();
    format!(
        "{timer} timer: one node serves {} of its configured capacity (slots / service time; median and range of {repeats} runs).",
        ratios.join(", ")
    )
}

fn cpu(rows: &[Row], timer: &str) -> Option<String> {
    let case = "1,000 req/s, 1 ms, 16 slots";
    let per_request = value(rows, timer, case, "cpu_per_request")?;
    let share = value(rows, timer, case, "timer_thread_core_share")
        .map(|share| format!("; the timer thread itself uses {share:.2}% of one core"))
        .unwrap_or_default();
    Some(format!(
        "{timer} timer at 1,000 requests/s: {per_request:.1} us of CPU per request for the whole process (client and node){share}."
    ))
}

/// A setting's configured time in microseconds from its label (`250 us`, `1.5 ms`, `1 s`).
fn configured_us(label: &str) -> Option<f64> {
    let (number, unit) = label.split_once(' ')?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        _ => return None,
    };
    Some(number.parse::<f64>().ok()? * scale)
}

/// The client's view at each setting it was taken at, against max(5%, 150 us).
fn client_view(rows: &[Row]) -> Option<String> {
    let views: Vec<String> = of(rows, "client-view", "client_extra")
        .filter_map(|r| {
            let at = |metric| value(rows, "client-view", &r.case, metric);
            let configured = configured_us(label(&r.case))?;
            let bound = (0.05 * configured).max(150.0);
            let judged = |extra: f64| if extra <= bound { "within" } else { "over" };
            let (client, loaded) = (r.value.median, at("client_extra_loaded")?);
            Some(format!(
                "at {} a client sees {client:.0} us more than configured ({}: bound {bound:.0} us), {:.0} us of it inside the node, where a plain server's reply costs {:.0} us more; {loaded:.0} us more with three other clients busy on the node ({})",
                label(&r.case),
                judged(client),
                at("node_extra")?,
                at("floor_extra")?,
                judged(loaded),
            ))
        })
        .collect();
    (!views.is_empty()).then(|| {
        format!(
            "The client's view, one request at a time on an idle node (issue 27: within max(5%, 150 us) of the configured time, or the machine's floor): {}.",
            views.join("; ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(variant: &str, case: &str, metric: &str, value: f64) -> Row {
        Row::new(variant, case, metric, "us", Summary::of(vec![value]))
    }

    /// A setting past its bound is named, one within it is not; labels read back into times.
    #[test]
    fn misses_are_named_and_labels_read_back() {
        let rows = [
            row("precise", "configured 1 ms", "served_p50", 1_010.0).ideal(1_000.0),
            row("precise", "configured 1 ms", "served_p99", 1_100.0),
            row("precise", "configured 5 ms", "served_p50", 5_400.0).ideal(5_000.0),
            row("precise", "configured 5 ms", "served_p99", 5_450.0),
        ];
        let verdict = accuracy(&rows, "precise");
        assert!(verdict.contains("at 1 of 2 settings"), "{verdict}");
        assert!(verdict.contains("missed at 5 ms (p50 5.400"), "{verdict}");
        assert_eq!(configured_us("1.5 ms"), Some(1_500.0));
        assert_eq!(configured_us("250 us"), Some(250.0));
        assert_eq!(configured_us("1 s"), Some(1e6));
        assert_eq!(configured_us("soon"), None);
    }

    /// The client's view is judged against max(5%, 150 us) of its setting.
    #[test]
    fn the_client_view_is_judged_at_its_own_setting() {
        let case = "configured 5 ms";
        let rows = [
            row("client-view", case, "client_extra", 240.0),
            row("client-view", case, "client_extra_loaded", 260.0),
            row("client-view", case, "node_extra", 40.0),
            row("client-view", case, "floor_extra", 80.0),
        ];
        let verdict = client_view(&rows).expect("a view");
        assert!(
            verdict.contains("240 us more than configured (within: bound 250 us)"),
            "{verdict}"
        );
        assert!(
            verdict.contains("260 us more with three other clients busy on the node (over)"),
            "{verdict}"
        );
        assert_eq!(
            client_view(&rows[1..]),
            None,
            "no client_extra row, no view"
        );
    }
}
