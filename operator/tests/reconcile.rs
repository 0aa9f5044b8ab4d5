//! The operator's reconcilers against the stand-in API server (fixtures): for every phase of a
//! rollout, the exact requests it makes (server-side apply with its field manager, status
//! patches, Events, the finalizer), what it does with a conflict, a missing object, an
//! invalid spec or policy, and a rollout deleted mid-way; then the Role checked against every
//! request all of that made (`the_role_grants_exactly_what_the_code_asks`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod fixtures;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use fixtures::*;
use serde_json::{Value, json};
use switchyard_operator::rbac::{CarrierRef, Names, rules};

const CM: &str = "switchyard-gateway-filter";

fn envoy_gateway() -> (Arc<ApiServer>, Harness) {
    let server = ApiServer::new();
    server.put(traffic_policy(json!({"configMap": {"name": CM}})));
    server.put(gateway_config_map());
    let h = Harness::new(server.clone());
    (server, h)
}

fn steps() -> Value {
    json!([
        {"weight": 5, "minDuration": "30s", "minRequests": 100},
        {"weight": 50, "minDuration": "30s", "minRequests": 100},
        {"hold": true},
        {"weight": 100}
    ])
}

/// A rollout past its first reconcile (the finalizer is on), as the watch hands it over.
fn with_finalizer(mut r: Value) -> Value {
    r["metadata"]["finalizers"] = json!([switchyard_operator::FINALIZER]);
    r
}

fn w(pairs: &[(&str, u32)]) -> Vec<(String, u32)> {
    pairs.iter().map(|(n, w)| ((*n).to_owned(), *w)).collect()
}

/// A new rollout: the finalizer is added first (a JSON patch that tests the list is absent),
/// and nothing else happens until the watch brings the object back.
async fn scenario_finalizer_first() -> Arc<ApiServer> {
    let (server, h) = envoy_gateway();
    server.put(rollout("mlp-v2", steps()));
    h.reconcile("mlp-v2").await.unwrap();
    let calls = server.calls();
    assert_eq!(server.lines(), [format!("PATCH {}", rollout_path("mlp-v2"))]);
    assert_eq!(calls[0].content_type.as_deref(), Some("application/json-patch+json"));
    assert_eq!(
        calls[0].body,
        json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
               {"op": "add", "path": "/metadata/finalizers", "value": ["switchyard.dev/traffic"]}])
    );
    assert_eq!(carried(&server).models["mlp"].versions[1].weight, 0, "no traffic moved yet");
    server
}

