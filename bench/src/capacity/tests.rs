use super::format::{c0, c1, ci, fmt_ms, fmt_rate, g, money, pct0, pct2};
use super::inputs::{DEMO, DEMO_LOAD, DemoLoad, DemoPhase};
use super::model::{self, Curve, DAY, Keda, Kind, Step, Traffic, Trigger};
use super::report::vcpus_in;
use crate::protocols::Wire;

use crate::common::tests::{read, root};

// ---- the committed files

#[test]
fn the_committed_capacity_doc_and_charts_are_what_the_model_makes_of_the_committed_inputs() {
    // docs/capacity.md derives replicas and the day's simulation from the sweep, the cold start,
    // the prices, the policy and the generated ScaledObjects (k8s/scaling.json, rendered): a
    // change to any of them comes with the doc re-made (`switchyard-bench capacity`).
    let outputs = super::build(&root()).expect("the capacity model");
    let stale = super::stale(&root(), &outputs);
    assert!(stale.is_empty(), "stale: {stale:?}: re-run `cargo run -p switchyard-bench -- capacity`");
}

/// Where the demo's traffic is written since `scripts/demo.sh` runs `switchyard-demo`: its steps.
const DEMO_STEPS: &str = "demo/src/demo.rs";

/// A traffic phase of the demo's steps as a phase: `open("MODEL", FROM, TO, …)` (one rate when
/// FROM is TO) or `closed("MODEL", CLIENTS, …)`, with `grpc: true` or `binary: true` beside it.
fn phase_of(line: &str) -> Option<(String, DemoLoad)> {
    let (mode, call) = ["open(\"", "closed(\""].iter().find_map(|m| line.split_once(m).map(|(_, rest)| (*m, rest)))?;
    let (model, rest) = call.split_once('"')?;
    let numbers: Vec<&str> = rest.trim_start_matches(',').split(',').map(str::trim).collect();
    let load = if mode.starts_with("open") {
        let mut rates: Vec<f64> = numbers.iter().take(2).map(|r| r.parse().expect("rate")).collect();
        rates.dedup();
        DemoLoad::Open { rates: Vec::leak(rates) }
    } else {
        let clients = numbers.first()?.parse().expect("clients");
        let wire = if line.contains("grpc: true") {
            Wire::Grpc
        } else if line.contains("binary: true") {
            Wire::Binary
        } else {
            Wire::Json
        };
        DemoLoad::Closed { clients, wire }
    };
    Some((model.to_owned(), load))
}

#[test]
fn the_demo_load_is_what_demo_sh_sends() {
    let demo: Vec<(String, DemoLoad)> = read(DEMO_STEPS).lines().filter_map(phase_of).collect();
    let ours: Vec<(String, DemoLoad)> = DEMO_LOAD.iter().map(|p: &DemoPhase| (p.model.to_owned(), p.load)).collect();
    assert_eq!(
        ours, demo,
        "{DEMO}'s traffic phases ({DEMO_STEPS}) changed: update DEMO_LOAD (bench/src/capacity/inputs.rs)"
    );
}

// ---- the model, by hand

fn step(step: &str, target: f64, achieved: f64, p50: f64, p99: f64, late_pct: f64) -> Step {
    Step { step: step.into(), target, achieved, p50, p99, late_pct, errors: 0.0 }
}

/// Four steps: B machine-limited, C the best under a 30 ms SLO (p99 target 15 ms), D past it.
fn sweep() -> Vec<Step> {
    vec![
        step("A", 10.0, 10.0, 5.0, 8.0, 0.5),
        step("B", 20.0, 20.0, 6.0, 9.0, 1.5),
        step("C", 30.0, 29.5, 8.0, 12.0, 0.2),
        step("D", 40.0, 38.0, 20.0, 40.0, 3.0),
    ]
}

#[test]
fn interpolation_is_linear_in_between_and_flat_outside() {
    let (xs, ys) = ([10.0, 20.0, 40.0], [1.0, 3.0, 7.0]);
    assert_eq!(model::interp(5.0, &xs, &ys), 1.0);
    assert_eq!(model::interp(15.0, &xs, &ys), 2.0);
    assert_eq!(model::interp(20.0, &xs, &ys), 3.0);
    assert_eq!(model::interp(30.0, &xs, &ys), 5.0);
    assert_eq!(model::interp(50.0, &xs, &ys), 7.0);
}

