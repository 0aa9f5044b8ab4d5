//! The drift monitor as its users run it: the real `switchyard-monitor` binary, `compare` on
//! files and `watch` following a samples file as the collector writes it (appends, rotation,
//! junk lines), exporting the same numbers `compare` prints, and keeping a collected
//! reference across a restart.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_contract::metrics as contract;
use switchyard_runtime::now_ms;
use switchyard_testkit::stack::start_monitor;
use switchyard_testkit::{Rng, metric_sum, request, scratch, wait_until, workspace_bin};

/// A collector line: 8 features (the first `shifted` moved by +1.5), a 2-class output.
fn sample(rng: &mut Rng, version: &str, shifted: usize, t: u64) -> String {
    let f: Vec<f64> = (0..8).map(|i| rng.normal() + if i < shifted { 1.5 } else { 0.0 }).collect();
    let p = 1.0 / (1.0 + (-f[0]).exp());
    json!({
        "schema": 1, "model": "mlp", "version": version, "request_id": "r", "start_unix_ms": t, "duration_ms": 1,
        "status": 200, "outcome": "success",
        "request": {"headers": [], "body": {"inputs": [{"name": "features", "shape": [1, 8], "datatype": "FP32", "data": f}]}, "bytes": 1, "truncated": false},
        "response": {"headers": [], "body": {"outputs": [{"name": "probabilities", "shape": [1, 2], "datatype": "FP32", "data": [1.0 - p, p]}]}, "bytes": 1, "truncated": false}
    })
    .to_string()
}

