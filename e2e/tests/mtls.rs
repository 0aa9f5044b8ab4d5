//! Only Envoy reaches the backends and the collector: the local stack with mutual TLS from
//! Envoy's clusters to the backends' REST and gRPC listeners and to the collector's samples
//! listener (certificates from `switchyard-policy render certs`). Requests through Envoy are
//! split and answered over REST and gRPC, sampled into the collector, and shadow-compared
//! (Envoy's own calls); a client calling a backend directly with curl — plain HTTP, TLS
//! without a certificate, a certificate from another CA, or a certificate the CA issued for
//! another party — is refused in the handshake and reaches no model, and a sample forged with
//! curl is refused the same way and stored nowhere. The same curls against a backend and a
//! collector started without TLS walk straight in: the checks fail if the control is off.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use switchyard_oip::GrpcInferenceServiceClient;
use switchyard_oip::inference::ServerLiveRequest;
use switchyard_testkit::grpc::mlp_infer_request;
use switchyard_testkit::stack::{Layout, Stack, mlp_infer_body, mlp_policy, policy_tool, start_collector, wasm_path};
use switchyard_testkit::*;
use switchyard_tls::generate::{CA, COLLECTOR, ENVOY};
use tonic::transport::Channel;

/// What curl made of a direct inference call: (HTTP status, exit code, stderr).
fn curl_infer(url: &str, extra: &[&str]) -> (String, i32, String) {
    curl_post(url, &String::from_utf8(mlp_infer_body(1)).unwrap(), extra)
}

fn path(dir: &Path, file: &str) -> String {
    dir.join(file).display().to_string()
}

