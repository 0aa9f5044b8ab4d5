//! `switchyard-operator run` itself, two replicas, against the stand-in API server served over
//! HTTP through a kubeconfig (as a pod's client reaches a real one): one takes the Lease and
//! reconciles (the TrafficPolicy written and Ready, the rollout's first step in the ConfigMap,
//! `/metrics` saying it leads), the other waits with its leader gauge at 0; the leader killed
//! (SIGKILL: no release), the follower takes over once the Lease runs out and acts (an abort
//! given through the spec); a leader whose Lease someone else took exits non-zero at once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod fixtures;

use std::process::Command;
use std::time::{Duration, Instant};

use fixtures::*;
use serde_json::json;
use switchyard_testkit::process::{Log, OnDrop, Process, Signal};
use switchyard_testkit::{free_port, try_request, workspace_bin};

const CM: &str = "switchyard-gateway-filter";
const LEASE_SECONDS: u64 = 4;

fn lease_path() -> String {
    format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/switchyard-operator")
}

fn holder(server: &ApiServer) -> Option<String> {
    server.get(&lease_path()).and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
}

/// A replica: `switchyard-operator run` as `identity`, its admin listener's address.
fn replica(dir: &std::path::Path, identity: &str, kubeconfig: &std::path::Path, api: &str) -> (Process, String) {
    let admin = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(workspace_bin("switchyard-operator"));
    cmd.args(["run", "--interval", "500ms", "--lease-seconds", &LEASE_SECONDS.to_string()])
        .args(["--namespace", NS, "--identity", identity, "--admin-addr", &admin])
        .args(["--prometheus", api, "--metrics-path", "/federate"])
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "info")
        .current_dir(dir);
    let p = Process::spawn(identity, cmd, Log::Memory).unwrap().on_drop(OnDrop::Kill);
    (p, admin)
}

fn leader_gauge(admin: &str) -> Option<f64> {
    let r = try_request(admin, "GET", "/metrics", &[], b"").ok()?;
    let text = String::from_utf8_lossy(&r.body).into_owned();
    text.lines().find(|l| l.starts_with("switchyard_operator_leader ")).and_then(|l| l.split(' ').nth(1)?.parse().ok())
}

fn wait(within: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

#[test]
fn two_replicas_one_acts_the_other_takes_over_and_a_deposed_leader_exits() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = ApiServer::new();
    server.put(traffic_policy(json!({"configMap": {"name": CM}})));
    server.put(gateway_config_map());
    server.put(rollout("mlp-v2", json!([{"weight": 20, "minDuration": "1h"}, {"weight": 100}])));
    let addr = rt.block_on(server.listen());
    let dir = std::env::temp_dir().join(format!("switchyard-operator-binary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = kubeconfig(&dir, addr);
    let api = addr.to_string();

    let (mut a, a_admin) = replica(&dir, "operator-a", &kubeconfig, &api);
    wait(Duration::from_secs(30), "operator-a leads", || holder(&server).as_deref() == Some("operator-a"));
    let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait(Duration::from_secs(30), "the first step in the ConfigMap", || weights(&carried(&server))[1].1 == 20)
    }));
    assert!(step.is_ok(), "operator-a's log:\n{}\nrequests: {:#?}", a.log(), server.lines());
    wait(Duration::from_secs(30), "the TrafficPolicy Ready", || {
        server
            .policy("gateway")
            .status
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    });
    let st = server.rollout("mlp-v2").status.unwrap();
    assert_eq!((st.phase.as_deref(), st.step), (Some("Running"), Some(0)));
    wait(Duration::from_secs(10), "operator-a's leader gauge", || leader_gauge(&a_admin) == Some(1.0));

    let (mut b, b_admin) = replica(&dir, "operator-b", &kubeconfig, &api);
    wait(Duration::from_secs(10), "operator-b's admin listener", || leader_gauge(&b_admin).is_some());
    std::thread::sleep(Duration::from_secs(2 * LEASE_SECONDS));
    assert_eq!(holder(&server).as_deref(), Some("operator-a"), "the follower took a Lease that was renewed");
    assert_eq!(leader_gauge(&b_admin), Some(0.0), "the follower says it leads");

    a.signal(Signal::SIGKILL).unwrap();
    let killed = Instant::now();
    a.wait_exit(Duration::from_secs(5)).unwrap();
    wait(Duration::from_secs(6 * LEASE_SECONDS), "operator-b takes over", || {
        holder(&server).as_deref() == Some("operator-b")
    });
    let took_over = killed.elapsed();
    wait(Duration::from_secs(10), "operator-b's leader gauge", || leader_gauge(&b_admin) == Some(1.0));
    println!("failover: operator-b led {took_over:?} after operator-a was killed (lease {LEASE_SECONDS} s)");
    assert!(took_over <= Duration::from_secs(2 * LEASE_SECONDS), "{took_over:?}");

    // The new leader acts: an abort given through the spec ends the rollout, v2 at 0.
    let mut r = server.get(&rollout_path("mlp-v2")).unwrap();
    r["spec"]["abort"] = json!(true);
    server.put(r);
    let aborted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait(Duration::from_secs(20), "operator-b aborts", || {
            server.rollout("mlp-v2").status.and_then(|s| s.phase).as_deref() == Some("Aborted")
        })
    }));
    assert!(aborted.is_ok(), "operator-b's log:\n{}\nrequests: {:#?}", b.log(), server.lines());
    assert_eq!(weights(&carried(&server))[1].1, 0);
    let reporters: Vec<String> =
        server.events().iter().map(|e| e["reportingInstance"].as_str().unwrap_or_default().to_owned()).collect();
    assert!(
        reporters.contains(&"operator-a".to_owned()) && reporters.contains(&"operator-b".to_owned()),
        "{reporters:?}"
    );

    // Someone else holds the Lease now: operator-b learns it at its next renewal and exits.
    let mut lease = server.get(&lease_path()).unwrap();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    lease["spec"]["holderIdentity"] = json!("operator-c");
    lease["spec"]["renewTime"] = json!(now);
    server.put(lease);
    let status = b.wait_exit(Duration::from_secs(3 * LEASE_SECONDS)).unwrap();
    assert!(!status.success(), "a deposed leader exited 0");
    assert!(b.log().contains("lost the lease"), "{}", b.log());
    let _ = std::fs::remove_dir_all(&dir);
}
