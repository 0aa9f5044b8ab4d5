//! `bench-generator`: is the generator fast and accurate enough never to be the bottleneck?
//! Side by side with `wrk` on the same trivial endpoint, each pinned to one core.
//! `bench-sweep`: the saturation curve (throughput vs latency) of each model, open loop,
//! with rates calibrated from the model's measured closed-loop ceiling.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use switchyard_load::metadata::model_inputs;
use switchyard_load::payload::{Mix, build_body};
use switchyard_load::plot;
use switchyard_load::report::Report;
use switchyard_load::run::{self, Plan, PlanPhase};
use switchyard_load::scenario::Load;
use switchyard_load::schedule::Segment;

use crate::common::{Backend, Common, machine, max_batch, median, shown, stdout_of, write_record, write_section};

#[derive(clap::Args)]
pub struct GeneratorArgs {
    #[command(flatten)]
    common: Common,
    /// Seconds per measured run.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Open-loop rates to hold (requests/s).
    #[arg(long, value_delimiter = ',', default_value = "20000,40000")]
    rates: Vec<f64>,
    #[arg(long, default_value = "scripts/bench.sh generator")]
    reproduce: String,
}

#[derive(clap::Args)]
pub struct SweepArgs {
    #[command(flatten)]
    common: Common,
    /// Charts go here (linked from the report).
    #[arg(long, default_value = "docs/bench")]
    charts: PathBuf,
    /// Seconds per step.
    #[arg(long, default_value_t = 4.0)]
    step_seconds: f64,
    /// Steps from 10% to 120% of the measured ceiling.
    #[arg(long, default_value_t = 8)]
    steps: u32,
    #[arg(long, default_value = "scripts/bench.sh sweep")]
    reproduce: String,
}

/// Runs `cmd` pinned to CPU 0 and returns its stdout.
fn pinned(cmd: &[&str]) -> anyhow::Result<String> {
    stdout_of(
        Command::new("taskset").args(["-c", "0"]).args(cmd),
        &format!("taskset -c 0 {cmd:?} (taskset is in util-linux)"),
    )
}

/// `Requests/sec:` from wrk's output.
fn wrk_rate(out: &str) -> anyhow::Result<f64> {
    out.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{out}"))
}