/// The first real reconcile: the policy is read, the first step's weight is applied to the
/// carrier by server-side apply (field manager switchyard-operator, forced: the operator owns
/// that field), the status is written by apply on the status subresource, and two Events say
/// what happened. Then the step is judged on the numbers and advanced, then held, then released.
async fn scenario_a_rollout_runs_its_steps() -> Arc<ApiServer> {
    let (server, h) = envoy_gateway();
    server.put(with_finalizer(rollout("mlp-v2", steps())));
    h.seen.set(0, 0, 0);
    let action = h.reconcile("mlp-v2").await.unwrap();
    assert_eq!(action, kube::runtime::controller::Action::requeue(Duration::from_secs(5)));
    assert_eq!(
        server.lines(),
        [
            format!("GET {}", policy_path("gateway")),
            rollouts_list(),
            format!("GET {}", config_map_path(CM)),
            format!("PATCH {}", config_map_path(CM)),
            format!("PATCH {}/status", rollout_path("mlp-v2")),
            format!("POST /apis/events.k8s.io/v1/namespaces/{NS}/events"),
            format!("POST /apis/events.k8s.io/v1/namespaces/{NS}/events"),
        ]
    );
    let calls = server.calls();
    let apply = &calls[3];
    assert_eq!(apply.content_type.as_deref(), Some("application/apply-patch+yaml"));
    assert_eq!(apply.query.get("fieldManager").map(String::as_str), Some("switchyard-operator"));
    assert_eq!(apply.query.get("force").map(String::as_str), Some("true"));
    // Only the field the operator owns is in the apply body.
    assert_eq!(apply.body["data"].as_object().unwrap().keys().collect::<Vec<_>>(), ["filter.yaml"]);
    assert_eq!(apply.body["metadata"], json!({"name": CM, "namespace": NS}));
    assert_eq!(weights(&carried(&server)), w(&[("v1", 95), ("v2", 5)]));
    let status_call = &calls[4];
    assert_eq!(status_call.query.get("fieldManager").map(String::as_str), Some("switchyard-operator"));
    assert_eq!(status_call.body["kind"], "ModelRollout");
    assert_eq!(
        status_call.body.as_object().unwrap().keys().collect::<BTreeSet<_>>(),
        BTreeSet::from([&"apiVersion".to_owned(), &"kind".to_owned(), &"status".to_owned()])
    );
    let st = server.rollout("mlp-v2").status.unwrap();
    assert_eq!(st.phase.as_deref(), Some("Running"));
    assert_eq!(st.step, Some(0));
    assert_eq!(st.traffic.as_ref().unwrap().weight, 5);
    assert_eq!(st.observed_generation, Some(1));
    assert_eq!(st.progress.as_ref().unwrap().stable, "v1");
    assert_eq!(st.progress.as_ref().unwrap().applied, Some(0));
    let ready = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "TrafficPolicyCarriesIt"));
    let progressing = st.conditions.iter().find(|c| c.type_ == "Progressing").unwrap();
    assert_eq!((progressing.status.as_str(), progressing.reason.as_str()), ("True", "Running"));
    let events = server.events();
    assert_eq!(events[0]["reason"], "Started");
    assert_eq!(events[0]["type"], "Normal");
    assert_eq!(events[0]["reportingController"], "switchyard-operator");
    assert_eq!(events[0]["regarding"]["kind"], "ModelRollout");
    assert_eq!(events[0]["regarding"]["name"], "mlp-v2");
    assert_eq!(events[0]["note"], "mlp/v2 against v1 in trafficpolicy/gateway: 4 steps");
    assert_eq!(events[1]["reason"], "StepApplied");
    assert_eq!(events[1]["note"], "step 0: mlp v2 at 5%, v1 at 95%");

    // Too early and too few requests: nothing changes, nothing is written.
    server.forget_calls();
    h.advance(Duration::from_secs(10));
    h.seen.set(40, 0, 800);
    h.reconcile("mlp-v2").await.unwrap();
    assert_eq!(
        server.lines(),
        [
            format!("GET {}", policy_path("gateway")),
            rollouts_list(),
            format!("GET {}", config_map_path(CM)),
            format!("PATCH {}/status", rollout_path("mlp-v2")),
        ],
        "only the step's numbers are written"
    );
    let d = server.rollout("mlp-v2").status.unwrap().last_decision.unwrap();
    assert_eq!(d.canary.unwrap().requests, 40);

    // The stage has lasted and served enough, as well as the stable version: on to 50%.
    server.forget_calls();
    h.advance(Duration::from_secs(25));
    h.seen.set(300, 0, 6000);
    h.reconcile("mlp-v2").await.unwrap();
    assert_eq!(weights(&carried(&server)), w(&[("v1", 50), ("v2", 50)]));
    let st = server.rollout("mlp-v2").status.unwrap();
    assert_eq!((st.phase.as_deref(), st.step), (Some("Running"), Some(1)));
    let reasons: Vec<String> = server.events().iter().map(|e| e["reason"].as_str().unwrap().to_owned()).collect();
    assert_eq!(reasons[2..], ["Advanced", "StepApplied"]);

    // The next stage passes too: the hold point keeps 50% and waits for a person.
    h.advance(Duration::from_secs(31));
    h.seen.set(600, 0, 9000);
    h.reconcile("mlp-v2").await.unwrap();
    let st = server.rollout("mlp-v2").status.unwrap();
    assert_eq!((st.phase.as_deref(), st.step), (Some("Holding"), Some(2)));
    assert_eq!(weights(&carried(&server)), w(&[("v1", 50), ("v2", 50)]));
    let p = st.conditions.iter().find(|c| c.type_ == "Progressing").unwrap();
    assert_eq!((p.status.as_str(), p.reason.as_str()), ("False", "Holding"));
    h.advance(Duration::from_secs(60));
    h.reconcile("mlp-v2").await.unwrap();
    assert_eq!(server.rollout("mlp-v2").status.unwrap().phase.as_deref(), Some("Holding"), "a hold waits");

    // A person approves step 2: the rollout goes on to its last step.
    let mut r = server.get(&rollout_path("mlp-v2")).unwrap();
    r["spec"]["approvedStep"] = json!(2);
    r["metadata"]["generation"] = json!(2);
    server.put(r);
    h.reconcile("mlp-v2").await.unwrap();
    let st = server.rollout("mlp-v2").status.unwrap();
    assert_eq!((st.phase.as_deref(), st.step, st.observed_generation), (Some("Running"), Some(3), Some(2)));
    assert_eq!(weights(&carried(&server)), w(&[("v1", 0), ("v2", 100)]));

    // Its last step passes: promoted, and the guard judges v2 as the stable version now.
    h.advance(Duration::from_secs(31));
    h.seen.set(2000, 0, 9000);
    let action = h.reconcile("mlp-v2").await.unwrap();
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    let st = server.rollout("mlp-v2").status.unwrap();
    assert_eq!(st.phase.as_deref(), Some("Promoted"));
    let carried = carried(&server);
    assert_eq!(weights(&carried), w(&[("v1", 0), ("v2", 100)]));
    let g = carried.models["mlp"].guard.as_ref().unwrap();
    assert_eq!((g.stable.as_deref(), g.epoch), (Some("v2"), 1));
    let reasons: Vec<String> = server.events().iter().map(|e| e["reason"].as_str().unwrap().to_owned()).collect();
    assert_eq!(
        reasons,
        [
            "Started",
            "StepApplied",
            "Advanced",
            "StepApplied",
            "Advanced",
            "Holding",
            "Resumed",
            "StepApplied",
            "Promoted"
        ]
    );
    // An ended rollout is left alone: a reconcile writes nothing.
    server.forget_calls();
    h.reconcile("mlp-v2").await.unwrap();
    assert!(server.lines().iter().all(|l| l.starts_with("GET")), "{:?}", server.lines());
    server
}

