//! The rollout controller against real Envoy, the built filter and real backends: a healthy
//! canary promoted step by step (the controller killed mid-rollout and restarted, moving no
//! traffic twice), a failing one aborted with its numbers, the commands, and bad specs.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard_testkit::process::{Log, OnDrop, Process};
use switchyard_testkit::stack::{self, Stack, mlp_policy, wasm_path};
use switchyard_testkit::*;

fn rollout_bin() -> PathBuf {
    workspace_bin("switchyard-rollout")
}

/// `switchyard-rollout --state-dir DIR ARGS`: (success, stdout + stderr, how long it took).
fn cli(dir: &Path, args: &[&str]) -> (bool, String, Duration) {
    let started = Instant::now();
    let out = Command::new(rollout_bin()).arg("--state-dir").arg(dir).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text, started.elapsed())
}

fn status(dir: &Path) -> serde_json::Value {
    let (ok, text, _) = cli(dir, &["status", "--json"]);
    assert!(ok, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn controller(dir: &Path) -> Process {
    let mut cmd = Command::new(rollout_bin());
    cmd.arg("--state-dir").arg(dir).args(["run", "--interval", "200ms"]);
    Process::spawn("switchyard-rollout", cmd, Log::Memory).unwrap().on_drop(OnDrop::Kill)
}

fn start(stack: &Stack, dir: &Path, spec: &str) -> (bool, String, Duration) {
    start_with(stack, dir, spec, &[])
}

/// `start` with more arguments (e.g. `--collector`).
fn start_with(stack: &Stack, dir: &Path, spec: &str, extra: &[&str]) -> (bool, String, Duration) {
    let spec_file = stack.dir.join(format!("spec-{}.yaml", dir.file_name().unwrap().to_string_lossy()));
    std::fs::write(&spec_file, spec).unwrap();
    let bootstrap = stack.dir.join("envoy.yaml");
    let wasm = wasm_path();
    let mut args = vec![
        "start",
        spec_file.to_str().unwrap(),
        "--policy",
        stack.policy_file.to_str().unwrap(),
        "--bootstrap",
        bootstrap.to_str().unwrap(),
        "--wasm",
        wasm.to_str().unwrap(),
        "--envoy-admin",
        &stack.admin,
    ];
    args.extend_from_slice(extra);
    cli(dir, &args)
}

/// Sets the flag when dropped, a panic included, so the traffic threads end and the scope with them.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Requests until `stop`, from two clients.
fn background_traffic<'a>(s: &'a std::thread::Scope<'a, '_>, stack: &'a Stack, stop: &'a AtomicBool) {
    for _ in 0..2 {
        s.spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = try_request(&stack.listen, "GET", "/v2/models/mlp", &[], b"");
                std::thread::sleep(Duration::from_millis(4));
            }
        });
    }
}