pub async fn generator(a: GeneratorArgs) -> anyhow::Result<()> {
    let bin = a.common.backend()?;
    // The generator as users run it: the switchyard-load binary built next to this one.
    let me = std::env::current_exe()?.with_file_name("switchyard-load");
    let me = me.to_str().context("non-UTF-8 path")?;
    let backend = Backend::start_pinned(&bin, &a.common.model_repository, Some("1"))?;
    let url = format!("http://{}/v2/health/live", backend.http);
    let secs = format!("{}s", a.seconds);
    let (mut wrk, mut closed) = (Vec::new(), Vec::new());
    let mut open: Vec<Vec<Report>> = vec![Vec::new(); a.rates.len()];
    for round in 0..a.rounds {
        eprintln!("bench-generator: round {}/{}", round + 1, a.rounds);
        wrk.push(wrk_rate(&pinned(&["wrk", "-t1", "-c32", &format!("-d{secs}"), &url])?)?);
        let json = pinned(&[
            me,
            "closed",
            "--addr",
            &backend.http,
            "--get",
            "/v2/health/live",
            "--concurrency",
            "32",
            "--duration",
            &secs,
            "--json",
            "-q",
        ])?;
        closed.push(serde_json::from_str::<serde_json::Value>(&json)?["total"]["throughput"].as_f64().unwrap_or(0.0));
        for (i, rate) in a.rates.iter().enumerate() {
            let json = pinned(&[
                me,
                "open",
                "--addr",
                &backend.http,
                "--get",
                "/v2/health/live",
                "--rate",
                &rate.to_string(),
                "--duration",
                &secs,
                "--json",
                "-q",
            ])?;
            if let Some(slot) = open.get_mut(i) {
                slot.push(serde_json::from_str(&json).context("open-loop report")?);
            }
        }
    }
    drop(backend);
    let mut m = String::new();
    writeln!(m, "# Benchmarks: the load generator\n")?;
    writeln!(m, "Machine: {}. Reproduce: `{}`.\n", machine(), a.reproduce)?;
    writeln!(
        m,
        "Each tool pinned to CPU 0 (`taskset -c 0`), the backend to CPU 1; the endpoint is the backend's \
         `GET /v2/health/live`. {} rounds of {} s, interleaved; medians.\n",
        a.rounds, a.seconds
    )?;
    writeln!(m, "## Closed loop, 32 connections (how fast can one core drive the endpoint?)\n")?;
    writeln!(m, "| tool | req/s (median) | rounds |\n|---|---:|---|")?;
    let list = |v: &[f64]| v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ");
    writeln!(m, "| wrk 4 (Debian), `-t1 -c32` | {:.0} | {} |", median(wrk.clone()), list(&wrk))?;
    writeln!(m, "| switchyard-load closed, 32 clients | {:.0} | {} |", median(closed.clone()), list(&closed))?;
    let ratio = median(closed.clone()) / median(wrk.clone());
    writeln!(m, "\nswitchyard-load reaches **{:.0}%** of wrk's closed-loop rate on one core.\n", ratio * 100.0)?;
    writeln!(m, "## Open loop (schedule held? how late do requests leave?)\n")?;
    writeln!(
        m,
        "| target req/s | achieved req/s | send lag p50 ms | send lag p99 ms | late (> 1 ms) | latency p50 ms | p99 ms | errors |\n|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    let mut goal = None;
    for (rate, runs) in a.rates.iter().zip(&open) {
        let med = |f: fn(&Report) -> f64| median(runs.iter().map(f).collect());
        let sent: u64 = runs.iter().map(|r| r.total.sent).sum();
        let late: u64 = runs.iter().map(|r| r.total.late).sum();
        let errors: u64 = runs.iter().map(|r| r.total.errors).sum();
        let achieved = med(|r| r.total.throughput);
        writeln!(
            m,
            "| {rate:.0} | {achieved:.0} | {:.3} | {:.3} | {late} of {sent} ({:.2}%) | {:.3} | {:.3} | {errors} |",
            med(|r| r.send_lag_ms.p50),
            med(|r| r.send_lag_ms.p99),
            late as f64 * 100.0 / sent.max(1) as f64,
            med(|r| r.total.latency_ms.p50),
            med(|r| r.total.latency_ms.p99),
        )?;
        if (*rate - 20000.0).abs() < 1.0 {
            goal = Some((achieved, med(|r| r.send_lag_ms.p99), late as f64 / sent.max(1) as f64));
        }
    }
    if let Some((achieved, lag99, late)) = goal {
        let met = achieved >= 19_800.0 && lag99 < 1.0 && late < 0.01;
        writeln!(
            m,
            "\nGoal: ≥ 20 000 req/s open loop on one core with accurate timing: {achieved:.0} req/s achieved, \
             send lag p99 {lag99:.3} ms, {:.2}% late — **{}**.\n",
            late * 100.0,
            if met { "met" } else { "NOT met" }
        )?;
    }
    writeln!(
        m,
        "Latency in the open-loop rows is measured from each request's scheduled time, so it includes the send lag; \
         wrk measures from the actual send (coordinated omission), which is why only throughput is compared with it."
    )?;
    write_section(&a.common.out, "generator", &m)?;
    println!("{m}");
    eprintln!("bench-generator: wrote {}", a.common.out.display());
    Ok(())
}

/// The models swept, with the closed-loop clients that saturate them (× max batch size).
const SWEPT: [(&str, usize); 2] = [("mlp", 4), ("resnet18", 2)];

/// The `sweep` section's figures (`docs/bench/sweep.json`), as the report prints them: the
/// Markdown is rendered from this ([`SweepRecord::markdown`]), so the two never differ.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SweepRecord {
    /// The command that reproduces it.
    pub generated_by: String,
    pub machine: String,
    /// The cores the generator shares with the backend.
    pub cores: usize,
    pub step_seconds: f64,
    pub models: Vec<SweepModel>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SweepModel {
    pub model: String,
    /// The closed-loop ceiling, req/s, and the clients that reached it.
    pub ceiling_req_s: f64,
    pub ceiling_clients: usize,
    /// The latency-vs-throughput chart, relative to the report.
    pub chart: String,
    /// In the order run (rising target).
    pub steps: Vec<SweepStep>,
}

/// One open-loop step.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SweepStep {
    /// Its share of the ceiling, e.g. `41%`.
    pub step: String,
    pub target_req_s: f64,
    pub achieved_req_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub errors: u64,
    /// Requests that left more than 1 ms behind their schedule, percent of those sent.
    pub sent_late_pct: f64,
}

impl SweepRecord {
    pub fn markdown(&self) -> String {
        let mut m = String::new();
        let _ = self.write_markdown(&mut m);
        m
    }

