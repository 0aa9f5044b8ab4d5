//! End-to-end: the real backend binary, real libtorch, the generated TorchScript models.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::json;
use switchyard_contract::metrics as contract;
use switchyard_testkit::*;

fn infer_body(g: &serde_json::Value, id: &str) -> serde_json::Value {
    json!({"id": id, "inputs": g["inputs"]})
}

#[test]
fn every_endpoint_golden_outputs_and_every_error_status() {
    let s = Server::start_ready(&demo_repo(), &["--max-body-bytes", "16000000"]);

    // Health and server metadata.
    assert_eq!(s.get("/v2/health/live").status, 200);
    assert_eq!(s.get("/v2/health/ready").status, 200);
    let meta = s.get("/v2").json();
    assert_eq!(meta["name"], "switchyard");
    assert!(meta["extensions"].as_array().unwrap().contains(&json!("binary_tensor_data")));

    // Model metadata and readiness, with and without a version.
    let m = s.get("/v2/models/mlp").json();
    assert_eq!(m["versions"], json!(["v1", "v2"]));
    assert_eq!(m["parameters"]["version"], "v2", "no version means the newest ready one");
    assert_eq!(m["inputs"][0], json!({"name": "features", "datatype": "FP32", "shape": [-1, 64]}));
    let device = m["parameters"]["device"].as_str().unwrap().to_owned();
    assert!(device == "cpu" || device.starts_with("cuda"), "{device}");
    assert_eq!(s.get("/v2/models/resnet18/versions/v1").json()["parameters"]["version"], "v1");
    assert_eq!(s.get("/v2/models/mlp/ready").status, 200);
    assert_eq!(s.get("/v2/models/resnet18/versions/v2/ready").json()["ready"], true);

    // Golden outputs for every model version, computed by PyTorch itself.
    for (model, version) in [("mlp", "v1"), ("mlp", "v2"), ("resnet18", "v1"), ("resnet18", "v2")] {
        let g = golden(model, version);
        let r = s.post_json(&format!("/v2/models/{model}/versions/{version}/infer"), &infer_body(&g, "gold-1"));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("content-type"), Some("application/json"));
        let v = r.json();
        assert_eq!(
            (v["model_name"].as_str(), v["model_version"].as_str(), v["id"].as_str()),
            (Some(model), Some(version), Some("gold-1"))
        );
        let out = &v["outputs"][0];
        assert_eq!(out["name"], g["outputs"][0]["name"]);
        assert_eq!(out["shape"], g["outputs"][0]["shape"]);
        let err = max_abs_diff(&floats(&out["data"]), &floats(&g["outputs"][0]["data"]));
        assert!(err < 1e-4, "{model}:{version} differs from golden by {err}");
    }
    // No version: the newest; output selection by name.
    let g = golden("mlp", "v2");
    let mut body = infer_body(&g, "sel");
    body["outputs"] = json!([{"name": "probabilities"}]);
    let v = s.post_json("/v2/models/mlp/infer", &body).json();
    assert_eq!(v["model_version"], "v2");
    assert_eq!(v["outputs"].as_array().unwrap().len(), 1);

    // 404s with a JSON error body.
    let g1 = golden("mlp", "v1");
    let r = s.post_json("/v2/models/nope/infer", &infer_body(&g1, "x"));
    assert_eq!((r.status, r.error()), (404, "model 'nope' not found".to_owned()));
    let r = s.post_json("/v2/models/mlp/versions/v9/infer", &infer_body(&g1, "x"));
    assert_eq!((r.status, r.error()), (404, "model 'mlp' has no version 'v9'".to_owned()));
    assert_eq!(s.get("/v2/models/nope").status, 404);
    assert_eq!(s.get("/v2/models/mlp/versions/v9/ready").status, 404);
    let r = s.get("/v3/anything");
    assert_eq!(r.status, 404);
    assert!(r.error().contains("/v3/anything"));
    assert_eq!(s.get("/v2/models/mlp/infer").status, 405);

    // 400s: each names what is wrong.
    let input = |shape: serde_json::Value, datatype: &str, data: serde_json::Value| json!({"inputs": [{"name": "features", "shape": shape, "datatype": datatype, "data": data}]});
    let row: Vec<f64> = vec![0.5; 64];
    let cases = [
        (json!("not an object"), "malformed request JSON"),
        (input(json!([1, 63]), "FP32", json!(row[..63])), "has shape [1, 63] but the model expects [-1, 64]"),
        (input(json!([1, 64]), "INT32", json!(vec![1; 64])), "has datatype INT32 but the model expects FP32"),
        (input(json!([1, 64]), "FLOAT32", json!(row)), "unknown datatype 'FLOAT32'"),
        (input(json!([2, 64]), "FP32", json!(row)), "has 64 element(s) but shape [2, 64] needs 128"),
        (json!({"inputs": []}), "missing input 'features'"),
    ];
    for (body, needle) in cases {
        let r = s.post_json("/v2/models/mlp/versions/v1/infer", &body);
        assert_eq!(r.status, 400, "{body}");
        assert!(r.error().contains(needle), "{} lacks {needle}", r.error());
    }
    let r = request(&s.http, "POST", "/v2/models/mlp/infer", &[], b"{\"inputs\": [");
    assert_eq!(r.status, 400);
    assert!(r.error().contains("malformed request JSON"));

    // 413 above --max-body-bytes, still as JSON.
    let r = request(&s.http, "POST", "/v2/models/mlp/infer", &[], &vec![b' '; 16_000_001]);
    assert_eq!(r.status, 413);
    assert!(r.error().contains("16000000 bytes"), "{}", r.error());

    // NVIDIA's Triton client, unmodified, binary and JSON tensors.
    let py = root().join(".venv/bin/python");
    assert!(py.exists(), "{} missing: run scripts/setup.sh", py.display());
    let out = std::process::Command::new(py)
        .arg(root().join("backend/tests/py/tritonclient_check.py"))
        .arg(&s.http)
        .arg(root().join("models/golden"))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "tritonclient check failed:\n{text}");
    assert!(text.contains("tritonclient: all checks passed"), "{text}");

    // The request metrics add up to what was sent (4 golden + 1 selection on mlp/resnet succeeded).
    let ok = s.metric(contract::INFERENCE_REQUESTS_TOTAL.name, &[("outcome", "success")]);
    assert!(ok >= 5.0, "success count {ok}");
    assert!(s.metric(contract::INFERENCE_REQUESTS_TOTAL.name, &[("outcome", "bad_request")]) >= 7.0);
}

