//! The controller acting on a cluster's objects: the real binary against a stand-in for the
//! API server as `kubectl proxy` presents it (no cluster can run here). The stand-in keeps one
//! object and applies JSON Patch (RFC 6902, the `json-patch` crate) as the API server does,
//! taking only the `test` and `replace` the controller sends; `k8s/smoke.sh` runs the same
//! commands against a real cluster.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use json_patch::{Patch, PatchOperation};
use serde_json::{Value, json};
use switchyard_deploy::Policy;
use switchyard_deploy::apply::{policy_of_filter_config, wasm_of_filter_config};
use switchyard_deploy::render::envoy::filter_config;
use switchyard_deploy::render::json_text;

#[derive(Default)]
struct Api {
    path: String,
    object: Value,
    patches: Vec<Value>,
}

type Shared = Arc<Mutex<Api>>;

async fn get(State(api): State<Shared>, uri: Uri) -> (StatusCode, String) {
    let api = api.lock().unwrap();
    if uri.path() != api.path {
        return (
            StatusCode::NOT_FOUND,
            json!({"kind": "Status", "message": format!("{} not found", uri.path())}).to_string(),
        );
    }
    (StatusCode::OK, api.object.to_string())
}

async fn patch(State(api): State<Shared>, uri: Uri, headers: HeaderMap, body: String) -> (StatusCode, String) {
    let mut api = api.lock().unwrap();
    let status = |code: StatusCode, message: &str| (code, json!({"kind": "Status", "message": message}).to_string());
    if uri.path() != api.path {
        return status(StatusCode::NOT_FOUND, "not found");
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json-patch+json") {
        return status(StatusCode::UNSUPPORTED_MEDIA_TYPE, "only JSON Patch here");
    }
    api.patches.push(serde_json::from_str(&body).unwrap());
    let ops: Patch = serde_json::from_str(&body).unwrap();
    if let Some(other) = ops.iter().find(|op| !matches!(op, PatchOperation::Test(_) | PatchOperation::Replace(_))) {
        return status(StatusCode::UNPROCESSABLE_ENTITY, &format!("op {other} not expected"));
    }
    let mut next = api.object.clone();
    if let Err(e) = json_patch::patch(&mut next, &ops) {
        return status(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string());
    }
    let rv: u64 = next["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    next["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
    api.object = next.clone();
    (StatusCode::OK, next.to_string())
}

/// Serves `object` at `path` on a loopback port; returns HOST:PORT.
fn serve(api: Shared) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().fallback(axum::routing::get(get).patch(patch)).with_state(api);
            axum::serve(tokio::net::TcpListener::from_std(listener).unwrap(), app).await.unwrap();
        });
    });
    addr
}

fn policy() -> Value {
    let mut p: Value = serde_json::from_str(include_str!("../../envoy/policy.json")).unwrap();
    for v in p["models"]["mlp"]["versions"].as_array_mut().unwrap() {
        let c = v["cluster"].as_str().unwrap().to_owned();
        v["cluster"] = json!(format!("outbound|8000||{c}.switchyard.svc.cluster.local"));
    }
    p["models"]["mlp"]["versions"][0]["weight"] = json!(100);
    p["models"]["mlp"]["versions"][1]["weight"] = json!(0);
    p
}

