//! Harness for end-to-end tests: the real binaries (`switchyard-backend`, the collector,
//! Envoy) on the generated demo models, and a small blocking HTTP/1.1 client.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The checkout; `SWITCHYARD_ROOT` overrides it when test binaries run on another machine.
pub fn root() -> PathBuf {
    std::env::var_os("SWITCHYARD_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf())
}

/// A workspace binary: `SWITCHYARD_<NAME>_BIN` overrides it (for binaries carried to another
/// machine), else the one cargo built next to the running test.
pub fn workspace_bin(name: &str) -> PathBuf {
    let var = format!("SWITCHYARD_{}_BIN", name.trim_start_matches("switchyard-").to_uppercase());
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join(name);
    assert!(bin.exists(), "{} not built: run `cargo build --workspace` (scripts/test.sh does)", bin.display());
    bin
}

pub fn backend_bin() -> PathBuf {
    workspace_bin("switchyard-backend")
}

/// The demo repository written by `models/generate.py` (the test command runs it).
pub fn demo_repo() -> PathBuf {
    let repo = root().join("models/repo");
    assert!(
        repo.join("mlp/v1/model.pt").exists(),
        "{} has no generated models: run scripts/setup.sh (or scripts/test.sh) first",
        repo.display()
    );
    repo
}

pub fn golden(model: &str, version: &str) -> serde_json::Value {
    let p = root().join(format!("models/golden/{model}-{version}.json"));
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("switchyard-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A repository holding `model/version` entries of the demo repository, each config edited
/// by `edit`; model files are symlinked, not copied.
pub fn derived_repo(name: &str, entries: &[(&str, &str)], edit: impl Fn(&str, &mut serde_json::Value)) -> PathBuf {
    let src = demo_repo();
    let dst = scratch(name);
    for (model, version) in entries {
        let from = src.join(model).join(version);
        let to = dst.join(model).join(version);
        std::fs::create_dir_all(&to).unwrap();
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(from.join("config.json")).unwrap()).unwrap();
        edit(&format!("{model}:{version}"), &mut cfg);
        std::fs::write(to.join("config.json"), serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
        std::os::unix::fs::symlink(from.join("model.pt"), to.join("model.pt")).unwrap();
    }
    dst
}

/// `switchyard-backend serve` on `repo`, on any free loopback ports.
pub fn serve_command(repo: &Path) -> Command {
    let mut c = Command::new(backend_bin());
    c.args(["serve", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--model-repository"]).arg(repo);
    c
}

pub struct Server {
    child: Child,
    pub http: String,
    pub admin: String,
    pub log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts the backend on free ports and waits for its address line (not for readiness).
    pub fn start(repo: &Path, extra: &[&str]) -> Server {
        let mut child = serve_command(repo)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = |key: &str| {
            line.split_whitespace()
                .skip_while(|w| *w != key)
                .nth(1)
                .and_then(|u| u.strip_prefix("http://"))
                .map(str::to_owned)
        };
        match (addr("inference"), addr("admin")) {
            (Some(http), Some(admin)) => Server { child, http, admin, log },
            _ => {
                let _ = child.kill();
                std::thread::sleep(Duration::from_millis(200));
                panic!("backend did not start; stdout {line:?}; stderr:\n{}", log.lock().unwrap());
            }
        }
    }

    pub fn start_ready(repo: &Path, extra: &[&str]) -> Server {
        let s = Server::start(repo, extra);
        s.wait_loaded();
        s
    }

    /// Waits until no model is loading: every version is ready or has failed.
    pub fn wait_loaded(&self) {
        let start = Instant::now();
        loop {
            let r = self.get("/v2/health/ready");
            if r.status == 200 || !String::from_utf8_lossy(&r.body).contains("still loading") {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(180), "models not loaded after 180 s:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn get(&self, path: &str) -> Resp {
        request(&self.http, "GET", path, &[], b"")
    }

    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> Resp {
        request(&self.http, "POST", path, &[("content-type", "application/json")], &serde_json::to_vec(body).unwrap())
    }

    pub fn metrics(&self) -> String {
        String::from_utf8(request(&self.admin, "GET", "/metrics", &[], b"").body).unwrap()
    }

    /// Sum of the samples of `name` whose label text contains every `labels` fragment.
    pub fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        metric_sum(&self.metrics(), name, labels)
    }

    pub fn sigterm(&self) {
        assert!(Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap().success());
    }

    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(start.elapsed() < within, "backend still running after {within:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                && labels.iter().all(|f| l.contains(f))
        })
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("status {} body is not JSON ({e}): {:?}", self.status, String::from_utf8_lossy(&self.body))
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The `error` message of an error response, checking the body's shape.
    pub fn error(&self) -> String {
        let v = self.json();
        v["error"].as_str().unwrap_or_else(|| panic!("no \"error\" string in {v}")).to_owned()
    }
}

/// One request on a fresh connection (`Connection: close`).
pub fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    try_request(addr, method, path, headers, body).unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"))
}

pub fn try_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no header end in {:?}", String::from_utf8_lossy(&raw))))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))).collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")) {
        body = dechunk(&body);
    }
    Ok(Resp { status, headers, body })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[i + 2 + n + 2..];
    }
    out
}

/// Flattened FP32 data of an output from a JSON response.
pub fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

pub mod prom;
pub mod stack;

/// Polls `f` every 20 ms until it returns true; panics with `what` after `within`.
pub fn wait_until(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "timed out after {within:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback port that was free a moment ago (for programs that cannot report their own).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
