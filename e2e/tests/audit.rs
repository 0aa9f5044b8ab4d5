//! Changes to traffic are attributable end to end: on the real stack, every policy put in force
//! through the tools — the command line (as `envoy/apply-policy.sh` runs it) and the console
//! through the rollout controller — is in the audit trail with who, how and what changed, and
//! `switchyard-policy audit --check` agrees with Envoy; a filter file swapped by hand (around
//! the tools, as someone with write access to the state directory could) is found by the same
//! check and by the controller's `switchyard_rollout_policy_unrecorded` gauge, which clears when
//! the recorded policy is back; an edited trail breaks its hash chain.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_testkit::process::{Log, OnDrop, Process, address_after};
use switchyard_testkit::stack::{Stack, mlp_policy, policy_tool, wasm_path};
use switchyard_testkit::*;

/// `switchyard-policy audit --bootstrap B [args]`: its records (with `--json`), or its error.
fn audit(bootstrap: &Path, args: &[&str]) -> Result<Vec<Value>, String> {
    let mut a = vec!["audit", "--bootstrap", bootstrap.to_str().unwrap()];
    a.extend_from_slice(args);
    policy_tool(&a)
        .map(|out| out.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect())
}

fn weights(v1: u32) -> Value {
    mlp_policy(&json!({"versions": [
        {"name": "v1", "cluster": "mlp-v1", "weight": v1},
        {"name": "v2", "cluster": "mlp-v2", "weight": 100 - v1}
    ]}))
}

fn unrecorded(admin: &str) -> Option<f64> {
    let text = String::from_utf8_lossy(&request(admin, "GET", "/metrics", &[], b"").body).into_owned();
    text.lines().find_map(|l| l.strip_prefix("switchyard_rollout_policy_unrecorded ")?.trim().parse().ok())
}

#[test]
fn every_change_through_the_tools_is_recorded_and_one_around_them_is_found() {
    let stack = Stack::start("audit", &weights(90));
    let bootstrap = stack.dir.join("envoy.yaml");
    let state = stack.dir.join("rollout");
    let mut cmd = Command::new(workspace_bin("switchyard-rollout"));
    cmd.arg("--state-dir").arg(&state).args(["run", "--keep-running", "--interval", "200ms"]);
    cmd.args(["--admin-addr", "127.0.0.1:0", "--envoy-admin", &stack.admin]);
    cmd.arg("--policy").arg(&stack.policy_file).arg("--bootstrap").arg(&bootstrap).arg("--wasm").arg(wasm_path());
    let (controller, line) = Process::spawn_reporting("switchyard-rollout", cmd, Log::Memory).unwrap();
    let _controller = controller.on_drop(OnDrop::Kill);
    let admin = address_after(&line, "on").unwrap_or_else(|| panic!("no console address in {line:?}"));
    let token = std::fs::read_to_string(state.join("admin-token")).unwrap().trim().to_owned();
    wait_until(Duration::from_secs(10), "the controller's audit check", || unrecorded(&admin) == Some(0.0));

    // Through the command line, by a named person.
    let file = stack.dir.join("policy-alice.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&weights(50)).unwrap()).unwrap();
    let out = Command::new(workspace_bin("switchyard-policy"))
        .env("SWITCHYARD_ACTOR", "alice")
        .args(["render", "filter", "--policy", file.to_str().unwrap(), "--wasm", wasm_path().to_str().unwrap()])
        .args(["--bootstrap", bootstrap.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Through the console, by another.
    let body = json!({"policy": weights(30).to_string(), "actor": "bob"}).to_string();
    let auth = format!("Bearer {token}");
    let headers = [("content-type", "application/json"), ("authorization", auth.as_str())];
    let r = request(&admin, "POST", "/api/policy", &headers, body.as_bytes());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    let records = audit(&bootstrap, &["--json", "--check"]).unwrap();
    let seen: Vec<(&str, &str)> =
        records.iter().map(|r| (r["who"].as_str().unwrap(), r["via"].as_str().unwrap())).collect();
    assert_eq!(seen[1..], [("alice", "cli"), ("bob", "console")], "{records:#?}");
    assert_eq!(seen[0].1, "cli", "the policy Envoy started with");
    let weight = |r: &Value, side: &str| r[side]["models.mlp"]["versions"][0]["weight"].as_u64();
    assert_eq!((weight(&records[1], "before"), weight(&records[1], "after")), (Some(90), Some(50)));
    assert_eq!((weight(&records[2], "before"), weight(&records[2], "after")), (Some(50), Some(30)));
    assert_eq!(records[2]["before_sha256"], records[1]["policy_sha256"]);
    wait_until(Duration::from_secs(5), "no alarm for recorded changes", || unrecorded(&admin) == Some(0.0));

    // Around the tools: the filter file rewritten by hand with other weights. Envoy takes it.
    let ecds = std::fs::read_to_string(stack.dir.join("filter.yaml")).unwrap();
    let swapped =
        ecds.replace("\\\"weight\\\": 30", "\\\"weight\\\": 0").replace("\\\"weight\\\": 70", "\\\"weight\\\": 100");
    assert_ne!(swapped, ecds, "the weights are in the filter file as expected");
    assert_eq!(stack.put_ecds_text(&swapped), Some(true), "Envoy runs the swapped policy");
    let e = audit(&bootstrap, &["--check"]).unwrap_err();
    assert!(e.contains("changed outside the tools") && e.contains("by bob via Console"), "{e}");
    wait_until(Duration::from_secs(5), "the controller to see the swap", || unrecorded(&admin) == Some(1.0));
    let state_view: Value = serde_json::from_slice(&request(&admin, "GET", "/api/state", &[], b"").body).unwrap();
    assert!(state_view.to_string().contains("changed outside the tools"), "the console says so: {state_view}");

    // Put back through the tools: recorded, and the alarm clears.
    stack.apply_policy(&weights(30)).unwrap();
    wait_until(Duration::from_secs(5), "the alarm to clear", || unrecorded(&admin) == Some(0.0));
    assert!(audit(&bootstrap, &["--check"]).is_ok());

    // An edited trail breaks its chain, and the check says where.
    let trail = stack.dir.join("audit.jsonl");
    let text = std::fs::read_to_string(&trail).unwrap();
    std::fs::write(&trail, text.replacen("\"who\":\"alice\"", "\"who\":\"mallory\"", 1)).unwrap();
    let e = audit(&bootstrap, &["--check"]).unwrap_err();
    assert!(e.contains("line 3") && e.contains("edited"), "{e}");
    wait_until(Duration::from_secs(5), "the controller to see the edit", || unrecorded(&admin) == Some(1.0));
}