/// The data-plane guard took the canary out: the rollout aborts at once, the carrier gives
/// the canary no traffic and takes it off the override allow-list it was not on, and the
/// Event is a Warning with the reason.
async fn scenario_the_guard_trips() -> Arc<ApiServer> {
    let (server, h) = envoy_gateway();
    server.put(with_finalizer(rollout("mlp-v2", json!([{"ab": true}, {"weight": 20}]))));
    h.seen.set(0, 0, 0);
    h.reconcile("mlp-v2").await.unwrap();
    let allow = |s: &ApiServer| carried(s).models["mlp"].override_.as_ref().unwrap().allow.clone();
    assert_eq!(allow(&server), ["v1", "v2"], "an A/B step puts the canary on the allow-list");
    h.advance(Duration::from_secs(3));
    h.seen.set(50, 20, 500);
    h.seen.guard_out();
    let action = h.reconcile("mlp-v2").await.unwrap();
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    let st = server.rollout("mlp-v2").status.unwrap();
    assert_eq!(st.phase.as_deref(), Some("Aborted"));
    assert!(st.progress.unwrap().phase_reason.unwrap().contains("the data-plane guard"));
    assert_eq!(weights(&carried(&server)), w(&[("v1", 100), ("v2", 0)]));
    assert_eq!(allow(&server), ["v1"], "off the allow-list again");
    let last = server.events().pop().unwrap();
    assert_eq!((last["reason"].as_str(), last["type"].as_str()), (Some("GuardTripped"), Some("Warning")));
    server
}

/// Commands through the spec: pause holds the traffic; abort ends it at 0.
async fn scenario_pause_and_abort_by_spec() -> Arc<ApiServer> {
    let (server, h) = envoy_gateway();
    server.put(with_finalizer(rollout("mlp-v2", steps())));
    h.seen.set(0, 0, 0);
    h.reconcile("mlp-v2").await.unwrap();
    let mut r = server.get(&rollout_path("mlp-v2")).unwrap();
    r["spec"]["paused"] = json!(true);
    server.put(r.clone());
    h.advance(Duration::from_secs(40));
    h.seen.set(500, 0, 5000);
    h.reconcile("mlp-v2").await.unwrap();
    let st = server.rollout("mlp-v2").status.unwrap();
    assert_eq!((st.phase.as_deref(), st.step), (Some("Paused"), Some(0)), "paused: not advanced");
    assert_eq!(weights(&carried(&server)), w(&[("v1", 95), ("v2", 5)]));
    let mut r = server.get(&rollout_path("mlp-v2")).unwrap();
    r["spec"]["abort"] = json!(true);
    server.put(r);
    h.reconcile("mlp-v2").await.unwrap();
    let st = server.rollout("mlp-v2").status.unwrap();
    assert_eq!(st.phase.as_deref(), Some("Aborted"));
    assert_eq!(st.last_decision.unwrap().reason, "aborted by hand: spec.abort is set");
    assert_eq!(weights(&carried(&server)), w(&[("v1", 100), ("v2", 0)]));
    let reasons: Vec<String> = server.events().iter().map(|e| e["reason"].as_str().unwrap().to_owned()).collect();
    assert_eq!(reasons, ["Started", "StepApplied", "Paused", "Aborted"]);
    server
}

