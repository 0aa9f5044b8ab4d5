//! Hostile clients against the real data plane (Envoy with the filter, real backends): no
//! request reaches a backend without the filter's decision or a 4xx, no client-sent control
//! header is honoured, and a policy swap under load loses no count.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use switchyard_contract::metrics as contract;
use switchyard_testkit::stack::{Stack, mlp_infer_body as infer_body, mlp_policy, wasm_path};
use switchyard_testkit::*;

/// Requests either of the two backends answered so far.
fn served(stack: &Stack) -> (f64, f64) {
    let n = |s: &Server| s.metric(contract::INFERENCE_REQUESTS_TOTAL.name, &[]);
    (n(&stack.v1), n(&stack.v2))
}

#[test]
fn encodings_meant_to_slip_past_the_filter_get_its_decision_or_a_4xx() {
    // v2 may not be picked by clients: a version in the path must not reach it.
    let policy = mlp_policy(&json!({
        "versions": [{"name": "v1", "cluster": "mlp-v1", "weight": 100}, {"name": "v2", "cluster": "mlp-v2", "weight": 0}],
        "override": {"header": "x-pin", "allow": ["v1"]}
    }));
    let stack = Stack::start("hostile-paths", &policy);
    let body = infer_body(1);
    // Percent-encoded, dot-segment and doubled-slash spellings of the same model: each is
    // decided on by the filter (it names the version it chose) and served by v1 only.
    for path in [
        "/v2/models/ml%70/infer",
        "/v2/models/%6dlp/versions/v2/infer",
        "/v2/models/%6D%6C%70/versions/v2/infer",
        "/v2/models/nope/../mlp/infer",
        "/v2/./models/mlp/infer",
        "//v2//models//mlp//infer",
        "/v2/models/mlp/versions/v2/../../infer",
    ] {
        let before = served(&stack);
        let r = stack.send("POST", path, &[], &body);
        assert_eq!(r.status, 200, "{path}: {} {}", r.status, String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("x-switchyard-version"), Some("v1"), "{path}: served without the filter's decision");
        let after = served(&stack);
        assert_eq!((after.0 - before.0, after.1 - before.1), (1.0, 0.0), "{path}: wrong backend");
    }
    // Encoded slashes could be decoded into another path by a backend: refused by Envoy.
    for path in ["/v2/models/mlp%2Fversions%2Fv2/infer", "/v2/models/mlp%2fx/infer", "/v2/models/mlp%5Cx/infer"] {
        let before = served(&stack);
        let r = stack.send("POST", path, &[], &body);
        assert_eq!(r.status, 400, "{path}: {}", r.status);
        assert_eq!(served(&stack), before, "{path} reached a backend");
    }
    // A model the policy does not have is answered by Envoy, not sent to some cluster.
    for path in ["/v2/models/resnet18/infer", "/v2/models/unknown", "/v2/models/", "/v2/models", "/v2/models/%2e%2e"] {
        let before = served(&stack);
        let r = stack.send("POST", path, &[], &body);
        assert_eq!(r.status, 404, "{path}: {} {}", r.status, String::from_utf8_lossy(&r.body));
        assert_eq!(served(&stack), before, "{path} reached a backend");
    }
    let r = stack.send("GET", "/v2/models/unknown", &[], b"");
    assert_eq!((r.status, r.error().as_str()), (404, "unknown model"));
    // Malformed escapes in the model segment: a 4xx, never a backend.
    for path in ["/v2/models/ml%7/infer", "/v2/models/ml%zz/infer", "/v2/models/m%00lp/infer"] {
        let before = served(&stack);
        let r = stack.send("POST", path, &[], &body);
        assert!((400..500).contains(&r.status), "{path}: {}", r.status);
        assert_eq!(served(&stack), before, "{path} reached a backend");
    }
}

#[test]
fn a_header_that_is_not_utf8_neither_crashes_the_filter_nor_gets_around_it() {
    // The sticky header is one the filter reads on every request.
    let policy =
        mlp_policy(&json!({"sticky": {"header": "x-user-id"}, "sampling": {"rate": 1.0, "max_body_bytes": 1024}}));
    let stack = Stack::start("hostile-utf8", &policy);
    for _ in 0..8 {
        let mut req =
            format!("GET /v2/models/mlp HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n", stack.listen).into_bytes();
        req.extend_from_slice(b"x-user-id: a\xff\xfeb\r\nx-other: \xc3\x28\r\n\r\n");
        let r = switchyard_testkit::http::send_raw(&stack.listen, &req).unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert!(r.header("x-switchyard-version").is_some(), "served without the filter's decision");
    }
    // Every worker's VM is still alive: ordinary requests are still decided on.
    for i in 0..40 {
        let r = stack.send("POST", "/v2/models/mlp/infer", &[("x-user-id", &format!("u{i}"))], &infer_body(i));
        assert!(r.status == 200 && r.header("x-switchyard-version").is_some(), "request {i}: {}", r.status);
    }
    assert!(!stack.envoy_log().contains("panicked"), "{}", stack.envoy_log());
}

