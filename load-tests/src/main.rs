//! `switchyard-load`: the command line of the load generator library (`switchyard_load`):
//! scenario files, open- and closed-loop runs, reports and charts.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use switchyard_load::metrics::{batch_stats, scrape};
use switchyard_load::report::{self, Report};
use switchyard_load::scenario::{self, HeaderFile, Load, PayloadFile, Phase, Scenario};
use switchyard_load::schedule::Segment;
use switchyard_load::{plot, run};

#[derive(Parser)]
#[command(name = "switchyard-load", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a scenario file (phases of open- or closed-loop load; see load-tests/README.md).
    Run(RunArgs),
    /// Validates scenario files and prints their phases; sends nothing.
    Check {
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
    },
    /// Open-loop load at a fixed rate (or a ramp), without a scenario file.
    Open(OpenArgs),
    /// Closed-loop load: N concurrent clients, each sending as soon as it has its answer.
    Closed(ClosedArgs),
}

#[derive(Args)]
struct RunArgs {
    scenario: PathBuf,
    /// Inference listener host:port (overrides the scenario's `addr`).
    #[arg(long)]
    addr: Option<String>,
    #[command(flatten)]
    out: Output,
}

#[derive(Args)]
struct Output {
    /// Write the full report (totals, phases, per-second timeline) as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write latency-over-time.svg and latency-vs-throughput.svg into this directory.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Print the report as JSON on stdout instead of the summary.
    #[arg(long)]
    json: bool,
    /// No progress line.
    #[arg(long, short)]
    quiet: bool,
    /// A request sent later than this after its scheduled time counts as late.
    #[arg(long, default_value = "1ms", value_parser = duration_arg)]
    late_after: Duration,
}

#[derive(Args)]
struct Target {
    /// Inference listener, host:port.
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: String,
    /// Model to infer on (tensors built from its metadata).
    #[arg(long, required_unless_present = "get")]
    model: Option<String>,
    #[arg(long)]
    version: Option<String>,
    /// GET this path instead of inferring (e.g. /v2/models/mlp or /v2/health/ready).
    #[arg(long, conflicts_with = "model")]
    get: Option<String>,
    /// Rows per request.
    #[arg(long, default_value_t = 1)]
    rows: usize,
    /// Send tensors with the binary tensor data extension instead of JSON.
    #[arg(long)]
    binary: bool,
    /// gRPC `ModelInfer` calls (HTTP/2; tensors in raw_input_contents) instead of REST.
    #[arg(long, conflicts_with_all = ["binary", "get", "replay"])]
    grpc: bool,
    /// Replay request bodies from a JSONL file instead of generating them.
    #[arg(long, conflicts_with_all = ["rows", "binary", "get"])]
    replay: Option<PathBuf>,
    /// Extra header on every request, NAME=VALUE (repeatable).
    #[arg(long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    #[arg(long, default_value = "30s", value_parser = duration_arg)]
    timeout: Duration,
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
}

#[derive(Args)]
struct OpenArgs {
    #[command(flatten)]
    target: Target,
    /// Requests per second (the start rate with --ramp-to).
    #[arg(long)]
    rate: f64,
    /// Ramp linearly to this rate by the end.
    #[arg(long)]
    ramp_to: Option<f64>,
    #[arg(long, default_value = "10s", value_parser = duration_arg)]
    duration: Duration,
    #[command(flatten)]
    out: Output,
}

#[derive(Args)]
struct ClosedArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[arg(long, default_value = "10s", value_parser = duration_arg)]
    duration: Duration,
    /// Admin listener (host:port) to read batch sizes from, before and after.
    #[arg(long)]
    admin_addr: Option<String>,
    #[command(flatten)]
    out: Output,
}

fn duration_arg(s: &str) -> Result<Duration, switchyard_policy::duration::NotADuration> {
    switchyard_policy::duration::parse(s)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    switchyard_load::exit_code_of(async {
        match cli.command {
            Command::Run(a) => run_scenario(a).await,
            Command::Check { scenarios } => check(&scenarios),
            Command::Open(a) => open(a).await,
            Command::Closed(a) => closed(a).await,
        }
    })
}

