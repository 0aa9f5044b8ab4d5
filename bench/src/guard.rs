//! `guard`: what the data-plane guard does for clients when a canary fails, and that it leaves
//! healthy ones alone. Real Envoy with the built filter, real backends, open-loop load:
//! - the fault: the canary (10%) is SIGKILLed mid-run; time from the crash to the last error a
//!   client saw, and the failed requests, with the guard on and with no protection at all, in
//!   alternating rounds;
//! - noise: many models at once, each a healthy canary at 10% with the same injected baseline
//!   error ratio (1-5%) on both versions (Envoy's fault filter): every model is one trial, and a
//!   trip is a false rollback.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;

use switchyard_load::metadata::model_inputs;
use switchyard_load::payload::build_body;
use switchyard_load::report::Report;
use switchyard_load::run;
use switchyard_testkit::envoy::{Envoy, EnvoyOptions, envoy_bin};
use switchyard_testkit::free_port;

use crate::common::{Backend, Common, derive_model_as, machine, median, stdout_of, write_section};

const FILTER_WASM: &str = "target/wasm32-wasip1/wasm-release/switchyard_filter.wasm";

#[derive(clap::Args)]
pub struct GuardArgs {
    #[command(flatten)]
    common: Common,
    /// Open-loop rate of the fault runs (requests/s; the canary gets 10%).
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// Length of each fault run: the window the failed requests are counted in.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// When the canary is killed, seconds into the run.
    #[arg(long, default_value_t = 8.0)]
    fault_at: f64,
    /// Rounds of (guard on, no protection).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Models in the noise run, each one trial.
    #[arg(long, default_value_t = 30)]
    noise_models: usize,
    #[arg(long, default_value_t = 30.0)]
    noise_seconds: f64,
    /// Requests/s per model in the noise run (the canary's 10% must reach the guard's
    /// `min_requests` in its window to be judged at all).
    #[arg(long, default_value_t = 40.0)]
    noise_rate: f64,
    #[arg(long, default_value = "scripts/bench.sh guard")]
    reproduce: String,
}

fn s(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("non-UTF-8 path")
}

/// The policy of one model `m` with a 90/10 canary, guarded or not.
fn model_policy(m: &str, guard: bool) -> serde_json::Value {
    let mut p = json!({
        "versions": [{"name": "v1", "cluster": format!("{m}-v1"), "weight": 90}, {"name": "v2", "cluster": format!("{m}-v2"), "weight": 10}],
        "slo": {"availability": 0.999, "latency_ms": 250}
    });
    if guard {
        p["guard"] = json!({"stable": "v1"});
    }
    p
}

/// Envoy with the filter for `policy`, its clusters at `upstreams`, the log in `dir/envoy.log`.
fn start_envoy(
    dir: &Path,
    policy: &serde_json::Value,
    upstreams: &[(String, String)],
    faults: &[String],
) -> anyhow::Result<Envoy> {
    std::fs::create_dir_all(dir)?;
    let file = dir.join("policy.json");
    std::fs::write(&file, serde_json::to_vec_pretty(policy)?)?;
    let (listen, admin) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let mut cmd = Command::new("target/release/switchyard-policy");
    cmd.args(["render", "envoy", "--policy", s(&file)?, "--wasm", FILTER_WASM, "--out-dir", s(dir)?]);
    cmd.args(["--listen", &listen, "--admin", &admin]);
    for (cluster, addr) in upstreams {
        cmd.arg("--upstream").arg(format!("{cluster}={addr}"));
    }
    for f in faults {
        cmd.args(["--fault", f]);
    }
    stdout_of(&mut cmd, "switchyard-policy render envoy")?;
    let options = EnvoyOptions { log_path: Some(dir.join("envoy.log")), ..EnvoyOptions::default() };
    Envoy::start(Command::new(envoy_bin()), &dir.join("envoy.yaml"), &listen, &admin, &options)
        .with_context(|| format!("Envoy (configuration and log in {})", dir.display()))
}

/// What protects the clients when the canary fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protection {
    /// The filter's data-plane guard.
    Guard,
    /// `switchyard-rollout run` (1 s interval), the guard off.
    Controller,
    /// A Flagger-equivalent analysis: every 10 s the canary's success rate over the interval,
    /// a failed check below 99% (or with no data), rollback after 2 failed checks.
    Flagger,
    /// Nothing and nobody.
    None,
}