    fn write_markdown(&self, m: &mut String) -> std::fmt::Result {
        writeln!(m, "# Benchmarks: saturation sweeps\n")?;
        writeln!(m, "Machine: {}. Reproduce: `{}`.\n", self.machine, self.generated_by)?;
        writeln!(
            m,
            "Per model: the closed-loop ceiling first (binary tensors, 1 row per request), then open-loop steps of \
             {} s from 10% to 120% of it, straight to the backend. Latency from each request's scheduled send time, \
             so queueing past saturation shows. Requests time out after 5 s.\n",
            self.step_seconds
        )?;
        for s in &self.models {
            writeln!(m, "## {}\n", s.model)?;
            writeln!(m, "Closed-loop ceiling: {:.0} req/s ({} clients).\n", s.ceiling_req_s, s.ceiling_clients)?;
            writeln!(m, "![{} latency vs throughput]({})\n", s.model, s.chart)?;
            writeln!(
                m,
                "| step (of ceiling) | target req/s | achieved req/s | p50 ms | p99 ms | p99.9 ms | errors | sent late |\n|---|---:|---:|---:|---:|---:|---:|---:|"
            )?;
            for p in &s.steps {
                writeln!(
                    m,
                    "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.1}% |",
                    p.step, p.target_req_s, p.achieved_req_s, p.p50_ms, p.p99_ms, p.p999_ms, p.errors, p.sent_late_pct
                )?;
            }
            if s.steps.iter().any(|p| p.sent_late_pct > 1.0) {
                writeln!(
                    m,
                    "\nSteps with more than 1% of requests sent late were limited by the machine, not only the backend: \
                     the generator shares these {} cores with the backend, and once the backend's batches take them, \
                     requests leave behind schedule (their latency still counts from the schedule).",
                    self.cores
                )?;
            }
            writeln!(m)?;
        }
        Ok(())
    }
}

pub async fn sweep(a: SweepArgs) -> anyhow::Result<()> {
    let bin = a.common.backend()?;
    let mut record = SweepRecord {
        generated_by: a.reproduce.clone(),
        machine: machine(),
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        step_seconds: a.step_seconds,
        models: Vec::new(),
    };
    for (model, per_batch) in SWEPT {
        let backend = Backend::start_pinned(&bin, &a.common.model_repository, None)?;
        let inputs = model_inputs(&backend.http, model, Some("v1")).await?;
        let body = build_body(&inputs, 1, true, 11, None, None)?;
        let path = format!("/v2/models/{model}/versions/v1/infer");
        let clients = per_batch * max_batch(&a.common.model_repository, model)?;
        eprintln!("bench-sweep: {model}: closed-loop ceiling, {clients} clients");
        run::closed(&backend.http, &path, Some(body.clone()), clients, Duration::from_secs(1)).await?;
        let ceiling = run::closed(&backend.http, &path, Some(body.clone()), clients, Duration::from_secs(5)).await?;
        let top = ceiling.total.throughput;
        anyhow::ensure!(top > 0.0, "{model}: no successful request in the ceiling run");
        let step = Duration::from_secs_f64(a.step_seconds);
        let phases = (0..a.steps)
            .map(|k| {
                let share = 0.1 + 1.1 * f64::from(k) / f64::from(a.steps.max(2) - 1);
                let rate = (top * share).max(1.0);
                PlanPhase {
                    name: format!("{:.0}%", share * 100.0),
                    duration: step,
                    load: Load::Open(vec![Segment::constant(rate, step.as_secs_f64())]),
                    mix: Mix::single(body.clone()),
                    headers: Vec::new(),
                }
            })
            .collect();
        let mut plan = Plan::phases(&backend.http, &path, true, phases);
        plan.name = format!("{model} sweep");
        plan.timeout = Duration::from_secs(5);
        plan.progress = true;
        eprintln!("bench-sweep: {model}: {} open-loop steps up to {:.0} req/s", a.steps, top * 1.2);
        let r = run::execute(plan).await?;
        drop(backend);
        std::fs::create_dir_all(&a.charts)?;
        let chart = a.charts.join(format!("sweep-{model}.svg"));
        std::fs::write(&chart, plot::latency_vs_throughput(&r))?;
        record.models.push(SweepModel {
            model: model.to_owned(),
            ceiling_req_s: shown(top, 0),
            ceiling_clients: clients,
            chart: relative(&a.common.out, &chart),
            steps: r
                .phases
                .iter()
                .map(|p| SweepStep {
                    step: p.name.clone(),
                    target_req_s: shown(p.target_rate.unwrap_or(0.0), 0),
                    achieved_req_s: shown(p.stats.throughput, 0),
                    p50_ms: shown(p.stats.latency_ms.p50, 2),
                    p99_ms: shown(p.stats.latency_ms.p99, 2),
                    p999_ms: shown(p.stats.latency_ms.p999, 2),
                    errors: p.stats.errors,
                    sent_late_pct: shown(p.stats.late as f64 / p.stats.sent.max(1) as f64 * 100.0, 1),
                })
                .collect(),
        });
    }
    let m = record.markdown();
    write_section(&a.common.out, "sweep", &m)?;
    let json = write_record(&a.common.out, "sweep", &record)?;
    println!("{m}");
    eprintln!("bench-sweep: wrote {} and {}", a.common.out.display(), json.display());
    Ok(())
}

/// `chart` as seen from the directory of `report` (both relative to the working directory).
fn relative(report: &Path, chart: &Path) -> String {
    let base = report.parent().unwrap_or(Path::new(""));
    chart.strip_prefix(base).unwrap_or(chart).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::SweepRecord;

    #[test]
    fn the_sweep_json_holds_the_figures_of_its_section() {
        crate::common::tests::check_record::<SweepRecord>("sweep", SweepRecord::markdown);
    }
}
