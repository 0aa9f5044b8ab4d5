//! Shadow responses compared, in real Envoy with real backends and the real collector: every
//! shadowed request is replayed by the filter to the shadow (and to the primary again, for the
//! noise), the collector's disagreement matches what the two backends answer when asked
//! directly, and a shadow that dies shows as status mismatches while clients see no error.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_contract::metrics as contract;
use switchyard_testkit::stack::{Stack, mlp_infer_body, mlp_policy};
use switchyard_testkit::*;

fn argmax(v: &Value) -> usize {
    let p = floats(&v["outputs"][0]["data"]);
    usize::from(p[1] > p[0])
}

fn collector_metric(stack: &Stack, name: &str, pair: &str) -> f64 {
    let text = String::from_utf8(request(&stack.collector_addr, "GET", "/metrics", &[], b"").body).unwrap();
    metric_sum(&text, name, &[("model", "mlp"), ("primary", "v1"), ("shadow", "v2"), ("pair", pair)])
}

#[test]
fn shadow_answers_are_compared_with_the_primarys_and_a_dead_shadow_shows_as_mismatches() {
    let stack = Stack::start(
        "shadow-compare",
        &mlp_policy(&json!({
            "versions": [{"name": "v1", "cluster": "mlp-v1", "weight": 100}, {"name": "v2", "cluster": "mlp-v2", "weight": 0}],
            "shadow": {"version": "v2", "percent": 100, "compare": {"percent": 100, "max_pending": 64}}
        })),
    );
    let upstream = |c: &str| {
        let stats = String::from_utf8(request(&stack.admin, "GET", "/stats/prometheus", &[], b"").body).unwrap();
        metric_sum(&stats, "envoy_cluster_upstream_rq_total", &[("envoy_cluster_name", c)])
    };
    // Start-up probes may have passed through Envoy already.
    let before = (upstream("mlp-v1"), upstream("mlp-v2"));
    let n = 60;
    let mut expected_disagreeing = 0;
    let ct = [("content-type", "application/json")];
    for seed in 0..n {
        let body = mlp_infer_body(seed);
        let via_envoy = request(&stack.listen, "POST", "/v2/models/mlp/infer", &ct, &body);
        assert_eq!(via_envoy.status, 200);
        assert_eq!(via_envoy.header("x-switchyard-version"), Some("v1"));
        // The reference: both versions asked directly, past Envoy.
        let v1: Value =
            serde_json::from_slice(&request(&stack.v1.http, "POST", "/v2/models/mlp/infer", &ct, &body).body).unwrap();
        let v2: Value =
            serde_json::from_slice(&request(&stack.v2.http, "POST", "/v2/models/mlp/infer", &ct, &body).body).unwrap();
        expected_disagreeing += usize::from(argmax(&v1) != argmax(&v2));
    }
    eprintln!("v1 and v2 disagree on {expected_disagreeing} of {n} inputs");
    assert!(
        (1..n).contains(&expected_disagreeing),
        "the test needs inputs on which v1 and v2 sometimes disagree: {expected_disagreeing} of {n}"
    );
    let compared = |pair: &str| collector_metric(&stack, contract::SHADOW_COMPARED_REQUESTS_TOTAL.name, pair);
    wait_until(Duration::from_secs(10), "every request compared, shadow and noise", || {
        compared("shadow") == n as f64 && compared("noise") == n as f64
    });
    let rows = |name: &str, pair: &str| collector_metric(&stack, name, pair) as usize;
    assert_eq!(rows(contract::SHADOW_COMPARED_ROWS_TOTAL.name, "shadow"), n);
    assert_eq!(rows(contract::SHADOW_DISAGREEING_ROWS_TOTAL.name, "shadow"), expected_disagreeing);
    assert_eq!(rows(contract::SHADOW_ARGMAX_DIFFERING_ROWS_TOTAL.name, "shadow"), expected_disagreeing);
    assert_eq!(rows(contract::SHADOW_DISAGREEING_ROWS_TOTAL.name, "noise"), 0, "v1 against itself");
    assert_eq!(rows(contract::SHADOW_STATUS_MISMATCHES_TOTAL.name, "shadow"), 0);
    // Replayed by the filter, not also mirrored by Envoy: v2 served each request once (plus
    // the direct reference calls above, which bypass Envoy's cluster stats).
    assert_eq!(upstream("mlp-v2") - before.1, n as f64, "requests to v2 through Envoy");
    assert_eq!(upstream("mlp-v1") - before.0, 2.0 * n as f64, "each request and its noise replay");
    let records: Vec<Value> = stack.sample_lines().into_iter().filter(|l| l["kind"] == "comparison").collect();
    assert_eq!(records.len(), n);
    assert!(records.iter().all(|r| r["request"]["body"]["inputs"][0]["name"] == "features"));

    // The shadow dies: clients still get v1's answers; every comparison is a status mismatch.
    stack.v2.sigkill();
    let m = 20;
    for seed in 0..m {
        let r = request(&stack.listen, "POST", "/v2/models/mlp/infer", &ct, &mlp_infer_body(seed));
        assert_eq!(r.status, 200, "a dead shadow must not fail the client's request");
    }
    let shown = || {
        let stats = String::from_utf8(request(&stack.admin, "GET", "/stats/prometheus", &[], b"").body).unwrap();
        stats.lines().filter(|l| l.contains("shadow_compares")).collect::<Vec<_>>().join("\n")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while compared("shadow") != (n + m) as f64 {
        assert!(
            std::time::Instant::now() < deadline,
            "the dead shadow's comparisons: {} of {} after 15 s; the filter's counts:\n{}",
            compared("shadow"),
            n + m,
            shown()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(rows(contract::SHADOW_STATUS_MISMATCHES_TOTAL.name, "shadow"), m);
    assert_eq!(rows(contract::SHADOW_DISAGREEING_ROWS_TOTAL.name, "shadow"), expected_disagreeing + m);
    let result = |r: &str| {
        let envoy_counts = String::from_utf8(request(&stack.admin, "GET", "/stats/prometheus", &[], b"").body).unwrap();
        metric_sum(
            &envoy_counts,
            contract::SHADOW_COMPARES_TOTAL.name,
            &[("model", "mlp"), ("version", "v2"), ("result", r)],
        )
    };
    // The collector counts a record before it answers the filter, which counts it sent then.
    wait_until(Duration::from_secs(5), "every comparison counted sent by the filter", || {
        (result("started"), result("sent")) == ((n + m) as f64, (n + m) as f64)
    });
}
