//! The whole rollout path with the operator's reconcile logic on the local stack: a
//! ModelRollout read from a file, reconciled against the stand-in API server, writes the
//! TrafficPolicy's ConfigMap; the test copies that ConfigMap's ECDS document into the file a
//! real Envoy (with the built filter and real backends) watches, standing in for the kubelet;
//! the judge reads that Envoy's own metrics. The status and the Events are checked as the
//! operator leaves them, and the traffic Envoy actually splits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod fixtures;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fixtures::*;
use serde_json::{Value, json};
use switchyard_operator::reconcile::FromMetrics;
use switchyard_rollout::store::Target;
use switchyard_testkit::stack::{Stack, mlp_policy, wasm_path};
use switchyard_testkit::try_request;

const CM: &str = "switchyard-gateway-filter";

fn share_of_v2(stack: &Stack, n: usize) -> f64 {
    let v2 = (0..n)
        .filter(|_| stack.send("GET", "/v2/models/mlp", &[], b"").header("x-switchyard-version") == Some("v2"))
        .count();
    v2 as f64 / n as f64
}

/// The API server's objects for this stack: its policy as the TrafficPolicy, the ECDS document
/// Envoy runs as the ConfigMap, and the rollout from `tests/data`.
fn objects(stack: &Stack) -> Arc<ApiServer> {
    let server = ApiServer::new();
    let policy: Value = serde_json::from_slice(&std::fs::read(&stack.policy_file).unwrap()).unwrap();
    let wasm = wasm_path().to_str().unwrap().to_owned();
    server.put(json!({
        "apiVersion": "switchyard.dev/v1alpha1", "kind": "TrafficPolicy",
        "metadata": {"name": "switchyard-gateway", "namespace": NS, "uid": "tp"},
        "spec": {"policy": policy, "carrier": {"configMap": {"name": CM, "key": "filter.yaml", "wasm": wasm}}}
    }));
    let ecds = std::fs::read_to_string(stack.dir.join("filter.yaml")).unwrap();
    server.put(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CM, "namespace": NS},
        "data": {"filter.yaml": ecds}}));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/local-rollout.yaml");
    let mut r: Value = serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    r["metadata"]["finalizers"] = json!([switchyard_operator::FINALIZER]);
    server.put(r);
    server
}

/// The kubelet's part: the ConfigMap's document into Envoy's ECDS file (when it changed).
/// Returns whether Envoy took a new one.
fn kubelet(server: &ApiServer, stack: &Stack) -> bool {
    let cm = server.get(&config_map_path(CM)).unwrap();
    match stack.put_ecds_text(cm["data"]["filter.yaml"].as_str().unwrap()) {
        Some(accepted) => {
            assert!(accepted, "Envoy refused the ECDS document the operator wrote");
            true
        }
        None => false,
    }
}

/// A policy for the demo's mlp, v2 at 0, the guard on.
fn policy() -> Value {
    mlp_policy(&json!({
        "versions": [{"name": "v1", "cluster": "mlp-v1", "weight": 100}, {"name": "v2", "cluster": "mlp-v2", "weight": 0}],
        "slo": {"availability": 0.99, "latency_ms": 1000},
        "guard": {"stable": "v1"}
    }))
}

/// The operator's reconciles on `stack` with traffic flowing, until the rollout ends: its
/// phase, and (phase, weight in the ConfigMap, share of v2 Envoy served) each time Envoy took
/// a change.
fn drive(
    stack: &Stack,
    server: &Arc<ApiServer>,
) -> (String, Vec<(String, u32, f64)>, Harness, tokio::runtime::Runtime) {
    let target = Target {
        policy: None,
        bootstrap: None,
        wasm: wasm_path(),
        envoy_admin: stack.admin.clone(),
        metrics_path: "/stats/prometheus".into(),
        collector: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // The client's buffer task lives on this runtime, driven by each block_on.
    let h = {
        let _in_rt = rt.enter();
        Harness::observing(server.clone(), Arc::new(FromMetrics(target)))
    };
    let stop = AtomicBool::new(false);
    let mut seen: Vec<(String, u32, f64)> = Vec::new();
    let phase = std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let _ = try_request(&stack.listen, "GET", "/v2/models/mlp", &[], b"");
                    std::thread::sleep(Duration::from_millis(4));
                }
            });
        }
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            loop {
                rt.block_on(h.reconcile("mlp-v2")).unwrap();
                if kubelet(server, stack) {
                    let weight = weights(&carried(server))[1].1;
                    let phase = server.rollout("mlp-v2").status.unwrap().phase.unwrap();
                    seen.push((phase, weight, share_of_v2(stack, 100)));
                }
                let phase = server.rollout("mlp-v2").status.and_then(|s| s.phase).unwrap_or_default();
                if phase == "Promoted" || phase == "Aborted" {
                    return phase;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "not done after 60 s: {:#?}",
                    server.event_lines()
                );
                std::thread::sleep(Duration::from_millis(250));
            }
        }));
        stop.store(true, Ordering::Relaxed);
        outcome.unwrap_or_else(|e| std::panic::resume_unwind(e))
    });
    (phase, seen, h, rt)
}

