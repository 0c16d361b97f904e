//! The gate catches a real regression: a pool that holds its lock across requests, measured where
//! the atomic pool normally is, must fail the atomic bounds. (The margin is structural: such a
//! pool serialises, about 1.0x against a bound of 1.8x, so this is not a fragile timing test.)

use harness::gate::{self, GateSettings};
use harness::scenarios::{Ctx, Options};
use harness::variant::Variant;

#[test]
fn gate_fails_a_pool_that_holds_its_lock_across_requests() {
    let ctx = Ctx::new(Options {
        progress: false,
        ..Options::default()
    });
    let settings = GateSettings {
        repeats: 1,
        two_node_requests: 48,
        service_ms: 5,
        stress_requests: 400,
        contention_ops: 5_000,
    };
    let report = gate::run(&ctx, Some(Variant::MutexRequest), settings, None).unwrap();
    assert!(
        !report.pass,
        "the gate passed a serialised pool: {:#?}",
        report.metrics
    );
    let failures = report.failures();
    assert!(
        failures.contains(&"two_node_speedup.atomic"),
        "{failures:?}"
    );
    assert!(failures.contains(&"scaling_12.atomic"), "{failures:?}");
    assert!(
        report.metrics["two_node_speedup.atomic"].remeasured,
        "a failing timing metric is measured twice"
    );
    assert_eq!(report.candidate, Some(Variant::MutexRequest));
    for correctness in ["stress.lost", "stress.active_after", "counters.lost"] {
        assert!(
            report.metrics[correctness].pass,
            "{correctness}: the lock scope must not lose updates"
        );
    }
}