impl Protection {
    fn name(self) -> &'static str {
        match self {
            Protection::Guard => "data-plane guard",
            Protection::Controller => "switchyard-rollout alone (guard off)",
            Protection::Flagger => "Flagger-equivalent (interval 10 s, threshold 2)",
            Protection::None => "none",
        }
    }
}

struct FaultRun {
    protection: Protection,
    report: Report,
    /// From the crash to the last failed request's end; None when nothing failed.
    last_error_after_ms: Option<f64>,
    /// Failed requests sent in the 20 s around the crash (8 s before, 12 s after).
    window_failed: u64,
    window_sent: u64,
    what_acted: Option<String>,
}

/// Flagger's analysis, computed the way Flagger does (`interval`, `threshold`, the
/// request-success-rate check at 99%, "no values" a failed check), acting through the same
/// policy update as everything else.
async fn flagger(
    envoy_admin: String,
    bootstrap: PathBuf,
    policy: PathBuf,
    seconds: f64,
) -> anyhow::Result<Option<String>> {
    let interval = Duration::from_secs(10);
    let mut last = (0.0, 0.0);
    let mut failed = 0;
    let started = std::time::Instant::now();
    while started.elapsed().as_secs_f64() + 10.0 <= seconds {
        tokio::time::sleep(interval).await;
        let (_, body) = switchyard_load::http::get(&envoy_admin, "/stats/prometheus").await?;
        let s = switchyard_load::metrics::parse(&String::from_utf8_lossy(&body));
        let at = [("model", "mlp"), ("version", "v2")];
        let total = switchyard_load::metrics::sum(&s, switchyard_contract::metrics::REQUESTS_TOTAL.name, &at);
        let ok = switchyard_load::metrics::sum(
            &s,
            switchyard_contract::metrics::REQUESTS_TOTAL.name,
            &[at[0], at[1], ("outcome", "success")],
        );
        let (dt, dok) = (total - last.0, ok - last.1);
        last = (total, ok);
        let rate = if dt > 0.0 { dok / dt } else { f64::NAN };
        if rate.is_nan() || rate < 0.99 {
            failed += 1;
        }
        if failed >= 2 {
            let next = policy.with_file_name("policy-rollback.json");
            stdout_of(
                Command::new("target/release/switchyard-policy").args([
                    "weights",
                    s_(&policy)?,
                    "--model",
                    "mlp",
                    "v1=100",
                    "v2=0",
                    "--out",
                    s_(&next)?,
                ]),
                "switchyard-policy weights",
            )?;
            stdout_of(
                Command::new("target/release/switchyard-policy").args([
                    "render",
                    "filter",
                    "--policy",
                    s_(&next)?,
                    "--wasm",
                    FILTER_WASM,
                    "--bootstrap",
                    s_(&bootstrap)?,
                ]),
                "switchyard-policy render filter",
            )?;
            return Ok(Some(format!(
                "rolled back at {:.1} s after 2 failed checks (last success rate {:.1}%)",
                started.elapsed().as_secs_f64(),
                rate * 100.0
            )));
        }
    }
    Ok(None)
}

fn s_(p: &Path) -> anyhow::Result<&str> {
    s(p)
}