/// A conflict on the status write (another writer, or a stale object): the reconcile fails
/// and is retried; the retry finds the carrier already as wanted and writes only the status.
async fn scenario_a_conflict_is_retried_without_acting_twice() -> Arc<ApiServer> {
    let (server, h) = envoy_gateway();
    server.put(with_finalizer(rollout("mlp-v2", steps())));
    h.seen.set(0, 0, 0);
    server.refuse_once(&format!("PATCH {}/status", rollout_path("mlp-v2")), 409);
    let e = h.reconcile("mlp-v2").await.unwrap_err();
    assert!(e.to_string().contains("409") || e.to_string().contains("Conflict"), "{e}");
    assert_eq!(weights(&carried(&server)), w(&[("v1", 95), ("v2", 5)]), "acted before the status");
    assert!(server.rollout("mlp-v2").status.is_none());
    server.forget_calls();
    h.reconcile("mlp-v2").await.unwrap();
    assert_eq!(
        server.lines(),
        [
            format!("GET {}", policy_path("gateway")),
            rollouts_list(),
            format!("GET {}", config_map_path(CM)),
            format!("PATCH {}/status", rollout_path("mlp-v2")),
            format!("POST /apis/events.k8s.io/v1/namespaces/{NS}/events"),
            format!("POST /apis/events.k8s.io/v1/namespaces/{NS}/events"),
        ],
        "the carrier is not written again"
    );
    assert_eq!(server.rollout("mlp-v2").status.unwrap().phase.as_deref(), Some("Running"));
    server
}

/// What cannot run is said in the status, once as a Warning, and retried: no TrafficPolicy,
/// an invalid spec (every problem named), a policy without the canary, a carrier missing.
async fn scenario_what_cannot_run_is_said() -> Arc<ApiServer> {
    let server = ApiServer::new();
    let h = Harness::new(server.clone());
    server.put(with_finalizer(rollout("mlp-v2", steps())));
    let action = h.reconcile("mlp-v2").await.unwrap();
    assert_eq!(action, kube::runtime::controller::Action::requeue(Duration::from_secs(30)));
    let st = server.rollout("mlp-v2").status.unwrap();
    assert_eq!(st.phase.as_deref(), Some("Pending"));
    let ready = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str(), ready.message.as_str()),
        ("False", "TrafficPolicyNotFound", "trafficpolicy/gateway does not exist in switchyard")
    );
    assert_eq!(server.event_lines(), ["TrafficPolicyNotFound: trafficpolicy/gateway does not exist in switchyard"]);
    // Again: the same status is not written again, nor the same Event.
    server.forget_calls();
    h.reconcile("mlp-v2").await.unwrap();
    assert_eq!(server.lines(), [format!("GET {}", policy_path("gateway"))]);

    // A second rollout of a model that has one running waits its turn.
    let (busy_server, busy) = envoy_gateway();
    busy_server.put(with_finalizer(rollout("first", steps())));
    busy.seen.set(0, 0, 0);
    busy.reconcile("first").await.unwrap();
    busy_server.put(with_finalizer(rollout("second", steps())));
    busy.reconcile("second").await.unwrap();
    let ready =
        busy_server.rollout("second").status.unwrap().conditions.into_iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(
        (ready.reason.as_str(), ready.message.as_str()),
        ("Busy", "modelrollout/first is rolling mlp out on trafficpolicy/gateway: one rollout per model at a time")
    );
    assert_eq!(weights(&carried(&busy_server)), w(&[("v1", 95), ("v2", 5)]), "the first rollout's traffic stays");

    // An invalid spec: every problem, and no call beyond the status and its Event.
    let mut bad = with_finalizer(rollout("bad", json!([{"weight": 50}, {"weight": 10}])));
    bad["spec"]["stable"] = json!("v2");
    bad["spec"]["analysis"] = json!({"confidence": 1.5});
    server.put(bad);
    server.forget_calls();
    assert_eq!(h.reconcile("bad").await.unwrap(), kube::runtime::controller::Action::await_change());
    let st = server.rollout("bad").status.unwrap();
    assert_eq!(st.phase.as_deref(), Some("Invalid"));
    let msg = &st.conditions.iter().find(|c| c.type_ == "Ready").unwrap().message;
    for needle in ["stable and canary are the same", "must not decrease", "confidence"] {
        assert!(msg.contains(needle), "{needle} missing from {msg}");
    }
    assert_eq!(server.lines()[0], format!("PATCH {}/status", rollout_path("bad")));

    // A policy whose model has no such canary; then the carrier missing.
    server.put(traffic_policy(json!({"configMap": {"name": CM}})));
    let mut r = with_finalizer(rollout("v9", steps()));
    r["spec"]["canary"] = json!("v9");
    server.put(r);
    h.reconcile("v9").await.unwrap();
    let st = server.rollout("v9").status.unwrap();
    let ready = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!((ready.reason.as_str(), ready.message.as_str()), ("NotRunnable", "model 'mlp' has no version 'v9'"));
    h.seen.set(0, 0, 0);
    h.reconcile("mlp-v2").await.unwrap();
    let st = server.rollout("mlp-v2").status.unwrap();
    let ready = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.reason, "CarrierMissing");
    assert!(ready.message.contains("configmap/switchyard-gateway-filter does not exist"), "{}", ready.message);
    server
}