#[test]
fn client_sent_envoy_controls_are_dropped_before_anything_reads_them() {
    let policy = mlp_policy(&json!({
        "versions": [{"name": "v1", "cluster": "mlp-v1", "weight": 100}, {"name": "v2", "cluster": "mlp-v2", "weight": 0}],
        "sampling": {"rate": 1.0, "max_body_bytes": 4096}
    }));
    let stack = Stack::start("hostile-headers", &policy);
    let controls = [
        ("x-envoy-upstream-rq-timeout-ms", "1"),
        ("x-envoy-max-retries", "9"),
        ("x-envoy-retry-on", "5xx"),
        ("x-envoy-upstream-rq-per-try-timeout-ms", "1"),
        ("x-envoy-force-trace", "1"),
        ("x-switchyard-upstream", "mlp-v2"),
        ("x-switchyard-shadow", "mlp-v2"),
        // Claims to come from inside the network, which would make the request internal (and
        // its controls trusted) if Envoy believed the client's x-forwarded-for.
        ("x-forwarded-for", "10.1.2.3"),
        ("x-envoy-internal", "true"),
    ];
    for i in 0..20 {
        let r = stack.send("POST", "/v2/models/mlp/infer", &controls, &infer_body(i));
        assert_eq!(r.status, 200);
    }
    wait_until(Duration::from_secs(15), "the samples", || stack.sample_lines().len() >= 20);
    // The filter records the request headers as Envoy handed them on: none of the client's
    // controls survived to be honoured.
    for s in stack.sample_lines() {
        let headers = s["request"]["headers"].to_string().to_lowercase();
        assert!(headers.contains("content-length"), "the sample records no headers: {headers}");
        for (name, _) in controls.iter().filter(|(n, _)| n.starts_with("x-envoy") || n.starts_with("x-switchyard")) {
            assert!(!headers.contains(name), "{name} reached the filter: {headers}");
        }
    }
    assert_eq!(stack.v2.metric(contract::INFERENCE_REQUESTS_TOTAL.name, &[]), 0.0, "a client picked v2");
}

#[test]
fn with_the_filter_failed_open_each_model_goes_only_to_its_stable_version() {
    // The empty proxy-wasm filter in the Switchyard filter's place stands for a filter that
    // failed open: requests pass with no routing decision.
    let noop = wasm_path().with_file_name("examples/noop.wasm");
    assert!(noop.exists(), "{} missing: scripts/test.sh builds it", noop.display());
    let policy = mlp_policy(&json!({}));
    let stack = Stack::start_with_wasm("hostile-failopen", &policy, &noop, &[]);
    for path in ["/v2/models/mlp/infer", "/v2/models/mlp/versions/v2/infer", "/v2/models/ml%70/infer"] {
        let r = stack.send("POST", path, &[("x-switchyard-upstream", "mlp-v2")], &infer_body(0));
        assert!(r.status == 200 || r.status == 404, "{path}: {} {}", r.status, String::from_utf8_lossy(&r.body));
    }
    assert!(stack.v1.metric(contract::INFERENCE_REQUESTS_TOTAL.name, &[]) >= 1.0);
    assert_eq!(stack.v2.metric(contract::INFERENCE_REQUESTS_TOTAL.name, &[]), 0.0, "fail-open reached the canary");
    assert_eq!(stack.send("GET", "/v2/models/unknown", &[], b"").status, 404);
}

#[test]
fn a_policy_swap_under_load_loses_no_count_and_no_sample() {
    let policy = |w1: u32, rate: f64| {
        mlp_policy(&json!({
            "versions": [{"name": "v1", "cluster": "mlp-v1", "weight": w1}, {"name": "v2", "cluster": "mlp-v2", "weight": 100 - w1}],
            "sampling": {"rate": rate, "max_body_bytes": 2048},
            "slo": {"availability": 0.999, "latency_ms": 1000}
        }))
    };
    let stack = Stack::start("hostile-swap", &policy(90, 0.5));
    let (stop, sent) = (AtomicBool::new(false), AtomicUsize::new(0));
    std::thread::scope(|s| {
        for t in 0..2 {
            let (stack, stop, sent) = (&stack, &stop, &sent);
            s.spawn(move || {
                let mut i = t * 1_000_000;
                while !stop.load(Ordering::Relaxed) {
                    assert_eq!(stack.send("POST", "/v2/models/mlp/infer", &[], &infer_body(i)).status, 200);
                    sent.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            });
        }
        for (k, w) in [50, 10, 70, 90, 30].into_iter().enumerate() {
            std::thread::sleep(Duration::from_millis(300));
            assert!(stack.apply_policy(&policy(w, 0.3 + 0.1 * k as f64)).unwrap(), "swap {k} refused");
        }
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
    });
    let sent = sent.load(Ordering::Relaxed) as f64;
    assert!(sent > 100.0, "only {sent} requests");
    wait_until(Duration::from_secs(15), "every request and sample accounted for", || {
        let p = stack.prometheus();
        let total = metric_sum(&p, contract::REQUESTS_TOTAL.name, &[("model", "mlp")]);
        let sample = |r: &str| metric_sum(&p, contract::SAMPLES_TOTAL.name, &[("result", r)]);
        // Every request succeeded, so each is one good availability event in the window.
        let good = metric_sum(&p, contract::SLO_GOOD_EVENTS.name, &[("window", "5m"), ("sli", "availability")]);
        total == sent
            && good == sent
            && sample("captured") > 0.0
            && sample("captured") == sample("sent") + sample("failed") + sample("dropped") + sample("unanswered")
    });
}