async fn fault_run(
    a: &GuardArgs,
    work: &Path,
    repo: &Path,
    protection: Protection,
    round: usize,
) -> anyhow::Result<FaultRun> {
    let bin = a.common.backend()?;
    let stable = Backend::start(&bin, repo)?;
    let canary = Backend::start(&bin, repo)?;
    let dir = work.join(format!("fault-{round}-{protection:?}"));
    let policy = json!({"models": {"mlp": model_policy("mlp", protection == Protection::Guard)}});
    let upstreams = [("mlp-v1".to_owned(), stable.http.clone()), ("mlp-v2".to_owned(), canary.http.clone())];
    let envoy = start_envoy(&dir, &policy, &upstreams, &[])?;
    let bootstrap = dir.join("envoy.yaml");
    let policy_file = dir.join("policy.json");
    // Flagger's checks are 10 s apart: its run is longer, so its rollback falls inside it.
    let seconds = if protection == Protection::Flagger { a.fault_at + 30.0 } else { a.seconds };
    let mut controller = None;
    if protection == Protection::Controller {
        let spec = dir.join("spec.yaml");
        std::fs::write(
            &spec,
            "model: mlp\ncanary: v2\nsteps:\n  - {weight: 10, min_duration: 10m, min_requests: 100}\n",
        )?;
        let state = dir.join("rollout");
        stdout_of(
            Command::new("target/release/switchyard-rollout").arg("--state-dir").arg(&state).args([
                "start",
                s(&spec)?,
                "--policy",
                s(&policy_file)?,
                "--bootstrap",
                s(&bootstrap)?,
                "--wasm",
                FILTER_WASM,
                "--envoy-admin",
                &envoy.admin,
            ]),
            "switchyard-rollout start",
        )?;
        let mut cmd = Command::new("target/release/switchyard-rollout");
        cmd.arg("--state-dir").arg(&state).args(["run", "--interval", "1s"]);
        let log = dir.join("rollout.log");
        controller = Some(
            switchyard_testkit::process::Process::spawn(
                "switchyard-rollout",
                cmd,
                switchyard_testkit::process::Log::File(log),
            )?
            .on_drop(switchyard_testkit::process::OnDrop::Kill),
        );
    }
    let inputs = model_inputs(&stable.http, "mlp", None).await?;
    let body = build_body(&inputs, 1, false, 5, None, None)?;
    let (listen, rate, secs) = (envoy.listen.clone(), a.rate, Duration::from_secs_f64(seconds));
    let load = tokio::spawn(async move { run::open(&listen, "/v2/models/mlp/infer", Some(body), rate, secs).await });
    let analysis = (protection == Protection::Flagger)
        .then(|| tokio::spawn(flagger(envoy.admin.clone(), bootstrap.clone(), policy_file.clone(), seconds)));
    tokio::time::sleep(Duration::from_secs_f64(a.fault_at)).await;
    canary.kill()?;
    let report = load.await.context("the load task failed")??;
    let last_error_after_ms = report.total.last_error_ms.map(|t| t - a.fault_at * 1e3);
    let what_acted = match protection {
        Protection::Guard => {
            let log = std::fs::read_to_string(dir.join("envoy.log")).unwrap_or_default();
            log.lines().find_map(|l| l.split_once("guard took ").map(|(_, rest)| rest.to_owned()))
        }
        Protection::Controller => {
            drop(controller);
            let events = std::fs::read_to_string(dir.join("rollout/events.jsonl")).unwrap_or_default();
            events
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|e| e["decision"] == "abort")
                .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
        }
        Protection::Flagger => match analysis {
            Some(h) => h.await.context("the analysis task failed")??,
            None => None,
        },
        Protection::None => None,
    };
    let from = (a.fault_at - 8.0).max(0.0) as usize;
    let window: Vec<_> = report.timeline.iter().filter(|t| t.t >= from && t.t < from + 20).collect();
    let (window_sent, window_failed) = (window.iter().map(|t| t.sent).sum(), window.iter().map(|t| t.errors).sum());
    drop(envoy);
    Ok(FaultRun { protection, report, last_error_after_ms, window_failed, window_sent, what_acted })
}

struct Noise {
    models: usize,
    trips: Vec<String>,
    /// Per model: (baseline %, requests, failed) over the run.
    per_model: Vec<(f64, u64, u64)>,
    judged: usize,
}

