//! The demo's steps, in order, one function each. [`run`] holds what they start, so that
//! leaving it at the end, on an error, a panic or an interrupt drops, that is stops, all of it.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde::Deserialize;
use serde_json::Value;
use switchyard_contract::metrics as m;
use switchyard_contract::{paths, process as contract};
use switchyard_load::metrics::{parse, sum};
use switchyard_load::plot;
use switchyard_load::report::summary;
use switchyard_testkit::envoy::EnvoyOptions;
use switchyard_testkit::process::{Log, OnDrop, Process};
use switchyard_testkit::prom::{Alertmanager, Prometheus, Webhook};
use switchyard_testkit::stack::{Layout, Stack, policy_tool, python, render, start_monitor_at, target_dir, wasm_path};
use switchyard_testkit::{Rng, Server, demo_repo, root, try_request, workspace_bin};

use crate::cli::Cli;
use crate::load::{self, Traffic, closed, open};
use crate::readout::{elapsed, g6, get, get_json, get_text, print_lines, scrape, sum_by};
use crate::steps::{self, step};

const DEMO: &str = ".demo";
const ENVOY: &str = contract::envoy::LISTENER.default;
const ENVOY_ADMIN: &str = contract::envoy::ADMIN.default;
const COLLECTOR: &str = contract::collector::HTTP.default;
/// The collector's `/metrics` and `/health`: its samples listener takes Envoy's certificate only.
const COLLECTOR_ADMIN: &str = contract::collector::ADMIN.default;
const MONITOR: &str = contract::monitor::HTTP.default;
/// Backend v1 and v2, [REST, gRPC, admin]: two side by side, so not the contract's defaults.
const BACKENDS: [[&str; 3]; 2] =
    [["127.0.0.1:8101", "127.0.0.1:8111", "127.0.0.1:8201"], ["127.0.0.1:8102", "127.0.0.1:8112", "127.0.0.1:8202"]];
const MODELS: [&str; 2] = ["mlp:v1,resnet18:v1", "mlp:v2,resnet18:v2"];
const PROMETHEUS: &str = "127.0.0.1:9090";
const ALERTMANAGER: &str = "127.0.0.1:9093";
const WEBHOOK: &str = "127.0.0.1:9095";
const CONSOLE: &str = "127.0.0.1:9950";
/// What the demo listens on (scripts/demo.sh checks the same ports before it builds).
const PORTS: [(&str, &str); 15] = [
    ("backend v1", BACKENDS[0][0]),
    ("backend v1 gRPC", BACKENDS[0][1]),
    ("backend v1 admin", BACKENDS[0][2]),
    ("backend v2", BACKENDS[1][0]),
    ("backend v2 gRPC", BACKENDS[1][1]),
    ("backend v2 admin", BACKENDS[1][2]),
    ("collector", COLLECTOR),
    ("collector admin", COLLECTOR_ADMIN),
    ("drift monitor", MONITOR),
    ("rollout console", CONSOLE),
    ("Envoy", ENVOY),
    ("Envoy admin", ENVOY_ADMIN),
    ("Prometheus", PROMETHEUS),
    ("Alertmanager", ALERTMANAGER),
    ("alert webhook", WEBHOOK),
];
/// After SIGTERM, how long a server has to drain and exit (the backend's own grace).
const GRACE: Duration = Duration::from_secs(contract::backend::SHUTDOWN_GRACE_SECONDS);
/// What the backends and the collector get when the demo stops them.
const STOP: OnDrop = OnDrop::Terminate(GRACE);

/// Traffic phases in seconds. --quick keeps every step and shortens only these.
struct Phases {
    ramp: u64,
    resnet: u64,
    canary: u64,
    guard: u64,
    step: u64,
    drift: u64,
}

impl Phases {
    fn new(quick: bool) -> Phases {
        if quick {
            Phases { ramp: 2, resnet: 2, canary: 2, guard: 3, step: 1, drift: 8 }
        } else {
            Phases { ramp: 5, resnet: 4, canary: 4, guard: 5, step: 3, drift: 20 }
        }
    }
}

/// Prometheus with the demo's rules, Alertmanager, and the webhook receiver standing in for a
/// pager and a ticket queue.
struct Alerting {
    prometheus: Prometheus,
    _alertmanager: Alertmanager,
    webhook: Webhook,
}

