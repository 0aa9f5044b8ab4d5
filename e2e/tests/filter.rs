//! The Switchyard filter in real Envoy (V8) with real backends: split, stickiness, override,
//! shadow, sampling, SLO accounting, runtime reconfiguration, and bad input.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use switchyard_contract::metrics as contract;
use switchyard_testkit::stack::{Stack, mlp_infer_body as infer_body, mlp_policy, render_envoy};
use switchyard_testkit::*;

/// The version that answered, per the filter's response header; checked against the body.
fn served_by(r: &Resp) -> String {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.header("x-switchyard-version").expect("x-switchyard-version header").to_owned();
    if let Ok(body) = serde_json::from_slice::<serde_json::Value>(&r.body)
        && let Some(answered) = body["model_version"].as_str()
    {
        assert_eq!(answered, v, "header and answering backend disagree");
    }
    v
}

fn counts(
    stack: &Stack,
    n: usize,
    threads: usize,
    headers: impl Fn(usize) -> Vec<(String, String)> + Sync,
) -> HashMap<String, usize> {
    let per = n / threads;
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let headers = &headers;
                s.spawn(move || {
                    let mut c: HashMap<String, usize> = HashMap::new();
                    for i in t * per..(t + 1) * per {
                        let h = headers(i);
                        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                        *c.entry(served_by(&stack.send("GET", "/v2/models/mlp", &h, b""))).or_default() += 1;
                    }
                    c
                })
            })
            .collect();
        let mut total: HashMap<String, usize> = HashMap::new();
        for h in hs {
            for (k, v) in h.join().unwrap() {
                *total.entry(k).or_default() += v;
            }
        }
        total
    })
}

#[test]
fn weighted_split_stickiness_and_labelled_metrics() {
    let stack = Stack::start("split", &mlp_policy(&json!({"sticky": {"header": "x-user-id"}})));
    // 90/10 over 2000 requests: the canary share has sd sqrt(0.09/2000) = 0.0067; allow 4 sd,
    // a false failure about once in 16,000 runs.
    let n = 2000;
    let c = counts(&stack, n, 4, |_| vec![]);
    let share = *c.get("v2").unwrap_or(&0) as f64 / n as f64;
    assert!((share - 0.10).abs() < 4.0 * 0.0067, "canary share {share} ({c:?})");

    // Sticky: 100 users x 5 requests each, never flipping; both versions get users.
    let mut seen: HashMap<String, String> = HashMap::new();
    for round in 0..5 {
        for u in 0..100 {
            let user = format!("user-{u}");
            let v = served_by(&stack.send("GET", "/v2/models/mlp", &[("x-user-id", &user)], b""));
            let first = seen.entry(user.clone()).or_insert_with(|| v.clone());
            assert_eq!(*first, v, "{user} flipped in round {round}");
        }
    }
    let sticky_canary = seen.values().filter(|v| *v == "v2").count();
    assert!((1..40).contains(&sticky_canary), "{sticky_canary} of 100 users on the canary");

    // The labelled metrics add up to what was sent (flushed every second).
    let sent = (n + 500) as f64;
    let mut last = String::new();
    let added_up = (0..500).any(|_| {
        last = stack.prometheus();
        std::thread::sleep(Duration::from_millis(20));
        metric_sum(&last, contract::REQUESTS_TOTAL.name, &[("model", "mlp"), ("outcome", "success")]) == sent
    });
    assert!(added_up, "{}", last.lines().filter(|l| l.starts_with("switchyard_re")).collect::<Vec<_>>().join("\n"));
    let p = stack.prometheus();
    let v2 = metric_sum(&p, contract::REQUESTS_TOTAL.name, &[("version", "v2"), ("outcome", "success")]);
    assert_eq!(v2 as usize, c.get("v2").unwrap_or(&0) + sticky_canary * 5);
    assert_eq!(metric_sum(&p, contract::ROUTE_DECISIONS_TOTAL.name, &[("reason", "sticky")]), 500.0);
    // Histograms are merged from the workers at each stats flush (1 s here).
    wait_until(Duration::from_secs(10), "latency histogram to count every request", || {
        metric_sum(&stack.prometheus(), &format!("{}_count", contract::REQUEST_DURATION_MS.name), &[("model", "mlp")])
            == sent
    });
    assert!(p.contains("switchyard_request_duration_ms_bucket{model=\"mlp\",version=\"v1\",le=\"5\"}"), "{p}");
}

