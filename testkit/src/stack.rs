//! The local data plane for end-to-end tests: Envoy with the Switchyard filter (real `.wasm`,
//! configuration through ECDS), one backend per model version, and the sample collector.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use switchyard_contract::process::{collector, tls};

use crate::envoy::{Envoy, EnvoyOptions, envoy_bin};
use crate::process::{Log, OnDrop, Process, address_after};
use crate::{Resp, Server, demo_repo, free_port, request, root, scratch, wait_until, workspace_bin};

/// `target/`, from the running test binary (`target/<profile>/deps/<test>`).
pub fn target_dir() -> PathBuf {
    // target/<profile>/deps/<test>, or target/<profile>/<binary> for a tool on the kit.
    let exe = std::env::current_exe().unwrap();
    let up = if exe.parent().is_some_and(|d| d.ends_with("deps")) { 3 } else { 2 };
    exe.ancestors().nth(up).unwrap().to_path_buf()
}

pub fn wasm_path() -> PathBuf {
    let p = std::env::var_os("SWITCHYARD_FILTER_WASM")
        .map_or_else(|| target_dir().join("wasm32-wasip1/wasm-release/switchyard_filter.wasm"), PathBuf::from);
    assert!(p.exists(), "{} missing: run scripts/build-filter.sh (scripts/test.sh does)", p.display());
    p
}

pub fn python() -> PathBuf {
    root().join(".venv/bin/python")
}

