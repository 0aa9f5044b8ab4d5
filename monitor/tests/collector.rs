//! The real `switchyard-collector` binary: a full disk, rotation, a bad configuration.
//!
//! A full disk is a file-size limit (`ulimit -f`) with SIGXFSZ ignored, so that a write past
//! it is cut short and the next fails with EFBIG instead of killing the process; ignored
//! signals survive `exec`.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use switchyard_contract::metrics as contract;
use switchyard_testkit::process::{Log, Process, address_after};
use switchyard_testkit::{Resp, request, scratch};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard-collector");

/// The collector under `bash -c PRELUDE; exec …` with `args`: the process and its address.
fn start(prelude: &str, output: &Path, args: &[&str]) -> (Process, String) {
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(format!("{prelude}; exec \"$0\" --listen 127.0.0.1:0 --output \"$1\" \"${{@:2}}\""))
        .arg(BIN)
        .arg(output)
        .args(args);
    let (p, line) = Process::spawn_reporting("switchyard-collector", cmd, Log::Memory).unwrap();
    let addr = address_after(&line, "").unwrap_or_else(|| panic!("no address in {line:?}"));
    (p, addr)
}

/// A sample whose stored line (with its newline) is exactly `len` bytes.
fn sample(id: &str, len: usize) -> Vec<u8> {
    let head = format!("{{\"schema\":1,\"request_id\":\"{id}\",\"pad\":\"");
    let pad = len - 1 - head.len() - 2;
    format!("{head}{}\"}}", "x".repeat(pad)).into_bytes()
}

fn post(addr: &str, body: &[u8]) -> Resp {
    request(addr, "POST", "/v1/samples", &[("content-type", "application/json")], body)
}