pub fn run(cli: &Cli) -> anyhow::Result<()> {
    let started = Instant::now();
    std::env::set_current_dir(root()).context("cannot change to the checkout")?;
    let t = Phases::new(cli.quick);

    step(format!("checking the ports again (set-up and build took {})", elapsed(cli.build_seconds)))?;
    ports_free()?;
    fresh_dir()?;

    step(format!("starting backends, collector, drift monitor and Envoy (logs in {DEMO}/)"))?;
    let mut stack = start_stack()?;
    let monitor = start_monitor()?;

    step("starting Prometheus :9090 (SLO, canary and cost rules) and Alertmanager :9093 (pager :9095)")?;
    let alerting = start_alerting()?;
    println!(
        "    policy (envoy/policy.json): mlp v1 90% / v2 10%, sticky on x-user-id, 5% shadowed to v2; resnet18 all v1; 1% of payloads sampled"
    );
    let up = started.elapsed();

    step(format!(
        "real-time traffic through Envoy: mlp ramping 50 -> 800 req/s over {} s (open loop), 8 clients on resnet18 for {} s",
        t.ramp, t.resnet
    ))?;
    traffic(&t)?;
    step("sticky users: each user keeps their version")?;
    sticky()?;
    step(format!(
        "gRPC on the same listener, routed by the same policy: switchyard-load --grpc on resnet18 (4 clients, {} s), then NVIDIA's tritonclient[grpc]",
        t.resnet
    ))?;
    grpc(&t)?;
    step("canary to 50% at run time (ECDS; no restart, nothing dropped)")?;
    canary(&stack, &t)?;
    step(
        "a canary that crashes: backend v2 SIGKILLed under 300 req/s; the filter's guard takes mlp/v2 out on its own",
    )?;
    crash(&mut stack, &t)?;
    step(
        "the fixed canary back: backend v2 restarted, the guard reset, and switchyard-rollout promoting mlp:v2 step by step",
    )?;
    let controller = rollout(&mut stack, &t)?;
    step(format!(
        "input drift (load-tests/scenarios/drift.toml): every mlp request sampled; after {} s features 0-7 shift",
        t.drift
    ))?;
    drift(&stack, &t)?;
    step(format!(
        "offline batch: 2,000 rows through mlp:v1 at full batch size ({DEMO}/batch-in.jsonl -> {DEMO}/batch-out.jsonl)"
    ))?;
    batch()?;
    steps::sleep(Duration::from_secs(2))?; // one SLO merge and stats flush
    step("SLOs per version (filter, shared across Envoy workers): burn rate x1000 over the 5m window")?;
    slos()?;
    step("shadow answers compared (docs/shadow-compare.md): mlp:v2's answers against v1's, judged by the collector")?;
    shadow()?;
    steps::sleep(Duration::from_secs(6))?; // one more scrape and rule evaluation (every 5 s)
    step(format!(
        "Prometheus (http://{PROMETHEUS}): availability SLI error ratio over 5m, and cost per 1,000 inferences (USD, dashboards/prices.json)"
    ))?;
    prometheus_figures(&alerting.prometheus)?;
    step("the drift alert (Prometheus scrapes the monitor; the rules above, time constants cut to 20 s)")?;
    drift_alert(&alerting)?;
    step(format!("the rollout console (http://{CONSOLE}/), as Debian's chromium draws it: {DEMO}/console.png"))?;
    screenshot();
    steps::steps_done();
    where_to_look();

    if cli.stay {
        println!("==> the stack stays up; Ctrl-C stops it.");
        // Until Ctrl-C, or until backend v1 is gone.
        let v1_up = || try_request(&stack.v1.admin, "GET", paths::ADMIN_HEALTH_LIVE, &[], b"").is_ok();
        while steps::sleep(Duration::from_secs(1)).is_ok() && v1_up() {}
    }
    println!("==> stopping (SIGTERM: backends drain queued work, then exit)");
    drop(controller);
    drop(alerting);
    drop(monitor);
    drop(stack);
    println!("    stopped");
    let (total, up) = (cli.build_seconds + started.elapsed().as_secs(), cli.build_seconds + up.as_secs());
    println!(
        "==> demo done in {}: set-up {}, build {}, start-up {}, traffic and read-outs {}",
        elapsed(total),
        elapsed(cli.setup_seconds),
        elapsed(cli.build_seconds.saturating_sub(cli.setup_seconds)),
        elapsed(up - cli.build_seconds),
        elapsed(total - up)
    );
    Ok(())
}

fn ports_free() -> anyhow::Result<()> {
    let taken: Vec<String> = PORTS
        .iter()
        .filter(|(_, addr)| TcpListener::bind(addr).is_err())
        .map(|(what, addr)| {
            let port = addr.rsplit(':').next().unwrap_or(addr);
            format!("port {port} (for {what}) is already in use (`ss -ltnp 'sport = :{port}'` says by whom)")
        })
        .collect();
    ensure!(taken.is_empty(), "{}\nstop those processes, then run again", taken.join("\n"));
    Ok(())
}

fn fresh_dir() -> anyhow::Result<()> {
    match fs::remove_dir_all(DEMO) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e).context("cannot remove .demo"),
        _ => {}
    }
    fs::create_dir_all(DEMO).context("cannot create .demo")
}

