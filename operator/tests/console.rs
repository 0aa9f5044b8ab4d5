//! The console in a cluster: `switchyard-operator run` against the stand-in API server (over
//! HTTP, through a kubeconfig), serving the built console read-only, driven in Debian's
//! chromium (console/browser/console.test.mjs, phase `cluster`). The page lists the rollouts the
//! operator reconciled with their phases, shows the weight the operator carries and the kubectl
//! command for each change instead of writing; the pause command it shows, run against the API
//! server, pauses the rollout and the page follows the status.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod fixtures;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fixtures::*;
use serde_json::json;
use switchyard_testkit::process::{Log, OnDrop, Process};
use switchyard_testkit::{free_port, try_request, workspace_bin};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn wait(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_operator_serves_a_read_only_console_of_the_clusters_rollouts() {
    let root = repo_root();
    let console = root.join("target/console");
    assert!(
        console.join("pkg/switchyard_console_bg.wasm").is_file(),
        "the console is not built: scripts/build-console.sh (scripts/test.sh runs it)"
    );
    let browser = root.join("console/browser");
    assert!(
        browser.join("node_modules/playwright-core").is_dir() && Path::new("/usr/bin/chromium").exists(),
        "playwright-core or chromium is missing: run scripts/setup.sh"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = ApiServer::new();
    server.put(traffic_policy(json!({"configMap": {"name": "switchyard-gateway-filter"}})));
    server.put(gateway_config_map());
    server.put(rollout("mlp-v2", json!([{"weight": 20, "minDuration": "1h"}, {"weight": 100}])));
    // A second rollout the operator cannot run (no version v9): the table lists it, Pending,
    // with the reason its status gives.
    let mut bad = rollout("mlp-v9", json!([{"weight": 10}]));
    bad["spec"]["canary"] = "v9".into();
    server.put(bad);
    let addr = rt.block_on(server.listen());
    let dir = std::env::temp_dir().join(format!("switchyard-operator-console-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = kubeconfig(&dir, addr);
    let admin = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(workspace_bin("switchyard-operator"));
    cmd.args(["run", "--interval", "500ms", "--namespace", NS, "--identity", "operator-a"])
        .args(["--admin-addr", &admin, "--prometheus", &addr.to_string(), "--metrics-path", "/federate"])
        .arg("--console-dir")
        .arg(&console)
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "info");
    let operator = Process::spawn("operator", cmd, Log::Memory).unwrap().on_drop(OnDrop::Kill);

    let phase = |name: &str| server.rollout(name).status.and_then(|s| s.phase);
    let reconciled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait(Duration::from_secs(30), "mlp-v2 Running and mlp-v9 refused", || {
            phase("mlp-v2").as_deref() == Some("Running")
                && server.rollout("mlp-v9").status.is_some_and(|s| s.conditions.iter().any(|c| c.status == "False"))
        });
    }));
    assert!(
        reconciled.is_ok(),
        "phases {:?} {:?}; the operator's log:\n{}",
        phase("mlp-v2"),
        phase("mlp-v9"),
        operator.log()
    );
    wait(Duration::from_secs(10), "the console's view of them", || {
        try_request(&admin, "GET", "/api/state", &[], b"")
            .is_ok_and(|r| String::from_utf8_lossy(&r.body).contains("\"name\":\"mlp-v9\""))
    });

    let out_dir = root.join("target/screenshots/operator-console");
    std::fs::create_dir_all(&out_dir).unwrap();
    let why = server
        .rollout("mlp-v9")
        .status
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.status == "False")
        .unwrap()
        .message
        .clone();
    let expect = json!({
        "namespace": NS,
        "weight": 20,
        "rollouts": [{"name": "mlp-v2", "phase": "Running"}, {"name": "mlp-v9", "phase": "Pending", "reason": why}],
    });
    let out = Command::new("node")
        .args(["console.test.mjs", "cluster"])
        .current_dir(&browser)
        .env("CONSOLE_URL", format!("http://{admin}/"))
        .env("API", format!("http://{addr}"))
        .env("EXPECT", expect.to_string())
        .env("OUT", &out_dir)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("browser, cluster:\n{text}");
    assert!(out.status.success(), "the browser test 'cluster' failed:\n{text}\noperator's log:\n{}", operator.log());
    // What the page showed is what the API server holds.
    assert_eq!(phase("mlp-v2").as_deref(), Some("Paused"));
    let _ = std::fs::remove_dir_all(&dir);
}