/// `switchyard-policy ARGS` in the checkout (the one reader of policies, as the scripts run
/// it): its stdout, or its stderr as the error.
pub fn policy_tool(args: &[&str]) -> Result<String, String> {
    let out = Command::new(workspace_bin("switchyard-policy")).args(args).current_dir(root()).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `switchyard-policy render ARGS`; panics with its message on failure.
pub fn render(args: &[&str]) {
    let mut all = vec!["render"];
    all.extend_from_slice(args);
    if let Err(e) = policy_tool(&all) {
        panic!("switchyard-policy render {args:?} failed: {e}");
    }
}

/// `render envoy` of `policy` into `dir` (envoy.yaml and filter.yaml) with the built `.wasm`
/// and `extra` arguments (`--upstream`, `--listen`, `--fault`, …).
pub fn render_envoy(policy: &Path, dir: &Path, extra: &[&str]) {
    render_envoy_with(policy, &wasm_path(), dir, extra);
}

/// [`render_envoy`] with another `.wasm` in the filter's place.
pub fn render_envoy_with(policy: &Path, wasm: &Path, dir: &Path, extra: &[&str]) {
    let (policy, dir) = (policy.to_str().unwrap(), dir.to_str().unwrap());
    let mut args = vec!["envoy", "--policy", policy, "--wasm", wasm.to_str().unwrap(), "--out-dir", dir];
    args.extend_from_slice(extra);
    render(&args);
}

/// The sample collector `bin` on a free port, writing `samples`: the process and its address.
pub fn start_collector(bin: &Path, samples: &Path) -> anyhow::Result<(Process, String)> {
    start_collector_at(bin, samples, "127.0.0.1:0")
}

/// [`start_collector`] on `listen` (a replacement taking over the address of one that died).
pub fn start_collector_at(bin: &Path, samples: &Path, listen: &str) -> anyhow::Result<(Process, String)> {
    start_collector_logged(bin, samples, listen, Log::Memory)
}

/// [`start_collector_at`] with its log in `log`.
pub fn start_collector_logged(bin: &Path, samples: &Path, listen: &str, log: Log) -> anyhow::Result<(Process, String)> {
    start_collector_with(bin, samples, listen, &[], log).map(|(p, samples, _)| (p, samples))
}

/// [`start_collector_logged`] with more arguments (mutual TLS, an admin listener): the
/// process, its samples address and its admin address (when it has one).
pub fn start_collector_with(
    bin: &Path,
    samples: &Path,
    listen: &str,
    extra: &[String],
    log: Log,
) -> anyhow::Result<(Process, String, Option<String>)> {
    let mut cmd = Command::new(bin);
    cmd.args(["--listen", listen, "--output"]).arg(samples).args(extra);
    let (p, line) = Process::spawn_reporting("switchyard-collector", cmd, log)?;
    let addr = address_after(&line, "").ok_or_else(|| anyhow::anyhow!("no collector address in {line:?}"))?;
    Ok((p, addr, address_after(&line, "admin")))
}

/// The drift monitor `bin` on a free port, following `samples` with `config`, its state in
/// `state`: the process and its address.
pub fn start_monitor(bin: &Path, samples: &Path, config: &Path, state: &Path) -> anyhow::Result<(Process, String)> {
    start_monitor_at(bin, samples, config, state, "127.0.0.1:0", Log::Memory)
}

/// [`start_monitor`] on `listen`, its log in `log`.
pub fn start_monitor_at(
    bin: &Path,
    samples: &Path,
    config: &Path,
    state: &Path,
    listen: &str,
    log: Log,
) -> anyhow::Result<(Process, String)> {
    let mut cmd = Command::new(bin);
    cmd.args(["watch", "--listen", listen, "--samples"])
        .arg(samples)
        .arg("--config")
        .arg(config)
        .arg("--state")
        .arg(state);
    let (p, line) = Process::spawn_reporting("switchyard-monitor", cmd, log)?;
    let addr = address_after(&line, "").ok_or_else(|| anyhow::anyhow!("no monitor address in {line:?}"))?;
    Ok((p, addr))
}

/// Where a [`Stack`] runs and what its backends serve. [`Layout::scratch`] is the tests':
/// free ports, a scratch directory, logs in memory, `mlp` only. The demo (`switchyard-demo`)
/// sets its fixed ports, `.demo/`, log files and both models.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The policy, Envoy's bootstrap and the filter's ECDS file (`render envoy --out-dir`).
    pub dir: PathBuf,
    pub samples: PathBuf,
    pub repo: PathBuf,
    pub wasm: PathBuf,
    /// `--models` of backend v1 and of backend v2.
    pub models: [String; 2],
    /// [HTTP, gRPC, admin] of backend v1 and of backend v2.
    pub backends: [[String; 3]; 2],
    pub collector: String,
    /// Envoy's listener and admin (port 0: a free port, picked once the others are bound).
    pub listen: String,
    pub admin: String,
    /// The policy's clusters, each with its backend (0: v1, 1: v2), over REST and gRPC.
    pub clusters: Vec<(String, usize)>,
    /// `<logs>/backend-v1.log`, `backend-v2.log` and `collector.log`; in memory when None.
    pub logs: Option<PathBuf>,
    /// How Envoy is started: its log level, and where its log goes (`--log-path`, which
    /// Envoy flushes every 10 s, or its stderr into a file as it comes).
    pub envoy: EnvoyOptions,
    /// That log, for [`Stack::envoy_log`].
    pub envoy_log: PathBuf,
    /// What dropping the backends and the collector does.
    pub on_drop: OnDrop,
    /// More `switchyard-policy render envoy` arguments.
    pub bootstrap_args: Vec<String>,
    /// More `switchyard-backend serve` arguments, for both backends (limits, say).
    pub backend_args: Vec<String>,
    /// Mutual TLS from Envoy to the backends and the collector, with the certificates in this
    /// directory (`switchyard-policy render certs`, written here when missing): only Envoy
    /// gets in. The collector's `/metrics` then moves to `collector_admin`.
    pub tls: Option<PathBuf>,
    pub collector_admin: String,
}