/// A rollout deleted at 50%: the finalizer's cleanup gives the traffic back to what the
/// TrafficPolicy says (v2 at 0), says so in an Event, then removes the finalizer with a JSON
/// patch that tests it is still ours.
async fn scenario_deleted_mid_way() -> Arc<ApiServer> {
    let (server, h) = envoy_gateway();
    server.put(with_finalizer(rollout("mlp-v2", json!([{"weight": 50}, {"weight": 100}]))));
    h.seen.set(0, 0, 0);
    h.reconcile("mlp-v2").await.unwrap();
    assert_eq!(weights(&carried(&server)), w(&[("v1", 50), ("v2", 50)]));
    let mut r = server.get(&rollout_path("mlp-v2")).unwrap();
    r["metadata"]["deletionTimestamp"] = json!("2026-12-07T12:01:00Z");
    server.put(r);
    server.forget_calls();
    h.reconcile("mlp-v2").await.unwrap();
    assert_eq!(
        server.lines(),
        [
            format!("GET {}", policy_path("gateway")),
            rollouts_list(),
            format!("GET {}", config_map_path(CM)),
            format!("PATCH {}", config_map_path(CM)),
            format!("POST /apis/events.k8s.io/v1/namespaces/{NS}/events"),
            format!("PATCH {}", rollout_path("mlp-v2")),
        ]
    );
    assert_eq!(weights(&carried(&server)), w(&[("v1", 100), ("v2", 0)]));
    let last = server.calls().pop().unwrap();
    assert_eq!(
        last.body,
        json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "switchyard.dev/traffic"},
               {"op": "remove", "path": "/metadata/finalizers/0"}])
    );
    assert!(server.event_lines().last().unwrap().starts_with(
        "TrafficRestored: deleted: configmap/switchyard-gateway-filter has trafficpolicy/gateway's own traffic for mlp"
    ));
    server
}

/// A TrafficPolicy: written into an Istio WasmPlugin's pluginConfig by apply (the rest of the
/// object is the overlay's), its version in the status; an invalid one is refused with every
/// problem and the carrier keeps the last valid policy.
async fn scenario_a_traffic_policy_is_checked_and_carried() -> Arc<ApiServer> {
    let server = ApiServer::new();
    server.put(traffic_policy(json!({"wasmPlugin": {"name": "switchyard"}})));
    server.put(json!({"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
        "metadata": {"name": "switchyard", "namespace": NS},
        "spec": {"url": "oci://switchyard/filter:0.1.0", "pluginConfig": {"models": {}}}}));
    let h = Harness::new(server.clone());
    h.reconcile_policy("gateway").await.unwrap();
    assert_eq!(
        server.lines(),
        [
            rollouts_list(),
            format!("GET {}", wasm_plugin_path("switchyard")),
            format!("PATCH {}", wasm_plugin_path("switchyard")),
            format!("PATCH {}/status", policy_path("gateway")),
            format!("POST /apis/events.k8s.io/v1/namespaces/{NS}/events"),
        ]
    );
    let apply = &server.calls()[2];
    assert_eq!(apply.body["spec"].as_object().unwrap().keys().collect::<Vec<_>>(), ["pluginConfig"]);
    let plugin = server.get(&wasm_plugin_path("switchyard")).unwrap();
    assert_eq!(plugin["spec"]["url"], "oci://switchyard/filter:0.1.0", "the overlay's fields stay");
    assert_eq!(plugin["spec"]["pluginConfig"]["models"]["mlp"]["versions"][0]["weight"], 100);
    let st = server.policy("gateway").status.unwrap();
    assert_eq!(st.carrier.as_deref(), Some("wasmplugin/switchyard"));
    assert!(st.filter_config_version.is_some());
    // Unchanged: nothing written.
    server.forget_calls();
    h.reconcile_policy("gateway").await.unwrap();
    assert_eq!(server.lines(), [rollouts_list(), format!("GET {}", wasm_plugin_path("switchyard"))]);
    // Invalid: weights of 100 + 50, and an unknown field.
    let mut tp = server.get(&policy_path("gateway")).unwrap();
    tp["spec"]["policy"]["models"]["mlp"]["versions"][1]["weight"] = json!(50);
    tp["spec"]["policy"]["sampling_rate"] = json!(1);
    server.put(tp);
    server.forget_calls();
    h.reconcile_policy("gateway").await.unwrap();
    assert_eq!(
        server.lines(),
        [
            rollouts_list(),
            format!("PATCH {}/status", policy_path("gateway")),
            format!("POST /apis/events.k8s.io/v1/namespaces/{NS}/events")
        ],
        "the carrier is neither read nor written"
    );
    let st = server.policy("gateway").status.unwrap();
    assert!(!st.problems.is_empty());
    let valid = st.conditions.iter().find(|c| c.type_ == "Valid").unwrap();
    assert_eq!((valid.status.as_str(), valid.reason.as_str()), ("False", "InvalidPolicy"));
    assert_eq!(
        server.get(&wasm_plugin_path("switchyard")).unwrap()["spec"]["pluginConfig"]["models"]["mlp"]["versions"][1]["weight"],
        0
    );
    server
}

