//! `switchyard-drill`: chaos drills on the local stack (real Envoy with the filter, real
//! backends, collector, Prometheus with the production rules on drill time, Alertmanager and
//! the demo's webhook pager), all started by the test kit.
//!
//! A drill runs steady background traffic, injects one fault, and measures what an incident
//! review asks: when the first alert reached the pager after the onset (time to detect), what
//! mitigated it and when the client-visible impact ended (time to mitigate), the failed
//! requests and latency during the incident, and that nothing was lost (every request
//! answered; every sampled payload sent, failed or dropped, never unaccounted). Each drill
//! writes a postmortem draft from docs/incident-response/postmortem-template.md with the
//! timeline, the alerts, the figures and a chart; only the action items are left to people.

pub mod catalog;
pub mod report;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use switchyard_testkit::prom::{Alertmanager, Prometheus, Webhook};
use switchyard_testkit::stack::{Stack, mlp_infer_body, mlp_row, mlp_row_request, render};
use switchyard_testkit::{metric_sum, try_request};

/// The rules run on drill time: every window and `for:` divided by this (five minutes are
/// five seconds), with Prometheus scraping and evaluating every second.
pub const TIME_SCALE: u64 = 60;

/// One request of the background traffic.
#[derive(Debug, Clone)]
pub struct Rec {
    /// Seconds since the drill started, when the request was sent.
    pub t: f64,
    /// 0: no answer (refused, reset, timed out).
    pub status: u16,
    pub latency_ms: f64,
    pub version: String,
}

/// The drill policy's latency objective: a slower answer is client-visible impact too. The
/// slow models' is 500 ms.
pub const SLO_LATENCY_MS: u64 = 100;
const SLOW_SLO_LATENCY_MS: u64 = 500;

impl Spec {
    pub fn slo_latency_ms(&self) -> u64 {
        if self.slow.is_some() { SLOW_SLO_LATENCY_MS } else { SLO_LATENCY_MS }
    }
}

impl Rec {
    pub fn failed(&self) -> bool {
        !(200..300).contains(&self.status)
    }

    /// Failed, or slower than the SLO's threshold.
    pub fn bad(&self, slo_ms: u64) -> bool {
        self.failed() || self.latency_ms > slo_ms as f64
    }
}

/// The traffic: `clients` threads, each sending one request every `1 / per_client` s.
struct Load {
    stop: Arc<AtomicBool>,
    /// How many of the clients' input columns have shifted (the drift drills; 0: none).
    shifted: Arc<AtomicUsize>,
    records: Arc<Mutex<Vec<Rec>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// `deadline_us`: each request's OIP `timeout` parameter (the backend's default when `None`).
    fn start(listen: &str, started: Instant, clients: usize, per_client: f64, deadline_us: Option<u64>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let shifted = Arc::new(AtomicUsize::new(0));
        let records = Arc::new(Mutex::new(Vec::new()));
        let every = Duration::from_secs_f64(1.0 / per_client);
        let threads = (0..clients)
            .map(|c| {
                let (stop, shifted, records, listen) =
                    (stop.clone(), shifted.clone(), records.clone(), listen.to_owned());
                std::thread::spawn(move || {
                    let mut next = Instant::now();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let body = infer_body(c * 1_000_000 + i, shifted.load(Ordering::Relaxed), deadline_us);
                        let sent = Instant::now();
                        let r = try_request(
                            &listen,
                            "POST",
                            "/v2/models/mlp/infer",
                            &[("content-type", "application/json"), ("x-user-id", &format!("u{c}-{i}"))],
                            &body,
                        );
                        let rec = Rec {
                            t: sent.duration_since(started).as_secs_f64(),
                            status: r.as_ref().map_or(0, |r| r.status),
                            latency_ms: sent.elapsed().as_secs_f64() * 1e3,
                            version: r
                                .ok()
                                .and_then(|r| r.header("x-switchyard-version").map(str::to_owned))
                                .unwrap_or_default(),
                        };
                        records.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(rec);
                        i += 1;
                        next += every;
                        if let Some(wait) = next.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        } else {
                            next = Instant::now();
                        }
                    }
                })
            })
            .collect();
        Load { stop, shifted, records, threads }
    }

    fn finish(self) -> Vec<Rec> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let mut r = std::mem::take(&mut *self.records.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        r.sort_by(|a, b| a.t.total_cmp(&b.t));
        r
    }
}