/// Waits for the rollout to reach `state`; on time-out says where it is and what it did.
fn wait_state(dir: &Path, state: &str, within: Duration) {
    let started = Instant::now();
    loop {
        let st = status(dir);
        if st["state"] == state {
            return;
        }
        assert!(started.elapsed() < within, "not {state} after {within:?}: {st}\nevents: {:#?}", events(dir));
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn events(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn share_of_v2(stack: &Stack, n: usize) -> f64 {
    let v2 = (0..n)
        .filter(|_| stack.send("GET", "/v2/models/mlp", &[], b"").header("x-switchyard-version") == Some("v2"))
        .count();
    v2 as f64 / n as f64
}

fn policy(guard: bool) -> serde_json::Value {
    let mut m = json!({
        "versions": [{"name": "v1", "cluster": "mlp-v1", "weight": 100}, {"name": "v2", "cluster": "mlp-v2", "weight": 0}],
        "slo": {"availability": 0.99, "latency_ms": 1000}
    });
    if guard {
        m["guard"] = json!({"stable": "v1"});
    }
    mlp_policy(&m)
}

#[test]
fn a_healthy_canary_is_promoted_step_by_step_and_a_restarted_controller_resumes() {
    let stack = Stack::start("rollout-ok", &policy(true));
    let dir = stack.dir.join("rollout");
    let spec = "model: mlp\ncanary: v2\nsteps:\n  - {weight: 20, min_duration: 2s, min_requests: 20}\n  - {weight: 60, min_duration: 2s, min_requests: 20}\n";
    let (ok, text, took) = start(&stack, &dir, spec);
    assert!(ok, "{text}");
    assert!(took < Duration::from_secs(1), "start took {took:?}");
    assert!(text.contains("started (2 steps)"), "{text}");
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        background_traffic(s, &stack, &stop);
        let mut c = controller(&dir);
        wait_until(Duration::from_secs(20), "step 0 in force", || {
            status(&dir)["reason"].as_str().unwrap_or("").contains("Weight(20) in force")
        });
        // Killed mid-step and started again: it judges the same step from where it was.
        c.signal(switchyard_testkit::process::Signal::SIGKILL).unwrap();
        c.wait_exit(Duration::from_secs(5)).unwrap();
        assert_eq!(status(&dir)["state"], "running");
        let c2 = controller(&dir);
        wait_state(&dir, "promoted", Duration::from_secs(40));
        stop.store(true, Ordering::Relaxed);
        drop((c, c2));
    });
    let e = events(&dir);
    let applied: Vec<&str> = e.iter().filter(|e| e["what"] == "apply").map(|e| e["reason"].as_str().unwrap()).collect();
    assert_eq!(applied.len(), 2, "each step applied once, restart or not: {applied:#?}");
    assert!(applied[0].contains("Weight(20) in force") && applied[1].contains("Weight(60) in force"), "{applied:#?}");
    assert!(e.iter().any(|e| e["decision"] == "promote"), "{e:#?}");
    // The policy file and the policy in force agree, and all traffic is the canary's.
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&stack.policy_file).unwrap()).unwrap();
    assert_eq!(file["models"]["mlp"]["versions"][1]["weight"], 100);
    // The guard now judges against the promoted version, from a fresh epoch.
    assert_eq!(file["models"]["mlp"]["guard"]["stable"], "v2");
    assert_eq!(file["models"]["mlp"]["guard"]["epoch"], 1);
    assert_eq!(share_of_v2(&stack, 40), 1.0);
    // An ended rollout takes no commands, and says so.
    let (ok, text, _) = cli(&dir, &["abort"]);
    assert!(!ok && text.contains("promoted: nothing to abort"), "{text}");
}

#[test]
fn a_failing_canary_is_aborted_by_the_controller_alone_and_commands_answer_at_once() {
    // No guard: the controller alone judges. 50% of the canary's requests fail.
    let stack = Stack::start_with("rollout-bad", &policy(false), &["--fault", "mlp-v2=50"]);
    let dir = stack.dir.join("rollout");
    let spec =
        "model: mlp\ncanary: v2\nsteps:\n  - {weight: 30, min_duration: 60s, min_requests: 20}\n  - {weight: 100}\n";
    assert!(start(&stack, &dir, spec).0);
    // A second rollout of the same model is refused while this one is active.
    let (ok, text, _) = start(&stack, &dir, spec);
    assert!(!ok && text.contains("is running"), "{text}");
    let (ok, text, took) = cli(&dir, &["pause"]);
    assert!(ok && text.contains("paused at step 0") && took < Duration::from_secs(1), "{text} {took:?}");
    let (ok, text, _) = cli(&dir, &["resume"]);
    assert!(ok && text.contains("running again at step 0"), "{text}");
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        background_traffic(s, &stack, &stop);
        let _c = controller(&dir);
        wait_state(&dir, "aborted", Duration::from_secs(30));
        stop.store(true, Ordering::Relaxed);
    });
    let st = status(&dir);
    assert!(st["reason"].as_str().unwrap().starts_with("error ratio"), "{st}");
    assert_eq!(share_of_v2(&stack, 40), 0.0, "the canary still gets traffic");
    let e = events(&dir);
    assert!(e.iter().any(|e| e["decision"] == "abort"), "{e:#?}");
}