fn rollout(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard-rollout"))
        .arg("--state-dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("switchyard-kube-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn weights(p: &Value) -> Vec<u64> {
    p["models"]["mlp"]["versions"].as_array().unwrap().iter().map(|v| v["weight"].as_u64().unwrap()).collect()
}

const SPEC: &str = "model: mlp\ncanary: v2\nsteps:\n  - {weight: 20, min_duration: 60s, min_requests: 20}\n";

#[test]
fn the_controller_changes_the_wasm_plugins_plugin_config_and_never_overwrites_a_change_it_did_not_see() {
    let path = "/apis/extensions.istio.io/v1alpha1/namespaces/switchyard/wasmplugins/switchyard";
    let object = json!({
        "apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
        "metadata": {"name": "switchyard", "namespace": "switchyard", "resourceVersion": "100"},
        "spec": {"url": "oci://switchyard/switchyard-filter:0.1.0", "pluginConfig": policy()},
    });
    let api = Arc::new(Mutex::new(Api { path: path.into(), object, patches: Vec::new() }));
    let addr = serve(api.clone());
    let dir = scratch("wasmplugin");
    let spec = dir.join("spec.yaml");
    std::fs::write(&spec, SPEC).unwrap();
    let kube = ["--kube-api", &addr, "--namespace", "switchyard", "--wasm-plugin", "switchyard"];
    let spec_arg = spec.to_str().unwrap();

    // Without a carrier the command says what is missing.
    let (ok, text) = rollout(&dir, &["start", spec_arg, "--kube-api", &addr, "--namespace", "switchyard"]);
    assert!(!ok && text.contains("--kube-api needs --wasm-plugin NAME or --config-map NAME"), "{text}");

    let (ok, text) = rollout(&dir, &[&["start", spec_arg][..], &kube[..]].concat());
    assert!(ok, "{text}");
    // `start` records; the controller's tick (or a command) changes traffic. Abort: the
    // canary's weight goes to 0 at once (it is 0 already: nothing to patch).
    let (ok, text) = rollout(&dir, &["promote"]);
    assert!(ok, "{text}");
    {
        let api = api.lock().unwrap();
        assert_eq!(weights(&api.object["spec"]["pluginConfig"]), [0, 100], "{text}");
        assert_eq!(api.patches.len(), 1);
        assert_eq!(api.patches[0][0], json!({"op": "test", "path": "/metadata/resourceVersion", "value": "100"}));
        // The rest of the policy, Istio's cluster names included, is as it was.
        let cluster = &api.object["spec"]["pluginConfig"]["models"]["mlp"]["versions"][1]["cluster"];
        assert_eq!(cluster, "outbound|8000||mlp-v2.switchyard.svc.cluster.local");
        assert_eq!(api.object["spec"]["url"], "oci://switchyard/switchyard-filter:0.1.0");
    }

    // Someone changes the object by hand; a new rollout reads the change and patches on top.
    {
        let mut api = api.lock().unwrap();
        api.object["spec"]["pluginConfig"] = policy();
        api.object["metadata"]["resourceVersion"] = json!("200");
    }
    let dir2 = scratch("wasmplugin-2");
    assert!(rollout(&dir2, &[&["start", spec_arg][..], &kube[..]].concat()).0);
    let (ok, text) = rollout(&dir2, &["abort", "--reason", "test"]);
    assert!(ok, "{text}");
    let (ok, text) = rollout(&dir2, &["reset-guard"]);
    assert!(ok, "{text}");
    let api = api.lock().unwrap();
    // Each change tested the version it had just read: the hand-made one, then its own.
    let tested: Vec<&Value> = api.patches.iter().map(|p| &p[0]["value"]).collect();
    assert_eq!(tested, [&json!("100"), &json!("200"), &json!("201")]);
    assert_eq!(api.object["spec"]["pluginConfig"]["models"]["mlp"]["shadow"]["percent"], 0.0);
    assert_eq!(api.object["spec"]["pluginConfig"]["models"]["mlp"]["guard"]["epoch"], 1);
}

#[test]
fn the_controller_changes_the_envoy_gateways_ecds_config_map_and_reports_the_api_servers_refusal() {
    let path = "/api/v1/namespaces/switchyard/configmaps/switchyard-gateway-filter";
    let p: Value = serde_json::from_str(include_str!("../../envoy/policy.json")).unwrap();
    let policy = Policy::parse(p.to_string()).unwrap();
    let wasm = "/etc/switchyard/filter/switchyard_filter.wasm";
    let doc = filter_config(&policy, wasm);
    let object = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "switchyard-gateway-filter", "namespace": "switchyard", "resourceVersion": "5"},
        "data": {"filter.yaml": json_text(&doc)},
    });
    let api = Arc::new(Mutex::new(Api { path: path.into(), object, patches: Vec::new() }));
    let addr = serve(api.clone());
    let dir = scratch("configmap");
    let spec = dir.join("spec.yaml");
    std::fs::write(&spec, SPEC).unwrap();
    let start = [
        "start",
        spec.to_str().unwrap(),
        "--kube-api",
        &addr,
        "--namespace",
        "switchyard",
        "--config-map",
        "switchyard-gateway-filter",
    ];
    let (ok, text) = rollout(&dir, &start);
    assert!(ok, "{text}");
    let (ok, text) = rollout(&dir, &["promote"]);
    assert!(ok, "{text}");
    {
        let api = api.lock().unwrap();
        let doc: Value = serde_json::from_str(api.object["data"]["filter.yaml"].as_str().unwrap()).unwrap();
        let now = policy_of_filter_config(&doc).unwrap();
        let v = &now.config().models["mlp"].versions;
        assert_eq!((v[0].weight, v[1].weight), (0, 100));
        assert_eq!(wasm_of_filter_config(&doc), Some(wasm));
    }

    // An object the controller may not read (RBAC, a wrong name) is a clear error, not a panic.
    let dir2 = scratch("configmap-missing");
    let mut wrong = start;
    wrong[7] = "other";
    let (ok, text) = rollout(&dir2, &wrong);
    assert!(!ok && text.contains("GET configmap/other (filter.yaml) in switchyard: 404: "), "{text}");
}