#[test]
fn override_only_when_allowed_and_clients_cannot_pick_routes() {
    let policy = mlp_policy(&json!({
        "versions": [{"name": "v1", "cluster": "mlp-v1", "weight": 100}, {"name": "v2", "cluster": "mlp-v2", "weight": 0}],
        "override": {"header": "x-pin", "allow": ["v2"]}
    }));
    let stack = Stack::start("override", &policy);
    let get = |h: &[(&str, &str)], path: &str| served_by(&stack.send("GET", path, h, b""));
    assert_eq!(get(&[], "/v2/models/mlp"), "v1");
    assert_eq!(get(&[("x-pin", "v2")], "/v2/models/mlp"), "v2");
    // Pinning by path is the same override; the backend gets the unversioned path.
    assert_eq!(get(&[], "/v2/models/mlp/versions/v2"), "v2");
    let r = stack.send("POST", "/v2/models/mlp/versions/v2/infer", &[], &infer_body(1));
    assert_eq!(served_by(&r), "v2");
    // Not allowed (v1 is not in `allow`, v9 does not exist): ignored, split as usual, counted.
    assert_eq!(get(&[("x-pin", "v9")], "/v2/models/mlp"), "v1");
    assert_eq!(get(&[], "/v2/models/mlp/versions/v9"), "v1");
    // Internal routing headers from the client are stripped: no way around the policy.
    for (h, v) in [("x-switchyard-upstream", "mlp-v2"), ("x-switchyard-shadow", "mlp-v2")] {
        assert_eq!(get(&[(h, v)], "/v2/models/mlp"), "v1");
    }
    assert_eq!(
        stack.v2.metric(contract::INFERENCE_REQUESTS_TOTAL.name, &[]),
        1.0,
        "only the allowed override reached v2"
    );
    wait_until(Duration::from_secs(10), "refusals counted", || {
        metric_sum(&stack.prometheus(), contract::OVERRIDE_REFUSED_TOTAL.name, &[("model", "mlp")]) == 2.0
    });
}

#[test]
fn shadow_traffic_reaches_the_shadow_but_the_client_sees_the_primary() {
    let policy = mlp_policy(&json!({
        "versions": [{"name": "v1", "cluster": "mlp-v1", "weight": 100}, {"name": "v2", "cluster": "mlp-v2", "weight": 0}],
        "shadow": {"version": "v2", "percent": 100}
    }));
    let stack = Stack::start("shadow", &policy);
    let n = 40;
    for i in 0..n {
        let r = stack.send("POST", "/v2/models/mlp/infer", &[], &infer_body(i));
        assert_eq!(served_by(&r), "v1");
    }
    wait_until(Duration::from_secs(10), "every request mirrored to v2", || {
        stack.v2.metric(contract::INFERENCE_REQUESTS_TOTAL.name, &[("outcome", "success")]) == n as f64
    });
    assert_eq!(stack.v1.metric(contract::INFERENCE_REQUESTS_TOTAL.name, &[("outcome", "success")]), n as f64);
    wait_until(Duration::from_secs(10), "shadow counter", || {
        metric_sum(&stack.prometheus(), contract::SHADOW_REQUESTS_TOTAL.name, &[("version", "v2")]) == n as f64
    });
}