/// The mlp input of `seed`: the test kit's rows, with the first `shifted` columns moved by
/// three of their standard deviations and stretched, as a changed upstream feature pipeline
/// would; with an OIP `timeout` parameter when `deadline_us` is set.
fn infer_body(seed: usize, shifted: usize, deadline_us: Option<u64>) -> Vec<u8> {
    let mut row = mlp_row(seed);
    for x in row.iter_mut().take(shifted) {
        *x = 2.0 + 2.0 * *x;
    }
    let mut body = mlp_row_request(&row);
    if let Some(us) = deadline_us {
        body["parameters"] = serde_json::json!({"timeout": us});
    }
    body.to_string().into_bytes()
}

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
    /// Extra traffic a fault added.
    surges: Vec<Load>,
    /// Set once an operator step has replaced mlp/v2's backend, so that a mitigation polled
    /// again (its guard reset refused) does not replace it twice.
    pub(crate) replaced: bool,
    shifted: Arc<AtomicUsize>,
    /// `None` once a drill has taken it down.
    pub prometheus: Option<Prometheus>,
    _alertmanager: Alertmanager,
    pub webhook: Webhook,
    pub started: Instant,
    /// Unix seconds at drill time 0.
    started_unix: f64,
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

    /// Adds `rate` requests per second of traffic (eight more clients) until [`Env::end_surge`].
    pub fn surge(&mut self, rate: f64) {
        self.surge_with(rate, 8, None);
    }

    /// [`Env::surge`] from `clients` clients, each request carrying a deadline of `deadline_us`.
    pub fn surge_with(&mut self, rate: f64, clients: usize, deadline_us: Option<u64>) {
        let load = Load::start(&self.stack.listen, self.started, clients, rate / clients as f64, deadline_us);
        self.surges.push(load);
    }

    /// The extra traffic stops (its requests are still counted).
    pub fn end_surge(&self) {
        for s in &self.surges {
            s.stop.store(true, Ordering::Relaxed);
        }
    }

    /// From now on the clients' first `columns` input columns are shifted (all 64: every one).
    pub fn shift_inputs(&self, columns: usize) {
        self.shifted.store(columns, Ordering::Relaxed);
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
        metric_sum(&self.stack.prometheus(), "switchyard_guard_out", &[("model", "mlp"), ("version", version)]) > 0.0
    }

    /// Drill time `t` as Unix seconds (the webhook's clock).
    pub(crate) fn unix(&self, t: f64) -> f64 {
        self.started_unix + t
    }

    /// Drill time starts now.
    fn start_clock(&mut self) {
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
        let since = self.unix(self.onset);
        self.webhook.received().into_iter().any(|(at, r, n)| {
            at >= since && receiver.is_none_or(|want| r == want) && names(&n).iter().any(|a| a == alert)
        })
    }
}

/// What the drill measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub title: String,
    pub onset: f64,
    /// (drill time, alert name, receiver) of the first expected alert at the pager.
    pub detected: Option<(f64, String, String)>,
    /// (drill time, what) when the mitigation acted.
    pub mitigated: Option<(f64, String)>,
    /// When the last bad request (failed, or slower than the SLO) after the onset was
    /// answered: the impact's end; `None`: no client saw any.
    pub impact_end: Option<f64>,
    /// Whether the traffic was healthy again at the end of the drill.
    pub recovered: bool,
    pub records: Vec<Rec>,
    /// Whether an alert was expected at all (a drill of alerting down expects none).
    pub expects_detection: bool,
    pub failed_during: usize,
    /// Answered, but slower than the SLO's latency threshold, after the onset.
    pub slow_during: usize,
    pub slo_latency_ms: u64,
    pub sent: usize,
    pub unanswered: usize,
    /// Samples: captured, sent, failed, dropped (Envoy's counters after the queue drained).
    pub samples: [f64; 4],
    /// Samples in the collector's file: what was delivered, whatever the filter's counters
    /// say (a crashed VM takes its unflushed counts with it).
    pub received: f64,
    pub events: Vec<(f64, String)>,
    /// Every alert Prometheus had pending or firing at the end: (name, labels, state).
    pub alerts: Vec<(String, String, String)>,
    pub notifications: Vec<(f64, String, String)>,
    pub p99_before_ms: f64,
    pub p99_during_ms: f64,
    /// Unix seconds at drill time 0.
    pub started_unix: f64,
}

impl Outcome {
    /// Every alert that reached the pager firing after the onset, sorted.
    pub fn fired(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .notifications
            .iter()
            .flat_map(|(_, _, what)| {
                what.split("; ").filter_map(|p| p.strip_prefix("firing: ")).flat_map(|p| p.split(", "))
            })
            .map(str::to_owned)
            .collect();
        names.sort();
        names.dedup();
        names
    }