impl Layout {
    /// The tests' layout: `mlp` v1 and v2 from `repo` on free ports, in a scratch directory
    /// named after `name`, Envoy's log level from `SWITCHYARD_E2E_ENVOY_LOG` (warn).
    pub fn scratch(name: &str, repo: &Path, wasm: &Path, bootstrap_args: &[&str]) -> Layout {
        let dir = scratch(name);
        let any = || "127.0.0.1:0".to_owned();
        let envoy_log = dir.join("envoy.log");
        let level = std::env::var("SWITCHYARD_E2E_ENVOY_LOG").unwrap_or_else(|_| "warn".into());
        Layout {
            samples: dir.join("samples.jsonl"),
            envoy: EnvoyOptions { log_path: Some(envoy_log.clone()), log_level: level, ..EnvoyOptions::default() },
            envoy_log,
            dir,
            repo: repo.to_owned(),
            wasm: wasm.to_owned(),
            models: ["mlp:v1".into(), "mlp:v2".into()],
            backends: [[any(), any(), any()], [any(), any(), any()]],
            collector: any(),
            listen: any(),
            admin: any(),
            clusters: vec![("mlp-v1".into(), 0), ("mlp-v2".into(), 1)],
            logs: None,
            on_drop: OnDrop::Kill,
            bootstrap_args: bootstrap_args.iter().map(|a| (*a).to_owned()).collect(),
            backend_args: Vec::new(),
            tls: None,
            collector_admin: "127.0.0.1:0".to_owned(),
        }
    }

    fn log(&self, name: &str) -> Log {
        self.logs.as_ref().map_or(Log::Memory, |d| Log::File(d.join(format!("{name}.log"))))
    }
}

pub struct Stack {
    pub dir: PathBuf,
    pub v1: Server,
    pub v2: Server,
    collector: Option<Process>,
    /// The collector's `/metrics` (with the shadow comparisons) and `/health`: its admin
    /// listener behind mutual TLS, else its one address.
    pub collector_addr: String,
    /// Where the filter ships samples (the same address without TLS).
    pub collector_samples: String,
    /// The backends' and the collector's TLS arguments, for a restart (empty without TLS).
    backend_tls: Vec<String>,
    collector_args: Vec<String>,
    pub samples: PathBuf,
    /// The policy the stack started with.
    pub policy_file: PathBuf,
    /// The repository the backends serve.
    pub repo: PathBuf,
    pub envoy: Envoy,
    pub listen: String,
    pub admin: String,
    pub envoy_log: PathBuf,
}

impl Stack {
    /// The drift monitor following this stack's samples with `config` (written to the stack's
    /// directory): the process and its address.
    pub fn start_monitor(&self, config: &serde_json::Value) -> (Process, String) {
        let file = self.dir.join("monitor.json");
        std::fs::write(&file, config.to_string()).expect("writing the monitor's config");
        start_monitor(&workspace_bin("switchyard-monitor"), &self.samples, &file, &self.dir.join("monitor-state"))
            .expect("starting the drift monitor")
    }

    /// Starts everything for `mlp` v1 and v2 and waits until the filter is configured.
    /// `policy` is the filter policy (its collector, if any, is started here).
    pub fn start(name: &str, policy: &serde_json::Value) -> Stack {
        Stack::start_with(name, policy, &[])
    }

    /// [`Stack::start`] with more `switchyard-policy render envoy` arguments, e.g.
    /// `["--fault", "mlp-v2=30"]` for a canary with injected errors.
    pub fn start_with(name: &str, policy: &serde_json::Value, bootstrap_args: &[&str]) -> Stack {
        Stack::start_with_wasm(name, policy, &wasm_path(), bootstrap_args)
    }

    /// [`Stack::start_with`] with another `.wasm` in the filter's place (e.g. the empty filter,
    /// standing for one that failed open).
    pub fn start_with_wasm(name: &str, policy: &serde_json::Value, wasm: &Path, bootstrap_args: &[&str]) -> Stack {
        Stack::start_in(name, policy, &demo_repo(), wasm, bootstrap_args)
    }

    /// [`Stack::start_with_wasm`] serving mlp v1 and v2 from another repository (a drill's
    /// deliberately slow models).
    pub fn start_in(
        name: &str,
        policy: &serde_json::Value,
        repo: &Path,
        wasm: &Path,
        bootstrap_args: &[&str],
    ) -> Stack {
        Stack::launch(&Layout::scratch(name, repo, wasm, bootstrap_args), policy)
    }