/// The row for client `i`: distinct values so mixed-up results would show.
fn row(i: usize) -> Vec<f64> {
    (0..64).map(|j| ((i * 64 + j) as f64 * 0.37).sin()).collect()
}

fn infer_rows(s: &Server, rows: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let data: Vec<f64> = rows.concat();
    let body = json!({"inputs": [{"name": "features", "shape": [rows.len(), 64], "datatype": "FP32", "data": data}]});
    let r = s.post_json("/v2/models/mlp/versions/v1/infer", &body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    floats(&r.json()["outputs"][0]["data"]).chunks(2).map(<[f64]>::to_vec).collect()
}

#[test]
fn concurrent_requests_form_batches_whose_results_equal_single_requests() {
    let repo = derived_repo("batching", &[("mlp", "v1")], |_, c| {
        c["batching"]["max_queue_delay_us"] = json!(20_000);
    });
    let s = Server::start_ready(&repo, &[]);
    let clients = 24;
    // Alone: every request is its own batch.
    let alone: Vec<Vec<f64>> = (0..clients).map(|i| infer_rows(&s, &[row(i)]).remove(0)).collect();
    let before = s.metrics();

    // Together: clients send at once; some send 3 rows in one request.
    let results: Vec<(usize, Vec<Vec<f64>>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|i| {
                let s = &s;
                scope.spawn(move || {
                    let rows: Vec<Vec<f64>> =
                        if i % 4 == 0 { vec![row(i), row(i + 1), row(i + 2)] } else { vec![row(i)] };
                    (i, infer_rows(s, &rows))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, got) in results {
        for (k, out) in got.iter().enumerate() {
            let want = if i + k < clients { alone[i + k].clone() } else { infer_rows(&s, &[row(i + k)]).remove(0) };
            assert!(max_abs_diff(out, &want) < 1e-5, "client {i} row {k}: {out:?} vs {want:?}");
        }
    }
    let after = s.metrics();
    let delta =
        |name: &str, labels: &[(&str, &str)]| metric_sum(&after, name, labels) - metric_sum(&before, name, labels);
    let batches = delta(&format!("{}_count", contract::BATCH_SIZE.name), &[]);
    // Single requests carry at most 3 rows: a batch of more rows joined several requests.
    let multi = batches - delta(&format!("{}_bucket", contract::BATCH_SIZE.name), &[("le", "4.0")]);
    assert!(multi >= 1.0, "no batch of more than 4 rows formed: {batches} batches\n{after}");
    assert!(batches < clients as f64, "{batches} batches for {clients} concurrent requests: no batching");

    // 504 when the deadline (µs) passes first; counted as expired.
    let body = json!({"parameters": {"timeout": 1}, "inputs": [{"name": "features", "shape": [1, 64], "datatype": "FP32", "data": row(0)}]});
    let r = s.post_json("/v2/models/mlp/versions/v1/infer", &body);
    assert_eq!(r.status, 504, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.error().contains("deadline exceeded"));
    std::thread::sleep(Duration::from_millis(50));
    assert!(s.metric(contract::REQUESTS_DROPPED_TOTAL.name, &[("reason", "expired")]) >= 1.0);
    assert!(s.metric(contract::INFERENCE_REQUESTS_TOTAL.name, &[("outcome", "expired")]) >= 1.0);
}

#[test]
fn overload_is_refused_with_429_and_retry_after() {
    let repo = derived_repo("overload", &[("resnet18", "v1")], |_, c| {
        c["batching"] = json!({"max_batch_size": 1, "max_queue_delay_us": 0, "max_queue_size": 2, "default_timeout_us": 60_000_000});
    });
    let s = Server::start_ready(&repo, &[]);
    // Binary tensor data: decoding is a copy, so requests reach the queue faster than the
    // engine drains it whatever the build (a debug build decodes JSON slower than it computes).
    let image: Vec<u8> = (0..3 * 224 * 224).flat_map(|i| ((i % 255) as f32 / 255.0).to_le_bytes()).collect();
    let header =
        serde_json::to_vec(&json!({"inputs": [{"name": "image", "shape": [1, 3, 224, 224], "datatype": "FP32",
        "parameters": {"binary_data_size": image.len()}}]}))
        .unwrap();
    let header_len = header.len().to_string();
    let body = [header, image].concat();
    let statuses: Vec<(u16, Option<String>, String)> = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..12)
            .map(|_| {
                let (s, body, header_len) = (&s, &body, header_len.as_str());
                scope.spawn(move || {
                    let headers =
                        [("inference-header-content-length", header_len), ("content-type", "application/octet-stream")];
                    let r = request(&s.http, "POST", "/v2/models/resnet18/infer", &headers, body);
                    (
                        r.status,
                        r.header("retry-after").map(str::to_owned),
                        String::from_utf8_lossy(&r.body).into_owned(),
                    )
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let rejected: Vec<_> = statuses.iter().filter(|(st, ..)| *st == 429).collect();
    let ok = statuses.iter().filter(|(st, ..)| *st == 200).count();
    assert!(!rejected.is_empty() && ok >= 1, "{statuses:?}");
    assert_eq!(rejected.len() + ok, 12, "only 200 or 429 expected: {statuses:?}");
    for (_, retry, body) in &rejected {
        assert_eq!(retry.as_deref(), Some("1"));
        assert!(body.contains("overloaded"), "{body}");
    }
    let dropped = s.metric(contract::REQUESTS_DROPPED_TOTAL.name, &[("reason", "queue_full")]);
    assert_eq!(dropped, rejected.len() as f64);
}

#[test]
fn refused_large_bodies_reach_every_client_as_the_servers_answer() {
    // 40 MiB a body, 80 MiB in flight: two 32 MiB bodies at a time, the rest refused with 429
    // before their bodies are read, then drained (lingering close), never buffered.
    let repo = derived_repo("refusals", &[("mlp", "v1")], |_, _| {});
    let s = Server::start_ready(&repo, &["--max-body-bytes", "41943040", "--max-inflight-bytes", "83886080"]);
    println!("{}", switchyard_testkit::refusals_reach(&s.http));
    // curl, without `Expect: 100-continue` (it would wait for the answer before sending).
    let body = std::env::temp_dir().join(format!("refusals-{}.json", std::process::id()));
    std::fs::write(&body, vec![b'['; 32 << 20]).unwrap();
    let curls: Vec<String> = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let (s, body) = (&s, &body);
                scope.spawn(move || {
                    let out = std::process::Command::new("curl")
                        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Expect:", "--data-binary"])
                        .arg(format!("@{}", body.display()))
                        .arg(format!("http://{}/v2/models/mlp/infer", s.http))
                        .output()
                        .unwrap();
                    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let _ = std::fs::remove_file(&body);
    assert!(curls.iter().all(|c| c == "400" || c == "429"), "curl: {curls:?}");
    assert!(curls.iter().any(|c| c == "429"), "curl: nothing refused: {curls:?}");
}

#[test]
fn a_version_that_fails_to_load_answers_503_and_the_others_serve() {
    let repo = derived_repo("broken", &[("mlp", "v1")], |_, _| {});
    let broken = repo.join("mlp/v2");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::copy(demo_repo().join("mlp/v2/config.json"), broken.join("config.json")).unwrap();
    std::fs::write(broken.join("model.pt"), b"this is not a TorchScript archive").unwrap();
    let s = Server::start_ready(&repo, &[]);

    let r = s.get("/v2/health/ready");
    assert_eq!(r.status, 503);
    assert!(r.error().contains("mlp' version 'v2' is not ready: failed to load"), "{}", r.error());
    assert_eq!(s.get("/v2/models/mlp/versions/v2/ready").status, 503);
    let r = s.post_json("/v2/models/mlp/versions/v2/infer", &infer_body(&golden("mlp", "v2"), "b"));
    assert_eq!(r.status, 503);
    assert!(r.error().contains("failed to load"));
    // The good version serves, and is what an unversioned request gets.
    let r = s.post_json("/v2/models/mlp/infer", &infer_body(&golden("mlp", "v1"), "g"));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["model_version"], "v1");
    assert_eq!(s.metric(contract::MODEL_READY.name, &[("version", "v2")]), 0.0);
    assert_eq!(s.metric(contract::MODEL_READY.name, &[("version", "v1")]), 1.0);
}

#[test]
fn sigterm_answers_every_accepted_request_then_exits_zero() {
    let repo = derived_repo("shutdown", &[("resnet18", "v1")], |_, c| {
        c["batching"] = json!({"max_batch_size": 1, "max_queue_delay_us": 0, "max_queue_size": 64, "default_timeout_us": 120_000_000});
    });
    let mut s = Server::start_ready(&repo, &["--shutdown-grace-seconds", "60"]);
    let image: Vec<f32> = (0..3 * 224 * 224).map(|i| (i % 97) as f32 / 97.0).collect();
    let body = serde_json::to_vec(
        &json!({"inputs": [{"name": "image", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": image}]}),
    )
    .unwrap();
    let n = 16;
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..n)
            .map(|_| {
                let (s, body) = (&s, &body);
                scope.spawn(move || request(&s.http, "POST", "/v2/models/resnet18/infer", &[], body).status)
            })
            .collect();
        // Signal once every request has been accepted, while some still wait in the queue.
        let start = std::time::Instant::now();
        let queued = loop {
            let m = s.metrics();
            let in_flight = metric_sum(&m, contract::IN_FLIGHT_REQUESTS.name, &[]);
            if in_flight + metric_sum(&m, contract::INFERENCE_REQUESTS_TOTAL.name, &[]) >= n as f64 {
                break in_flight;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "requests not accepted");
            std::thread::sleep(Duration::from_millis(2));
        };
        assert!(queued >= 2.0, "only {queued} request(s) left when the signal went: the test proves nothing");
        s.sigterm();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(statuses, vec![200; n], "every accepted request must be answered");
    let status = s.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "exit {status}:\n{}", s.log());
    assert!(s.log().contains("stopped cleanly"));
    assert!(try_request(&s.http, "GET", "/v2/health/live", &[], b"").is_err(), "still accepting after exit");
}

#[test]
fn an_invalid_repository_exits_non_zero_before_binding_and_lists_every_problem() {
    let repo = derived_repo("invalid", &[("mlp", "v1"), ("mlp", "v2")], |name, c| {
        if name == "mlp:v1" {
            c["batching"]["max_batch_size"] = json!(0);
            c["device"] = json!("tpu");
        } else {
            c["inputs"][0]["datatype"] = json!("BYTES");
        }
    });
    let out = serve_command(&repo).output().unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stdout.contains("listening"), "bound ports despite the bad config: {stdout}");
    for needle in ["3 problem(s)", "max_batch_size must be", "device 'tpu'", "datatype BYTES is not supported"] {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }
    let check =
        std::process::Command::new(backend_bin()).args(["check", "--model-repository"]).arg(&repo).output().unwrap();
    assert!(!check.status.success());
}

#[test]
fn offline_batch_keeps_input_order_reports_bad_lines_and_resumes() {
    let dir = scratch("offline");
    let g = golden("mlp", "v1");
    let data = floats(&g["inputs"][0]["data"]);
    let want = floats(&g["outputs"][0]["data"]);
    let rows: Vec<&[f64]> = data.chunks(64).collect();
    let mut lines = Vec::new();
    for r in &rows {
        lines.push(serde_json::to_string(r).unwrap());
    }
    lines.push(serde_json::to_string(&infer_body(&g, "whole")).unwrap());
    lines.push("this is not json".to_owned());
    lines.push("[1, 2, 3]".to_owned());
    for r in rows.iter().rev() {
        lines.push(serde_json::to_string(r).unwrap());
    }
    let input = dir.join("in.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let output = dir.join("out.jsonl");
    let run = || {
        let out = std::process::Command::new(backend_bin())
            .args(["batch", "--model", "mlp", "--version", "v1", "--batch-size", "3", "--model-repository"])
            .arg(demo_repo())
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&output)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        stderr
    };
    let log = run();
    assert!(log.contains("11 lines (12 rows, 2 errors)"), "{log}");
    let first = std::fs::read_to_string(&output).unwrap();
    let got: Vec<serde_json::Value> = first.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(got.len(), lines.len());
    for (i, k) in [(0, 0), (1, 1), (2, 2), (3, 3), (7, 3), (8, 2), (9, 1), (10, 0)] {
        let out = floats(&got[i]["outputs"][0]["data"]);
        assert!(max_abs_diff(&out, &want[k * 2..k * 2 + 2]) < 1e-5, "line {i}");
    }
    assert_eq!(got[4]["id"], "whole");
    assert!(max_abs_diff(&floats(&got[4]["outputs"][0]["data"]), &want) < 1e-5);
    assert_eq!(got[5]["line"], 6);
    assert!(got[5]["error"].as_str().unwrap().contains("malformed"));
    assert!(got[6]["error"].as_str().unwrap().contains("needs 64 per row"));

    // Interrupted mid-write: 5 complete lines and a torn one. The re-run finishes the rest.
    let keep: String = first.lines().take(5).map(|l| format!("{l}\n")).collect();
    std::fs::write(&output, format!("{keep}{{\"model_na")).unwrap();
    let log = run();
    assert!(log.contains("resuming after 5 of 11 lines"), "{log}");
    assert!(log.contains("6 lines"), "{log}");
    assert_eq!(std::fs::read_to_string(&output).unwrap(), first);
}

#[test]
fn requests_whose_client_left_are_dropped_before_compute_and_counted() {
    let repo = derived_repo("gone", &[("resnet18", "v1")], |_, c| {
        c["batching"] = json!({"max_batch_size": 1, "max_queue_delay_us": 0, "max_queue_size": 64, "default_timeout_us": 60_000_000});
    });
    let s = Server::start_ready(&repo, &[]);
    let image: Vec<f32> = vec![0.5; 3 * 224 * 224];
    let body = serde_json::to_vec(
        &json!({"inputs": [{"name": "image", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": image}]}),
    )
    .unwrap();
    let mut abandoned = Vec::new();
    for _ in 0..6 {
        use std::io::Write;
        let mut c = std::net::TcpStream::connect(&s.http).unwrap();
        let head =
            format!("POST /v2/models/resnet18/infer HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n", body.len());
        c.write_all(head.as_bytes()).unwrap();
        c.write_all(&body).unwrap();
        abandoned.push(c);
    }
    // Once all six are accepted (one computing, the rest queued), every client hangs up.
    let start = std::time::Instant::now();
    loop {
        let m = s.metrics();
        if metric_sum(&m, contract::IN_FLIGHT_REQUESTS.name, &[])
            + metric_sum(&m, &format!("{}_count", contract::BATCH_SIZE.name), &[])
            >= 6.0
        {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "requests not accepted:\n{m}");
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(abandoned);
    let start = std::time::Instant::now();
    while s.metric(contract::REQUESTS_DROPPED_TOTAL.name, &[("reason", "client_gone")]) < 6.0 {
        assert!(start.elapsed() < Duration::from_secs(30), "abandoned requests not all counted:\n{}", s.metrics());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(s.metric(contract::INFERENCE_REQUESTS_TOTAL.name, &[("outcome", "client_gone")]), 6.0);
    assert_eq!(s.metric(contract::IN_FLIGHT_REQUESTS.name, &[]), 0.0);
    // Work was saved: fewer batches ran than requests arrived.
    let batches = s.metric(&format!("{}_count", contract::BATCH_SIZE.name), &[]);
    assert!(batches < 6.0, "{batches} batches for 6 abandoned requests");
}