fn append(path: &Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

fn compare(reference: &Path, current: &Path, extra: &[&str]) -> Value {
    let out = Command::new(workspace_bin("switchyard-monitor"))
        .args(["compare", "--format", "json", "--reference"])
        .arg(reference)
        .arg("--current")
        .arg(current)
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn drift(addr: &str) -> Value {
    serde_json::from_slice(&request(addr, "GET", "/v1/drift", &[], b"").body).unwrap()
}

fn metrics(addr: &str) -> String {
    String::from_utf8(request(addr, "GET", "/metrics", &[], b"").body).unwrap()
}

fn write_config(dir: &Path, reference: &Value) -> PathBuf {
    let path = dir.join("monitor.json");
    let config = json!({
        "evaluate_every_seconds": 0.2,
        "models": {"mlp": {"reference": reference, "windows": [{"name": "all", "rows": 10000, "min_rows": 200}, {"name": "last100", "rows": 100}]}}
    });
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

#[test]
fn watch_exports_what_compare_prints_through_junk_and_rotation() {
    let dir = scratch("drift-watch");
    let mut rng = Rng(7);
    let t = now_ms();
    let reference: Vec<String> = (0..400).map(|i| sample(&mut rng, "v1", 0, t + i)).collect();
    let current: Vec<String> = (0..300).map(|i| sample(&mut rng, "v2", 3, t + i)).collect();
    let (ref_file, cur_file, samples) =
        (dir.join("reference.jsonl"), dir.join("current.jsonl"), dir.join("samples.jsonl"));
    append(&ref_file, &reference);
    append(&cur_file, &current);
    let expected = compare(&ref_file, &cur_file, &["--min-rows", "200"]);

    let config = write_config(&dir, &json!({"file": ref_file}));
    // Half the current samples, and junk the monitor must count and step over.
    append(&samples, &current[..150]);
    append(
        &samples,
        &["{not json".into(), "[]".into(), json!({"schema": 1, "kind": "comparison", "model": "mlp"}).to_string()],
    );
    append(&samples, &[current[0].replace("\"model\":\"mlp\"", "\"model\":\"other\"")]);
    let (mut monitor, addr) =
        start_monitor(&workspace_bin("switchyard-monitor"), &samples, &config, &dir.join("state")).unwrap();
    wait_until(Duration::from_secs(20), "the first 150 rows evaluated", || {
        drift(&addr)["mlp"]["versions"]["v2"]["all"]["rows"] == 150
    });
    // 150 rows, where the window needs 200: not enough data, and no drift series to alert on.
    let early = &drift(&addr)["mlp"]["versions"]["v2"]["all"];
    assert_eq!((&early["enough_data"], &early["min_rows"]), (&json!(false), &json!(200)), "{early}");
    assert!(
        early["columns"].as_array().unwrap().iter().all(|c| c["not_enough_data"] == true && c["drifted"].is_null())
    );
    let text = metrics(&addr);
    let all = [("model", "mlp"), ("version", "v2"), ("window", "all")];
    assert_eq!(metric_sum(&text, contract::DRIFT_WINDOW_MIN_ROWS.name, &all), 200.0);
    assert!(
        !text.contains(&format!(
            "{}{{model=\"mlp\",version=\"v2\",window=\"all\"",
            contract::DRIFT_DATASET_DRIFTED.name
        )),
        "{text}"
    );
    // The collector rotates: the file is renamed away and a new one started.
    std::fs::rename(&samples, dir.join("samples.jsonl.1")).unwrap();
    append(&samples, &current[150..]);
    wait_until(Duration::from_secs(20), "all 300 rows evaluated", || {
        drift(&addr)["mlp"]["versions"]["v2"]["all"]["rows"] == 300
    });
    assert!(monitor.exited().is_none(), "the monitor must not stop on junk: {}", monitor.log());

    let window = &drift(&addr)["mlp"]["versions"]["v2"]["all"];
    let text = metrics(&addr);
    let want = expected["columns"].as_array().unwrap();
    assert_eq!(want.len(), 11, "8 features, 2 probabilities and the class");
    for (got, want) in window["columns"].as_array().unwrap().iter().zip(want) {
        let column = want["column"].as_str().unwrap();
        assert_eq!(got["column"], want["column"]);
        assert_eq!(got["test"], want["test"], "{column}");
        assert_eq!(got["score"], want["score"], "{column}: the stream and the batch command give the same score");
        assert_eq!(got["drifted"], want["drifted"], "{column}");
        let labels = [("model", "mlp"), ("version", "v2"), ("window", "all"), ("column", column)];
        let exported = metric_sum(&text, contract::DRIFT_SCORE.name, &labels);
        assert!(
            (exported - want["score"].as_f64().unwrap()).abs() <= 1e-12 * exported.abs().max(1e-300),
            "{column}: {exported}"
        );
        let drifted = metric_sum(&text, contract::DRIFT_COLUMN_DRIFTED.name, &labels);
        assert_eq!(drifted == 1.0, want["drifted"].as_bool().unwrap(), "{column}");
    }
    // The shifted features drift, far apart from the others (KS at 5%: an unshifted column may
    // still drift now and then; the end-to-end test uses a reference large enough not to).
    let score = |c: usize| want[c]["score"].as_f64().unwrap();
    for shifted in 0..3 {
        assert_eq!(want[shifted]["drifted"], true, "{}", want[shifted]);
        assert!((3..8).all(|other| score(other) > 1e3 * score(shifted)), "{want:?}");
    }
    assert_eq!(window["dataset"], expected["dataset"]);
    assert_eq!(drift(&addr)["mlp"]["versions"]["v2"]["last100"]["rows"], 100);
    for (reason, n) in [("malformed", 1.0), ("empty", 1.0), ("comparison", 1.0), ("unconfigured", 1.0)] {
        assert_eq!(metric_sum(&text, contract::DRIFT_LINES_SKIPPED_TOTAL.name, &[("reason", reason)]), n, "{reason}");
    }
    assert_eq!(metric_sum(&text, contract::DRIFT_ROWS_INGESTED_TOTAL.name, &[("version", "v2")]), 300.0);
    assert!(metric_sum(&text, contract::DRIFT_LAST_SAMPLE_AGE_SECONDS.name, &[("version", "v2")]) < 60.0);
}

#[test]
fn a_reference_collected_from_a_version_survives_a_restart() {
    let dir = scratch("drift-restart");
    let mut rng = Rng(11);
    let t = now_ms();
    let samples = dir.join("samples.jsonl");
    append(&samples, &(0..120).map(|i| sample(&mut rng, "v1", 0, t + i)).collect::<Vec<_>>());
    let config = write_config(&dir, &json!({"version": "v1", "rows": 100}));
    let bin = workspace_bin("switchyard-monitor");
    let (monitor, addr) = start_monitor(&bin, &samples, &config, &dir.join("state")).unwrap();
    wait_until(Duration::from_secs(20), "the reference collected", || {
        metric_sum(&metrics(&addr), contract::DRIFT_REFERENCE_READY.name, &[("model", "mlp")]) == 1.0
    });
    assert!(dir.join("state/mlp.reference.json").exists());
    drop(monitor);
    // The samples that made the reference are gone (rotated out): the state file has it.
    std::fs::write(&samples, "").unwrap();
    append(&samples, &(0..200).map(|i| sample(&mut rng, "v2", 8, t + i)).collect::<Vec<_>>());
    let (_monitor, addr) = start_monitor(&bin, &samples, &config, &dir.join("state")).unwrap();
    wait_until(Duration::from_secs(20), "v2 evaluated against the saved reference", || {
        drift(&addr)["mlp"]["versions"]["v2"]["all"]["rows"] == 200
    });
    let d = drift(&addr);
    assert_eq!(d["mlp"]["reference_rows"], 100);
    assert_eq!(d["mlp"]["versions"]["v2"]["all"]["dataset"]["drifted"], true, "{d}");
    assert_eq!(d["mlp"]["versions"]["v2"]["all"]["columns"][0]["test"], "ks");
}

#[test]
fn compare_writes_a_self_contained_html_report_and_refuses_bad_configs() {
    let dir = scratch("drift-html");
    let mut rng = Rng(3);
    let (r, c) = (dir.join("r.jsonl"), dir.join("c.jsonl"));
    // Named-column objects, a categorical column among them.
    let row = |rng: &mut Rng, shift: f64| {
        let x = rng.normal() + shift;
        json!({"x": x, "colour": if x > 0.5 { "red" } else { "blue" }, "n": (x * 2.0).round()}).to_string()
    };
    append(&r, &(0..300).map(|_| row(&mut rng, 0.0)).collect::<Vec<_>>());
    append(&c, &(0..300).map(|_| row(&mut rng, 1.0)).collect::<Vec<_>>());
    let out = dir.join("report.html");
    let report = |min_rows: &str| {
        let status = Command::new(workspace_bin("switchyard-monitor"))
            .args(["compare", "--format", "html", "--fail-on-drift", "--min-rows", min_rows, "--reference"])
            .arg(&r)
            .arg("--current")
            .arg(&c)
            .arg("--output")
            .arg(&out)
            .status()
            .unwrap();
        (status.code(), std::fs::read_to_string(&out).unwrap())
    };
    // 300 rows where 500 are needed (the default): nothing is judged, nothing is red.
    let (code, html) = report("500");
    assert_eq!(code, Some(0), "not enough data is not drift");
    assert!(
        html.contains("<b>Not enough data</b>") && !html.contains("class=drift") && !html.contains("<svg"),
        "{html}"
    );
    assert!(html.contains("not enough data: 300 of the 500 rows it needs"), "{html}");
    let (code, html) = report("100");
    assert_eq!(code, Some(3), "the dataset drifted: --fail-on-drift exits 3");
    assert!(html.contains("Dataset drift: detected") && html.matches("<svg").count() == 3, "{html}");
    assert!(
        !html.contains("http://") && !html.contains("https://") && !html.contains("<script"),
        "no network, no script"
    );
    let v = compare(&r, &c, &["--min-rows", "100"]);
    let colour = v["columns"].as_array().unwrap().iter().find(|c| c["column"] == "colour").unwrap();
    assert_eq!(
        (&colour["kind"], &colour["test"]),
        (&json!("categorical"), &json!("z")),
        "text values make a categorical column"
    );

    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"tests": {"colour": "ks"}, "columns": {"colour": "categorical"}, "drift_share": 7}"#)
        .unwrap();
    let out = Command::new(workspace_bin("switchyard-monitor"))
        .args(["compare", "--reference"])
        .arg(&r)
        .arg("--current")
        .arg(&c)
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("needs a numerical column") && err.contains("drift_share = 7"),
        "{err}"
    );
}