    /// Starts the stack `layout` describes on `policy`: both backends (their models load
    /// side by side), the collector, then Envoy, until its filter is configured.
    pub fn launch(layout: &Layout, policy: &serde_json::Value) -> Stack {
        let tls_args = |party: switchyard_tls::generate::Party| -> Vec<String> {
            let Some(dir) = &layout.tls else { return Vec::new() };
            let f = party.server_files(dir);
            [(tls::CERT_FLAG, &f.cert), (tls::KEY_FLAG, &f.key), (tls::CLIENT_CA_FLAG, &f.client_ca)]
                .into_iter()
                .flat_map(|(flag, path)| [flag.to_owned(), path.display().to_string()])
                .collect()
        };
        if let Some(dir) = &layout.tls {
            policy_tool(&["render", "certs", "--out-dir", dir.to_str().unwrap()]).unwrap();
        }
        let backend_tls = tls_args(switchyard_tls::generate::BACKEND);
        let mut collector_args = tls_args(switchyard_tls::generate::COLLECTOR);
        if layout.tls.is_some() {
            collector_args.extend([collector::ADMIN.flag.to_owned(), layout.collector_admin.clone()]);
        }
        let backend = |i: usize, name: &str| {
            let addrs = layout.backends[i].each_ref().map(String::as_str);
            let mut extra = vec!["--models", layout.models[i].as_str()];
            extra.extend(layout.backend_args.iter().map(String::as_str));
            extra.extend(backend_tls.iter().map(String::as_str));
            Server::start_logged(&layout.repo, addrs, &extra, layout.log(name)).on_drop(layout.on_drop)
        };
        let (v1, v2) = (backend(0, "backend-v1"), backend(1, "backend-v2"));
        v1.wait_loaded();
        v2.wait_loaded();
        let dir = layout.dir.clone();
        std::fs::create_dir_all(&dir).unwrap();
        let samples = layout.samples.clone();
        let bin = workspace_bin("switchyard-collector");
        let (collector, collector_samples, admin) =
            start_collector_with(&bin, &samples, &layout.collector, &collector_args, layout.log("collector")).unwrap();
        let collector_addr = admin.unwrap_or_else(|| collector_samples.clone());
        let collector = collector.on_drop(layout.on_drop);
        let policy_file = dir.join("policy.json");
        std::fs::write(&policy_file, serde_json::to_vec_pretty(policy).unwrap()).unwrap();
        let port = |a: &str| if a.ends_with(":0") { format!("127.0.0.1:{}", free_port()) } else { a.to_owned() };
        let (listen, admin) = (port(&layout.listen), port(&layout.admin));
        let mut args = vec!["--listen".to_owned(), listen.clone(), "--admin".to_owned(), admin.clone()];
        for (cluster, i) in &layout.clusters {
            let server = if *i == 0 { &v1 } else { &v2 };
            args.extend(["--upstream".to_owned(), format!("{cluster}={}", server.http)]);
            args.extend(["--grpc-upstream".to_owned(), format!("{cluster}={}", server.grpc)]);
        }
        args.extend(["--collector".to_owned(), collector_samples.clone()]);
        if let Some(dir) = &layout.tls {
            args.extend(["--upstream-tls".to_owned(), dir.display().to_string()]);
        }
        args.extend(layout.bootstrap_args.iter().cloned());
        render_envoy_with(&policy_file, &layout.wasm, &dir, &args.iter().map(String::as_str).collect::<Vec<_>>());
        let envoy_log = layout.envoy_log.clone();
        let envoy = Envoy::start(Command::new(envoy_bin()), &dir.join("envoy.yaml"), &listen, &admin, &layout.envoy)
            .unwrap_or_else(|e| {
                panic!("{e:#}\nEnvoy's log:\n{}", std::fs::read_to_string(&envoy_log).unwrap_or_default())
            });
        Stack {
            dir,
            v1,
            v2,
            collector: Some(collector),
            collector_addr,
            collector_samples,
            backend_tls,
            collector_args,
            samples,
            policy_file,
            repo: layout.repo.clone(),
            envoy,
            listen,
            admin,
            envoy_log,
        }
    }

