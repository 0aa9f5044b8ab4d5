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

struct FaultRun {
    guard: bool,
    report: Report,
    /// From the crash to the last failed request's end; None when nothing failed.
    last_error_after_ms: Option<f64>,
    trip: Option<String>,
}

async fn fault_run(a: &GuardArgs, work: &Path, repo: &Path, guard: bool, round: usize) -> anyhow::Result<FaultRun> {
    let bin = a.common.backend()?;
    let stable = Backend::start(&bin, repo)?;
    let canary = Backend::start(&bin, repo)?;
    let dir = work.join(format!("fault-{round}-{}", if guard { "guard" } else { "none" }));
    let policy = json!({"models": {"mlp": model_policy("mlp", guard)}});
    let upstreams = [("mlp-v1".to_owned(), stable.http.clone()), ("mlp-v2".to_owned(), canary.http.clone())];
    let envoy = start_envoy(&dir, &policy, &upstreams, &[])?;
    let inputs = model_inputs(&stable.http, "mlp", None).await?;
    let body = build_body(&inputs, 1, false, 5, None)?;
    let (listen, rate, secs) = (envoy.listen.clone(), a.rate, Duration::from_secs_f64(a.seconds));
    let load = tokio::spawn(async move { run::open(&listen, "/v2/models/mlp/infer", Some(body), rate, secs).await });
    tokio::time::sleep(Duration::from_secs_f64(a.fault_at)).await;
    canary.kill()?;
    let report = load.await.context("the load task failed")??;
    let last_error_after_ms = report.total.last_error_ms.map(|t| t - a.fault_at * 1e3);
    let log = std::fs::read_to_string(dir.join("envoy.log")).unwrap_or_default();
    let trip = log.lines().find_map(|l| l.split_once("guard took ").map(|(_, rest)| rest.to_owned()));
    drop(envoy);
    Ok(FaultRun { guard, report, last_error_after_ms, trip })
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
            let served =
                switchyard_testkit::metric_sum(&p, "switchyard_requests_total", &[("model", n), ("version", "v2")]);
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
        for guard in [true, false] {
            eprintln!(
                "bench: fault round {}/{}, {}: {} req/s, canary (10%) killed at {}s of {}s",
                round + 1,
                a.rounds,
                if guard { "guard on" } else { "no protection" },
                a.rate,
                a.fault_at,
                a.seconds
            );
            runs.push(fault_run(&a, &work, &repo, guard, round).await?);
        }
    }
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
    writeln!(m, "# Benchmarks: the data-plane guard\n")?;
    writeln!(m, "Generated by `{}` — do not edit by hand; re-run it.\n", a.reproduce)?;
    writeln!(
        m,
        "- Machine: {}. Real Envoy (default workers) with the built filter, real backends (mlp), \
         `switchyard-load` open loop; the guard at its defaults (`window` 6s, `min_requests` 20, \
         `error_margin` 0.05, `z` 5).\n",
        machine()
    )?;
    writeln!(m, "## A canary that crashes\n")?;
    writeln!(
        m,
        "{} req/s for {}s, canary at 10%, its backend SIGKILLed at {}s; rounds alternate guard on / no protection \
         (no controller, nobody acting). \"Last error\" is when the last failed request ended, after the crash.\n",
        a.rate, a.seconds, a.fault_at
    )?;
    writeln!(m, "| run | protection | requests | failed | failed % | last error after the crash | the guard's log |")?;
    writeln!(m, "|---:|---|---:|---:|---:|---:|---|")?;
    for (i, r) in runs.iter().enumerate() {
        let t = &r.report.total;
        writeln!(
            m,
            "| {} | {} | {} | {} | {:.2}% | {} | {} |",
            i / 2 + 1,
            if r.guard { "guard" } else { "none" },
            t.sent,
            t.errors,
            100.0 * t.errors as f64 / t.sent.max(1) as f64,
            r.last_error_after_ms.map_or("–".into(), |ms| format!("{ms:.0} ms")),
            r.trip.as_deref().map_or("–".into(), |t| format!("`{}`", t.replace('|', "/")))
        )?;
    }
    let guarded: Vec<&FaultRun> = runs.iter().filter(|r| r.guard).collect();
    let last = median(guarded.iter().map(|r| r.last_error_after_ms.unwrap_or(f64::NAN)).collect());
    let worst_last = guarded.iter().filter_map(|r| r.last_error_after_ms).fold(0.0, f64::max);
    let failed = |r: &&FaultRun| 100.0 * r.report.total.errors as f64 / r.report.total.sent.max(1) as f64;
    let worst_failed = guarded.iter().map(failed).fold(0.0, f64::max);
    let unprotected = median(runs.iter().filter(|r| !r.guard).map(|r| failed(&r)).collect());
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
    writeln!(
        m,
        "- guard: ≤ 1 s from the crash to the last error: **median {last:.0} ms, worst {worst_last:.0} ms** — {}",
        verdict(worst_last <= 1000.0 && !last.is_nan())
    )?;
    writeln!(
        m,
        "- guard: ≤ 0.5% of requests failed in the {}s window: **worst {worst_failed:.2}%** (no protection: {unprotected:.2}%) — {}",
        a.seconds,
        verdict(worst_failed <= 0.5)
    )?;
    writeln!(
        m,
        "- no false rollback of a healthy canary at 1–5% baseline errors: **{} trips in {} trials of {}s** — {}",
        noise.trips.len(),
        noise.models,
        a.noise_seconds,
        verdict(noise.trips.is_empty())
    )?;
    writeln!(
        m,
        "- controller alone (≤ 5 s) and a Flagger-equivalent analysis: not measured yet: the rollout controller is \
         the next part of issue 13."
    )?;
    Ok(m)
}