fn read_json(path: impl AsRef<Path>) -> anyhow::Result<Value> {
    let path = path.as_ref();
    let text = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("{} is not JSON", path.display()))
}

fn indented(text: &str) {
    for line in text.lines() {
        println!("    {line}");
    }
}

/// Envoy's stats, the filter's metrics among them.
fn envoy_stats() -> anyhow::Result<Vec<switchyard_load::metrics::Sample>> {
    scrape(ENVOY_ADMIN, paths::ENVOY_STATS)
}

/// Successful requests the filter counted with these labels.
fn served(labels: &[(&str, &str)]) -> anyhow::Result<f64> {
    let mut want = vec![("outcome", "success")];
    want.extend_from_slice(labels);
    Ok(sum(&envoy_stats()?, m::REQUESTS_TOTAL.name, &want))
}

/// Waits for a backend's models and fails, with the end of its log, unless all are ready.
fn ready(server: &Server, what: &str) -> anyhow::Result<()> {
    server.wait_loaded();
    let r = try_request(&server.admin, "GET", paths::ADMIN_HEALTH_READY, &[], b"").map_err(anyhow::Error::msg)?;
    if r.status != 200 {
        let log = server.log();
        let tail: Vec<&str> = log.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
        bail!(
            "{what} is not ready ({}); the end of its log:\n    {}",
            String::from_utf8_lossy(&r.body),
            tail.join("\n    ")
        );
    }
    Ok(())
}

/// The backends (both models each), the collector and Envoy on the demo's ports, laid out as
/// envoy/run.sh and envoy/apply-policy.sh expect (`SWITCHYARD_STATE` = .demo/envoy).
fn start_stack() -> anyhow::Result<Stack> {
    let demo = Path::new(DEMO);
    let policy = read_json("envoy/policy.json")?;
    // `switchyard-policy clusters`: "MODEL VERSION CLUSTER" lines; each `*-v1` cluster on
    // backend v1 and each `*-v2` one on backend v2, as envoy/run.sh lays them out.
    let listed = policy_tool(&["clusters", "envoy/policy.json"]).map_err(anyhow::Error::msg)?;
    let mut clusters = Vec::new();
    for cluster in listed.lines().filter_map(|l| l.split_whitespace().nth(2)) {
        let backend = match cluster.rsplit('-').next() {
            Some("v1") => 0,
            Some("v2") => 1,
            _ => bail!("cluster {cluster} of envoy/policy.json: the demo has backends for *-v1 and *-v2 only"),
        };
        clusters.push((cluster.to_owned(), backend));
    }
    let layout = Layout {
        dir: demo.join("envoy"),
        samples: demo.join("samples.jsonl"),
        repo: demo_repo(),
        wasm: wasm_path(),
        models: MODELS.map(str::to_owned),
        backends: BACKENDS.map(|b| b.map(str::to_owned)),
        collector: COLLECTOR.into(),
        listen: ENVOY.into(),
        admin: ENVOY_ADMIN.into(),
        clusters,
        logs: Some(demo.to_owned()),
        // Its stderr, as it comes: the guard's line is read back within the demo.
        envoy: EnvoyOptions {
            output: Log::File(demo.join("envoy.log")),
            startup: Duration::from_secs(120),
            ..EnvoyOptions::default()
        },
        envoy_log: demo.join("envoy.log"),
        on_drop: STOP,
        bootstrap_args: Vec::new(),
        backend_args: Vec::new(),
        // Only Envoy reaches the backends: mutual TLS with the set `render certs` keeps in
        // .demo/certs (a curl straight to a backend is refused in the handshake).
        tls: Some(demo.join("certs")),
        collector_admin: COLLECTOR_ADMIN.to_owned(),
    };
    let stack = Stack::launch(&layout, &policy);
    ready(&stack.v1, "backend v1")?;
    ready(&stack.v2, "backend v2")?;
    Ok(stack)
}

/// `switchyard-monitor watch` on the demo's samples with monitor/configs/demo.json.
fn start_monitor() -> anyhow::Result<Process> {
    let demo = Path::new(DEMO);
    let (mut monitor, _) = start_monitor_at(
        &workspace_bin("switchyard-monitor"),
        &demo.join("samples.jsonl"),
        Path::new("monitor/configs/demo.json"),
        &demo.join("monitor-state"),
        MONITOR,
        Log::File(demo.join("monitor.log")),
    )?;
    monitor
        .wait_ready(Duration::from_secs(120), "an answer on /health", || get(MONITOR, paths::HEALTH, &[]).is_ok())?;
    Ok(monitor.on_drop(STOP))
}