#[test]
fn only_envoy_reaches_the_backends_and_a_client_that_walks_around_the_filter_is_refused_in_the_handshake() {
    let policy = mlp_policy(&json!({
        "shadow": {"version": "v2", "percent": 100, "compare": {"percent": 100}},
        "sampling": {"rate": 1.0}
    }));
    let mut layout = Layout::scratch("mtls", &demo_repo(), &wasm_path(), &[]);
    let certs = layout.dir.join("certs");
    layout.tls = Some(certs.clone());
    let stack = Stack::launch(&layout, &policy);
    assert!(stack.v1.tls && stack.v2.tls, "the backends say they serve https");

    // Through Envoy: every request answered, both versions serve, over REST...
    let mut versions = std::collections::BTreeSet::new();
    for i in 0..60 {
        let r = request(
            &stack.listen,
            "POST",
            "/v2/models/mlp/infer",
            &[("content-type", "application/json")],
            &mlp_infer_body(i),
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        versions.insert(r.header("x-switchyard-version").unwrap_or_default().to_owned());
    }
    assert_eq!(versions.len(), 2, "{versions:?}");
    // ...and gRPC (HTTP/2 over TLS to the backends).
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let channel = Channel::from_shared(format!("http://{}", stack.listen)).unwrap();
        let mut c = GrpcInferenceServiceClient::new(channel.timeout(Duration::from_secs(20)).connect().await.unwrap());
        assert!(c.server_live(ServerLiveRequest {}).await.unwrap().into_inner().live);
        let req = mlp_infer_request("", 0);
        let r = c.model_infer(req).await.unwrap();
        assert_eq!(r.into_inner().model_name, "mlp");
    });
    // Envoy's own calls (the shadow comparisons) go through the same clusters.
    let compares = |result: &str| -> f64 {
        let m = request(&stack.admin, "GET", "/stats/prometheus", &[], b"");
        String::from_utf8_lossy(&m.body)
            .lines()
            .filter(|l| {
                l.starts_with("switchyard_shadow_compares_total{") && l.contains(&format!("result=\"{result}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    // Every comparison settled (its replays to the versions done): none is still reaching v2
    // when the direct calls below are counted against it.
    wait_until(Duration::from_secs(20), "shadow comparisons settled", || {
        let settled: f64 = ["sent", "skipped", "dropped", "failed"].iter().map(|r| compares(r)).sum();
        compares("sent") > 0.0 && settled == compares("started")
    });
    assert_eq!(compares("failed"), 0.0, "Envoy's own calls to the versions get through");

    // Envoy's samples get in (the collector's /metrics answers on its admin listener).
    wait_until(Duration::from_secs(20), "samples stored", || stack.sample_lines().len() >= 60);

    let direct = format!("https://{}/v2/models/mlp/infer", stack.v2.http);
    let plain = format!("http://{}/v2/models/mlp/infer", stack.v2.http);
    let ca = path(&certs, CA);
    let (envoy_cert, envoy_key) = ENVOY.files(&certs);
    let (collector_cert, collector_key) = COLLECTOR.files(&certs);
    let other = layout.dir.join("other-ca");
    policy_tool(&["render", "certs", "--out-dir", other.to_str().unwrap()]).unwrap();
    let (foreign_cert, foreign_key) = ENVOY.files(&other);
    let attempts: [(&str, &str, Vec<String>); 4] = [
        ("plain HTTP to the TLS port", &plain, vec![]),
        ("TLS without a client certificate", &direct, vec!["--cacert".into(), ca.clone()]),
        (
            "a client certificate from another CA",
            &direct,
            vec![
                "--cacert".into(),
                ca.clone(),
                "--cert".into(),
                foreign_cert.display().to_string(),
                "--key".into(),
                foreign_key.display().to_string(),
            ],
        ),
        (
            "the CA's certificate for another party (a server certificate, not a client's)",
            &direct,
            vec![
                "--cacert".into(),
                ca.clone(),
                "--cert".into(),
                collector_cert.display().to_string(),
                "--key".into(),
                collector_key.display().to_string(),
            ],
        ),
    ];
    let served_before = served(&stack.v2.admin);
    for (what, url, extra) in &attempts {
        let args: Vec<&str> = extra.iter().map(String::as_str).collect();
        let (status, code, stderr) = curl_infer(url, &args);
        println!("{what}: curl exit {code}, status {status}: {}", stderr.trim());
        assert!(code != 0 && status != "200", "{what}: walked around the filter (status {status}, exit {code})");
    }
    assert_eq!(served(&stack.v2.admin), served_before, "no refused call reached the model");
    // Each refusal is counted where an alert sees it (SwitchyardUnauthenticatedCallers), once
    // the server has sent its alert and given up on the connection.
    let refused = || sum_of(&stack.v2.admin, "switchyard_tls_handshakes_refused_total{listener=\"inference\"}");
    wait_until(Duration::from_secs(5), "the refusals to be counted", || refused() >= attempts.len() as f64);
    assert_eq!(refused(), attempts.len() as f64, "one refused handshake per attempt");
    // A forged sample, posted as Envoy would post one: refused in the handshake, stored nowhere.
    let stored = stack.sample_lines().len();
    let forged = forged_sample(&stack.sample_lines()[0]);
    let samples_at = |scheme: &str, addr: &str| format!("{scheme}://{addr}/v1/samples");
    for (what, url, extra) in [
        ("plain HTTP", samples_at("http", &stack.collector_samples), vec![]),
        ("TLS without a client certificate", samples_at("https", &stack.collector_samples), vec!["--cacert", &ca]),
    ] {
        let (status, code, stderr) = curl_post(&url, &forged, &extra);
        println!("forged sample, {what}: curl exit {code}, status {status}: {}", stderr.trim());
        assert!(code != 0 && status != "200", "a forged sample got in over {what}");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(stack.sample_lines().len(), stored, "nothing forged was stored");
    let refused = || sum_of(&stack.collector_addr, "switchyard_collector_tls_handshakes_refused_total");
    wait_until(Duration::from_secs(5), "the collector's refusals to be counted", || refused() >= 2.0);
    assert_eq!(refused(), 2.0, "one refused handshake per forged sample");
    // Envoy's certificate gets in: the refusals are the certificate check, not a broken listener.
    let args = ["--cacert", &ca, "--cert", envoy_cert.to_str().unwrap(), "--key", envoy_key.to_str().unwrap()];
    let (status, code, stderr) = curl_infer(&direct, &args);
    assert_eq!((status.as_str(), code), ("200", 0), "{stderr}");
    // The same walk-around against a backend without TLS succeeds: this test fails if the
    // control is off.
    let open = Server::start_ready(&demo_repo(), &["--models", "mlp:v2"]);
    assert!(!open.tls);
    let (status, code, _) = curl_infer(&format!("http://{}/v2/models/mlp/infer", open.http), &[]);
    assert_eq!((status.as_str(), code), ("200", 0), "a backend without TLS answers anyone");
    let open_samples = layout.dir.join("open-samples.jsonl");
    let (_collector, addr) = start_collector(&workspace_bin("switchyard-collector"), &open_samples).unwrap();
    let (status, code, _) = curl_post(&samples_at("http", &addr), &forged, &[]);
    assert_eq!((status.as_str(), code), ("200", 0), "a collector without TLS stores anyone's sample");
}

/// A stored sample made a new one, as an attacker copying the file would: a new request id.
fn forged_sample(line: &serde_json::Value) -> String {
    let mut s = line.clone();
    s["request_id"] = json!("forged-0001");
    s.to_string()
}

/// What curl made of a POST of `body`: (HTTP status, exit code, stderr).
fn curl_post(url: &str, body: &str, extra: &[&str]) -> (String, i32, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "content-type: application/json",
        ])
        .args(["--data", body])
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The sum of the series at `admin`'s `/metrics` that start with `prefix`.
fn sum_of(admin: &str, prefix: &str) -> f64 {
    let m = request(admin, "GET", "/metrics", &[], b"");
    String::from_utf8_lossy(&m.body)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Inference requests the backend at `admin` has answered (its own counter).
fn served(admin: &str) -> f64 {
    let m = request(admin, "GET", "/metrics", &[], b"");
    String::from_utf8_lossy(&m.body)
        .lines()
        .filter(|l| l.starts_with("switchyard_inference_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
