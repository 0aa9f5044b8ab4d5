//! The stack a drill acts on: Envoy with the filter, the two mlp backends, the collector
//! (all started by the test kit), the drift monitor when the drill needs one, Prometheus with
//! the production rules on drill time, Alertmanager and the webhook pager; and the traffic.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use switchyard_testkit::prom::{Alertmanager, Prometheus, Webhook};
use switchyard_testkit::stack::{Stack, mlp_infer_body, render};
use switchyard_testkit::{metric_sum, try_request};

use crate::alerts;
use crate::load::{Load, LoadError, Traffic};
use crate::types::{Rec, SLO_LATENCY_MS, SLOW_SLO_LATENCY_MS, SlowModels, TIME_SCALE};

/// The running stack a drill acts on.
pub struct Env {
    pub stack: Stack,
    /// The drift monitor, for drills that start one (`None` once a drill stopped it).
    pub monitor: Option<switchyard_testkit::process::Process>,
    /// Set when the drill ends: background work a fault started stops.
    pub ended: Arc<AtomicBool>,
    /// Requests per second one mlp v1 backend serves (measured before the traffic, for
    /// drills on the slow models).
    pub capacity: Option<f64>,
    /// The steady traffic: the last one sends, the ones before were replaced by a shift of
    /// the inputs.
    traffic: Vec<Load>,
    /// Requests per second of the steady traffic.
    rate: f64,
    /// Extra traffic a fault added.
    surges: Vec<Load>,
    /// Set once an operator step has replaced mlp/v2's backend, so that a mitigation polled
    /// again (its guard reset refused) does not replace it twice.
    pub(crate) replaced: bool,
    /// `None` once a drill has taken it down.
    pub prometheus: Option<Prometheus>,
    /// `None` once a drill has taken it down.
    pub alertmanager: Option<Alertmanager>,
    pub webhook: Webhook,
    pub started: Instant,
    /// Unix seconds at drill time 0.
    pub(crate) started_unix: f64,
    pub events: Vec<(f64, String)>,
    /// The fault's onset (drill time): set before `inject`; an inject that prepares first
    /// (stops a dependency, then faults) sets it again with [`Env::mark_onset`].
    pub(crate) onset: f64,
}

impl Env {
    /// Seconds since the drill started.
    pub fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Starts the steady traffic: `rate` requests per second from many clients.
    pub(crate) fn start_traffic(&mut self, rate: f64) -> Result<(), LoadError> {
        self.rate = rate;
        self.send(Traffic { rate, connections: None, shifted: 0, deadline_us: None, seed: 0 }, false)
    }

    /// Adds `rate` requests per second of traffic until [`Env::end_surge`], from as many
    /// clients as it takes to keep the rate (a client with a few workers could not: its
    /// requests would queue behind each other and go on arriving after the surge ended).
    pub fn surge(&mut self, rate: f64) -> Result<(), LoadError> {
        self.send(Traffic { rate, connections: None, shifted: 0, deadline_us: None, seed: 0 }, true)
    }

    /// Adds `rate` requests per second from one client with `workers` workers (at most that
    /// many requests in flight), each request carrying a deadline of `deadline_us`.
    pub fn surge_with(&mut self, rate: f64, workers: usize, deadline_us: Option<u64>) -> Result<(), LoadError> {
        self.send(Traffic { rate, connections: Some(workers), shifted: 0, deadline_us, seed: 0 }, true)
    }

    /// The extra traffic stops (its requests are still counted).
    pub fn end_surge(&self) {
        for s in &self.surges {
            s.stop();
        }
    }

    /// From now on the clients' first `columns` input columns are shifted (all 64: every one):
    /// the steady traffic goes on at its rate with shifted rows.
    pub fn shift_inputs(&mut self, columns: usize) -> Result<(), LoadError> {
        for t in &self.traffic {
            t.stop();
        }
        self.send(Traffic { rate: self.rate, connections: None, shifted: columns, deadline_us: None, seed: 0 }, false)
    }