/// Prometheus unreachable mid-step: the rollout holds where it is (no judgement on no numbers),
/// `Progressing` says why (one Warning Event, not one per retry), and it goes on when the
/// numbers come back.
async fn scenario_no_metrics_holds_the_rollout() -> Arc<ApiServer> {
    let (server, h) = envoy_gateway();
    server.put(with_finalizer(rollout("mlp-v2", steps())));
    h.seen.set(0, 0, 0);
    h.reconcile("mlp-v2").await.unwrap();
    h.seen.blind(true);
    h.advance(Duration::from_secs(40));
    let e = h.reconcile("mlp-v2").await.unwrap_err();
    assert_eq!(e.kind(), "observe", "{e}");
    h.reconcile("mlp-v2").await.unwrap_err();
    let st = server.rollout("mlp-v2").status.unwrap();
    assert_eq!((st.phase.as_deref(), st.step), (Some("Running"), Some(0)));
    let p = st.conditions.iter().find(|c| c.type_ == "Progressing").unwrap();
    assert_eq!((p.status.as_str(), p.reason.as_str()), ("False", "MetricsUnavailable"));
    assert!(p.message.contains("prometheus:9090"), "{}", p.message);
    let warnings: Vec<String> =
        server.event_lines().into_iter().filter(|l| l.starts_with("MetricsUnavailable")).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(weights(&carried(&server)), w(&[("v1", 95), ("v2", 5)]));
    h.seen.blind(false);
    h.seen.set(300, 0, 3000);
    h.reconcile("mlp-v2").await.unwrap();
    let st = server.rollout("mlp-v2").status.unwrap();
    assert_eq!((st.phase.as_deref(), st.step), (Some("Running"), Some(1)));
    let p = st.conditions.iter().find(|c| c.type_ == "Progressing").unwrap();
    assert_eq!((p.status.as_str(), p.reason.as_str()), ("True", "Running"));
    server
}

#[tokio::test]
async fn without_metrics_a_rollout_holds_and_says_why() {
    scenario_no_metrics_holds_the_rollout().await;
}

/// Envoy Gateway: the policy is the `config` of one entry of the EnvoyExtensionPolicy's
/// `spec.wasm`, an atomic list. The apply sends the whole list as read (the other entry and the
/// entry's code untouched) with that `config` replaced, under the `resourceVersion` read; a
/// policy without the entry is told, not created.
async fn scenario_an_envoy_extension_policy_carries_it() -> Arc<ApiServer> {
    let server = ApiServer::new();
    server.put(traffic_policy(json!({"envoyExtensionPolicy": {"name": "switchyard"}})));
    let code = json!({"type": "Image", "image": {"url": "switchyard/switchyard-filter:0.1.0"}});
    server.put(json!({"apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "EnvoyExtensionPolicy",
        "metadata": {"name": "switchyard", "namespace": NS},
        "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "switchyard-gateway"}],
                 "wasm": [{"name": "auth", "code": {"type": "HTTP", "http": {"url": "https://x/auth.wasm"}}},
                          {"name": "switchyard", "code": code, "failOpen": true, "config": {"models": {}}}]}}));
    let h = Harness::new(server.clone());
    h.reconcile_policy("gateway").await.unwrap();
    let path = envoy_extension_policy_path("switchyard");
    assert_eq!(server.lines()[..3], [rollouts_list(), format!("GET {path}"), format!("PATCH {path}")]);
    let apply = &server.calls()[2];
    assert_eq!(apply.query.get("fieldManager").map(String::as_str), Some("switchyard-operator"));
    assert!(apply.body["metadata"]["resourceVersion"].is_string(), "{}", apply.body);
    let wasm = apply.body["spec"]["wasm"].as_array().unwrap();
    assert_eq!(wasm.len(), 2);
    assert_eq!(wasm[0]["name"], "auth");
    assert!(wasm[0].get("config").is_none(), "another entry untouched");
    assert_eq!((&wasm[1]["code"], &wasm[1]["failOpen"]), (&code, &json!(true)));
    assert_eq!(wasm[1]["config"]["models"]["mlp"]["versions"][0]["weight"], 100);
    let eep = server.get(&path).unwrap();
    assert_eq!(eep["spec"]["targetRefs"][0]["name"], "switchyard-gateway", "the overlay's fields stay");
    let st = server.policy("gateway").status.unwrap();
    assert_eq!(st.carrier.as_deref(), Some("envoyextensionpolicy/switchyard"));
    // Unchanged: read, not written.
    server.forget_calls();
    h.reconcile_policy("gateway").await.unwrap();
    assert_eq!(server.lines(), [rollouts_list(), format!("GET {path}")]);
    // Without the entry: said in the status, nothing written.
    let mut eep = server.get(&path).unwrap();
    eep["spec"]["wasm"] = json!([eep["spec"]["wasm"][0].clone()]);
    eep["metadata"]["generation"] = json!(2);
    server.put(eep);
    let mut tp = server.get(&policy_path("gateway")).unwrap();
    tp["spec"]["policy"]["models"]["mlp"]["versions"][1]["weight"] = json!(10);
    tp["spec"]["policy"]["models"]["mlp"]["versions"][0]["weight"] = json!(90);
    server.put(tp);
    server.forget_calls();
    h.reconcile_policy("gateway").await.unwrap();
    assert!(!server.lines().iter().any(|l| l == &format!("PATCH {path}")), "{:?}", server.lines());
    let ready = server.policy("gateway").status.unwrap().conditions.into_iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.reason, "CarrierMissing");
    assert!(
        ready.message.contains("envoyextensionpolicy/switchyard with a spec.wasm entry named switchyard"),
        "{}",
        ready.message
    );
    server
}

