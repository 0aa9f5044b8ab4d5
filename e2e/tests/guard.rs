//! The data-plane guard in real Envoy with real backends: a canary whose backend crashes is
//! taken out of the split on every Envoy worker with no controller running, sticky users and
//! the override fall back to the stable version, and it stays out until the policy's epoch
//! changes. How fast, measured precisely, is the benchmark's business; here the bounds are loose.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::json;
use switchyard_contract::metrics as contract;
use switchyard_testkit::stack::{Stack, mlp_policy, wasm_path};
use switchyard_testkit::*;

struct Shot {
    at: Duration,
    status: u16,
    version: Option<String>,
    /// Asked for v2 by the override header.
    override_v2: bool,
    sticky: bool,
}

/// `threads` clients sending `GET /v2/models/mlp` from `start` until `until`: a third with a
/// sticky user key, every seventh asking for v2 by the override header.
fn traffic(stack: &Stack, start: Instant, until: Duration, threads: usize) -> Vec<Shot> {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut shots = Vec::new();
                    let mut i = t;
                    while start.elapsed() < until {
                        i += threads;
                        let user = format!("user-{}", i % 60);
                        let (sticky, override_v2) = (i % 3 == 0, i % 7 == 0);
                        let mut h = Vec::new();
                        if sticky {
                            h.push(("x-user-id", user.as_str()));
                        }
                        if override_v2 {
                            h.push(("x-switchyard-version-override", "v2"));
                        }
                        let at = start.elapsed();
                        let (status, version) = match try_request(&stack.listen, "GET", "/v2/models/mlp", &h, b"") {
                            Ok(r) => (r.status, r.header("x-switchyard-version").map(str::to_owned)),
                            Err(_) => (0, None),
                        };
                        shots.push(Shot { at, status, version, override_v2, sticky });
                    }
                    shots
                })
            })
            .collect();
        let mut all: Vec<Shot> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.sort_by_key(|s| s.at);
        all
    })
}