fn metric(addr: &str, series: &str) -> f64 {
    let text = String::from_utf8(request(addr, "GET", "/metrics", &[], b"").body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Every line of `path` as its `request_id`, failing on any line that is not a whole sample.
fn stored_ids(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(text.is_empty() || text.ends_with('\n'), "{} ends in a torn line", path.display());
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("torn or glued line in {}: {e}: {l}", path.display()));
            v["request_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn on_a_full_disk_refused_samples_get_507_and_the_file_holds_exactly_the_acknowledged_ones() {
    // 64 KiB: 13 big samples fit (65,000 bytes), leaving 536, room for 5 small ones.
    const LIMIT_KIB: u64 = 64;
    const BIG: usize = 5000;
    const SMALL: usize = 100;
    let dir = scratch("collector-full-disk");
    let out = dir.join("samples.jsonl");
    let (mut collector, addr) = start(&format!("trap '' XFSZ; ulimit -f {LIMIT_KIB}"), &out, &[]);

    let mut outcomes: Vec<(String, Resp)> = Vec::new();
    // Concurrent clients, so that batches of several samples are committed (and fail) whole.
    std::thread::scope(|s| {
        let clients: Vec<_> = (0..4)
            .map(|c| {
                let addr = &addr;
                s.spawn(move || {
                    (0..8)
                        .map(|i| {
                            let id = format!("big-{c}-{i}");
                            let r = post(addr, &sample(&id, BIG));
                            (id, r)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for c in clients {
            outcomes.extend(c.join().unwrap());
        }
    });
    // Then one at a time until one fails: what is left is less than one big sample.
    for i in 0.. {
        let id = format!("big-seq-{i}");
        let r = post(&addr, &sample(&id, BIG));
        let failed = r.status != 200;
        outcomes.push((id, r));
        if failed {
            break;
        }
        assert!(i < 20, "the file-size limit never hit");
    }
    // The failed write was torn at the limit and cut back: small samples fill what is left,
    // each on a line of its own.
    for i in 0..8 {
        let id = format!("small-{i}");
        let r = post(&addr, &sample(&id, SMALL));
        outcomes.push((id, r));
    }

    assert!(collector.exited().is_none(), "the collector died: {}", collector.log());
    let mut acked = Vec::new();
    let mut refused = 0;
    for (id, r) in &outcomes {
        match r.status {
            200 => acked.push(id.clone()),
            507 => {
                assert!(r.header("retry-after").is_some(), "507 without Retry-After");
                assert!(r.error().contains("no space"), "{}", r.error());
                refused += 1;
            }
            s => panic!("{id}: unexpected status {s}: {}", String::from_utf8_lossy(&r.body)),
        }
    }
    let count = |prefix: &str| acked.iter().filter(|id| id.starts_with(prefix)).count();
    assert_eq!((count("big-"), count("small-")), (13, 5), "acknowledged: {acked:?}");
    assert!(refused >= 4, "{refused} refused");

    let stored = stored_ids(&out);
    let mut times: HashMap<&str, usize> = HashMap::new();
    for id in &stored {
        *times.entry(id).or_default() += 1;
    }
    for id in &acked {
        assert_eq!(times.get(id.as_str()), Some(&1), "{id} acknowledged but stored {:?} times", times.get(id.as_str()));
    }
    assert_eq!(stored.len(), acked.len(), "stored samples that were never acknowledged: {stored:?}");
    assert_eq!(std::fs::metadata(&out).unwrap().len(), (13 * BIG + 5 * SMALL) as u64);

    assert_eq!(metric(&addr, "switchyard_collector_requests_rejected_total{reason=\"storage_full\"}"), refused as f64);
    assert!(metric(&addr, "switchyard_collector_write_errors_total{op=\"write\"}") >= 1.0);
    assert_eq!(metric(&addr, contract::COLLECTOR_RECORDS_WRITTEN_TOTAL.name), acked.len() as f64);
    assert!(metric(&addr, contract::COLLECTOR_FSYNCS_TOTAL.name) >= 1.0);
}

#[test]
fn rotation_keeps_each_file_under_the_limit_and_max_files_old_ones() {
    let dir = scratch("collector-rotation");
    let out = dir.join("samples.jsonl");
    let (_collector, addr) = start("true", &out, &["--max-file-bytes", "1000", "--max-files", "2"]);
    // 100-byte samples: 10 per file; 35 of them leave 5 in the current file, 10 each in .1
    // and .2, and the oldest 10 deleted.
    for i in 0..35 {
        assert_eq!(post(&addr, &sample(&format!("s{i:02}"), 100)).status, 200);
    }
    let file = |n: usize| if n == 0 { out.clone() } else { dir.join(format!("samples.jsonl.{n}")) };
    let ids: Vec<Vec<String>> = (0..3).map(|n| stored_ids(&file(n))).collect();
    assert!(!file(3).exists());
    let expect = |from: usize, to: usize| (from..to).map(|i| format!("s{i:02}")).collect::<Vec<_>>();
    assert_eq!(ids, vec![expect(30, 35), expect(20, 30), expect(10, 20)]);
    for n in 0..3 {
        assert!(std::fs::metadata(file(n)).unwrap().len() <= 1000);
    }
    assert_eq!(metric(&addr, contract::COLLECTOR_ROTATIONS_TOTAL.name), 3.0);
}

#[test]
fn a_bad_configuration_is_refused_before_listening() {
    let out = scratch("collector-bad-config").join("samples.jsonl");
    let run = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--max-queued", "0", "--max-queued-bytes", "10", "--output"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("--max-queued must be at least 1"), "{stderr}");
    assert!(stderr.contains("--max-queued-bytes (10) must be larger than --max-body-bytes"), "{stderr}");
    assert!(String::from_utf8_lossy(&run.stdout).is_empty());
    assert!(!out.exists());
    let run =
        Command::new(BIN).args(["--listen", "127.0.0.1:0", "--max-age", "30s", "--output"]).arg(&out).output().unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("'30s' is under the minimum of 1m"));
    assert!(!out.exists());
}

#[test]
fn with_an_admin_listener_the_samples_port_answers_samples_only() {
    let dir = scratch("collector-admin");
    let out = dir.join("samples.jsonl");
    let mut cmd = Command::new(BIN);
    cmd.args(["--listen", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--output"]).arg(&out);
    let (_collector, line) = Process::spawn_reporting("switchyard-collector", cmd, Log::Memory).unwrap();
    let samples = address_after(&line, "samples").unwrap_or_else(|| panic!("no samples address in {line:?}"));
    let admin = address_after(&line, "admin").unwrap_or_else(|| panic!("no admin address in {line:?}"));
    assert_eq!(post(&samples, &sample("s1", 100)).status, 200);
    // What a policy admitting only the gateway to the samples port must not expose there.
    for path in ["/metrics", "/health"] {
        assert_eq!(request(&samples, "GET", path, &[], b"").status, 404, "{path} on the samples port");
        assert_eq!(request(&admin, "GET", path, &[], b"").status, 200, "{path} on the admin port");
    }
    assert_eq!(post(&admin, &sample("s2", 100)).status, 404, "samples on the admin port");
    assert_eq!(metric(&admin, contract::COLLECTOR_RECORDS_WRITTEN_TOTAL.name), 1.0);
    assert_eq!(stored_ids(&out), ["s1"]);
}
