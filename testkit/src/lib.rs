//! The one harness of Switchyard's tests, benchmarks and drills: the real binaries
//! (`switchyard-backend`, the collector, Envoy, Prometheus, Alertmanager) as [`process`]es on
//! the generated demo models, the local data plane ([`stack`]), blocking HTTP calls through
//! `ureq`, and Prometheus text read with the load generator's parser.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

pub mod envoy;
pub mod grpc;
pub mod http;
pub mod process;
pub mod prom;
pub mod stack;

pub use crate::http::{Resp, request, try_request, url_encode};
use crate::process::{Log, OnDrop, Process, address_after};

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
    // target/<profile>/deps/<test> -> target/<profile>/<name>; a binary built on the kit
    // (switchyard-drill) sits in target/<profile> itself.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    let dir = if dir.ends_with("deps") { dir.parent().unwrap() } else { dir };
    let bin = dir.join(name);
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
    serve_command_at(repo, ["127.0.0.1:0"; 3])
}

/// `switchyard-backend serve` on `repo` listening on [HTTP, gRPC, admin].
pub fn serve_command_at(repo: &Path, addrs: [&str; 3]) -> Command {
    let mut c = Command::new(backend_bin());
    c.args(serve_args(repo, addrs));
    c
}

/// The arguments of `switchyard-backend serve` on `repo` listening on [HTTP, gRPC, admin], with
/// the contract's flags (the benchmarks prefix them with `taskset`).
pub fn serve_args(repo: &Path, [http, grpc, admin]: [&str; 3]) -> Vec<std::ffi::OsString> {
    use switchyard_contract::process::backend;
    let mut args: Vec<std::ffi::OsString> = [
        backend::SERVE,
        backend::HTTP.flag,
        http,
        backend::GRPC.flag,
        grpc,
        backend::ADMIN.flag,
        admin,
        backend::MODEL_REPOSITORY_FLAG,
    ]
    .iter()
    .map(Into::into)
    .collect();
    args.push(repo.into());
    args
}

/// The backend on free loopback ports, its log kept in memory ([`Server::start_logged`]: where
/// told); killed when dropped ([`Server::on_drop`]: as told).
pub struct Server {
    process: Process,
    pub http: String,
    pub grpc: String,
    pub admin: String,
    /// Its inference listeners require mutual TLS (only Envoy, with its certificate, gets in).
    pub tls: bool,
}

impl Server {
    /// Starts the backend on free ports and waits for its address line (not for readiness).
    pub fn start(repo: &Path, extra: &[&str]) -> Server {
        Server::start_at(repo, ["127.0.0.1:0"; 3], extra)
    }

    /// [`Server::start`] on given addresses ([HTTP, gRPC, admin]): a replacement taking over
    /// the ports of one that exited.
    pub fn start_at(repo: &Path, addrs: [&str; 3], extra: &[&str]) -> Server {
        Server::start_logged(repo, addrs, extra, Log::Memory)
    }

    /// [`Server::start_at`] with its log in `log` (a file, for the demo's `.demo/`).
    pub fn start_logged(repo: &Path, addrs: [&str; 3], extra: &[&str], log: Log) -> Server {
        let mut cmd = serve_command_at(repo, addrs);
        cmd.args(extra).env("RUST_LOG", "info");
        let (process, line) = Process::spawn_reporting("switchyard-backend", cmd, log).unwrap();
        let addr = |key| address_after(&line, key);
        let tls = line.contains("inference https://");
        match (addr("inference"), addr("grpc"), addr("admin")) {
            (Some(http), Some(grpc), Some(admin)) => Server { process, http, grpc, admin, tls },
            _ => panic!("backend did not report its addresses: {line:?}\n{}", process.log()),
        }
    }

    /// What dropping it does ([`OnDrop::Kill`] unless set here).
    pub fn on_drop(mut self, on_drop: OnDrop) -> Server {
        self.process = self.process.on_drop(on_drop);
        self
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
            // Behind mutual TLS, the admin listener's readiness (the same answer).
            let r = self.readiness();
            if r.status == 200 || !String::from_utf8_lossy(&r.body).contains("still loading") {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(180), "models not loaded after 180 s:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Its readiness, from the admin listener when the inference listeners require mutual TLS.
    pub fn readiness(&self) -> Resp {
        if self.tls {
            request(&self.admin, "GET", switchyard_contract::paths::ADMIN_HEALTH_READY, &[], b"")
        } else {
            self.get(switchyard_contract::paths::HEALTH_READY)
        }
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

    /// Sum of the samples of `name` whose labels include every `labels` pair.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_sum(&self.metrics(), name, labels)
    }

    pub fn sigterm(&self) {
        self.process.sigterm().unwrap();
    }

    /// SIGKILL: a crash, nothing drained.
    pub fn sigkill(&self) {
        self.process.signal(nix::sys::signal::Signal::SIGKILL).unwrap();
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        self.process.wait_exit(within).unwrap()
    }
}

/// Sum of the samples of `name` in Prometheus text whose labels include every `labels` pair.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    switchyard_load::metrics::sum(&switchyard_load::metrics::parse(text), name, labels)
}

/// Flattened FP32 data of an output from a JSON response.
pub fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

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

/// A deterministic standard-normal stream (SplitMix64, Box–Muller) for generated test and
/// benchmark data: the same rows every run.
pub struct Rng(pub u64);

impl Rng {
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn normal(&mut self) -> f64 {
        let (u, v) = (1.0 - self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// `backend/tests/py/refusals_check.py` against `addr`: 12 clients at once per kind
/// (`http.client`, `urllib3`, `tritonclient`), 32 MiB bodies, on a server whose budget admits
/// two; returns its output, and panics with it unless every client read the server's answer.
pub fn refusals_reach(addr: &str) -> String {
    let out = std::process::Command::new(root().join(".venv/bin/python"))
        .arg(root().join("backend/tests/py/refusals_check.py"))
        .args([addr, "32", "12"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run the venv's python (scripts/setup.sh): {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("every client read the server's answer"), "{text}");
    text
}