#[test]
fn a_rollout_resource_moves_a_real_envoy_fed_from_its_config_map() {
    let stack = Stack::start("operator-local", &policy());
    let server = objects(&stack);
    let (phase, seen, h, rt) = drive(&stack, &server);
    assert_eq!(phase, "Promoted", "{:#?}", server.event_lines());
    // Envoy took each step from the ConfigMap, and split as it said (5 σ of 100 requests).
    let weights: Vec<u32> = seen.iter().map(|(_, w, _)| *w).collect();
    assert_eq!(weights, [20, 60, 100], "{seen:?}");
    for (_, w, share) in &seen {
        let p = f64::from(*w) / 100.0;
        let sigma = (p * (1.0 - p) / 100.0).sqrt();
        assert!((share - p).abs() <= 5.0 * sigma + 0.01, "weight {w}: Envoy sent {share} to v2");
    }
    let reasons: Vec<String> = server.events().iter().map(|e| e["reason"].as_str().unwrap().to_owned()).collect();
    assert_eq!(reasons, ["Started", "StepApplied", "Advanced", "StepApplied", "Promoted"]);
    let st = server.rollout("mlp-v2").status.unwrap();
    let d = st.last_decision.unwrap();
    assert!(d.canary.as_ref().unwrap().requests >= 20, "{d:?}");
    assert!(d.reason.contains("last step passed"), "{}", d.reason);
    // The guard now judges against the promoted version, from a fresh epoch, in Envoy too.
    let cfg = carried(&server);
    let g = cfg.models["mlp"].guard.as_ref().unwrap();
    assert_eq!((g.stable.as_deref(), g.epoch), (Some("v2"), 1));
    // Deleted after promotion: the TrafficPolicy's own traffic (v1) is back in Envoy.
    let mut r = server.get(&rollout_path("mlp-v2")).unwrap();
    r["metadata"]["deletionTimestamp"] = json!("2026-12-07T12:00:00Z");
    server.put(r);
    rt.block_on(h.reconcile("mlp-v2")).unwrap();
    assert!(kubelet(&server, &stack));
    assert_eq!(share_of_v2(&stack, 40), 0.0);
    assert!(server.event_lines().last().unwrap().starts_with("TrafficRestored"), "{:#?}", server.event_lines());
    // The guard's epoch stays at the one in force: deleting the rollout brings back no latch.
    assert_eq!(carried(&server).models["mlp"].guard.as_ref().unwrap().epoch, 1);
}

/// v2 fails half its requests: the filter's guard takes it out of the split within a second,
/// the operator reads that from Envoy, aborts with a Warning, and the ConfigMap (then Envoy)
/// gives v2 nothing.
#[test]
fn the_data_plane_guard_aborts_a_rollout_resource() {
    let stack = Stack::start_with("operator-guard", &policy(), &["--fault", "mlp-v2=50"]);
    let server = objects(&stack);
    let (phase, seen, _h, _rt) = drive(&stack, &server);
    assert_eq!(phase, "Aborted", "{:#?}", server.event_lines());
    let last = server.events().pop().unwrap();
    assert_eq!((last["reason"].as_str(), last["type"].as_str()), (Some("GuardTripped"), Some("Warning")), "{last}");
    assert!(last["note"].as_str().unwrap().contains("the data-plane guard took the canary out"), "{last}");
    assert_eq!(seen.last().map(|(_, w, _)| *w), Some(0), "{seen:?}");
    assert_eq!(share_of_v2(&stack, 40), 0.0);
    let st = server.rollout("mlp-v2").status.unwrap();
    let p = st.conditions.iter().find(|c| c.type_ == "Progressing").unwrap();
    assert_eq!((p.status.as_str(), p.reason.as_str()), ("False", "Aborted"));
}