fn guarded_policy(epoch: u64) -> serde_json::Value {
    mlp_policy(&json!({
        "versions": [{"name": "v1", "cluster": "mlp-v1", "weight": 70}, {"name": "v2", "cluster": "mlp-v2", "weight": 30}],
        "sticky": {"header": "x-user-id"},
        "override": {"header": "x-switchyard-version-override", "allow": ["v1", "v2"]},
        "slo": {"availability": 0.99, "latency_ms": 1000},
        "guard": {"stable": "v1", "min_requests": 10, "epoch": epoch}
    }))
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn a_crashed_canary_is_taken_out_on_every_worker_and_stays_out_until_the_epoch_changes() {
    let stack = Stack::start("guard", &guarded_policy(0));
    let start = Instant::now();
    let healthy = traffic(&stack, start, Duration::from_secs(2), 3);
    let to_v2 = healthy.iter().filter(|s| s.version.as_deref() == Some("v2")).count();
    assert!(healthy.iter().all(|s| s.status == 200), "the healthy phase failed requests");
    assert!(to_v2 > healthy.len() / 10, "v2 took {to_v2} of {} requests before the crash", healthy.len());
    assert_eq!(count(&stack.envoy_log(), "guard took"), 0, "a healthy canary was taken out");

    // The canary crashes. Nothing but the filter acts: no controller runs in this test.
    let killed = start.elapsed();
    stack.v2.sigkill();
    let shots = traffic(&stack, start, killed + Duration::from_secs(9), 3);
    let failed: Vec<&Shot> = shots.iter().filter(|s| s.status != 200).collect();
    let last_failure = failed.last().map(|s| s.at - killed).unwrap_or_default();
    eprintln!(
        "{} requests after the crash, {} failed, the last {:.0} ms after it",
        shots.len(),
        failed.len(),
        last_failure.as_secs_f64() * 1e3
    );
    assert!(!failed.is_empty(), "the crash was never visible: did v2 get traffic?");
    assert!(last_failure < Duration::from_secs(3), "failures went on for {last_failure:?} after the crash");
    // Out, and latched: the window forgets the failures after 6 s, the latch does not.
    let after = killed + Duration::from_secs(3);
    let late: Vec<&Shot> = shots.iter().filter(|s| s.at > after).collect();
    assert!(late.len() > 100, "too little traffic to judge: {}", late.len());
    for s in &late {
        assert_eq!(
            (s.status, s.version.as_deref()),
            (200, Some("v1")),
            "sticky {} override {}",
            s.sticky,
            s.override_v2
        );
    }
    assert!(late.iter().any(|s| s.sticky) && late.iter().any(|s| s.override_v2));

    let p = stack.prometheus();
    assert_eq!(metric_sum(&p, contract::GUARD_OUT.name, &[("version", "v2")]), 1.0);
    assert_eq!(metric_sum(&p, contract::GUARD_OUT.name, &[("version", "v1")]), 0.0);
    assert!(metric_sum(&p, contract::ROUTE_DECISIONS_TOTAL.name, &[("reason", "guard")]) > 100.0);
    let log = stack.envoy_log();
    // One VM trips it and latches it in shared data; every other one learns of the latch: each
    // worker's, and the main thread's (which judges the shared windows too).
    assert_eq!(count(&log, "guard took mlp/v2 out of the split: error ratio"), 1, "{log}");
    let workers = stack.stat("server.concurrency") as usize;
    assert_eq!(count(&log, "guard: mlp/v2 is out of the split (latched"), workers, "{log}");

    // Only an explicit action clears it: a new epoch puts v2 back in the split, where (still
    // dead) it fails again and is taken out again.
    assert!(stack.apply_policy(&guarded_policy(1)).unwrap());
    let restart = start.elapsed();
    let again = traffic(&stack, start, restart + Duration::from_secs(4), 3);
    assert!(again.iter().any(|s| s.status != 200), "v2 got no traffic after the epoch changed");
    wait_until(Duration::from_secs(10), "the guard to trip again under epoch 1", || {
        count(&stack.envoy_log(), "guard took mlp/v2 out of the split") == 2
    });
}

#[test]
fn a_quiet_or_merely_noisy_canary_is_left_alone() {
    // 30% injected 503s on *both* versions: a shared baseline is not the canary's fault. And
    // too little traffic to judge is a wait, not a failure.
    let policy = guarded_policy(0);
    let stack = Stack::start_with("guard-noise", &policy, &["--fault", "mlp-v1=30", "--fault", "mlp-v2=30"]);
    let start = Instant::now();
    let shots = traffic(&stack, start, Duration::from_secs(8), 3);
    let failed = shots.iter().filter(|s| s.status != 200).count();
    assert!(failed > shots.len() / 5, "the faults did not fire: {failed} of {}", shots.len());
    assert!(shots.iter().any(|s| s.version.as_deref() == Some("v2") && s.at > Duration::from_secs(6)));
    assert_eq!(count(&stack.envoy_log(), "guard took"), 0, "{}", stack.envoy_log());
    assert_eq!(metric_sum(&stack.prometheus(), contract::GUARD_OUT.name, &[]), 0.0);
}

/// What `envoy/apply-policy.sh` prints after a change: `switchyard-policy held-out` over the
/// guard's gauges in Envoy's `/stats/prometheus`.
fn held_out_report(stack: &Stack) -> String {
    let stats = request(&stack.admin, "GET", "/stats/prometheus?filter=switchyard_guard_out", &[], b"");
    let file = stack.dir.join("guard-stats.txt");
    std::fs::write(&file, &stats.body).unwrap();
    switchyard_testkit::stack::policy_tool(&["held-out", "--stats", file.to_str().unwrap()]).unwrap()
}

#[test]
fn a_policy_applied_again_from_git_never_brings_back_a_latch_and_the_tools_say_what_is_out() {
    // The sequence an operator went through: the guard trips v2 at epoch 0, the incident is
    // closed with epoch 1, and later the policy file in git (epoch 0) is applied again.
    let stack = Stack::start("guard-epochs", &guarded_policy(0));
    let start = Instant::now();
    traffic(&stack, start, Duration::from_secs(1), 3);
    stack.v2.sigkill();
    let killed = start.elapsed();
    traffic(&stack, start, killed + Duration::from_secs(5), 3);
    wait_until(Duration::from_secs(5), "the guard to take v2 out", || {
        count(&stack.envoy_log(), "guard took mlp/v2 out of the split") == 1
    });
    let report = held_out_report(&stack);
    assert!(
        report.contains("mlp/v2 is held out of the split by the guard since ")
            && report.contains("its error ratio was worse than the stable version's"),
        "{report}"
    );

    // Closed: a new epoch. No traffic now, so the dead v2 is not judged again.
    let (accepted, said) = stack.apply_saying(&guarded_policy(1), &wasm_path()).unwrap();
    assert!(accepted && !said.contains("guard:"), "{said}");
    wait_until(Duration::from_secs(5), "v2 back in the split", || {
        metric_sum(&stack.prometheus(), contract::GUARD_OUT.name, &[("version", "v2")]) == 0.0
    });
    assert!(held_out_report(&stack).contains("no version is held out"));

    // The file in git again: its epoch 0 would find epoch 0's latch. It is kept at 1, and said.
    let latched = count(&stack.envoy_log(), "mlp/v2 is out of the split (latched");
    let (accepted, said) = stack.apply_saying(&guarded_policy(0), &wasm_path()).unwrap();
    assert!(accepted, "{said}");
    assert!(said.contains("models.mlp.guard.epoch 0 is older than the 1 in force: kept 1"), "{said}");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(metric_sum(&stack.prometheus(), contract::GUARD_OUT.name, &[("version", "v2")]), 0.0);
    assert!(held_out_report(&stack).contains("no version is held out"));
    // The override the policy allows reaches v2 (dead, so it fails: a handful, too few to judge).
    let decided = || {
        metric_sum(
            &stack.prometheus(),
            contract::ROUTE_DECISIONS_TOTAL.name,
            &[("version", "v2"), ("reason", "override")],
        )
    };
    let before = decided();
    for _ in 0..5 {
        let _ = try_request(&stack.listen, "GET", "/v2/models/mlp", &[("x-switchyard-version-override", "v2")], b"");
    }
    wait_until(Duration::from_secs(5), "the overrides to be counted", || decided() >= before + 5.0);
    assert_eq!(count(&stack.envoy_log(), "mlp/v2 is out of the split (latched"), latched, "no worker found a latch");
}