    /// Replaces the filter policy at run time as `envoy/apply-policy.sh` does: `render filter`
    /// checks it against the running bootstrap and writes the ECDS file (write, then rename).
    /// Err with the renderer's message when it refuses; otherwise waits until Envoy has
    /// accepted or rejected it and says whether it was accepted. It renders with the product
    /// `.wasm`: on a stack started on another one, this is also a filter roll-out.
    pub fn apply_policy(&self, policy: &serde_json::Value) -> Result<bool, String> {
        self.apply_filter(policy, &wasm_path())
    }

    /// [`Stack::apply_policy`] with the filter's `.wasm` replaced too (a filter roll-out or
    /// roll-back): Envoy starts new VMs on it.
    pub fn apply_filter(&self, policy: &serde_json::Value, wasm: &Path) -> Result<bool, String> {
        self.apply_saying(policy, wasm).map(|(accepted, _)| accepted)
    }

    /// [`Stack::apply_filter`], with what `render filter` said (epochs it moved forward).
    pub fn apply_saying(&self, policy: &serde_json::Value, wasm: &Path) -> Result<(bool, String), String> {
        let file = self.dir.join("policy-next.json");
        std::fs::write(&file, serde_json::to_vec_pretty(policy).unwrap()).unwrap();
        let bootstrap = self.dir.join("envoy.yaml");
        let args = ["render", "filter", "--policy", file.to_str().unwrap(), "--wasm"];
        let mut args = args.to_vec();
        args.extend([wasm.to_str().unwrap(), "--bootstrap", bootstrap.to_str().unwrap()]);
        let before = self.ecds_counts();
        let said = policy_tool(&args)?;
        Ok((self.wait_ecds(before), said))
    }