fn start_alerting() -> anyhow::Result<Alerting> {
    let demo = Path::new(DEMO);
    let webhook_url = format!("http://{WEBHOOK}");
    let am_config = ".demo/alertmanager/alertmanager.yml";
    render(&["alertmanager", "--out", am_config, "--webhook", &webhook_url, "--group-wait", "5s"]);
    // The checked-in rules, the drift alerts' time constants cut to 20 s.
    let rules = demo.join("rules");
    fs::create_dir_all(&rules)?;
    for name in ["recording-rules.yml", "alerting-rules.yml"] {
        let from = Path::new("dashboards/prometheus").join(name);
        let text = fs::read_to_string(&from).with_context(|| format!("cannot read {}", from.display()))?;
        fs::write(rules.join(name), crate::readout::drift_rules_for_the_demo(&text))?;
    }
    render(&[
        "prometheus",
        "--out-dir",
        ".demo/prometheus",
        "--rules-dir",
        ".demo/rules",
        "--policy",
        "envoy/policy.json",
        "--envoy",
        ENVOY_ADMIN,
        "--backend",
        BACKENDS[0][2],
        "--backend",
        BACKENDS[1][2],
        "--monitor",
        MONITOR,
        "--alertmanager",
        ALERTMANAGER,
    ]);
    let webhook = Webhook::start_at(WEBHOOK, &demo.join("alerts.jsonl"));
    let alertmanager = Alertmanager::start_at(Path::new(am_config), demo, ALERTMANAGER);
    let prometheus = Prometheus::start_at(&demo.join("prometheus/prometheus.yml"), demo, PROMETHEUS);
    Ok(Alerting { prometheus, _alertmanager: alertmanager, webhook })
}

fn traffic(t: &Phases) -> anyhow::Result<()> {
    let report = load::run(&open("mlp", 50.0, 800.0, t.ramp).scenario(ENVOY), ENVOY, true)?;
    for p in plot::write(&Path::new(DEMO).join("load"), &report)? {
        eprintln!("wrote {}", p.display());
    }
    load::print_summary(&report, "");
    let resnet = Traffic { binary: true, ..closed("resnet18", 8, t.resnet) };
    load::print_summary(&load::run(&resnet.scenario(ENVOY), ENVOY, true)?, "");
    println!("    where the requests went, by the filter's own count:");
    let stats = envoy_stats()?;
    for model in ["mlp", "resnet18"] {
        print_lines(&stats, &m::REQUESTS_TOTAL, &[("model", model), ("outcome", "success")], false);
    }
    println!("    batch sizes the backends formed (mean rows per batch):");
    for admin in [BACKENDS[0][2], BACKENDS[1][2]] {
        let port = admin.rsplit(':').next().unwrap_or(admin);
        let samples = scrape(admin, paths::METRICS)?;
        let mut means = BTreeMap::new();
        for batches in crate::readout::of(&samples, &m::BATCH_SIZE.series("_count"), &[]) {
            let label = |k: &str| batches.labels.get(k).map_or("", String::as_str);
            let (model, version) = (label("model"), label("version"));
            let rows = sum(&samples, &m::BATCH_SIZE.series("_sum"), &[("model", model), ("version", version)]);
            if batches.value > 0.0 {
                means.insert((model, version), rows / batches.value);
            }
        }
        for ((model, version), mean) in means {
            println!("    backend :{port} {model} {version} mean {mean:.1} rows");
        }
    }
    Ok(())
}

fn sticky() -> anyhow::Result<()> {
    for user in ["alice", "bob", "carol", "dave"] {
        let mut seen = BTreeMap::<String, u32>::new();
        for _ in 0..5 {
            let r = get(ENVOY, "/v2/models/mlp", &[("x-user-id", user)])?;
            *seen.entry(r.header("x-switchyard-version").unwrap_or("(none)").to_owned()).or_default() += 1;
        }
        let versions: String = seen.iter().map(|(v, n)| format!(" {n} {v}")).collect();
        println!("    {user}:{versions}");
    }
    Ok(())
}