    /// Starts `traffic` (each source picks its rows in an order of its own).
    fn send(&mut self, mut traffic: Traffic, surge: bool) -> Result<(), LoadError> {
        traffic.seed = (self.traffic.len() + self.surges.len()) as u64;
        let load = Load::start(&self.stack.listen, &traffic)?;
        let to = if surge { &mut self.surges } else { &mut self.traffic };
        to.push(load);
        Ok(())
    }

    /// Stops every traffic source, waits for the requests in flight, and returns them all,
    /// sorted by intended send time.
    pub(crate) fn finish_traffic(&mut self) -> Result<Vec<Rec>, LoadError> {
        let mut records = Vec::new();
        for load in std::mem::take(&mut self.traffic).into_iter().chain(std::mem::take(&mut self.surges)) {
            records.extend(load.finish(self.started)?);
        }
        records.sort_by(|a, b| a.t.total_cmp(&b.t));
        Ok(records)
    }

    /// The fault starts now.
    pub fn mark_onset(&mut self) {
        self.onset = self.now();
    }

    pub fn event(&mut self, what: impl Into<String>) {
        let (t, what) = (self.now(), what.into());
        println!("  [{t:6.1}s] {what}");
        self.events.push((t, what));
    }

    /// Sets a fault armed in the bootstrap (`--fault CLUSTER=0:…`) to `percent` (whole
    /// percents: Envoy reads an integer runtime value as one) through its admin runtime.
    pub fn set_fault(&self, key: &str, percent: u8) -> anyhow::Result<()> {
        let r =
            try_request(&self.stack.admin, "POST", &format!("/runtime_modify?{key}={}", percent.min(100)), &[], b"")
                .map_err(anyhow::Error::msg)?;
        anyhow::ensure!(r.status == 200, "runtime_modify {key}: {}", r.status);
        Ok(())
    }

    /// The filter's view in Envoy: whether the guard took `version` out.
    pub fn guard_out(&self, version: &str) -> bool {
        metric_sum(
            &self.stack.prometheus(),
            switchyard_contract::metrics::GUARD_OUT.name,
            &[("model", "mlp"), ("version", version)],
        ) > 0.0
    }

    /// Drill time `t` as Unix seconds (the webhook's clock).
    pub(crate) fn unix(&self, t: f64) -> f64 {
        self.started_unix + t
    }

    /// Drill time starts now.
    pub(crate) fn start_clock(&mut self) {
        self.started = Instant::now();
        self.started_unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    }

    /// Whether `alert` has paged (reached the `page` receiver firing) since the onset: the
    /// moment a playbook's manual step starts.
    pub(crate) fn paged(&self, alert: &str) -> bool {
        self.notified(alert, Some("page"))
    }

    /// Whether `alert` has reached the pager firing since the onset, as a page or a ticket.
    pub(crate) fn alerted(&self, alert: &str) -> bool {
        self.notified(alert, None)
    }

    fn notified(&self, alert: &str, receiver: Option<&str>) -> bool {
        alerts::notified(&self.webhook.received(), alert, receiver, self.unix(self.onset))
    }
}

/// The drill policy: mlp v1 stable at 80 %, v2 canary at 20 %, guarded, sampled, with the
/// SLO the rules judge.
pub fn policy(sample_rate: f64, slo_latency_ms: u64) -> serde_json::Value {
    switchyard_testkit::stack::mlp_policy(&serde_json::json!({
        "versions": [{"name": "v1", "cluster": "mlp-v1", "weight": 80}, {"name": "v2", "cluster": "mlp-v2", "weight": 20}],
        "guard": {"stable": "v1", "min_requests": 10, "epoch": 0},
        "sampling": {"rate": sample_rate, "max_body_bytes": 65536},
        "slo": {"availability": 0.999, "latency_ms": slo_latency_ms, "latency_objective": 0.99}
    }))
}