    /// Hands Envoy a policy the renderer never saw (as a cluster's WasmPlugin could): the
    /// running ECDS resource with its configuration replaced by `text`. The filter's own
    /// validation is then all that stands between it and traffic. Returns whether Envoy
    /// accepted it.
    pub fn apply_unchecked_policy_text(&self, text: &str) -> bool {
        let ecds = self.dir.join("filter.yaml");
        let mut doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&ecds).unwrap()).unwrap();
        doc["version_info"] = serde_json::json!(format!("unchecked-{}", text.len()));
        doc["resources"][0]["typed_config"]["config"]["configuration"]["value"] = serde_json::json!(text);
        let before = self.ecds_counts();
        let tmp = self.dir.join(".filter.yaml.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
        std::fs::rename(&tmp, &ecds).unwrap();
        self.wait_ecds(before)
    }

    /// Puts an ECDS document in place of the one Envoy runs, as the kubelet does when the
    /// ConfigMap it is mounted from changes (atomically: a rename). Returns whether Envoy
    /// accepted it; `Ok(None)` when Envoy runs that document already.
    pub fn put_ecds_text(&self, text: &str) -> Option<bool> {
        let ecds = self.dir.join("filter.yaml");
        if std::fs::read_to_string(&ecds).ok().as_deref() == Some(text) {
            return None;
        }
        let before = self.ecds_counts();
        let tmp = self.dir.join(".filter.yaml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &ecds).unwrap();
        Some(self.wait_ecds(before))
    }

    /// (accepted, refused) ECDS updates so far.
    fn ecds_counts(&self) -> (f64, f64) {
        (self.ecds_stat("update_success"), self.ecds_stat("update_rejected") + self.ecds_stat("update_failure"))
    }

    fn wait_ecds(&self, before: (f64, f64)) -> bool {
        let mut accepted = false;
        wait_until(Duration::from_secs(20), "Envoy to take the new filter config", || {
            let now = self.ecds_counts();
            accepted = now.0 > before.0;
            now != before
        });
        accepted
    }

    fn ecds_stat(&self, name: &str) -> f64 {
        self.stat(&format!("extension_config_discovery.http_filter.switchyard.{name}"))
    }

    /// A counter or gauge from Envoy's plain `/stats` (0 when absent).
    pub fn stat(&self, name: &str) -> f64 {
        self.envoy.stat(name)
    }

    /// `/stats/prometheus`.
    pub fn prometheus(&self) -> String {
        self.envoy.prometheus()
    }

    pub fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        request(&self.listen, method, path, headers, body)
    }

    pub fn kill_collector(&mut self) {
        self.collector = None;
    }

    /// Starts a collector again on the address the filter ships to, appending to the same file.
    /// The collector's process id, while it runs.
    pub fn collector_pid(&self) -> Option<u32> {
        self.collector.as_ref().map(Process::pid)
    }

    /// Kills backend v2 (a crash) and starts a new one serving `mlp:v2` on the same addresses.
    pub fn replace_v2(&mut self) {
        self.v2.sigkill();
        let (http, grpc, admin) = (self.v2.http.clone(), self.v2.grpc.clone(), self.v2.admin.clone());
        let mut extra = vec!["--models", "mlp:v2"];
        extra.extend(self.backend_tls.iter().map(String::as_str));
        // The killed process must be gone before its ports are bound again.
        let _ = self.v2.wait_exit(Duration::from_secs(5));
        let new = Server::start_logged(&self.repo, [&http, &grpc, &admin], &extra, Log::Discard);
        new.wait_loaded();
        self.v2 = new;
    }

    /// The `serve` arguments that give a backend this stack's mutual TLS (none without it): a
    /// replacement started by hand takes them, or Envoy cannot reach it.
    pub fn backend_tls_args(&self) -> &[String] {
        &self.backend_tls
    }

    pub fn restart_collector(&mut self) -> anyhow::Result<()> {
        let bin = workspace_bin("switchyard-collector");
        let mut args = self.collector_args.clone();
        // The admin listener on its old address too.
        if let Some(i) = args.iter().position(|a| a == collector::ADMIN.flag) {
            args[i + 1] = self.collector_addr.clone();
        }
        let log = Log::Memory;
        self.collector = Some(start_collector_with(&bin, &self.samples, &self.collector_samples, &args, log)?.0);
        Ok(())
    }

    pub fn sample_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.samples)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn envoy_log(&self) -> String {
        std::fs::read_to_string(&self.envoy_log).unwrap_or_default()
    }
}

/// A V2 inference body for the demo `mlp` (one row of 64 features), different per `seed`.
pub fn mlp_infer_body(seed: usize) -> Vec<u8> {
    mlp_row_body(&mlp_row(seed))
}

/// The 64 features of [`mlp_infer_body`]'s row.
pub fn mlp_row(seed: usize) -> Vec<f64> {
    (0..64).map(|j| ((seed * 64 + j) as f64 * 0.1).sin()).collect()
}

/// A V2 request of one mlp row.
pub fn mlp_row_body(row: &[f64]) -> Vec<u8> {
    serde_json::to_vec(&mlp_row_request(row)).unwrap()
}

/// [`mlp_row_body`] as JSON, for a caller that adds to it (request parameters).
pub fn mlp_row_request(row: &[f64]) -> serde_json::Value {
    let input = serde_json::json!({"name": "features", "shape": [1, 64], "datatype": "FP32", "data": row});
    serde_json::json!({"inputs": [input]})
}

/// A test policy for `mlp` v1/v2 with the given per-model overrides merged in.
pub fn mlp_policy(model: &serde_json::Value) -> serde_json::Value {
    let mut m = serde_json::json!({
        "versions": [
            {"name": "v1", "cluster": "mlp-v1", "weight": 90},
            {"name": "v2", "cluster": "mlp-v2", "weight": 10}
        ]
    });
    if let (Some(base), Some(extra)) = (m.as_object_mut(), model.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    serde_json::json!({
        "models": {"mlp": m},
        "collector": {"cluster": "collector", "timeout_ms": 500},
        "slo_windows": ["5m", "1h"]
    })
}