    pub fn mttd(&self) -> Option<f64> {
        self.detected.as_ref().map(|d| d.0 - self.onset)
    }

    /// Onset to the end of client-visible impact (0 when no client saw any).
    pub fn mttm(&self) -> Option<f64> {
        if !self.recovered {
            return None;
        }
        Some(self.impact_end.map_or(0.0, |e| (e - self.onset).max(0.0)))
    }

    /// Requests without an answer, and samples unaccounted for: captured, but neither in the
    /// collector's file nor counted as failed or dropped.
    pub fn lost(&self) -> f64 {
        let [captured, _, failed, dropped] = self.samples;
        self.unanswered as f64 + (captured - self.received - failed - dropped).abs()
    }
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

/// The slow models' batching queue.
pub struct SlowModels {
    pub max_queue_size: u32,
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

fn start_env(spec: &Spec) -> anyhow::Result<Env> {
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
    // window holds the 500 rows the drift series need within seconds at full sampling.
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
    let webhook = Webhook::start(&dir);
    let am_config = dir.join("alertmanager.yml");
    let am_s = am_config.to_str().context("path")?;
    render(&["alertmanager", "--out", am_s, "--webhook", &webhook.url, "--group-wait", "1s", "--group-interval", "1s"]);
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
        surges: Vec::new(),
        replaced: false,
        shifted: Arc::new(AtomicUsize::new(0)),
        prometheus: Some(prometheus),
        _alertmanager: alertmanager,
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

fn p99(records: &[&Rec]) -> f64 {
    let mut l: Vec<f64> = records.iter().map(|r| r.latency_ms).collect();
    l.sort_by(f64::total_cmp);
    l.get(((l.len() as f64 * 0.99).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0)
}

/// Warm-up before the onset, the longest the drill waits for detection and mitigation, and
/// how long traffic must stay healthy to call the incident over.
pub struct Timing {
    pub warmup: Duration,
    pub deadline: Duration,
    pub healthy_tail: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            warmup: Duration::from_secs(10),
            deadline: Duration::from_secs(60),
            healthy_tail: Duration::from_secs(5),
        }
    }
}

/// Runs one drill and writes its postmortem draft and chart under `out/<name>/`.
pub fn run(spec: &Spec, out: &Path, timing: &Timing) -> anyhow::Result<Outcome> {
    println!("drill {}: {}", spec.name, spec.title);
    let mut env = start_env(spec)?;
    env.start_clock();
    // On the slow models: half of v1's capacity (v1 takes 80 % of the traffic).
    let rate = env.capacity.map_or(60.0, |c| 0.5 * c / 0.8);
    let load = Load::start(&env.stack.listen, env.started, 3, rate / 3.0, None);
    env.shifted = load.shifted.clone();
    let measured = env.capacity.map_or(String::new(), |c| format!("; one backend's measured capacity {c:.0} req/s"));
    env.event(format!("steady traffic: {rate:.0} req/s to mlp (v1 80 %, v2 20 %) through Envoy{measured}"));
    std::thread::sleep(timing.warmup);
    let quiet: Vec<String> = env.prometheus.iter().flat_map(Prometheus::alerts).map(|a| a.name().to_owned()).collect();
    if !quiet.is_empty() {
        env.event(format!("before the fault, alerts already pending or firing: {}", quiet.join(", ")));
    }
    env.mark_onset();
    let what = (spec.inject)(&mut env)?;
    let onset = env.onset;
    env.event(format!("fault: {what}"));

    let (mut detected, mut mitigated) = (None, None);
    let deadline = Instant::now() + timing.deadline;
    let onset_unix = env.unix(onset);
    while Instant::now() < deadline {
        if detected.is_none()
            && let Some((at, name, receiver)) = first_page(&env.webhook, spec.expect, onset_unix)
        {
            let t = onset + (at - onset_unix);
            env.event(format!("detected: {name} at the pager ({receiver})"));
            detected = Some((t, name, receiver));
        }
        if mitigated.is_none()
            && let Some(how) = (spec.mitigated)(&mut env)
        {
            env.event(format!("mitigated: {how}"));
            mitigated = Some((env.now(), how));
        }
        if (detected.is_some() || spec.expect.is_empty())
            // A second past the tail: requests already in flight when the mitigation acted
            // (a surge's last ones) are not judged as the traffic after it.
            && mitigated.as_ref().is_some_and(|(t, _)| env.now() - t > timing.healthy_tail.as_secs_f64() + 1.0)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut records = load.finish();
    for s in std::mem::take(&mut env.surges) {
        records.extend(s.finish());
    }
    records.sort_by(|a, b| a.t.total_cmp(&b.t));
    env.ended.store(true, Ordering::Relaxed);
    env.event("traffic stopped");
    // The samples in the filter's queue go out within a tick or two.
    std::thread::sleep(Duration::from_secs(2));
    let text = env.stack.prometheus();
    let s = |result: &str| metric_sum(&text, "switchyard_samples_total", &[("result", result)]);
    let samples = [s("captured"), s("sent"), s("failed"), s("dropped")];
    // Lines a second writer appended broken (samples-corrupted) are no samples.
    let received = std::fs::read_to_string(&env.stack.samples)
        .unwrap_or_default()
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        .count() as f64;
    let alerts = env
        .prometheus
        .iter()
        .flat_map(Prometheus::alerts)
        .map(|a| {
            let labels: Vec<String> =
                a.labels.iter().filter(|(k, _)| *k != "alertname").map(|(k, v)| format!("{k}={v}")).collect();
            (a.name().to_owned(), labels.join(", "), a.state.clone())
        })
        .collect();
    let notifications = env
        .webhook
        .received()
        .into_iter()
        .filter(|(at, _, _)| *at >= onset_unix)
        .map(|(at, receiver, n)| (onset + at - onset_unix, receiver, describe(&n)))
        .collect();

    let after: Vec<&Rec> = records.iter().filter(|r| r.t >= onset).collect();
    let slo = spec.slo_latency_ms();
    let impact_end = after
        .iter()
        .filter(|r| r.bad(slo))
        .map(|r| r.t + r.latency_ms / 1e3)
        .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
    let end = records.last().map_or(onset, |r| r.t);
    let tail = timing.healthy_tail.as_secs_f64().min((end - onset) / 2.0);
    let recovered = after.iter().filter(|r| r.t > end - tail).all(|r| !r.bad(slo));
    let before: Vec<&Rec> = records.iter().filter(|r| r.t < onset && r.t > onset - 5.0).collect();
    let during: Vec<&Rec> = after.iter().copied().filter(|r| impact_end.is_none_or(|e| r.t <= e + 1.0)).collect();
    let outcome = Outcome {
        name: spec.name.to_owned(),
        title: spec.title.to_owned(),
        onset,
        expects_detection: !spec.expect.is_empty(),
        detected,
        mitigated,
        impact_end,
        recovered,
        failed_during: after.iter().filter(|r| r.failed()).count(),
        slow_during: after.iter().filter(|r| !r.failed() && r.bad(slo)).count(),
        slo_latency_ms: slo,
        sent: records.len(),
        unanswered: records.iter().filter(|r| r.status == 0).count(),
        samples,
        received,
        events: env.events.clone(),
        alerts,
        notifications,
        p99_before_ms: p99(&before),
        p99_during_ms: p99(&during),
        started_unix: env.started_unix,
        records,
    };
    let dir = out.join(spec.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(dir.join("timeline.svg"), report::chart(&outcome))?;
    std::fs::write(dir.join("postmortem.md"), report::postmortem(&outcome, spec))?;
    std::fs::write(dir.join("outcome.json"), serde_json::to_vec_pretty(&report::json(&outcome))?)?;
    println!("  -> {}", dir.join("postmortem.md").display());
    Ok(outcome)
}

/// The firing alerts of a notification.
fn names(notification: &serde_json::Value) -> Vec<String> {
    alerts_in(notification, "firing")
}

fn alerts_in(notification: &serde_json::Value, status: &str) -> Vec<String> {
    let mut n: Vec<String> = notification["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["status"] == status)
        .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_owned))
        .collect();
    n.sort();
    n.dedup();
    n
}

/// "firing: A, B; resolved: C".
fn describe(notification: &serde_json::Value) -> String {
    let part = |status: &str| {
        let n = alerts_in(notification, status);
        (!n.is_empty()).then(|| format!("{status}: {}", n.join(", ")))
    };
    [part("firing"), part("resolved")].into_iter().flatten().collect::<Vec<_>>().join("; ")
}

/// The first notification after `since` (Unix seconds) with a firing alert in `expect`.
fn first_page(webhook: &Webhook, expect: &[&str], since: f64) -> Option<(f64, String, String)> {
    webhook.received().into_iter().filter(|(at, _, _)| *at >= since).find_map(|(at, receiver, n)| {
        names(&n).into_iter().find(|a| expect.contains(&a.as_str())).map(|name| (at, name, receiver))
    })
}

/// Where drills write by default.
pub fn default_out() -> PathBuf {
    switchyard_testkit::root().join("target/drills")
}