#[test]
fn the_service_rate_is_the_highest_step_within_the_target_and_not_machine_limited() {
    let c = model::service_rate("m", &sweep(), 30.0).expect("a step passes");
    assert_eq!(c.p99_target, 15.0);
    assert_eq!(c.step.step, "C");
    assert_eq!(c.rate, 29.5);
    assert_eq!(c.above, ["D: p99 40 ms, 3% sent late"]);
    assert_eq!(c.skipped.iter().map(|s| s.step.as_str()).collect::<Vec<_>>(), ["B"]);
    // A, B and C achieved ≥ 98% of their target (29.5 ≥ 29.4), D did not (38 < 39.2).
    assert_eq!(c.keep_up, 30.0);
    assert_eq!(c.last_p99, 40.0);
    // No step within a 10 ms SLO (5 ms target).
    assert!(model::service_rate("m", &sweep(), 10.0).is_err());
}

#[test]
fn littles_law_on_the_p50() {
    let c = model::service_rate("m", &sweep(), 30.0).expect("curve");
    // p50 at 25 req/s: halfway between B (6 ms) and C (8 ms), 7 ms; 25 × 7 / 1000 = 0.175.
    assert!((model::in_flight_at(&c, 25.0) - 0.175).abs() < 1e-12);
    assert!((model::load_at_in_flight(&c, 0.175) - 25.0).abs() < 1e-9);
}

#[test]
fn the_day_runs_from_the_trough_at_4_to_the_peak_at_14_in_raised_cosine_halves() {
    let h = |hours: f64| model::traffic_shape(hours * 3600.0);
    assert!(h(4.0).abs() < 1e-12 && (h(14.0) - 1.0).abs() < 1e-12);
    // Halfway up (09:00, 5 of 10 hours) and halfway down (21:00, 7 of 14 hours).
    assert!((h(9.0) - 0.5).abs() < 1e-12 && (h(21.0) - 0.5).abs() < 1e-12);
    assert!((h(28.0) - h(4.0)).abs() < 1e-12);
    let t = Traffic::new();
    assert!((t.at(4 * 3600, 1000.0) - 100.0).abs() < 1e-9, "the trough is 10% of the peak");
    assert!((t.at(14 * 3600 + DAY, 1000.0) - 1000.0).abs() < 1e-9);
}

#[test]
fn the_versions_share_the_split_plus_the_shadows_mirrors_and_noise() {
    let cfg = switchyard_policy::Config::parse(
        br#"{"models": {"mlp": {
            "versions": [{"name": "v1", "cluster": "a", "weight": 90}, {"name": "v2", "cluster": "b", "weight": 10}],
            "shadow": {"version": "v2", "percent": 5, "compare": {"percent": 50}}}},
            "collector": {"cluster": "c"}}"#,
    )
    .expect("policy");
    let s = model::version_shares(&cfg.models["mlp"]).expect("shares");
    // v2: its 10% plus 5% of v1's 90% mirrored; v1: its 90% plus a second request for half of
    // the 5% of them compared.
    let load: Vec<f64> = s.load.iter().map(|(_, l)| *l).collect();
    assert!((load[0] - (0.9 + 0.9 * 0.05 * 0.5)).abs() < 1e-12 && (load[0] - 0.9225).abs() < 1e-12);
    assert!((load[1] - 0.145).abs() < 1e-12);
    assert_eq!(s.share, [("v1".to_owned(), 0.9), ("v2".to_owned(), 0.1)]);
    assert_eq!(s.notes.len(), 2);
}

/// p50 100 ms at any load; in-flight threshold `threshold` per replica and the `routed` waker.
fn flat_curve() -> Curve {
    model::service_rate("m", &[step("x", 1.0, 1.0, 100.0, 100.0, 0.0), step("y", 1e6, 1e6, 100.0, 100.0, 0.0)], 1e6)
        .expect("curve")
}

fn keda(min: i64, threshold: f64) -> Keda {
    let trigger = |name: &str, kind, threshold| Trigger { name: name.into(), kind, threshold, activation: 0.0 };
    Keda {
        file: "test".into(),
        polling: 15,
        cooldown: 300,
        min,
        max: 100,
        triggers: vec![trigger("in-flight", Kind::InFlight, threshold), trigger("routed", Kind::Routed, 1e6)],
    }
}