fn grpc(t: &Phases) -> anyhow::Result<()> {
    let resnet = [("model", "resnet18")];
    let before = served(&resnet)?;
    let calls = Traffic { grpc: true, ..closed("resnet18", 4, t.resnet) };
    let report = load::run(&calls.scenario(ENVOY), ENVOY, false)?;
    summary(&report)
        .lines()
        .filter(|l| l.starts_with("run") || l.starts_with("main"))
        .for_each(|l| println!("    {l}"));
    steps::sleep(Duration::from_secs(1))?; // the filter flushes its counters every second
    let accounted = served(&resnet)? - before;
    println!("    the filter accounted {accounted} successful gRPC calls to resnet18 ({})", m::REQUESTS_TOTAL.name);
    // NVIDIA's client, unmodified: the one step that has to be Python.
    let out = Command::new(python())
        .arg("demo/triton_client.py")
        .arg(ENVOY)
        .output()
        .context("cannot run demo/triton_client.py with the venv's python")?;
    ensure!(
        out.status.success(),
        "demo/triton_client.py {ENVOY} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    indented(&String::from_utf8_lossy(&out.stdout));
    Ok(())
}

/// Puts a policy file in force as envoy/apply-policy.sh does: checked against the running
/// bootstrap, then handed to Envoy through the filter's ECDS file.
fn apply(stack: &Stack, file: &str) -> anyhow::Result<()> {
    indented(&policy_tool(&["check", file]).map_err(anyhow::Error::msg)?);
    match stack.apply_policy(&read_json(file)?) {
        Ok(true) => println!("    applied: Envoy runs the new policy"),
        Ok(false) => bail!("REFUSED: Envoy keeps the previous policy; {DEMO}/envoy.log says why"),
        Err(e) => bail!("{file} refused: {e}"),
    }
    Ok(())
}

fn canary(stack: &Stack, t: &Phases) -> anyhow::Result<()> {
    let weights = ["weights", "envoy/policy.json", "--model", "mlp", "v1=50", "v2=50", "--out", ".demo/policy-50.json"];
    policy_tool(&weights).map_err(anyhow::Error::msg)?;
    apply(stack, ".demo/policy-50.json")?;
    let v2 = [("model", "mlp"), ("version", "v2")];
    let before = served(&v2)?;
    load::print_summary(&load::run(&open("mlp", 500.0, 500.0, t.canary).scenario(ENVOY), ENVOY, false)?, "");
    let after = served(&v2)?;
    println!("    v2 served {} of those {} requests", after - before, 500 * t.canary);
    Ok(())
}

fn crash(stack: &mut Stack, t: &Phases) -> anyhow::Result<()> {
    let traffic = load::spawn(open("mlp", 300.0, 300.0, t.guard).scenario(ENVOY), ENVOY);
    steps::sleep(Duration::from_secs(1))?;
    stack.v2.sigkill();
    stack.v2.wait_exit(Duration::from_secs(10));
    let report = load::join(traffic)?;
    load::print_summary(&report, "");
    fs::write(Path::new(DEMO).join("guard.json"), serde_json::to_vec_pretty(&report)?)?;
    let total = &report.total;
    let last = total.last_error_ms.map_or_else(
        || " none".to_owned(),
        |ms| format!(" the last error ended {:.0} ms after the crash", ms - 1000.0),
    );
    let share = 100.0 * total.errors as f64 / total.sent.max(1) as f64;
    println!("    {} of {} requests failed ({share:.2}%);{last}", total.errors, total.sent);
    let log = fs::read_to_string(Path::new(DEMO).join("envoy.log")).unwrap_or_default();
    if let Some(l) = log.lines().find(|l| l.contains("guard took")) {
        println!("    Envoy log: {}", l.rsplit_once("switchyard: switchyard: ").map_or(l, |(_, said)| said));
    }
    print_lines(&envoy_stats()?, &m::GUARD_OUT, &[("model", "mlp")], false);
    Ok(())
}

/// `switchyard-rollout --state-dir .demo/rollout ARGS`: what it printed; Err with its error
/// output when it fails.
fn rollout_cli(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(workspace_bin("switchyard-rollout"))
        .args(["--state-dir", ".demo/rollout"])
        .args(args)
        .output()
        .context("cannot run switchyard-rollout")?;
    ensure!(
        out.status.success(),
        "switchyard-rollout {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Backend v2 back, the rollout recorded, and its controller carrying it out under traffic;
/// the controller keeps serving the console for the rest of the demo.
fn rollout(stack: &mut Stack, t: &Phases) -> anyhow::Result<Process> {
    let demo = Path::new(DEMO);
    let log = Log::File(demo.join("backend-v2b.log"));
    let mut args = vec!["--models", MODELS[1]];
    args.extend(stack.backend_tls_args().iter().map(String::as_str));
    stack.v2 = Server::start_logged(&stack.repo, BACKENDS[1], &args, log).on_drop(STOP);
    ready(&stack.v2, "backend v2 (restarted)")?;
    fs::copy(demo.join("policy-50.json"), demo.join("policy-rollout.json"))?;
    let s = t.step;
    let spec = format!(
        "model: mlp\ncanary: v2\nsteps:\n  - {{weight: 70, min_duration: {s}s, min_requests: 50}}\n  - {{weight: 90, min_duration: {s}s, min_requests: 50}}\n"
    );
    fs::write(demo.join("rollout.yaml"), spec)?;
    let target = [
        "--policy",
        ".demo/policy-rollout.json",
        "--bootstrap",
        ".demo/envoy/envoy.yaml",
        "--envoy-admin",
        ENVOY_ADMIN,
    ];
    indented(&rollout_cli(&[&["start", ".demo/rollout.yaml"][..], &target[..]].concat())?);
    indented(&rollout_cli(&["reset-guard"])?);
    let traffic = load::spawn(open("mlp", 300.0, 300.0, 3 * s + 4).scenario(ENVOY), ENVOY);
    let mut cmd = Command::new(workspace_bin("switchyard-rollout"));
    cmd.args(["--state-dir", ".demo/rollout", "run", "--interval", "500ms", "--keep-running", "--admin-addr", CONSOLE])
        .arg("--console-dir")
        .arg(target_dir().join("console"))
        .args(target)
        .args(["--collector", COLLECTOR_ADMIN, "--monitor", MONITOR, "--samples", ".demo/samples.jsonl"]);
    let log = demo.join("rollout-controller.log");
    let mut controller = Process::spawn("the rollout controller", cmd, Log::File(log.clone()))?.on_drop(STOP);
    controller
        .wait_ready(Duration::from_secs(120), "the rollout console", || get(CONSOLE, "/api/state", &[]).is_ok())?;
    let deadline = Instant::now() + Duration::from_secs(3 * s + 30);
    while Instant::now() < deadline {
        let status = rollout_cli(&["status", "--json"]).ok().and_then(|j| serde_json::from_str::<Value>(&j).ok());
        if !status.is_some_and(|v| matches!(v["state"].as_str(), Some("running" | "paused" | "holding"))) {
            break;
        }
        if let Some(how) = controller.exited() {
            bail!("the rollout controller exited ({how}); see {}", log.display());
        }
        steps::sleep(Duration::from_millis(50))?;
    }
    load::join(traffic)?;
    // Its own lines, not its address and error lines (`switchyard-rollout: …`).
    let said = fs::read_to_string(&log).with_context(|| format!("cannot read {}", log.display()))?;
    said.lines().filter(|l| !l.starts_with("switchyard-rollout: ")).for_each(|l| println!("    {l}"));
    indented(&rollout_cli(&["status"])?);
    println!("    the console: http://{CONSOLE}/ (writes need the token in {DEMO}/rollout/admin-token)");
    let events = fs::read_to_string(demo.join("rollout/events.jsonl")).context("no rollout events")?.lines().count();
    println!("    events: {DEMO}/rollout/events.jsonl ({events} lines)");
    Ok(controller)
}

/// A window's last evaluation, as the monitor's `/v1/drift` shows it.
#[derive(Deserialize)]
struct Window {
    rows: u64,
    rows_ingested: u64,
    columns: Vec<Column>,
    dataset: Dataset,
}

#[derive(Deserialize)]
struct Column {
    column: String,
    /// Absent on a column that could not be tested.
    test: Option<String>,
    score: Option<f64>,
    threshold: Option<f64>,
    #[serde(default)]
    drifted: bool,
}

#[derive(Deserialize)]
struct Dataset {
    drifted: bool,
}

fn drift(stack: &Stack, t: &Phases) -> anyhow::Result<()> {
    println!(
        "    the drift monitor (monitor/configs/demo.json) compares mlp:v2's last 2,000 rows with its first 3,000"
    );
    let mut policy = read_json(".demo/policy-rollout.json")?;
    policy["models"]["mlp"]["sampling"]["rate"] = serde_json::json!(1.0);
    fs::write(".demo/policy-drift.json", serde_json::to_string_pretty(&policy)?)?;
    apply(stack, ".demo/policy-drift.json")?;
    let scenario = fs::read_to_string("load-tests/scenarios/drift.toml").context("cannot read the drift scenario")?;
    let shortened: String = scenario
        .lines()
        .map(|l| match l.strip_prefix("duration = \"20s\"") {
            Some(rest) => format!("duration = \"{}s\"{rest}\n", t.drift),
            None => format!("{l}\n"),
        })
        .collect();
    let file = Path::new(DEMO).join("drift.toml");
    fs::write(&file, shortened)?;
    load::print_summary(&load::run(&load::scenario_file(&file)?, ENVOY, false)?, "    ");

    // The collector ships within ~100 ms and the monitor evaluates every 2 s: wait for a window
    // evaluation that covers every row ingested.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut window = None;
    while Instant::now() < deadline {
        let drift = get_json(MONITOR, "/v1/drift")?;
        window =
            drift.pointer("/mlp/versions/v2/2k").map(|w| serde_json::from_value::<Window>(w.clone())).transpose()?;
        let v2 = [("model", "mlp"), ("version", "v2")];
        let ingested = sum(&scrape(MONITOR, paths::METRICS)?, m::DRIFT_ROWS_INGESTED_TOTAL.name, &v2);
        if window.as_ref().is_some_and(|w| w.rows_ingested as f64 == ingested && w.rows == 2000) {
            break;
        }
        steps::sleep(Duration::from_millis(500))?;
    }
    let w = window.with_context(|| format!("the drift monitor has evaluated nothing: see {DEMO}/monitor.log"))?;
    let drifted: Vec<&Column> = w.columns.iter().filter(|c| c.drifted).collect();
    println!(
        "    window 2k of mlp:v2: {} of {} columns drifted (dataset drift: {}):",
        drifted.len(),
        w.columns.len(),
        w.dataset.drifted
    );
    for c in &drifted {
        let (test, score, threshold) = (c.test.as_deref().unwrap_or("-"), c.score.unwrap_or(f64::NAN), c.threshold);
        println!("      {:<20} {test:<13} score {score:.4} >= threshold {}", c.column, threshold.unwrap_or(f64::NAN));
    }
    let quiet: Vec<(&str, f64)> = w
        .columns
        .iter()
        .filter(|c| !c.drifted && c.column.starts_with("features["))
        .filter_map(|c| Some((c.column.as_str(), c.score?)))
        .collect();
    if let Some((column, score)) = quiet.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
        println!("    the {} unshifted features stay below it (highest: {column} {score:.4})", quiet.len());
    }
    Ok(())
}

fn batch() -> anyhow::Result<()> {
    let demo = Path::new(DEMO);
    let mut rng = Rng(42);
    let mut rows = String::new();
    for _ in 0..2000 {
        let row: Vec<f64> = (0..64).map(|_| (rng.normal() * 1e4).round() / 1e4).collect();
        rows.push_str(&serde_json::to_string(&row)?);
        rows.push('\n');
    }
    fs::write(demo.join("batch-in.jsonl"), rows)?;
    let mut cmd = Command::new(workspace_bin("switchyard-backend"));
    cmd.args(["batch", "--model-repository"]).arg(demo_repo()).args(["--model", "mlp", "--version", "v1"]);
    cmd.args(["--input", ".demo/batch-in.jsonl", "--output", ".demo/batch-out.jsonl", "--restart"]);
    let status = Process::spawn("switchyard-backend batch", cmd, Log::Inherit)?.wait_exit(Duration::from_secs(600))?;
    ensure!(status.success(), "switchyard-backend batch failed ({status})");
    let out = fs::read_to_string(demo.join("batch-out.jsonl")).context("no batch output")?;
    let first: String = out.lines().next().unwrap_or_default().chars().take(160).collect();
    println!("    first result: {first}");
    Ok(())
}

fn slos() -> anyhow::Result<()> {
    print_lines(&envoy_stats()?, &m::SLO_BURN_RATE_X1000, &[("window", "5m")], true);
    let samples = fs::read_to_string(Path::new(DEMO).join("samples.jsonl")).unwrap_or_default().lines().count();
    println!("==> payload samples shipped to the collector: {samples} in {DEMO}/samples.jsonl");
    Ok(())
}

fn shadow() -> anyhow::Result<()> {
    let text = get_text(COLLECTOR_ADMIN, paths::METRICS)?;
    fs::write(Path::new(DEMO).join("collector-metrics.txt"), &text)?;
    let samples = parse(&text);
    let rows = sum_by(&samples, &m::SHADOW_COMPARED_ROWS_TOTAL, "pair");
    let bad = sum_by(&samples, &m::SHADOW_DISAGREEING_ROWS_TOTAL, "pair");
    let count = |of: &BTreeMap<String, f64>, pair: &str| of.get(pair).copied().unwrap_or(0.0);
    let share = |pair: &str| {
        let n = count(&rows, pair);
        if n > 0.0 { count(&bad, pair) / n } else { 0.0 }
    };
    if count(&rows, "shadow") == 0.0 {
        println!("    no comparison yet (5% of the requests v1 serves are shadowed, half of those compared)");
    } else {
        println!(
            "    v2 disagrees with v1 on {:.1}% of {:.0} compared rows; v1 with itself (the noise) on {:.1}% of {:.0}",
            100.0 * share("shadow"),
            count(&rows, "shadow"),
            100.0 * share("noise"),
            count(&rows, "noise")
        );
        println!("    (v2 is a wider network from another seed: its answers really differ; a rollout's shadow step");
        println!("    with max_disagreement would hold it back)");
    }
    Ok(())
}

fn prometheus_figures(prometheus: &Prometheus) -> anyhow::Result<()> {
    // `>= 0` leaves out NaN (no traffic in the window).
    for expr in [
        "slo:sli_error:ratio_rate5m{sli=\"availability\"} >= 0",
        "model_version:switchyard_cost_per_1k_inferences_dollars:rate5m",
    ] {
        for s in prometheus.query(expr).map_err(anyhow::Error::msg)? {
            let labels: Vec<String> =
                s.labels.iter().filter(|(k, _)| *k != "__name__").map(|(k, v)| format!("{k}={v}")).collect();
            println!("    {} = {}", labels.join(" "), g6(s.value));
        }
    }
    Ok(())
}

fn drift_alert(alerting: &Alerting) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let firing = || {
        let drift = |name: &str| matches!(name, "SwitchyardColumnDrift" | "SwitchyardDatasetDrift");
        alerting.prometheus.alerts().into_iter().filter(|a| a.state == "firing" && drift(a.name())).collect::<Vec<_>>()
    };
    let delivered = || {
        let notified = alerting.webhook.notifications().into_iter().map(|(_, n)| n);
        let alerts = notified.flat_map(|n| n["alerts"].as_array().cloned().unwrap_or_default());
        alerts
            .filter(|a| {
                a["labels"]["alertname"].as_str().is_some_and(|n| n.ends_with("Drift")) && a["status"] == "firing"
            })
            .count()
    };
    while t0.elapsed() < Duration::from_secs(90) && (firing().is_empty() || delivered() == 0) {
        steps::sleep(Duration::from_secs(1))?;
    }
    if !firing().is_empty() {
        // Columns cross into drift one after another: two more rule evaluations let the count settle.
        steps::sleep(Duration::from_secs(12))?;
    }
    let alerts = firing();
    ensure!(
        !alerts.is_empty(),
        "no drift alert fired within 90 s: see http://{PROMETHEUS}/alerts and {DEMO}/monitor.log"
    );
    for a in &alerts {
        let what = if a.name() == "SwitchyardColumnDrift" {
            format!("{:.0} column(s) drifted at every evaluation of the last 20 s", a.value)
        } else {
            format!("{:.0}% of the columns drifted", 100.0 * a.value)
        };
        let (model, version, window) = (a.label("model"), a.label("version"), a.label("window"));
        println!("    {} firing: {model}/{version} window {window}: {what}", a.name());
    }
    match delivered() {
        0 => println!("    (not yet delivered by Alertmanager)"),
        sent => println!("    Alertmanager delivered {sent} to the webhook ({DEMO}/alerts.jsonl, receiver 'ticket')"),
    }
    println!(
        "    {:.0} s after the drift read-out; runbook: docs/runbooks/{}.md",
        t0.elapsed().as_secs_f64(),
        alerts[0].name()
    );
    Ok(())
}

/// The console as Debian's chromium draws it; a failure is reported, not fatal.
fn screenshot() {
    let png = Path::new(DEMO).join("console.png");
    let mut cmd = Command::new("chromium");
    cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1500,2000"])
        .arg("--virtual-time-budget=5000")
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("http://{CONSOLE}/"));
    let drawn = Process::spawn("chromium", cmd, Log::File(Path::new(DEMO).join("chromium.log")))
        .and_then(|mut p| p.wait_exit(Duration::from_secs(120)))
        .is_ok_and(|s| s.success());
    if !drawn {
        println!("    (no screenshot: chromium failed, see {DEMO}/chromium.log)");
    }
    if let Ok(meta) = fs::metadata(&png)
        && meta.len() > 0
    {
        println!("    {} ({} KiB)", png.display(), meta.len() / 1024);
    }
}

