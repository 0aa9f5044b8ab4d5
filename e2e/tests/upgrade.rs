//! A filter upgrade (a new `.wasm`, the same policy) in real Envoy: what happens to the SLO
//! windows and the guard's latches the old VMs kept in shared data. The filter counts every
//! time its shared data starts empty (`switchyard_shared_data_starts_total`), so the answer is
//! on the metrics, not only in the docs.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::json;
use switchyard_contract::metrics as contract;
use switchyard_testkit::stack::{Stack, mlp_infer_body, mlp_policy, wasm_path};
use switchyard_testkit::*;

/// The same filter under another code hash: a custom section (id 0) appended, which a Wasm
/// runtime skips.
fn rebuilt(dir: &std::path::Path) -> std::path::PathBuf {
    let mut code = std::fs::read(wasm_path()).unwrap();
    let name = b"switchyard-upgrade-test";
    let payload = b"another build";
    code.push(0);
    code.push((1 + name.len() + payload.len()) as u8);
    code.push(name.len() as u8);
    code.extend_from_slice(name);
    code.extend_from_slice(payload);
    let path = dir.join("switchyard_filter_rebuilt.wasm");
    std::fs::write(&path, code).unwrap();
    path
}

fn send(stack: &Stack, n: usize) {
    for i in 0..n {
        let r = stack.send("POST", "/v2/models/mlp/infer", &[], &mlp_infer_body(i));
        assert_eq!(r.status, 200);
    }
}

#[test]
fn a_filter_upgrade_keeps_the_live_slo_windows_and_would_say_if_it_did_not() {
    let policy = mlp_policy(&json!({"slo": {"availability": 0.99, "latency_ms": 1000}}));
    let stack = Stack::start("upgrade", &policy);
    let metric = |name: &str, labels: &[(&str, &str)]| metric_sum(&stack.prometheus(), name, labels);
    let good = || metric(contract::SLO_GOOD_EVENTS.name, &[("window", "5m"), ("sli", "availability")]);
    send(&stack, 40);
    wait_until(Duration::from_secs(10), "the SLO windows to hold the first requests", || good() >= 40.0);
    // Counted at the worker tick after the one that first wrote shared data.
    let starts = || metric(contract::SHARED_DATA_STARTS_TOTAL.name, &[]);
    wait_until(Duration::from_secs(5), "the shared data's start to be counted", || starts() >= 1.0);
    assert_eq!(starts(), 1.0, "Envoy's start");
    let keys = metric(contract::SHARED_DATA_KEYS.name, &[]);
    assert!(keys > 0.0);

    assert!(stack.apply_filter(&policy, &rebuilt(&stack.dir)).unwrap(), "Envoy took the rebuilt filter");
    send(&stack, 10);
    wait_until(Duration::from_secs(10), "the new VMs to count their requests", || {
        metric(contract::SHARED_DATA_STARTS_TOTAL.name, &[]) >= 2.0 || good() >= 50.0
    });
    std::thread::sleep(Duration::from_millis(1500));
    let (starts, after) = (metric(contract::SHARED_DATA_STARTS_TOTAL.name, &[]), good());
    eprintln!("after the upgrade: {starts} starts of the shared data, {after} good events in the 5m window");
    // What this Envoy does: shared data belongs to the VM id (`switchyard`, the same for
    // every build), so the new VMs find the old windows and go on counting in them.
    assert_eq!(starts, 1.0, "the shared data was kept: no second start");
    assert!(after >= 50.0, "the 5m window kept the requests from before the upgrade: {after}");
    assert_eq!(metric(contract::SHARED_DATA_KEYS.name, &[]), keys, "the same keys");
}