#[tokio::test]
async fn an_envoy_extension_policy_carries_it_whole_list_and_all() {
    scenario_an_envoy_extension_policy_carries_it().await;
}

#[tokio::test]
async fn a_new_rollout_gets_its_finalizer_before_anything_else() {
    scenario_finalizer_first().await;
}

#[tokio::test]
async fn a_rollout_runs_its_steps_with_apply_status_and_events() {
    scenario_a_rollout_runs_its_steps().await;
}

#[tokio::test]
async fn the_guard_tripping_aborts_with_a_warning() {
    scenario_the_guard_trips().await;
}

#[tokio::test]
async fn pause_and_abort_are_given_through_the_spec() {
    scenario_pause_and_abort_by_spec().await;
}

#[tokio::test]
async fn a_conflict_is_retried_without_acting_twice() {
    scenario_a_conflict_is_retried_without_acting_twice().await;
}

#[tokio::test]
async fn what_cannot_run_is_said_in_the_status_once() {
    scenario_what_cannot_run_is_said().await;
}

#[tokio::test]
async fn a_rollout_deleted_mid_way_gives_its_traffic_back() {
    scenario_deleted_mid_way().await;
}

#[tokio::test]
async fn a_traffic_policy_is_checked_and_carried() {
    scenario_a_traffic_policy_is_checked_and_carried().await;
}

/// `(api group, resource[/subresource], verb, name)` of a request, as RBAC sees it.
fn access(call: &Call) -> (String, String, String, Option<String>) {
    let parts: Vec<&str> = call.path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.first() {
        Some(&"api") => (String::new(), &parts[2..]),
        _ => (parts[1].to_owned(), &parts[3..]),
    };
    // namespaces/NS/RESOURCE[/NAME[/SUB]]
    let resource = rest[2].to_owned();
    let name = rest.get(3).map(|s| (*s).to_owned());
    let sub = rest.get(4).map(|s| format!("{resource}/{s}"));
    let watch = call.query.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = match (call.method.as_str(), &name) {
        ("GET", None) if watch => "watch",
        ("GET", None) => "list",
        ("GET", Some(_)) => "get",
        ("POST", _) => "create",
        ("PATCH", _) => "patch",
        ("PUT", _) => "update",
        ("DELETE", _) => "delete",
        (m, _) => panic!("unexpected method {m}"),
    };
    (group, sub.unwrap_or(resource), verb.to_owned(), name)
}