/// What varies between drills.
pub struct Spec {
    pub name: &'static str,
    pub title: &'static str,
    /// The SEV the incident-response README's table gives it, with the reason.
    pub severity: &'static str,
    /// `switchyard-policy render envoy` arguments (armed faults).
    pub bootstrap: &'static [&'static str],
    /// Alerts that count as detection.
    pub expect: &'static [&'static str],
    /// Injects the fault; returns what was done, for the timeline.
    pub inject: fn(&mut Env) -> anyhow::Result<String>,
    /// Whether the mitigation has acted, and what it is.
    pub mitigated: fn(&mut Env) -> Option<String>,
    /// The share of requests whose payloads are sampled (the drift monitor's input).
    pub sample_rate: f64,
    /// Start the drift monitor on the samples (and have Prometheus scrape it).
    pub monitor: bool,
    /// Serve mlp from deliberately slow models (milliseconds a row, one row a batch, a short
    /// queue), so that this machine's clients can overload a backend; the traffic is then
    /// sized from the measured capacity.
    pub slow: Option<SlowModels>,
    /// Run Envoy on the filter built with failpoints (filter-wasm/src/failpoints.rs).
    pub failpoints: bool,
    /// The playbook the drill exercises (docs/incident-response/playbooks/).
    pub playbook: &'static str,
    /// Trigger and root cause, for the postmortem.
    pub trigger: &'static str,
    pub root_cause: &'static str,
}

impl Spec {
    pub fn slo_latency_ms(&self) -> u64 {
        if self.slow.is_some() { SLOW_SLO_LATENCY_MS } else { SLO_LATENCY_MS }
    }
}

pub(crate) fn start_env(spec: &Spec) -> anyhow::Result<Env> {
    let name = format!("drill-{}", spec.name);
    // A repository of the drill's own (its model files linked to the demo's), which a fault
    // may change.
    let repo = match &spec.slow {
        Some(slow) => slow_repo(&name, slow)?,
        None => switchyard_testkit::derived_repo(&format!("{name}-repo"), &[("mlp", "v1"), ("mlp", "v2")], |_, _| {}),
    };
    let wasm = if spec.failpoints { failpoint_wasm()? } else { switchyard_testkit::stack::wasm_path() };
    let stack = Stack::start_in(&name, &policy(spec.sample_rate, spec.slo_latency_ms()), &repo, &wasm, spec.bootstrap);
    let capacity = spec.slow.as_ref().map(|_| measure_capacity(&stack.v1.http));
    let dir = stack.dir.clone();
    // The monitor on the stack's samples: v1's first 300 rows are the reference; a 1,000-row
    // window holds the 500 rows it needs to be judged (min_rows) within seconds at full sampling.
    let monitor = if spec.monitor {
        let config = dir.join("monitor.json");
        let windows = serde_json::json!([{"name": "1k", "rows": 1000}]);
        std::fs::write(
            &config,
            serde_json::json!({"evaluate_every_seconds": 1, "models": {"mlp": {"reference": {"version": "v1", "rows": 300}, "windows": windows}}})
                .to_string(),
        )?;
        let bin = switchyard_testkit::workspace_bin("switchyard-monitor");
        Some(switchyard_testkit::stack::start_monitor(&bin, &stack.samples, &config, &dir.join("monitor-state"))?)
    } else {
        None
    };
    // The pager's dead man's switch on drill time: the Watchdog every second, a page after 5
    // seconds without one (production: every minute, a page after three).
    let webhook = Webhook::start_with("127.0.0.1:0", &dir.join("notifications.jsonl"), "5s");
    let am_config = dir.join("alertmanager.yml");
    let am_s = am_config.to_str().context("path")?;
    render(&[
        "alertmanager",
        "--out",
        am_s,
        "--webhook",
        &webhook.url,
        "--group-wait",
        "1s",
        "--group-interval",
        "1s",
        "--watchdog-interval",
        "1s",
    ]);
    let alertmanager = Alertmanager::start(&am_config, &dir);
    let (dir_s, policy_s) = (dir.to_str().context("path")?, stack.policy_file.to_str().context("path")?);
    let scale = TIME_SCALE.to_string();
    let mut args = vec![
        "prometheus",
        "--out-dir",
        dir_s,
        "--policy",
        policy_s,
        "--envoy",
        &stack.admin,
        "--backend",
        &stack.v1.admin,
        "--backend",
        &stack.v2.admin,
        "--alertmanager",
        &alertmanager.addr,
        "--scrape-interval",
        "1s",
        "--evaluation-interval",
        "1s",
        "--time-scale",
        &scale,
    ];
    if let Some((_, addr)) = &monitor {
        args.extend(["--monitor", addr.as_str()]);
    }
    render(&args);
    let prometheus = Prometheus::start(&dir.join("prometheus.yml"), &dir);
    Ok(Env {
        stack,
        monitor: monitor.map(|(p, _)| p),
        ended: Arc::new(AtomicBool::new(false)),
        capacity,
        traffic: Vec::new(),
        rate: 0.0,
        surges: Vec::new(),
        replaced: false,
        prometheus: Some(prometheus),
        alertmanager: Some(alertmanager),
        webhook,
        started: Instant::now(),
        started_unix: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
        events: Vec::new(),
        onset: 0.0,
    })
}