fn where_to_look() {
    let exe = std::env::current_exe().unwrap_or_default();
    let load_bin = exe.with_file_name("switchyard-load");
    let load_bin = load_bin.strip_prefix(root()).unwrap_or(&load_bin).display();
    let (v1_admin, v2_admin) = (BACKENDS[0][2], BACKENDS[1][2]);
    println!("==> where to look");
    println!(
        "    inference (through Envoy):  http://{ENVOY}/v2/models/mlp/infer   gRPC: {ENVOY} (inference.GRPCInferenceService)"
    );
    println!(
        "    Envoy + filter metrics:     http://{ENVOY_ADMIN}{}   (switchyard_* documented in docs/metrics.md)",
        paths::ENVOY_STATS
    );
    println!("    backend metrics:            http://{v1_admin}/metrics  http://{v2_admin}/metrics");
    println!(
        "    rollout console:            http://{CONSOLE}/   (writes need the token in {DEMO}/rollout/admin-token; {DEMO}/console.png)"
    );
    println!("    change weights/sampling:    envoy/apply-policy.sh <policy.json>");
    println!("    Prometheus (SLOs, cost, alerts): http://{PROMETHEUS}   e.g. slo:current_burn_rate:ratio");
    println!("    Alertmanager:               http://{ALERTMANAGER}   (notifications in {DEMO}/alerts.jsonl)");
    println!(
        "    Grafana dashboards:         dashboards/grafana/*.json (import; choose this Prometheus as data source)"
    );
    println!("    load scenarios:             {load_bin} run load-tests/scenarios/<name>.toml");
}
