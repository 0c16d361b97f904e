//! The terminal summary printed after a run: each scenario's verdicts and where the files are.

use crate::results::ScenarioResult;

/// Prints `results` to stdout.
pub fn print_summary(results: &[ScenarioResult]) {
    if let Some(first) = results.first() {
        println!("Machine: {}", first.machine.one_line());
    }
    for r in results {
        println!("\n== {} ({}; {} repeat(s))", r.title, r.scenario, r.repeats);
        for v in &r.verdicts {
            println!("  - {v}");
        }
        let a = &r.accounting;
        if a.runs > 0 {
            println!(
                "  accounting: {} sent = {} answered + {} failed; {}",
                a.sent,
                a.succeeded,
                a.failed,
                if a.mismatches.is_empty() {
                    "client, pool and nodes agree".to_owned()
                } else {
                    format!("{} MISMATCH(ES)", a.mismatches.len())
                }
            );
        }
    }
}