/// The filter built with failpoints: `SWITCHYARD_FAILPOINT_WASM` (scripts/drill.sh sets it),
/// else where `scripts/build-filter.sh --failpoints` puts it.
fn failpoint_wasm() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("SWITCHYARD_FAILPOINT_WASM").map_or_else(
        || switchyard_testkit::stack::target_dir().join("failpoints/wasm32-wasip1/wasm-release/switchyard_filter.wasm"),
        PathBuf::from,
    );
    anyhow::ensure!(
        path.is_file(),
        "{} is missing: build the filter with failpoints first (scripts/build-filter.sh --failpoints), or run the drills \
         with scripts/drill.sh",
        path.display()
    );
    Ok(path)
}

/// mlp v1 and v2 with the demo's configs, except one row a batch and a short queue, and a
/// model of the same inputs and outputs that takes milliseconds a row (64 → 2048 → 8 × 2048
/// → 2, written by the venv's torch).
fn slow_repo(name: &str, slow: &SlowModels) -> anyhow::Result<PathBuf> {
    let queue = slow.max_queue_size;
    let repo = switchyard_testkit::derived_repo(&format!("{name}-repo"), &[("mlp", "v1"), ("mlp", "v2")], |_, c| {
        c["batching"] =
            serde_json::json!({"max_batch_size": 1, "max_queue_size": queue, "default_timeout_us": 2_000_000});
    });
    let script = repo.join("slow.py");
    std::fs::write(
        &script,
        "import sys, torch\ntorch.manual_seed(0)\nlayers = [torch.nn.Linear(64, 2048), torch.nn.ReLU()]\n\
         for _ in range(8):\n    layers += [torch.nn.Linear(2048, 2048), torch.nn.ReLU()]\n\
         layers += [torch.nn.Linear(2048, 2), torch.nn.Softmax(dim=1)]\n\
         m = torch.jit.trace(torch.nn.Sequential(*layers).eval(), torch.randn(1, 64))\n\
         for p in sys.argv[1:]:\n    m.save(p)\n",
    )?;
    let models: Vec<PathBuf> = ["v1", "v2"].iter().map(|v| repo.join("mlp").join(v).join("model.pt")).collect();
    for m in &models {
        std::fs::remove_file(m)?;
    }
    let out = std::process::Command::new(switchyard_testkit::stack::python()).arg(&script).args(&models).output()?;
    anyhow::ensure!(out.status.success(), "writing the slow model: {}", String::from_utf8_lossy(&out.stderr));
    Ok(repo)
}

/// Requests per second one backend answers with four clients back to back for 3 s.
fn measure_capacity(http: &str) -> f64 {
    let until = Instant::now() + Duration::from_secs(3);
    let done: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|c| {
                s.spawn(move || {
                    let mut n = 0;
                    while Instant::now() < until {
                        let body = mlp_infer_body(c * 1000 + n);
                        let ok = try_request(
                            http,
                            "POST",
                            "/v2/models/mlp/infer",
                            &[("content-type", "application/json")],
                            &body,
                        )
                        .is_ok_and(|r| r.status == 200);
                        n += usize::from(ok);
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
    });
    done as f64 / 3.0
}