#[test]
fn the_hpa_scales_up_by_4_pods_or_100_percent_a_period_and_down_after_its_window() {
    let c = flat_curve();
    // Idle on day one; 200 req/s from the start of day two (20 in flight: 20 replicas at a
    // threshold of 1), 20 req/s from 1,000 s on (2 replicas).
    let lam = |t: usize| {
        if t < DAY {
            0.0
        } else if t < DAY + 1000 {
            200.0
        } else {
            20.0
        }
    };
    let sim = model::simulate(&lam, &c, &keda(1, 1.0), 5.0, true);
    // 1 → max(1 + 4, 2) = 5 → max(5 + 4, 10) = 10 → 20, one step per 15 s poll.
    assert_eq!((sim.pods[0], sim.pods[15], sim.pods[30], sim.pods[999]), (5, 10, 20, 20));
    // The new pods are ready 5 s after they were asked for.
    assert_eq!((sim.ready[4], sim.ready[5], sim.ready[19], sim.ready[20]), (1, 5, 5, 10));
    // The last poll asking for 20 was at 990 s: held until 300 s later, then 2.
    assert_eq!((sim.pods[1289], sim.pods[1290]), (20, 2));
    assert_eq!(sim.wish[1005], 2);
    // At the threshold the HPA holds (tolerance 0.1): 20 in flight over 5 replicas of 4.
    let sim = model::simulate(&|_| 200.0, &c, &keda(1, 4.0), 5.0, true);
    assert!(sim.pods.iter().all(|p| *p == 5), "{:?}", &sim.pods[..5]);
}

#[test]
fn a_version_without_traffic_goes_to_zero_after_the_cooldown() {
    let c = flat_curve();
    let lam = |t: usize| if t < DAY + 600 { 200.0 } else { 0.0 };
    let sim = model::simulate(&lam, &c, &keda(0, 1.0), 5.0, true);
    // Last active at 585 s (the last poll with traffic); zero at the first poll 300 s later.
    assert_eq!((sim.pods[599], sim.pods[884], sim.pods[885]), (20, 20, 0));
    // Traffic with no ready pod: every such minute is overloaded and over the target.
    let stats = model::minute_stats(&|_| 10.0, &vec![0; DAY], &c);
    assert!(stats.iter().all(|m| m.overloaded && m.over && m.load == f64::INFINITY));
}

#[test]
fn a_minute_past_the_sweep_is_overloaded_with_an_unbounded_p99() {
    let c = model::service_rate("m", &sweep(), 30.0).expect("curve");
    // 50 req/s on one replica: past the last step (40); 25 on two: 12.5 each, within.
    let stats = model::minute_stats(&|t| if t < DAY + 60 { 50.0 } else { 25.0 }, &vec![1; DAY], &c);
    assert!(stats[0].overloaded && stats[0].over && stats[0].p99 == f64::INFINITY && stats[0].load == 50.0);
    let stats = model::minute_stats(&|_| 25.0, &vec![2; DAY], &c);
    // p99 at 12.5 req/s: a quarter of the way from A (8 ms) to B (9 ms).
    assert_eq!((stats[0].load, stats[0].p99, stats[0].over, stats[0].overloaded), (12.5, 8.25, false, false));
}

#[test]
fn numbers_print_as_the_document_always_printed_them() {
    assert_eq!(g(70601.0), "70601");
    assert_eq!(g(296.7), "296.7");
    assert_eq!(g(16.0), "16");
    assert_eq!(g(0.063222), "0.063222");
    assert_eq!(g(1_234_567.0), "1.23457e+06");
    assert_eq!(g(0.00001), "1e-05");
    assert_eq!(c0(800_000.0), "800,000");
    assert_eq!(c0(-1234.4), "-1,234");
    assert_eq!(c1(13_137.0), "13,137.0");
    assert_eq!(ci(1000), "1,000");
    assert_eq!(pct0(0.98), "98%");
    assert_eq!(pct2(0.9225), "92.25%");
    assert_eq!(money(831.2), "$831");
    assert_eq!(money(12_445.5), "$12,446");
    assert_eq!(money(3.031), "$3.03");
    assert_eq!(money(0.000_000_75), "$0.00000075");
    assert_eq!(money(0.000_503), "$0.00050");
    assert_eq!(money(0.0), "$0");
    assert_eq!(fmt_rate(f64::INFINITY), "∞");
    assert_eq!(fmt_rate(1988.2), "1,988");
    assert_eq!(fmt_rate(37.04), "37.0");
    assert_eq!(fmt_ms(f64::INFINITY, 870.91), "> 871 (past the sweep)");
    assert_eq!(fmt_ms(2.81, 1.0), "2.8");
    assert_eq!(vcpus_in("the vCPUs one engine keeps busy, here 2 vCPUs (what a pod requests)"), Some(2));
    assert_eq!(vcpus_in("12 vCPUs"), Some(12));
    assert_eq!(vcpus_in("per vCPU-hour"), None);
}