#[test]
fn samples_reach_the_collector_and_a_dead_collector_costs_the_client_nothing() {
    let policy = mlp_policy(&json!({
        "sampling": {"rate": 0.5, "max_body_bytes": 4096, "redact_headers": ["authorization"], "redact_fields": ["parameters.user"]}
    }));
    let mut stack = Stack::start("sampling", &policy);
    let n = 400;
    let body = |i: usize| {
        let mut v: serde_json::Value = serde_json::from_slice(&infer_body(i)).unwrap();
        v["parameters"] = json!({"user": "alice@example.com"});
        serde_json::to_vec(&v).unwrap()
    };
    for i in 0..n {
        let r = stack.send("POST", "/v2/models/mlp/infer", &[("authorization", "Bearer secret")], &body(i));
        assert_eq!(r.status, 200);
    }
    wait_until(Duration::from_secs(30), "all captured samples shipped", || {
        let p = stack.prometheus();
        let c = metric_sum(&p, contract::SAMPLES_TOTAL.name, &[("result", "captured")]);
        c > 0.0
            && metric_sum(&p, contract::SAMPLES_TOTAL.name, &[("result", "sent")]) == c
            && stack.sample_lines().len() as f64 == c
    });
    // Rate 0.5 over 400: sd 10; allow 5 sd.
    let got = stack.sample_lines();
    assert!((got.len() as f64 - 200.0).abs() < 50.0, "{} samples", got.len());
    let s = &got[0];
    assert_eq!((s["model"].as_str(), s["schema"].as_u64(), s["status"].as_u64()), (Some("mlp"), Some(1), Some(200)));
    assert_eq!(s["request"]["body"]["parameters"]["user"], "[REDACTED]");
    assert_eq!(s["request"]["body"]["inputs"][0]["shape"], json!([1, 64]));
    assert_eq!(s["response"]["body"]["outputs"][0]["shape"], json!([1, 2]));
    assert!(s["request"]["headers"].to_string().contains("[REDACTED]"));
    assert!(!s.to_string().contains("secret") && !s.to_string().contains("alice@"), "leaked: {s}");

    // A policy whose collector path is wrong: the collector refuses every sample (404, its own
    // answer), so they are counted failed, not unanswered.
    let p = stack.prometheus();
    let before =
        ["captured", "failed", "unanswered"].map(|r| metric_sum(&p, contract::SAMPLES_TOTAL.name, &[("result", r)]));
    let mut wrong = policy.clone();
    wrong["collector"]["path"] = json!("/v1/no-such-path");
    assert!(stack.apply_policy(&wrong).unwrap());
    for i in 0..100 {
        assert_eq!(stack.send("POST", "/v2/models/mlp/infer", &[], &body(i)).status, 200);
    }
    wait_until(Duration::from_secs(15), "refused samples counted failed", || {
        let p = stack.prometheus();
        let [c, f, u] = ["captured", "failed", "unanswered"]
            .map(|r| metric_sum(&p, contract::SAMPLES_TOTAL.name, &[("result", r)]));
        c > before[0] && f - before[1] == c - before[0] && u == before[2]
    });
    assert!(stack.apply_policy(&policy).unwrap());

    // Collector gone: every request still succeeds; the samples go unanswered (Envoy's own 503:
    // no connection) or drop, counted.
    stack.kill_collector();
    let p = stack.prometheus();
    let before = ["captured", "failed", "unanswered", "dropped"]
        .map(|r| metric_sum(&p, contract::SAMPLES_TOTAL.name, &[("result", r)]));
    for i in 0..200 {
        assert_eq!(stack.send("POST", "/v2/models/mlp/infer", &[], &body(i)).status, 200);
    }
    wait_until(Duration::from_secs(15), "lost samples counted", || {
        let p = stack.prometheus();
        let [c, f, u, d] = ["captured", "failed", "unanswered", "dropped"]
            .map(|r| metric_sum(&p, contract::SAMPLES_TOTAL.name, &[("result", r)]));
        // Nothing the collector refused: it was not there to refuse.
        c > before[0] && f == before[1] && (u - before[2]) + (d - before[3]) == c - before[0]
    });
}

