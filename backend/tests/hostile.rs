//! Hostile clients against the real backend binary: floods of maximum-size bodies, bodies
//! that stall, outputs asked for many times, data past its shape, requests during a drain,
//! deadlines. Each test fails if its attack works again.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard_contract::metrics as contract;
use switchyard_testkit::*;

const MAX_BODY: usize = 8 << 20;
const IN_FLIGHT: usize = 32 << 20;

/// The demo MLP (FP32 [-1, 64] -> FP32 [-1, 2]) taking up to 4096 rows, so that a valid
/// request can be as large as the body limit.
fn big_mlp_repo(name: &str) -> PathBuf {
    derived_repo(name, &[("mlp", "v1")], |_, c| {
        c["batching"] = json!({"max_batch_size": 4096, "max_queue_delay_us": 0, "max_queue_size": 64, "default_timeout_us": 60_000_000});
    })
}

fn start(repo: &std::path::Path, extra: &[&str]) -> Server {
    let (body, inflight) = (MAX_BODY.to_string(), IN_FLIGHT.to_string());
    let mut args = vec![
        "--max-body-bytes",
        body.as_str(),
        "--max-inflight-bytes",
        inflight.as_str(),
        "--max-inflight-requests",
        "16",
    ];
    args.extend_from_slice(extra);
    Server::start_ready(repo, &args)
}

/// A `key=value` field of the backend's "admission limits" log line.
fn logged(s: &Server, key: &str) -> u64 {
    let log = s.log();
    let line = log.lines().find(|l| l.contains("admission limits")).unwrap_or_else(|| panic!("no limits line:\n{log}"));
    let value = line.split_whitespace().find_map(|w| w.strip_prefix(&format!("{key}="))).unwrap();
    value.parse().unwrap()
}

