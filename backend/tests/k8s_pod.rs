//! The pods `k8s/` deploys, run here: the backend started with exactly the command, arguments
//! and environment of the generated Deployment and InferenceService containers (the model
//! repository and the listen addresses mapped to this machine), probed on the paths and ports
//! their probes name, then stopped as the kubelet stops it. Offline validation
//! (`deploy/tests/k8s_objects.rs`) checks that the objects agree with each other; this checks that they
//! agree with the binary.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use switchyard_contract::metrics as contract;
use switchyard_testkit::http::try_request;
use switchyard_testkit::process::{Log, Process};
use switchyard_testkit::*;

/// The pod spec of a generated object: a Deployment's template, or an InferenceService's
/// predictor.
fn pod_spec(file: &str) -> Value {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    let doc: Value = serde_norway::from_str(&text).unwrap();
    match doc["kind"].as_str().unwrap() {
        "Deployment" => doc["spec"]["template"]["spec"].clone(),
        "InferenceService" => doc["spec"]["predictor"].clone(),
        k => panic!("{file}: {k}"),
    }
}

fn run_pod(file: &str) {
    let spec = pod_spec(file);
    let c = &spec["containers"][0];
    assert_eq!(c["name"], "kserve-container", "{file}: KServe finds the predictor by this name");
    // containerPort -> a free port here; port name -> containerPort.
    let mut local: HashMap<u64, u16> = HashMap::new();
    let mut named: HashMap<String, u64> = HashMap::new();
    for p in c["ports"].as_array().unwrap() {
        let port = p["containerPort"].as_u64().unwrap();
        local.insert(port, free_port());
        named.insert(p["name"].as_str().unwrap().to_owned(), port);
    }
    let mount = c["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == "models").unwrap()["mountPath"]
        .as_str()
        .unwrap()
        .to_owned();
    let argv: Vec<String> = c["command"]
        .as_array()
        .unwrap()
        .iter()
        .chain(c["args"].as_array().unwrap())
        .map(|a| {
            let a = a.as_str().unwrap();
            if a == mount {
                return demo_repo().display().to_string();
            }
            match a.strip_prefix("0.0.0.0:").and_then(|p| p.parse::<u64>().ok()) {
                Some(port) => format!(
                    "127.0.0.1:{}",
                    local.get(&port).unwrap_or_else(|| panic!("{file}: listens on {port}, not a containerPort"))
                ),
                None => a.to_owned(),
            }
        })
        .collect();
    assert_eq!(argv[0], "switchyard-backend");
    let mut cmd = Command::new(backend_bin());
    cmd.args(&argv[1..]);
    for e in c["env"].as_array().into_iter().flatten() {
        cmd.env(e["name"].as_str().unwrap(), e["value"].as_str().unwrap_or_default());
    }
    let mut p = Process::spawn(file, cmd, Log::Memory).unwrap();
    let addr = |probe: &str| -> (String, String) {
        let get = &c[probe]["httpGet"];
        let port = match &get["port"] {
            Value::String(name) => named[name.as_str()],
            v => v.as_u64().unwrap(),
        };
        (format!("127.0.0.1:{}", local[&port]), get["path"].as_str().unwrap().to_owned())
    };
    let ok = |(a, path): &(String, String)| try_request(a, "GET", path, &[], b"").is_ok_and(|r| r.status == 200);

    // Ready within what the startup probe allows, then live.
    let budget = |probe: &str| {
        Duration::from_secs(
            c[probe]["failureThreshold"].as_u64().unwrap() * c[probe]["periodSeconds"].as_u64().unwrap(),
        )
    };
    let (ready, live, startup) = (addr("readinessProbe"), addr("livenessProbe"), addr("startupProbe"));
    p.wait_ready(budget("startupProbe"), "the startup probe", || ok(&startup)).unwrap();
    p.wait_ready(Duration::from_secs(60), "the readiness probe", || ok(&ready)).unwrap();
    assert!(ok(&live), "{file}: liveness probe {live:?} failed\n{}", p.log());
    let admin = format!("127.0.0.1:{}", local[&named["admin"]]);
    let metrics = try_request(&admin, "GET", "/metrics", &[], b"").unwrap();
    assert!(String::from_utf8_lossy(&metrics.body).contains(contract::IN_FLIGHT_REQUESTS.name), "{file}");
    assert!(std::net::TcpStream::connect(format!("127.0.0.1:{}", local[&named["grpc"]])).is_ok(), "{file}: gRPC");

    // The kubelet: preStop (a sleep, while endpoints drop the pod), then SIGTERM; the
    // process must be gone before terminationGracePeriodSeconds runs out, or it is killed.
    let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap();
    let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64().unwrap();
    let started = Instant::now();
    p.sigterm().unwrap();
    let status = p.wait_exit(Duration::from_secs(grace - pre_stop)).unwrap();
    assert!(status.success(), "{file}: exit {status:?}\n{}", p.log());
    assert!(started.elapsed() < Duration::from_secs(grace - pre_stop));
}

#[test]
fn the_generated_deployment_pod_starts_probes_and_drains_as_its_spec_says() {
    run_pod("k8s/components/deployments/generated/mlp-v1-deployment.yaml");
}

#[test]
fn the_generated_inference_service_predictor_starts_probes_and_drains_as_its_spec_says() {
    run_pod("k8s/components/kserve/generated/resnet18-v2-inferenceservice.yaml");
}
