//! The rollout console end to end: real Envoy with the built filter, real backends, the real
//! collector and drift monitor, the controller serving the console, and Debian's chromium
//! driven by playwright-core (console/browser/console.test.mjs). The page's numbers are checked
//! against Envoy's and the monitor's metrics, an invalid edit against `switchyard-policy
//! check`, an apply and an abort against traffic, and every write against the audit log.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_testkit::process::{Log, OnDrop, Process, address_after};
use switchyard_testkit::stack::{Stack, mlp_infer_body, mlp_policy, wasm_path};
use switchyard_testkit::*;

const USERS: usize = 120;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// `node console.test.mjs PHASE` with the stack's addresses; panics with its output unless it passed.
fn browser(phase: &str, vars: &[(&str, String)]) {
    let dir = repo_root().join("console/browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir() && Path::new("/usr/bin/chromium").exists(),
        "playwright-core or chromium is missing: run scripts/setup.sh"
    );
    let out = Command::new("node")
        .arg("console.test.mjs")
        .arg(phase)
        .current_dir(&dir)
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("browser, {phase}:\n{text}");
    assert!(out.status.success(), "the browser test '{phase}' failed:\n{text}");
}

fn events(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_console_shows_the_live_stack_previews_with_the_filters_code_and_writes_only_with_the_token() {
    let console = repo_root().join("target/console");
    assert!(
        console.join("pkg/switchyard_console_bg.wasm").is_file(),
        "the console is not built: scripts/build-console.sh (scripts/test.sh runs it)"
    );
    // Latency SLI at 2 ms: some requests are slower, so the burn rates compared are not all 0.
    let policy = mlp_policy(&json!({
        "versions": [{"name": "v1", "cluster": "mlp-v1", "weight": 100}, {"name": "v2", "cluster": "mlp-v2", "weight": 0}],
        "sticky": {"header": "x-user"},
        "sampling": {"rate": 1.0, "max_body_bytes": 65536},
        "slo": {"availability": 0.99, "latency_ms": 2, "latency_objective": 0.9}
    }));
    let stack = Stack::start("console", &policy);
    let (_monitor, monitor) = stack.start_monitor(&json!({
        "evaluate_every_seconds": 0.5,
        "models": {"mlp": {"reference": {"version": "v1", "rows": 60}, "windows": [{"name": "recent", "rows": 40}]}}
    }));

    let state = stack.dir.join("rollout");
    let bootstrap = stack.dir.join("envoy.yaml");
    let mut cmd = Command::new(workspace_bin("switchyard-rollout"));
    cmd.arg("--state-dir").arg(&state).args(["run", "--keep-running", "--interval", "200ms"]);
    cmd.args(["--admin-addr", "127.0.0.1:0", "--envoy-admin", &stack.admin, "--collector", &stack.collector_addr]);
    cmd.args(["--monitor", &monitor]);
    cmd.arg("--console-dir").arg(&console);
    cmd.arg("--policy").arg(&stack.policy_file).arg("--bootstrap").arg(&bootstrap).arg("--wasm").arg(wasm_path());
    cmd.arg("--samples").arg(&stack.samples);
    let (controller, line) = Process::spawn_reporting("switchyard-rollout", cmd, Log::Memory).unwrap();
    let _controller = controller.on_drop(OnDrop::Kill);
    let admin = address_after(&line, "on").unwrap_or_else(|| panic!("no console address in {line:?}"));
    let token = std::fs::read_to_string(state.join("admin-token")).unwrap().trim().to_owned();
    assert_eq!(token.len(), 48);

    // Reads are open; a write without the token is refused before anything is looked at.
    assert_eq!(request(&admin, "GET", "/api/state", &[], b"").status, 200);
    let refused = request(&admin, "POST", "/api/rollout/abort", &[("content-type", "application/json")], b"{}");
    assert_eq!(refused.status, 401, "{}", String::from_utf8_lossy(&refused.body));
    let wrong = [("content-type", "application/json"), ("authorization", "Bearer not-the-token")];
    assert_eq!(request(&admin, "POST", "/api/policy", &wrong, b"{\"policy\": \"{}\"}").status, 401);

    // The sticky users, each once, every request sampled: the monitor's reference and window,
    // and the keys the preview moves.
    for i in 0..USERS {
        let user = format!("user-{i}");
        let r = stack.send(
            "POST",
            "/v2/models/mlp/infer",
            &[("content-type", "application/json"), ("x-user", &user)],
            &mlp_infer_body(i),
        );
        assert_eq!(r.status, 200);
    }
    wait_until(Duration::from_secs(20), "the monitor's drift scores", || {
        let m = String::from_utf8_lossy(&request(&monitor, "GET", "/metrics", &[], b"").body).into_owned();
        m.contains("switchyard_drift_score{")
    });
    std::thread::sleep(Duration::from_millis(1500));

    // The messages `switchyard-policy check` prints for the edits the browser makes: v1 at 0,
    // and a shadow of 150% to v2.
    let check_message = |edit: &dyn Fn(&mut Value)| {
        let mut invalid = policy.clone();
        edit(&mut invalid);
        let file = stack.dir.join("invalid.json");
        std::fs::write(&file, serde_json::to_vec_pretty(&invalid).unwrap()).unwrap();
        let check = Command::new(workspace_bin("switchyard-policy")).arg("check").arg(&file).output().unwrap();
        assert!(!check.status.success());
        let printed = String::from_utf8_lossy(&check.stderr).lines().next().unwrap_or("").to_owned();
        printed.strip_prefix(&format!("{}: ", file.display())).unwrap().to_owned()
    };
    let message = check_message(&|p| p["models"]["mlp"]["versions"][0]["weight"] = json!(0));
    let shadow_message = check_message(&|p| p["models"]["mlp"]["shadow"] = json!({"version": "v2", "percent": 150}));

    let shots = repo_root().join("target/console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let vars = vec![
        ("CONSOLE_URL", format!("http://{admin}/")),
        ("TOKEN", token),
        ("ENVOY", stack.listen.clone()),
        ("ENVOY_ADMIN", stack.admin.clone()),
        ("MONITOR", monitor.clone()),
        ("USERS", USERS.to_string()),
        ("INVALID_MESSAGE", message),
        ("SHADOW_MESSAGE", shadow_message),
        ("OUT", shots.display().to_string()),
    ];
    browser("edit", &vars);

    // The apply is audited: who, and the model before and after.
    let applied: Vec<Value> = events(&state).into_iter().filter(|e| e["what"] == "policy-apply").collect();
    assert_eq!(applied.len(), 1, "{applied:#?}");
    assert_eq!(applied[0]["who"]["actor"], "console-test");
    assert!(applied[0]["who"]["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(applied[0]["before"]["models.mlp"]["versions"][1]["weight"], 0);
    assert_eq!(applied[0]["after"]["models.mlp"]["versions"][1]["weight"], 50);
    let on_disk: Value = serde_json::from_slice(&std::fs::read(&stack.policy_file).unwrap()).unwrap();
    assert_eq!(on_disk["models"]["mlp"]["versions"][1]["weight"], 50, "the policy file is the one in force");

    // A rollout from 50/50 down to a 20% canary step that waits, then driven from the page.
    let spec = stack.dir.join("spec.yaml");
    std::fs::write(
        &spec,
        "model: mlp\ncanary: v2\nsteps:\n  - {weight: 20, min_duration: 10m, min_requests: 1000000}\n",
    )
    .unwrap();
    let start = Command::new(workspace_bin("switchyard-rollout"))
        .arg("--state-dir")
        .arg(&state)
        .arg("start")
        .arg(&spec)
        .arg("--policy")
        .arg(&stack.policy_file)
        .arg("--bootstrap")
        .arg(&bootstrap)
        .arg("--wasm")
        .arg(wasm_path())
        .args(["--envoy-admin", &stack.admin])
        .output()
        .unwrap();
    assert!(start.status.success(), "{}", String::from_utf8_lossy(&start.stderr));
    browser("rollout", &vars);
    let by_hand: Vec<String> = events(&state)
        .iter()
        .filter(|e| e["who"]["actor"] == "console-test" && e["what"] != "policy-apply")
        .map(|e| e["what"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(by_hand, ["pause", "resume", "abort"]);
    let abort = events(&state).into_iter().rfind(|e| e["what"] == "abort").unwrap();
    assert_eq!(
        (abort["before"]["state"].as_str(), abort["after"]["state"].as_str()),
        (Some("running"), Some("aborted"))
    );
    assert!(abort["reason"].as_str().unwrap().contains("drill from the console test"), "{abort}");
}