#[test]
fn runtime_weight_change_through_ecds_loses_no_request() {
    let all_v1 = mlp_policy(&json!({
        "versions": [{"name": "v1", "cluster": "mlp-v1", "weight": 100}, {"name": "v2", "cluster": "mlp-v2", "weight": 0}]
    }));
    let all_v2 = mlp_policy(&json!({
        "versions": [{"name": "v1", "cluster": "mlp-v1", "weight": 0}, {"name": "v2", "cluster": "mlp-v2", "weight": 100}]
    }));
    let stack = Stack::start("ecds", &all_v1);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (statuses, accepted, bad_accepted) = std::thread::scope(|s| {
        let load = s.spawn(|| {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = stack.send("POST", "/v2/models/mlp/infer", &[], &infer_body(seen.len()));
                seen.push((r.status, r.header("x-switchyard-version").map(str::to_owned)));
            }
            seen
        });
        std::thread::sleep(Duration::from_millis(500));
        let accepted = stack.apply_policy(&all_v2).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        // An invalid policy is refused by the renderer, and by the filter when it arrives
        // without the renderer; Envoy keeps the running one.
        let mut bad = all_v2.clone();
        bad["models"]["mlp"]["versions"][0]["weight"] = json!(0);
        bad["models"]["mlp"]["versions"][1]["weight"] = json!(0);
        let refused = stack.apply_policy(&bad).unwrap_err();
        assert!(refused.contains("at least one version needs a positive weight"), "{refused}");
        // A valid policy that renames the routing header would break routing on this
        // bootstrap: refused before it reaches Envoy.
        let mut renamed = all_v2.clone();
        renamed["upstream_header"] = json!("x-route-to");
        let refused = stack.apply_policy(&renamed).unwrap_err();
        assert!(refused.contains("upstream_header is 'x-route-to'"), "{refused}");
        let bad_accepted = stack.apply_unchecked_policy_text(&bad.to_string());
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (load.join().unwrap(), accepted, bad_accepted)
    });
    assert!(accepted, "the new weights were not accepted");
    assert!(!bad_accepted, "an invalid policy was accepted");
    assert!(statuses.len() > 50, "only {} requests", statuses.len());
    assert!(statuses.iter().all(|(s, v)| *s == 200 && v.is_some()), "a request failed or bypassed the filter");
    let first = statuses.iter().position(|(_, v)| v.as_deref() == Some("v2")).expect("traffic never moved to v2");
    assert!(statuses[first..].iter().all(|(_, v)| v.as_deref() == Some("v2")), "traffic went back to v1");
    assert!(stack.envoy_log().contains("at least one version needs a positive weight"), "{}", stack.envoy_log());
    assert_eq!(served_by(&stack.send("GET", "/v2/models/mlp", &[], b"")), "v2");
}

#[test]
fn slo_accounting_sees_a_failing_version_in_every_worker() {
    let policy = mlp_policy(&json!({
        "versions": [{"name": "v1", "cluster": "mlp-v1", "weight": 50}, {"name": "v2", "cluster": "mlp-v2", "weight": 50}],
        "slo": {"availability": 0.99, "latency_ms": 1000}
    }));
    let mut stack = Stack::start("slo", &policy);
    // v2's backend dies: its requests fail at the upstream (connection refused).
    stack.v2.sigterm();
    stack.v2.wait_exit(Duration::from_secs(30));
    let n = 200;
    let mut failed = 0;
    for _ in 0..n {
        // GET: a POST body could meet an early 503 and a closed connection.
        let r = stack.send("GET", "/v2/models/mlp", &[], b"");
        if r.status != 200 {
            failed += 1;
            assert_eq!(r.header("x-switchyard-version"), Some("v2"));
        }
    }
    assert!(failed > 50, "{failed} failures");
    let g = |p: &str, name: &str, labels: &[(&str, &str)]| metric_sum(p, name, labels);
    let mut seen = (0.0, 0.0);
    wait_until(Duration::from_secs(15), "SLO windows to count every request", || {
        let p = stack.prometheus();
        let w = [("window", "5m"), ("sli", "availability")];
        let now = (
            g(&p, contract::SLO_BAD_EVENTS.name, &[&w[..], &[("version", "v2")]].concat()),
            g(&p, contract::SLO_GOOD_EVENTS.name, &w),
        );
        if now != seen {
            eprintln!("SLO window (bad v2, good): {now:?}; want ({failed}, {})", n - failed);
            seen = now;
        }
        now == (failed as f64, (n - failed) as f64)
    });
    let p = stack.prometheus();
    // All of v2's requests failed: bad ratio 1 over a budget of 0.01 = burn rate 100.
    let burn =
        g(&p, contract::SLO_BURN_RATE_X1000.name, &[("version", "v2"), ("window", "1h"), ("sli", "availability")]);
    assert_eq!(burn, 100_000.0);
    assert_eq!(g(&p, contract::SLO_BURN_RATE_X1000.name, &[("version", "v1"), ("sli", "availability")]), 0.0);
    assert_eq!(
        g(&p, contract::REQUESTS_TOTAL.name, &[("version", "v2"), ("outcome", "upstream_reset")]),
        failed as f64
    );
}