/// A field of /proc/PID/status in bytes (`VmHWM:` is the peak resident set).
fn proc_bytes(pid: u64, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 =
        status.lines().find(|l| l.starts_with(field)).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// An MLP request of 4096 rows whose numbers are written out to 30 characters, padded with
/// whitespace to exactly `MAX_BODY` bytes.
fn max_size_request() -> Vec<u8> {
    let mut data = String::with_capacity(MAX_BODY);
    for i in 0..4096 * 64 {
        if i > 0 {
            data.push(',');
        }
        data.push_str(&format!("0.{:0<28}", (i * 7919) % 1000));
    }
    let mut body =
        format!(r#"{{"inputs":[{{"name":"features","shape":[4096,64],"datatype":"FP32","data":[{data}]}}]}}"#)
            .into_bytes();
    assert!(body.len() <= MAX_BODY, "{}", body.len());
    body.resize(MAX_BODY, b' ');
    body
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn error(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{} {e}: {:?}", self.status, String::from_utf8_lossy(&self.body)));
        v["error"].as_str().unwrap_or_else(|| panic!("not an error: {v}")).to_owned()
    }
}

fn head(path: &str, len: usize, extra: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {len}\r\n{extra}\r\n")
}

/// Reads a status line and headers; then the body, by its Content-Length, unless it is a 1xx.
fn read_answer(r: &mut BufReader<TcpStream>) -> std::io::Result<Answer> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("no status line: {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut answer = Answer { status, headers, body: Vec::new() };
    if status >= 200 {
        let len: usize = answer.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        answer.body.resize(len, 0);
        r.read_exact(&mut answer.body)?;
    }
    Ok(answer)
}

enum Outcome {
    /// `Expect: 100-continue`, and no 100: answered without the body being sent at all.
    RefusedUnread(Answer),
    /// Got 100 Continue, sent the body, got this.
    Answered(Answer),
    /// Sent everything at once; the answer, or the error of a connection the server closed.
    Blasted(std::io::Result<Answer>),
}

/// A patient client: headers with `Expect: 100-continue`, the body only if asked for.
fn patient(addr: &str, body: &[u8]) -> Outcome {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    w.write_all(head("/v2/models/mlp/infer", body.len(), "expect: 100-continue\r\n").as_bytes()).unwrap();
    let first = read_answer(&mut r).unwrap();
    if first.status != 100 {
        return Outcome::RefusedUnread(first);
    }
    w.write_all(body).unwrap();
    Outcome::Answered(read_answer(&mut r).unwrap())
}

/// A flooding client: headers and body at once, whatever the server says.
fn blasting(addr: &str, body: &[u8]) -> Outcome {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut w = s.try_clone().unwrap();
    // A refused client finds the connection closed under it: what it then reads is the answer.
    let _ = w.write_all(head("/v2/models/mlp/infer", body.len(), "").as_bytes()).and_then(|()| w.write_all(body));
    Outcome::Blasted(read_answer(&mut BufReader::new(s)))
}

fn outputs(body: &[u8]) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["outputs"].clone()
}

#[test]
fn a_flood_of_maximum_size_bodies_is_refused_before_reading_and_rss_stays_within_the_bound() {
    let s = start(&big_mlp_repo("flood"), &[]);
    let pid = logged(&s, "pid");
    let bound = logged(&s, "request_memory_bound_bytes");
    // The documented bound: (3 + 2 + 58 / 128) × in-flight bytes + 64 KiB × in-flight requests.
    let factor = 5.0 + 58.0 / 128.0;
    assert_eq!(bound, (factor * IN_FLIGHT as f64 + 16.0 * 65536.0) as u64);
    let body = max_size_request();
    // The reference answer, alone.
    let alone = patient(&s.http, &body);
    let Outcome::Answered(reference) = alone else { panic!("the lone request was refused") };
    assert_eq!(reference.status, 200, "{}", String::from_utf8_lossy(&reference.body));
    let want = outputs(&reference.body);
    assert_eq!(want[0]["shape"], json!([4096, 2]));
    let ready_peak = proc_bytes(pid, "VmHWM:");

    // 48 clients × 8 MiB = 384 MiB offered at once against a 32 MiB budget.
    let clients = 48;
    let barrier = std::sync::Barrier::new(clients);
    let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|i| {
                let (s, body, barrier) = (&s, &body, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    if i % 2 == 0 { patient(&s.http, body) } else { blasting(&s.http, body) }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let peak = proc_bytes(pid, "VmHWM:");

    let (mut refused, mut answered, mut blasted_ok, mut blasted_served, mut blasted_cut) = (0, 0, 0, 0, 0);
    for o in &outcomes {
        match o {
            Outcome::RefusedUnread(a) => {
                assert_eq!(a.status, 429, "{}", String::from_utf8_lossy(&a.body));
                assert_eq!(a.header("retry-after"), Some("1"));
                assert!(a.error().starts_with("the server is overloaded"), "{}", a.error());
                refused += 1;
            }
            Outcome::Answered(a) | Outcome::Blasted(Ok(a)) => {
                if a.status == 200 {
                    assert_eq!(outputs(&a.body), want, "a result differs from the lone request's");
                } else {
                    // Refused or failed, but said so.
                    assert!(matches!(a.status, 429 | 503 | 504), "{} {}", a.status, a.error());
                    assert!(!a.error().is_empty());
                }
                if matches!(o, Outcome::Answered(_)) {
                    answered += 1;
                } else {
                    blasted_ok += 1;
                    blasted_served += usize::from(a.status == 200);
                }
            }
            // The server answered 429 and closed while the client was still sending.
            Outcome::Blasted(Err(_)) => blasted_cut += 1,
        }
    }
    eprintln!(
        "flood: {refused} refused unread, {answered} answered after 100-continue, {blasted_ok} blasted and answered ({blasted_served} served), \
         {blasted_cut} blasted and cut; peak RSS {} MiB at ready, {} MiB after; bound +{} MiB",
        ready_peak >> 20,
        peak >> 20,
        bound >> 20
    );
    assert!(refused >= 1, "no client was refused before sending its body");
    assert!(answered + blasted_ok >= 1, "nothing was served");
    assert!(
        peak <= ready_peak + bound,
        "peak RSS {} MiB exceeds {} MiB at readiness + the documented bound of {} MiB",
        peak >> 20,
        ready_peak >> 20,
        bound >> 20
    );
    let refusals = s.metric(contract::REQUESTS_DROPPED_TOTAL.name, &[("reason", "queue_full")]);
    assert!(refusals >= refused as f64, "{refusals} < {refused}");
    // Every share was given back.
    assert_eq!(s.metric(contract::IN_FLIGHT_REQUESTS.name, &[]), 0.0);
    let Outcome::Answered(after) = patient(&s.http, &body) else { panic!("refused once idle") };
    assert_eq!(outputs(&after.body), want);
}

#[test]
fn decoder_bounds_repeated_outputs_data_past_its_shape_and_stalled_bodies() {
    let s = start(&big_mlp_repo("decoder"), &["--body-read-timeout-seconds", "1"]);
    let row: Vec<f64> = vec![0.5; 64];
    let input = json!({"name": "features", "shape": [1, 64], "datatype": "FP32", "data": row});

    // One output 20,000 times in 0.5 MB: once one response per name, now one line.
    let repeated = json!({"inputs": [input], "outputs": vec![json!({"name": "probabilities"}); 20_000]});
    let r = s.post_json("/v2/models/mlp/infer", &repeated);
    assert_eq!((r.status, r.error()), (400, "output 'probabilities' is requested more than once".to_owned()));
    assert!(r.body.len() < 100);
    let r = s.post_json("/v2/models/mlp/infer", &json!({"inputs": [input], "outputs": [{"name": "logits"}]}));
    assert_eq!((r.status, r.error()), (400, "unknown output 'logits' (model 'mlp' has: probabilities)".to_owned()));

    // Four million elements for a shape of 64: refused at element 65.
    let data = format!("[{}0]", "0,".repeat(4_000_000));
    let body = format!(r#"{{"inputs":[{{"name":"features","shape":[1,64],"datatype":"FP32","data":{data}}}]}}"#);
    let started = Instant::now();
    let r = request(&s.http, "POST", "/v2/models/mlp/infer", &[], body.as_bytes());
    assert_eq!(
        (r.status, r.error()),
        (400, "input 'features' has more than 64 element(s) but shape [1, 64] needs 64".to_owned())
    );
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());

    // Headers and half of the announced body, then silence: 408 after the read timeout.
    let stream = TcpStream::connect(&s.http).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = stream.try_clone().unwrap();
    w.write_all(head("/v2/models/mlp/infer", 1000, "").as_bytes()).unwrap();
    w.write_all(&[b' '; 500]).unwrap();
    let started = Instant::now();
    let a = read_answer(&mut BufReader::new(stream)).unwrap();
    assert_eq!((a.status, a.error()), (408, "request body not received within 1 s".to_owned()));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // Its share was given back: a full-size request still fits.
    let r = s.post_json("/v2/models/mlp/infer", &json!({"inputs": [input]}));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

#[test]
fn limits_are_validated_at_startup_with_every_problem() {
    let out = serve_command(&demo_repo())
        .args(["--max-body-bytes", "1000", "--max-inflight-bytes", "999", "--body-read-timeout-seconds", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stdout.contains("listening"), "bound ports despite bad limits: {stdout}");
    for needle in [
        "2 problem(s)",
        "--max-inflight-bytes (999) must be at least --max-body-bytes (1000)",
        "--body-read-timeout-seconds must be at least 1",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }
}

#[test]
fn a_request_arriving_during_the_drain_is_503() {
    let mut s = start(&big_mlp_repo("drain"), &["--shutdown-grace-seconds", "30"]);
    let body = serde_json::to_vec(
        &json!({"inputs": [{"name": "features", "shape": [1, 64], "datatype": "FP32", "data": vec![0.5; 64]}]}),
    )
    .unwrap();
    // Half a request head before the signal: hyper keeps reading it through the drain.
    let stream = TcpStream::connect(&s.http).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = stream.try_clone().unwrap();
    w.write_all(b"POST /v2/models/mlp/infer HTTP/1.1\r\nhost: x\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    s.sigterm();
    wait_until(Duration::from_secs(10), "readiness to fail", || {
        request(&s.admin, "GET", "/health/ready", &[], b"").status == 503
    });
    w.write_all(format!("connection: close\r\ncontent-length: {}\r\n\r\n", body.len()).as_bytes()).unwrap();
    w.write_all(&body).unwrap();
    let a = read_answer(&mut BufReader::new(stream)).unwrap();
    assert_eq!((a.status, a.error()), (503, "the server is shutting down".to_owned()));
    assert_eq!(a.header("retry-after"), Some("1"));
    let status = s.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "exit {status}:\n{}", s.log());
}

#[test]
fn only_a_504_of_the_clients_own_deadline_is_marked() {
    // One image takes tens of milliseconds; the default deadline is 2 ms.
    let repo = derived_repo("deadline", &[("resnet18", "v1")], |_, c| {
        c["batching"] =
            json!({"max_batch_size": 1, "max_queue_delay_us": 0, "max_queue_size": 64, "default_timeout_us": 2000});
    });
    let s = Server::start_ready(&repo, &[]);
    let image = vec![0.5f32; 3 * 224 * 224];
    let body = |params: serde_json::Value| {
        serde_json::to_vec(&json!({"parameters": params, "inputs": [{"name": "image", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": image}]}))
            .unwrap()
    };
    let r = request(&s.http, "POST", "/v2/models/resnet18/infer", &[], &body(json!({"timeout": 1})));
    assert_eq!(r.status, 504, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-switchyard-deadline"), Some("client"));
    // Several at once: those that wait behind another image pass the 2 ms default.
    let plain = body(json!({}));
    let answers: Vec<Resp> = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| request(&s.http, "POST", "/v2/models/resnet18/infer", &[], &plain)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let expired: Vec<&Resp> = answers.iter().filter(|r| r.status == 504).collect();
    assert!(!expired.is_empty(), "{:?}", answers.iter().map(|r| r.status).collect::<Vec<_>>());
    for r in expired {
        assert_eq!(r.header("x-switchyard-deadline"), None, "the model's default deadline is not the client's");
    }
}
