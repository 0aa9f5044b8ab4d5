//! The load generator against the real backend (libtorch, the demo MLP): a short multi-phase
//! scenario's report must agree with the backend's own metrics, and bad input must fail
//! clearly, with a non-zero exit and no panic.

use std::path::Path;
use std::process::{Command, Output};

use switchyard_contract::metrics as contract;
use switchyard_testkit::{Server, demo_repo, scratch};

fn load(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard-load")).args(args).output().expect("switchyard-load runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_scenario_report_agrees_with_the_backend_metrics() {
    let server = Server::start_ready(&demo_repo(), &["--models", "mlp:v1"]);
    let dir = scratch("generator-scenario");
    // A body the backend must refuse (3 features where the model takes 64): 400s that both
    // sides have to count.
    std::fs::write(
        dir.join("bad.jsonl"),
        "{\"inputs\":[{\"name\":\"features\",\"shape\":[1,3],\"datatype\":\"FP32\",\"data\":[1,2,3]}]}\n",
    )
    .unwrap();
    let scenario = dir.join("mixed.toml");
    std::fs::write(
        &scenario,
        r#"
        name = "mixed"
        model = "mlp"
        version = "v1"
        [[payload]]
        rows = 1
        weight = 6
        [[payload]]
        rows = 4
        binary = true
        weight = 3
        [[payload]]
        replay = "bad.jsonl"
        weight = 1
        [[header]]
        name = "x-user-id"
        users = 50
        [drift]
        from_phase = "closed"
        features = [0, 1]
        shift = 3.0
        [[phase]]
        name = "ramp"
        duration = "2s"
        rate = 100
        ramp_to = 300
        [[phase]]
        name = "closed"
        duration = "1s"
        concurrency = 4
        "#,
    )
    .unwrap();
    let before = server.metrics();
    let report_path = dir.join("report.json");
    let plots = dir.join("plots");
    let out = load(&[
        "run",
        scenario.to_str().unwrap(),
        "--addr",
        &server.http,
        "--report",
        report_path.to_str().unwrap(),
        "--plot",
        plots.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "run failed: {}", stderr(&out));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("ramp") && summary.contains("closed") && summary.contains("total"), "{summary}");
    let after = server.metrics();
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    let delta = |name: &str, labels: &[(&str, &str)]| {
        switchyard_testkit::metric_sum(&after, name, labels) - switchyard_testkit::metric_sum(&before, name, labels)
    };
    let total = &r["total"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0) as f64;
    // The open phase schedules ∫ rate = 400 requests exactly.
    assert_eq!(r["phases"][0]["sent"], 400, "{}", r["phases"][0]);
    assert!(n(&r["phases"][1]["sent"]) > 0.0);
    let mlp = [("model", "mlp"), ("version", "v1")];
    let outcome = |o: &str| delta(contract::INFERENCE_REQUESTS_TOTAL.name, &[mlp[0], mlp[1], ("outcome", o)]);
    assert_eq!(
        n(&total["sent"]),
        delta(contract::INFERENCE_REQUESTS_TOTAL.name, &mlp),
        "every request reached the backend"
    );
    assert_eq!(n(&total["ok"]), outcome("success"));
    assert_eq!(n(&total["by_status"]["400"]), outcome("bad_request"));
    assert!(n(&total["by_status"]["400"]) > 10.0, "the mix sent bad bodies: {total}");
    assert_eq!(
        n(&total["rows"]),
        delta(contract::INFERENCE_ROWS_TOTAL.name, &mlp),
        "rows from the 1- and 4-row bodies"
    );
    assert_eq!(total["errors"], total["by_status"]["400"], "no other errors: {total}");
    assert_eq!(r["timeline"].as_array().unwrap().iter().map(|s| n(&s["sent"])).sum::<f64>(), n(&total["sent"]));
    for chart in ["latency-over-time.svg", "latency-vs-throughput.svg"] {
        let svg = std::fs::read_to_string(plots.join(chart)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<polyline"), "{chart}");
    }
}

#[test]
fn grpc_calls_are_counted_like_the_backend_counts_them() {
    let server = Server::start_ready(&demo_repo(), &["--models", "mlp:v1"]);
    let out = load(&[
        "closed",
        "--addr",
        &server.grpc,
        "--model",
        "mlp",
        "--grpc",
        "--rows",
        "2",
        "--concurrency",
        "2",
        "--duration",
        "1s",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let total = &report["total"];
    let ok = total["ok"].as_u64().unwrap();
    assert!(ok > 10, "{report}");
    assert_eq!(total["errors"], 0, "{report}");
    assert_eq!(total["rows"].as_u64(), Some(2 * ok));
    assert!(report["target"].as_str().unwrap().starts_with("grpc://"), "{report}");
    let served = server.metric(contract::INFERENCE_REQUESTS_TOTAL.name, &[("outcome", "success")]);
    assert_eq!(served, ok as f64, "the backend served what the generator counted");
    // A model the server lacks: the gRPC status, decoded, and a non-zero exit.
    let out = load(&["closed", "--addr", &server.grpc, "--model", "nope", "--grpc", "--duration", "1s"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("grpc-status 5: model 'nope' not found"), "{}", stderr(&out));
}

#[test]
fn bad_input_gets_a_clear_message_and_a_non_zero_exit() {
    let server = Server::start_ready(&demo_repo(), &["--models", "mlp:v1"]);
    let check = |args: &[&str], want: &str| {
        let out = load(args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(err.contains(want), "{args:?}: expected '{want}' in:\n{err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    let free = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    check(
        &["open", "--addr", &free, "--model", "mlp", "--rate", "10", "--duration", "1s"],
        &format!("cannot connect to {free}"),
    );
    check(
        &["open", "--addr", &server.http, "--model", "nope", "--rate", "10", "--duration", "1s"],
        "model 'nope' is not served",
    );
    let dir = scratch("generator-bad");
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "model = 'mlp'\n[[phase]]\nduration = '1s'\nrate = 10\nspike = { rate = 5, at = '2s', duration = '1s' }\n",
    )
    .unwrap();
    check(&["run", bad.to_str().unwrap(), "--addr", &server.http], "must fit inside the phase");
    check(&["check", Path::new("/nonexistent.toml").to_str().unwrap()], "cannot read /nonexistent.toml");
    let drift = dir.join("drift.toml");
    std::fs::write(&drift, "model = 'mlp'\n[drift]\nfrom_phase = 'a'\nfeatures = [64]\n[[phase]]\nname = 'a'\nduration = '1s'\nrate = 10\n").unwrap();
    check(&["run", drift.to_str().unwrap(), "--addr", &server.http], "drift feature 64 is out of range");
}

#[test]
fn shipped_scenarios_are_valid() {
    let dir = switchyard_testkit::root().join("load-tests/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let names: Vec<_> = files.iter().map(|f| f.file_stem().unwrap().to_string_lossy().into_owned()).collect();
    for want in ["steady", "saturation-sweep", "spike", "sticky-users", "drift"] {
        assert!(names.iter().any(|n| n == want), "scenario {want} missing from {}", dir.display());
    }
    let mut args = vec!["check"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let out = load(&args);
    assert!(out.status.success(), "{}", stderr(&out));
}