#[test]
fn bad_input_passes_through_or_is_rejected_cleanly_and_never_crashes_the_vm() {
    let policy = mlp_policy(&json!({
        "sticky": {"cookie": "uid"},
        "override": {"header": "x-pin", "allow": ["v2"]},
        "sampling": {"rate": 1.0, "max_body_bytes": 1024, "redact_fields": ["id"]}
    }));
    let stack = Stack::start("garbage", &policy);
    let huge = vec![b'['; 3 * 1024 * 1024];
    let long = "v".repeat(20_000);
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a [u8]);
    let cases: Vec<Case> = vec![
        ("POST", "/v2/models/mlp/infer", vec![], b"{not json"),
        ("POST", "/v2/models/mlp/infer", vec![("content-type", "application/octet-stream")], &huge),
        ("POST", "/v2/models/mlp/infer", vec![("inference-header-content-length", "999999999")], b"{}"),
        ("POST", "/v2/models/mlp/infer", vec![("inference-header-content-length", "-1")], b"{}"),
        ("GET", "/v2/models/mlp", vec![("x-pin", long.as_str())], b""),
        ("GET", "/v2/models/mlp", vec![("x-pin", "")], b""),
        ("GET", "/v2/models/mlp", vec![("cookie", ";;;=;uid;uid==;=x")], b""),
        ("GET", "/v2/models/mlp", vec![("cookie", "uid=\u{7f}\u{1}")], b""),
        ("GET", "/v2/models/", vec![], b""),
        ("GET", "/v2/models/nope/infer", vec![], b""),
        ("GET", "/v2/models/mlp/versions/", vec![], b""),
        ("GET", "/%00%ff/../..", vec![], b""),
        ("GET", "/v2/health/ready", vec![], b""),
    ];
    for (method, path, headers, body) in &cases {
        let r = stack.send(method, path, headers, body);
        assert!(r.status < 500 || r.status == 503 && path.contains("nope"), "{method} {path}: {}", r.status);
    }
    // A missing path header cannot be sent over HTTP/1; a request with no body and no
    // content type is the closest.
    assert_eq!(stack.send("POST", "/v2/models/mlp/infer", &[], b"").status, 400);
    // The VM is alive: a normal request still goes through the filter (it sets the header).
    let r = stack.send("POST", "/v2/models/mlp/infer", &[], &infer_body(0));
    assert!(r.header("x-switchyard-version").is_some(), "the filter is no longer running");
    let log = stack.envoy_log();
    assert!(!log.contains("panicked") && !log.contains("Function: proxy_on"), "VM trouble:\n{log}");
}

#[test]
fn every_envoy_config_validates() {
    let dir = scratch("validate");
    let policy = root().join("envoy/policy.json");
    let boot = dir.join("envoy.yaml");
    let mut args = vec!["--collector", "127.0.0.1:9411"];
    for u in
        ["mlp-v1=127.0.0.1:8101", "resnet18-v1=127.0.0.1:8101", "mlp-v2=127.0.0.1:8102", "resnet18-v2=127.0.0.1:8102"]
    {
        args.extend(["--upstream", u]);
    }
    // As the demo renders it, and with injected canary faults (the observability drill).
    for extra in [&[][..], &["--fault", "mlp-v2=30", "--fault", "resnet18-v2=12.5:500"]] {
        let mut args = args.clone();
        args.extend_from_slice(extra);
        render_envoy(&policy, &dir, &args);
        let out = std::process::Command::new(switchyard_testkit::envoy::envoy_bin())
            .args(["--mode", "validate", "--disable-hot-restart", "-c"])
            .arg(&boot)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("OK"), "{extra:?}: {text}");
    }
    // The demo policy passes the filter's own validation rules; a broken one fails with every
    // problem named.
    let check = |file: &std::path::Path| {
        std::process::Command::new(workspace_bin("switchyard-policy")).arg("check").arg(file).output().unwrap()
    };
    assert!(check(&policy).status.success());
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        br#"{"models": {"m": {"versions": [{"name": "v1", "cluster": "c", "weight": 0}]}}, "slo_windows": ["1y"]}"#,
    )
    .unwrap();
    let out = check(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("positive weight") && err.contains("'1y'"), "{err}");
}