async fn noise_run(a: &GuardArgs, work: &Path) -> anyhow::Result<Noise> {
    let repo = work.join("noise-repo");
    let names: Vec<String> = (0..a.noise_models).map(|i| format!("m{i}")).collect();
    for n in &names {
        derive_model_as(&a.common.model_repository, &repo, "mlp", n, |_| {})?;
    }
    let backend = Backend::start(&a.common.backend()?, &repo)?;
    let mut models = serde_json::Map::new();
    let (mut upstreams, mut faults, mut baselines) = (Vec::new(), Vec::new(), Vec::new());
    for (i, n) in names.iter().enumerate() {
        models.insert(n.clone(), model_policy(n, true));
        // 1% to 5% across the models, the same on both versions.
        let baseline = 1.0 + 4.0 * i as f64 / (a.noise_models.max(2) - 1) as f64;
        baselines.push(baseline);
        for v in ["v1", "v2"] {
            upstreams.push((format!("{n}-{v}"), backend.http.clone()));
            faults.push(format!("{n}-{v}={baseline:.2}"));
        }
    }
    let dir = work.join("noise");
    let envoy = start_envoy(&dir, &json!({"models": models}), &upstreams, &faults)?;
    eprintln!(
        "bench: noise: {} healthy canaries at 10%, baselines 1-5% on both versions, {} req/s each, {}s",
        a.noise_models, a.noise_rate, a.noise_seconds
    );
    let mut loads = tokio::task::JoinSet::new();
    for (i, n) in names.iter().enumerate() {
        let (listen, path, rate) = (envoy.listen.clone(), format!("/v2/models/{n}"), a.noise_rate);
        let secs = Duration::from_secs_f64(a.noise_seconds);
        loads.spawn(async move { (i, run::open(&listen, &path, None, rate, secs).await) });
    }
    let mut per_model = vec![(0.0, 0, 0); names.len()];
    while let Some(done) = loads.join_next().await {
        let (i, report) = done.context("a load task failed")?;
        let t = report?.total;
        if let (Some(slot), Some(b)) = (per_model.get_mut(i), baselines.get(i)) {
            *slot = (*b, t.sent, t.errors);
        }
    }
    let p = envoy.prometheus();
    // A canary judged at all: it had the guard's minimum of requests in some window (its
    // decisions counter tells how many it served; the window is 6 s of the run).
    let judged = names
        .iter()
        .filter(|n| {
            let served = switchyard_testkit::metric_sum(
                &p,
                switchyard_contract::metrics::REQUESTS_TOTAL.name,
                &[("model", n), ("version", "v2")],
            );
            served / a.noise_seconds * 6.0 >= 20.0
        })
        .count();
    let log = std::fs::read_to_string(dir.join("envoy.log")).unwrap_or_default();
    let trips = log.lines().filter_map(|l| l.split_once("guard took ").map(|(_, r)| r.to_owned())).collect();
    Ok(Noise { models: names.len(), trips, per_model, judged })
}