/// A shadow stage that judges disagreement: v2 (a wider network) disagrees with v1 on some
/// inputs, so a stage allowing none aborts with the numbers, and one allowing half promotes.
#[test]
fn a_shadow_stage_promotes_or_aborts_on_the_compared_answers() {
    let mut p = policy(false);
    // The rollout keeps the policy's comparison settings: every shadowed inference compared.
    p["models"]["mlp"]["shadow"] =
        json!({"version": "v2", "percent": 0, "compare": {"percent": 100, "max_pending": 64}});
    let stack = Stack::start("rollout-shadow", &p);
    let spec = |max: f64| {
        format!(
            "model: mlp\ncanary: v2\nsteps:\n  - {{shadow: 100, min_duration: 1s, min_requests: 20, max_disagreement: {max}}}\n  - {{weight: 100}}\nanalysis: {{min_compared_rows: 40}}\n"
        )
    };
    let no_collector = stack.dir.join("rollout-none");
    let (ok, text, _) = start(&stack, &no_collector, &spec(0.0));
    assert!(!ok && text.contains("needs `--collector"), "{text}");
    let stop = AtomicBool::new(false);
    let verdicts: Vec<serde_json::Value> = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        s.spawn(|| {
            let mut seed = 0;
            while !stop.load(Ordering::Relaxed) {
                seed += 1;
                let body = stack::mlp_infer_body(seed);
                let _ = try_request(
                    &stack.listen,
                    "POST",
                    "/v2/models/mlp/infer",
                    &[("content-type", "application/json")],
                    &body,
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let mut out = Vec::new();
        // mlp v1 and v2 disagree on about half of these rows: 0.9 leaves the lenient rollout room for
        // sampling noise (at 0.5 it flipped on a coin).
        for (name, max, end) in [("strict", 0.0, "aborted"), ("lenient", 0.9, "promoted")] {
            let dir = stack.dir.join(format!("rollout-{name}"));
            let (ok, text, _) = start_with(&stack, &dir, &spec(max), &["--collector", &stack.collector_addr]);
            assert!(ok, "{text}");
            let c = controller(&dir);
            wait_state(&dir, end, Duration::from_secs(40));
            drop(c);
            out.push(status(&dir));
            if end == "aborted" {
                // Back to the start for the next rollout: canary at 0, nothing mirrored, the
                // comparison settings kept.
                assert_eq!(share_of_v2(&stack, 20), 0.0);
                let file: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&stack.policy_file).unwrap()).unwrap();
                let shadow = &file["models"]["mlp"]["shadow"];
                assert_eq!(
                    (&shadow["percent"], &shadow["compare"]["percent"]),
                    (&json!(0.0), &json!(100.0)),
                    "{shadow}"
                );
            }
        }
        stop.store(true, Ordering::Relaxed);
        out
    });
    let strict = verdicts[0]["reason"].as_str().unwrap();
    assert!(strict.starts_with("shadow disagreement: "), "{strict}");
    let promoted = events(&stack.dir.join("rollout-lenient"));
    assert!(
        promoted.iter().any(|e| e["reason"].as_str().unwrap_or("").contains("compared rows disagree")),
        "{promoted:#?}"
    );
    assert_eq!(share_of_v2(&stack, 20), 1.0);
}

#[test]
fn bad_specs_and_impossible_rollouts_are_refused_with_every_problem_named() {
    let stack = Stack::start("rollout-refused", &policy(false));
    let dir = stack.dir.join("rollout");
    let (ok, text, _) = start(
        &stack,
        &dir,
        "model: mlp\ncanary: v2\nsteps:\n  - {weight: 50}\n  - {weight: 10}\n  - {ab: true}\nanalysis: {confidence: 2}\n",
    );
    assert!(!ok, "{text}");
    for needle in ["must not decrease", "analysis.confidence"] {
        assert!(text.contains(needle), "missing {needle:?} in {text}");
    }
    let (ok, text, _) = start(&stack, &dir, "model: mlp\ncanary: v9\nsteps:\n  - {ab: true}\n");
    assert!(!ok && text.contains("no version 'v9'") && text.contains("an ab step needs models.mlp.override"), "{text}");
    let (ok, text, _) = cli(&dir, &["promote"]);
    assert!(!ok && text.contains("no rollout in"), "{text}");
}
