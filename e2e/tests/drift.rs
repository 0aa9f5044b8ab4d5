//! Drift monitored end to end: the load generator's input-drift scenario through real Envoy
//! (the filter samples every request to the real collector), and the real drift monitor
//! following the collector's file. The shifted features drift, the others do not.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_testkit::stack::{Stack, mlp_policy};
use switchyard_testkit::*;

#[test]
fn the_drift_scenario_makes_the_monitor_flag_the_shifted_features_and_only_those() {
    let stack = Stack::start(
        "drift",
        &mlp_policy(&json!({
            "versions": [{"name": "v1", "cluster": "mlp-v1", "weight": 100}, {"name": "v2", "cluster": "mlp-v2", "weight": 0}],
            "sampling": {"rate": 1.0, "max_body_bytes": 65536}
        })),
    );
    let dir = stack.dir.clone();
    // The reference: v1's first 4,000 rows (over 1,000: normalised Wasserstein, as Evidently).
    let (_monitor, addr) = stack.start_monitor(&json!({
        "evaluate_every_seconds": 0.5,
        "models": {"mlp": {"reference": {"version": "v1", "rows": 4000}, "windows": [{"name": "recent", "rows": 2000}]}}
    }));
    let scenario = dir.join("drift.toml");
    std::fs::write(
        &scenario,
        r#"
name = "drift-e2e"
model = "mlp"
[[payload]]
rows = 8
[drift]
from_phase = "drifted"
features = [0, 1, 2, 3]
shift = 1.5
scale = 2.0
[[phase]]
name = "reference"
duration = "5s"
rate = 100
[[phase]]
name = "drifted"
duration = "3s"
rate = 100
"#,
    )
    .unwrap();
    let report = dir.join("load.json");
    let status = Command::new(workspace_bin("switchyard-load"))
        .args(["run", "-q", "--addr", &stack.listen, "--report"])
        .arg(&report)
        .arg(&scenario)
        .status()
        .unwrap();
    assert!(status.success());
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let ok = report["total"]["ok"].as_u64().unwrap();
    assert!(ok >= 700, "{}", report["total"]);
    let window = || -> Value {
        let d: Value = serde_json::from_slice(&request(&addr, "GET", "/v1/drift", &[], b"").body).unwrap();
        d["mlp"]["versions"]["v1"]["recent"].clone()
    };
    // Every answered request was sampled (rate 1.0), 8 rows each: the window is evaluated
    // once it has them all, and then holds drifted rows only.
    wait_until(Duration::from_secs(30), "every sampled row evaluated", || {
        window()["rows_ingested"].as_u64() == Some(8 * ok)
    });
    let w = window();
    assert_eq!(w["rows"], 2000, "{w}");
    let drifted: Vec<String> = w["columns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["drifted"] == true)
        .map(|c| c["column"].as_str().unwrap().to_owned())
        .collect();
    eprintln!("drifted: {drifted:?}");
    let features: Vec<&String> = drifted.iter().filter(|c| c.starts_with("features[")).collect();
    assert_eq!(features, ["features[0]", "features[1]", "features[2]", "features[3]"], "{w}");
    let test_of =
        |name: &str| w["columns"].as_array().unwrap().iter().find(|c| c["column"] == name).unwrap()["test"].clone();
    assert_eq!(test_of("features[10]"), "wasserstein");
    assert_eq!(test_of("probabilities.class"), "jensenshannon");
}