/// Runs the real controllers (list, watch, reconcile) against the stand-in server for a moment,
/// as `switchyard-operator run` does: the requests only they make (list, watch) are recorded.
async fn scenario_the_controllers_list_and_watch() -> Arc<ApiServer> {
    use futures::StreamExt;
    use kube::runtime::controller::Controller;
    use kube::runtime::watcher;
    use switchyard_operator::crd::{ModelRollout, TrafficPolicy};
    use switchyard_operator::reconcile::{error_policy, reconcile_policy, reconcile_rollout};
    let (server, h) = envoy_gateway();
    server.put(rollout("mlp-v2", steps()));
    let client = server.client();
    let rollouts: kube::Api<ModelRollout> = kube::Api::namespaced(client.clone(), NS);
    let policies: kube::Api<TrafficPolicy> = kube::Api::namespaced(client, NS);
    let ctx = h.ctx.clone();
    let a = Controller::new(rollouts, watcher::Config::default())
        .run(reconcile_rollout, error_policy, ctx.clone())
        .for_each(|_| async {});
    let b = Controller::new(policies, watcher::Config::default())
        .run(reconcile_policy, error_policy, ctx)
        .for_each(|_| async {});
    let both = futures::future::join(a, b);
    let seen = server.clone();
    let done = async move {
        // Until the rollout has its finalizer and the policy its status.
        loop {
            let r = seen.get(&rollout_path("mlp-v2")).unwrap();
            let p = seen.get(&policy_path("gateway")).unwrap();
            if r["metadata"]["finalizers"].is_array() && p.get("status").is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        _ = both => panic!("the controllers stopped"),
        () = done => {}
        () = tokio::time::sleep(Duration::from_secs(20)) => panic!("the controllers did not reconcile: {:?}", server.lines()),
    }
    let lines = server.lines();
    assert!(lines.iter().any(|l| l.starts_with(&format!("GET {}", rollout_path("").trim_end_matches('/')))));
    server
}

#[tokio::test]
async fn the_controllers_list_watch_and_reconcile() {
    scenario_the_controllers_list_and_watch().await;
}

/// Leader election: the first replica creates the Lease and holds it; the requests are
/// recorded for the Role.
async fn scenario_leader_election() -> Arc<ApiServer> {
    use switchyard_operator::lead::{LeaseArgs, acquire};
    let server = ApiServer::new();
    let args = LeaseArgs {
        name: "switchyard-operator".into(),
        namespace: NS.into(),
        identity: "operator-0".into(),
        duration: Duration::from_secs(15),
        grace: Duration::from_secs(5),
    };
    let lead = tokio::time::timeout(Duration::from_secs(20), acquire(server.client(), &args)).await;
    assert!(lead.is_ok_and(|l| l.is_ok()), "not leading: {:?}", server.lines());
    let lease =
        server.get(&format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/switchyard-operator")).unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "operator-0");
    server
}

#[tokio::test]
async fn the_first_replica_takes_the_lease() {
    scenario_leader_election().await;
}

#[tokio::test]
async fn the_role_grants_exactly_what_the_code_asks() {
    let servers = vec![
        scenario_finalizer_first().await,
        scenario_a_rollout_runs_its_steps().await,
        scenario_the_guard_trips().await,
        scenario_pause_and_abort_by_spec().await,
        scenario_a_conflict_is_retried_without_acting_twice().await,
        scenario_what_cannot_run_is_said().await,
        scenario_deleted_mid_way().await,
        scenario_no_metrics_holds_the_rollout().await,
        scenario_the_controllers_list_and_watch().await,
        scenario_leader_election().await,
    ];
    let istio = scenario_a_traffic_policy_is_checked_and_carried().await;
    let envoy_gateway = scenario_an_envoy_extension_policy_carries_it().await;
    let lease = "switchyard-operator";
    let check = |servers: &[Arc<ApiServer>], carrier: CarrierRef| {
        let rules = rules(&carrier, lease);
        let mut used = BTreeSet::new();
        for call in servers.iter().flat_map(|s| s.all_calls()) {
            let (group, resource, verb, name) = access(&call);
            let granted = rules.iter().position(|(r, names)| {
                r.group == group
                    && r.resource == resource
                    && r.verbs.contains(&verb.as_str())
                    && (names.is_empty() || name.as_ref().is_some_and(|n| names.contains(n)))
            });
            let Some(i) = granted else {
                panic!("the Role does not grant {verb} {group}/{resource} {name:?}, which {} needs", call.line());
            };
            used.insert((i, verb));
        }
        for (i, (r, _)) in rules.iter().enumerate() {
            for v in r.verbs {
                assert!(
                    used.contains(&(i, (*v).to_owned())),
                    "the Role grants {v} on {}/{} ({:?}), which no request needs",
                    r.group,
                    r.resource,
                    r.names
                );
            }
        }
    };
    check(&servers, CarrierRef::ConfigMap(CM.into()));
    // The Istio and Envoy Gateway carriers' rules are checked on their own scenarios (the others
    // all use the ConfigMap).
    for (server, carrier, kind) in [
        (&istio, CarrierRef::WasmPlugin("switchyard".into()), "/wasmplugins/"),
        (&envoy_gateway, CarrierRef::EnvoyExtensionPolicy("switchyard".into()), "/envoyextensionpolicies/"),
    ] {
        let (rule, name) = switchyard_operator::rbac::carrier_rule(&carrier);
        assert_eq!(rule.names, Names::Carrier);
        let calls: Vec<Call> = server.all_calls().into_iter().filter(|c| c.path.contains(kind)).collect();
        let verbs: BTreeSet<String> = calls.iter().map(|c| access(c).2).collect();
        assert_eq!(verbs, rule.verbs.iter().map(|v| (*v).to_owned()).collect(), "{kind}");
        for call in &calls {
            let (group, resource, _, n) = access(call);
            assert_eq!(
                (group.as_str(), resource.as_str(), n.as_deref()),
                (rule.group, rule.resource, Some(name.as_str()))
            );
        }
    }
}