pub async fn run(a: GuardArgs) -> anyhow::Result<()> {
    anyhow::ensure!(Path::new(FILTER_WASM).exists(), "{FILTER_WASM} not found: scripts/bench.sh guard builds it");
    let work = std::env::temp_dir().join(format!("switchyard-bench-guard-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let repo: PathBuf = work.join("repo");
    derive_model_as(&a.common.model_repository, &repo, "mlp", "mlp", |_| {})?;
    let mut runs = Vec::new();
    for round in 0..a.rounds {
        for protection in [Protection::Guard, Protection::Controller, Protection::None] {
            eprintln!(
                "bench: fault round {}/{}, {}: {} req/s, canary (10%) killed at {}s of {}s",
                round + 1,
                a.rounds,
                protection.name(),
                a.rate,
                a.fault_at,
                a.seconds
            );
            runs.push(fault_run(&a, &work, &repo, protection, round).await?);
        }
    }
    eprintln!("bench: fault, {}: {}s", Protection::Flagger.name(), a.fault_at + 30.0);
    runs.push(fault_run(&a, &work, &repo, Protection::Flagger, 0).await?);
    let noise = noise_run(&a, &work).await?;
    let _ = std::fs::remove_dir_all(&work);
    let md = report(&a, &runs, &noise)?;
    write_section(&a.common.out, "guard", &md)?;
    println!("{md}");
    eprintln!("bench: wrote {}", a.common.out.display());
    Ok(())
}

fn report(a: &GuardArgs, runs: &[FaultRun], noise: &Noise) -> anyhow::Result<String> {
    let mut m = String::new();
    writeln!(m, "# Benchmarks: the data-plane guard and the rollout controller\n")?;
    writeln!(m, "Generated by `{}` — do not edit by hand; re-run it.\n", a.reproduce)?;
    writeln!(
        m,
        "- Machine: {}. Real Envoy (default workers) with the built filter, real backends (mlp), \
         `switchyard-load` open loop; the guard at its defaults (`window` 6s, `min_requests` 20, \
         `error_margin` 0.05, `z` 5), the controller at its (`switchyard-rollout run --interval 1s`, \
         Fisher exact at 99%, `max_error_increase` 0.01).\n",
        machine()
    )?;
    writeln!(m, "## A canary that crashes\n")?;
    writeln!(
        m,
        "{} req/s, canary at 10%, its backend SIGKILLed at {}s of {}s (the Flagger-equivalent run is longer: its \
         checks are 10 s apart); rounds alternate the protections. \"Last error\" is when the last failed request \
         ended, after the crash; \"failed in 20 s\" counts the requests sent from 8 s before the crash to 12 s after.\n",
        a.rate, a.fault_at, a.seconds
    )?;
    writeln!(m, "| round | protection | requests | failed in 20 s | last error after the crash | what acted |")?;
    writeln!(m, "|---:|---|---:|---:|---:|---|")?;
    for (i, r) in runs.iter().enumerate() {
        writeln!(
            m,
            "| {} | {} | {} | {} ({:.2}%) | {} | {} |",
            i / 3 + 1,
            r.protection.name(),
            r.report.total.sent,
            r.window_failed,
            100.0 * r.window_failed as f64 / r.window_sent.max(1) as f64,
            r.last_error_after_ms.map_or("–".into(), |ms| format!("{ms:.0} ms")),
            r.what_acted.as_deref().map_or("–".into(), |t| format!("`{}`", t.replace('|', "/")))
        )?;
    }
    let of = |p: Protection| runs.iter().filter(move |r| r.protection == p);
    let worst_last = |p: Protection| of(p).map(|r| r.last_error_after_ms.unwrap_or(f64::INFINITY)).fold(0.0, f64::max);
    let failed = |r: &FaultRun| 100.0 * r.window_failed as f64 / r.window_sent.max(1) as f64;
    let worst_failed = |p: Protection| of(p).map(failed).fold(0.0, f64::max);
    let last = median(of(Protection::Guard).map(|r| r.last_error_after_ms.unwrap_or(f64::NAN)).collect());
    writeln!(m, "\n## Noise: healthy canaries\n")?;
    let total: u64 = noise.per_model.iter().map(|(_, n, _)| n).sum();
    let errors: u64 = noise.per_model.iter().map(|(_, _, e)| e).sum();
    writeln!(
        m,
        "{} models at once, each a healthy canary at 10% with the same injected error ratio on both versions \
         (1% to 5% across the models; {:.2}% of {} requests failed overall), {} req/s per model for {}s: \
         {} of them had enough canary traffic to be judged. **Trips (false rollbacks): {}**.{}\n",
        noise.models,
        100.0 * errors as f64 / total.max(1) as f64,
        total,
        a.noise_rate,
        a.noise_seconds,
        noise.judged,
        noise.trips.len(),
        noise.trips.iter().map(|t| format!("\n  - `{t}`")).collect::<String>()
    )?;
    writeln!(m, "## Goals (issue 13)\n")?;
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let g_last = worst_last(Protection::Guard);
    writeln!(
        m,
        "- guard: ≤ 1 s from the crash to the last error: **median {last:.0} ms, worst {g_last:.0} ms** — {}",
        verdict(g_last <= 1000.0)
    )?;
    writeln!(
        m,
        "- guard: ≤ 0.5% of requests failed in the 20 s window: **worst {:.2}%** (no protection: {:.2}%) — {}",
        worst_failed(Protection::Guard),
        worst_failed(Protection::None),
        verdict(worst_failed(Protection::Guard) <= 0.5)
    )?;
    let c_last = worst_last(Protection::Controller);
    writeln!(
        m,
        "- controller alone: ≤ 5 s from the crash to the last error: **worst {:.1} s** ({:.2}% failed in 20 s at worst) — {}",
        c_last / 1e3,
        worst_failed(Protection::Controller),
        verdict(c_last <= 5000.0)
    )?;
    writeln!(
        m,
        "- for comparison, the Flagger-equivalent analysis: **{:.1} s** to the last error",
        worst_last(Protection::Flagger) / 1e3
    )?;
    writeln!(
        m,
        "- no false rollback of a healthy canary at 1–5% baseline errors: **{} trips in {} trials of {}s** — {}",
        noise.trips.len(),
        noise.models,
        a.noise_seconds,
        verdict(noise.trips.is_empty())
    )?;
    Ok(m)
}