fn check(paths: &[PathBuf]) -> anyhow::Result<()> {
    let mut bad = 0;
    for p in paths {
        match scenario::load(p) {
            Ok(sc) => {
                println!("{}: ok, {} phases. {}", p.display(), sc.phases.len(), sc.description);
                for ph in &sc.phases {
                    let load = match (&ph.load, ph.load.mean_rate(ph.duration)) {
                        (Load::Closed(n), _) => format!("{n} clients"),
                        (_, Some(r)) => format!("{r:.0} req/s mean"),
                        _ => String::new(),
                    };
                    let drift = if ph.drifted { ", drifted inputs" } else { "" };
                    println!("  {:<24} {:>8.1}s  {load}{drift}", ph.name, ph.duration.as_secs_f64());
                }
            }
            Err(e) => {
                eprintln!("{e}");
                bad += 1;
            }
        }
    }
    anyhow::ensure!(bad == 0, "{bad} of {} scenario files are invalid", paths.len());
    Ok(())
}

async fn run_scenario(a: RunArgs) -> anyhow::Result<()> {
    let sc = scenario::load(&a.scenario)?;
    let addr = a.addr.clone().or_else(|| sc.addr.clone()).unwrap_or_else(|| "127.0.0.1:8000".into());
    let plan = run::prepare(&sc, &addr, a.out.late_after, !a.out.quiet).await?;
    let report = run::execute(plan).await?;
    emit(&report, &a.out)
}

/// A one-phase scenario from command-line flags, validated like a file.
fn ad_hoc(t: &Target, load: Load, duration: Duration) -> anyhow::Result<Scenario> {
    let mut header = Vec::new();
    for h in &t.headers {
        let (name, value) = h.split_once('=').with_context(|| format!("--header '{h}': expected NAME=VALUE"))?;
        header.push(HeaderFile::constant(name, value));
    }
    let payload = vec![PayloadFile {
        weight: 1.0,
        rows: t.replay.is_none().then_some(t.rows),
        binary: t.binary,
        replay: t.replay.clone(),
    }];
    anyhow::ensure!(t.rows > 0, "--rows must be at least 1");
    anyhow::ensure!(t.max_connections > 0, "--max-connections must be at least 1");
    Ok(Scenario {
        name: String::new(),
        description: String::new(),
        addr: Some(t.addr.clone()),
        model: t.model.clone(),
        version: t.version.clone(),
        get: t.get.clone(),
        grpc: t.grpc,
        timeout: t.timeout,
        max_connections: t.max_connections,
        seed: 1,
        phases: vec![Phase { name: "main".into(), duration, load, payload, header, drifted: false }],
        drift: None,
    })
}

async fn open(a: OpenArgs) -> anyhow::Result<()> {
    let ok = |r: f64| r.is_finite() && r > 0.0;
    anyhow::ensure!(ok(a.rate) || a.ramp_to.is_some_and(ok), "--rate must be a positive number of requests per second");
    let secs = a.duration.as_secs_f64();
    let segment = Segment { seconds: secs, from: a.rate.max(0.0), to: a.ramp_to.unwrap_or(a.rate).max(0.0) };
    let sc = ad_hoc(&a.target, Load::Open(vec![segment]), a.duration)?;
    let plan = run::prepare(&sc, &a.target.addr, a.out.late_after, !a.out.quiet).await?;
    emit(&run::execute(plan).await?, &a.out)
}

async fn closed(a: ClosedArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.concurrency > 0, "--concurrency must be at least 1");
    let sc = ad_hoc(&a.target, Load::Closed(a.concurrency), a.duration)?;
    let plan = run::prepare(&sc, &a.target.addr, a.out.late_after, !a.out.quiet).await?;
    let before = match &a.admin_addr {
        Some(m) => Some(scrape(m).await?),
        None => None,
    };
    let report = run::execute(plan).await?;
    emit(&report, &a.out)?;
    if let (Some(m), Some(before), Some(model)) = (&a.admin_addr, before, &a.target.model) {
        let after = scrape(m).await?;
        let b = batch_stats(&before, &after, model, a.target.version.as_deref());
        if !a.out.json {
            println!("batches executed: {:.0}, mean batch size {:.2} rows", b.batches, b.mean_rows);
        }
    }
    Ok(())
}

fn emit(report: &Report, out: &Output) -> anyhow::Result<()> {
    if let Some(p) = &out.report {
        write_json(p, report)?;
    }
    if let Some(dir) = &out.plot {
        for p in plot::write(dir, report)? {
            eprintln!("wrote {}", p.display());
        }
    }
    if out.json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", report::summary(report));
    }
    Ok(())
}

fn write_json(path: &Path, report: &Report) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(report)?).with_context(|| format!("cannot write {}", path.display()))
}
