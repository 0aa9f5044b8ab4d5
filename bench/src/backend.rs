//! `bench-backend`: everything measured side by side in one run on one machine, because these
//! machines are noisy; the report gives ratios and the command that reproduces it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use switchyard_load::metadata::model_inputs;
use switchyard_load::metrics::{batch_stats, scrape};
use switchyard_load::payload::build_body;
use switchyard_load::report::Report;
use switchyard_load::run;

use crate::common::{Backend, Common, derived_repo, machine, max_batch, stdout_of, write_section};

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    common: Common,
    /// Length of each measured served run.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Measuring time per batch size for the raw engine.
    #[arg(long, default_value_t = 3.0)]
    engine_seconds: f64,
    /// Alternating raw/served rounds for the served-vs-ceiling ratio.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Device for every model (auto, cpu, cuda:N); default: each config's own.
    #[arg(long)]
    device: Option<String>,
    /// The command line to print in the report as the way to reproduce it.
    #[arg(long, default_value = "scripts/bench.sh backend")]
    reproduce: String,
}

/// The models measured, with the concurrency that saturates their batcher.
const MODELS: [(&str, usize); 2] = [("mlp", 4), ("resnet18", 2)];
const BATCH_SIZES: &str = "1,2,4,8,16,32,64";

#[derive(Deserialize, Clone)]
pub struct RawRow {
    pub device: String,
    pub batch_size: usize,
    pub rows_per_second: f64,
    pub p50_ms: f64,
}

struct Served {
    model: String,
    mode: &'static str,
    concurrency: usize,
    report: Report,
    mean_batch: f64,
}

fn raw_ceiling(bin: &Path, a: &BenchArgs, model: &str, sizes: &str) -> anyhow::Result<Vec<RawRow>> {
    raw_forward(bin, &a.common.model_repository, a.device.as_deref(), a.engine_seconds, model, sizes)
}

/// Bare `forward` of `model`'s v1 at each batch size in `sizes` (`bench-engine`, no server).
pub fn raw_forward(
    bin: &Path,
    repo: &Path,
    device: Option<&str>,
    seconds: f64,
    model: &str,
    sizes: &str,
) -> anyhow::Result<Vec<RawRow>> {
    eprintln!("bench: raw engine ceiling for {model} (batch sizes {sizes})");
    let mut cmd = Command::new(bin);
    cmd.args(["bench-engine", "--model", model, "--version", "v1", "--batch-sizes", sizes])
        .args(["--seconds", &seconds.to_string(), "--model-repository"])
        .arg(repo);
    if let Some(d) = device {
        cmd.args(["--device", d]);
    }
    stdout_of(cmd.stderr(Stdio::inherit()), &format!("bench-engine for {model}"))?
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("bench-engine printed {l:?}")))
        .collect()
}

async fn served_run(
    b: &Backend,
    model: &str,
    concurrency: usize,
    binary: bool,
    seconds: f64,
) -> anyhow::Result<(Report, f64)> {
    let inputs = model_inputs(&b.http, model, Some("v1")).await?;
    let body = build_body(&inputs, 1, binary, 7, None, None)?;
    let path = format!("/v2/models/{model}/versions/v1/infer");
    // Warm-up, not counted.
    run::closed(&b.http, &path, Some(body.clone()), concurrency, Duration::from_secs(1)).await?;
    let before = scrape(&b.admin).await?;
    let report = run::closed(&b.http, &path, Some(body), concurrency, Duration::from_secs_f64(seconds)).await?;
    let after = scrape(&b.admin).await?;
    if report.total.errors > 0 {
        bail!("{model}: errors during the run: {:?} {:?}", report.total.by_status, report.total.by_cause);
    }
    Ok((report, batch_stats(&before, &after, model, Some("v1")).mean_rows))
}

pub struct Round {
    served: f64,
    raw: f64,
}

/// Alternates raw ceiling and served load at the max batch size, `a.rounds` times.
async fn ceiling_rounds(
    bin: &Path,
    a: &BenchArgs,
    b: &Backend,
    model: &str,
    concurrency: usize,
) -> anyhow::Result<Vec<Round>> {
    let max = max_batch(&a.common.model_repository, model)?.to_string();
    let mut rounds = Vec::new();
    for i in 0..a.rounds {
        eprintln!("bench: {model}, interleaved round {}/{}", i + 1, a.rounds);
        let raw = raw_ceiling(bin, a, model, &max)?.first().map_or(f64::NAN, |r| r.rows_per_second);
        let (report, _) = served_run(b, model, concurrency, true, a.seconds / 2.0).await?;
        rounds.push(Round { served: report.total.rows_per_second, raw });
    }
    Ok(rounds)
}

pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    let bin = a.common.backend()?;
    let work = std::env::temp_dir().join(format!("switchyard-bench-{}", std::process::id()));
    let mut raw: BTreeMap<String, Vec<RawRow>> = BTreeMap::new();
    let mut served = Vec::new();
    let mut rss = Vec::new();
    let mut overhead = None;
    let mut interleaved = Vec::new();
    // Per model: its ceiling, then the server with batching on and off, back to back, so
    // drift in the machine's speed touches all three alike.
    for (model, per_batch) in MODELS {
        raw.insert(model.to_owned(), raw_ceiling(&bin, &a, model, BATCH_SIZES)?);
        let concurrency = per_batch * max_batch(&a.common.model_repository, model)?;
        for (mode, batching) in [("batching on", true), ("batching off", false)] {
            let repo = work.join(format!("{model}-{}", if batching { "on" } else { "off" }));
            derived_repo(&a.common.model_repository, &repo, model, batching, a.device.as_deref())?;
            let backend = Backend::start(&bin, &repo)?;
            eprintln!("bench: {model}, {mode}, {concurrency} concurrent clients, {}s", a.seconds);
            let (report, mean_batch) = served_run(&backend, model, concurrency, true, a.seconds).await?;
            if batching {
                interleaved.push((model, ceiling_rounds(&bin, &a, &backend, model, concurrency).await?));
            }
            served.push(Served { model: model.to_owned(), mode, concurrency, report, mean_batch });
            if model == "mlp" && !batching {
                eprintln!("bench: mlp serving overhead, 1 client, JSON, {}s", a.seconds);
                overhead = Some(served_run(&backend, "mlp", 1, false, a.seconds).await?.0);
            }
            rss.push((format!("{model}, {mode}"), backend.peak_rss_mib()));
            drop(backend);
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    let md = report(&a, &raw, &served, &interleaved, overhead.as_ref(), &rss)?;
    write_section(&a.common.out, "backend", &md)?;
    println!("{md}");
    eprintln!("bench: wrote {}", a.common.out.display());
    Ok(())
}

fn report(
    a: &BenchArgs,
    raw: &BTreeMap<String, Vec<RawRow>>,
    served: &[Served],
    interleaved: &[(&str, Vec<Round>)],
    overhead: Option<&Report>,
    rss: &[(String, Option<f64>)],
) -> anyhow::Result<String> {
    let device = raw.values().flatten().next().map_or("?".into(), |r| r.device.clone());
    let mut m = String::new();
    writeln!(m, "# Benchmarks: backend\n")?;
    writeln!(m, "Generated by `{}` — do not edit by hand; re-run it.\n", a.reproduce)?;
    writeln!(m, "- Machine: {}; device: **{device}**; libtorch 2.11.0 via tch 0.24.0.", machine())?;
    writeln!(
        m,
        "- Everything below was measured in one run, side by side: compare ratios, not absolute numbers across runs.\n\
         - Served runs are closed-loop with 1 row per request, binary tensor data, {}s each after a 1s warm-up; \
         the load generator runs on the same cores as the server.\n",
        a.seconds
    )?;
    writeln!(m, "## 1. Raw engine ceiling (bare `forward`, no server)\n")?;
    writeln!(m, "| model | batch | rows/s | p50 ms per batch |\n|---|---:|---:|---:|")?;
    for (model, rows) in raw {
        for r in rows {
            writeln!(m, "| {model} | {} | {:.0} | {:.3} |", r.batch_size, r.rows_per_second, r.p50_ms)?;
        }
    }
    writeln!(m, "\n## 2. Served throughput, batching on vs off\n")?;
    writeln!(
        m,
        "| model | mode | clients | rows/s | mean batch | p50 ms | p99 ms | served / raw ceiling at max batch |\n|---|---|---:|---:|---:|---:|---:|---:|"
    )?;
    let mut goals = Vec::new();
    for s in served {
        let rows = raw.get(&s.model).map(Vec::as_slice).unwrap_or_default();
        let max = if s.mode == "batching on" { max_batch(&a.common.model_repository, &s.model)? } else { 1 };
        let ceiling = rows.iter().find(|r| r.batch_size == max).map_or(f64::NAN, |r| r.rows_per_second);
        let ratio = s.report.total.rows_per_second / ceiling;
        writeln!(
            m,
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1}% (raw at batch {max}: {ceiling:.0}) |",
            s.model,
            s.mode,
            s.concurrency,
            s.report.total.rows_per_second,
            s.mean_batch,
            s.report.total.latency_ms.p50,
            s.report.total.latency_ms.p99,
            ratio * 100.0
        )?;
    }
    let speedup = |model: &str| {
        let get =
            |mode| served.iter().find(|s| s.model == model && s.mode == mode).map(|s| s.report.total.rows_per_second);
        get("batching on").zip(get("batching off")).map(|(on, off)| on / off)
    };
    for (model, _) in MODELS {
        if let Some(x) = speedup(model) {
            writeln!(m, "\nBatching speed-up for {model}: **{x:.2}×** rows/s (on / off).")?;
        }
    }
    writeln!(
        m,
        "\n### Served vs raw ceiling, interleaved\n\nThe machine's speed drifts between phases, so the ratio the goal is judged on \
         is measured in alternating rounds against the server above (batching on, same clients): raw `forward` at the \
         max batch size, then served load, {} rounds; the median ratio counts.\n",
        a.rounds
    )?;
    writeln!(m, "| model | max batch | rounds: served rows/s ÷ raw rows/s | median |\n|---|---:|---|---:|")?;
    for (model, rounds) in interleaved {
        let mut ratios: Vec<f64> = rounds.iter().map(|r| r.served / r.raw).collect();
        let text: Vec<String> = rounds.iter().map(|r| format!("{:.0}÷{:.0}", r.served, r.raw)).collect();
        ratios.sort_by(f64::total_cmp);
        let median = ratios.get(ratios.len() / 2).copied().unwrap_or(f64::NAN);
        writeln!(
            m,
            "| {model} | {} | {} | **{:.1}%** |",
            max_batch(&a.common.model_repository, model)?,
            text.join(", "),
            median * 100.0
        )?;
        if *model == "resnet18" {
            goals.push(format!(
                "- ResNet-18 served throughput ≥ 90% of the raw ceiling at the same batch size: **{:.1}%** (median of {} interleaved rounds) — {}",
                median * 100.0,
                rounds.len(),
                if median >= 0.9 { "met" } else { "NOT met" }
            ));
        }
    }
    if let (Some(o), Some(r1)) = (overhead, raw.get("mlp").and_then(|r| r.iter().find(|r| r.batch_size == 1))) {
        let us = (o.total.latency_ms.p50 - r1.p50_ms) * 1e3;
        writeln!(m, "\n## 3. Serving overhead, MLP at batch 1 (1 client, JSON body, batching off)\n")?;
        writeln!(
            m,
            "| raw forward p50 | served p50 (client-measured) | overhead p50 | served p99 |\n|---:|---:|---:|---:|"
        )?;
        writeln!(
            m,
            "| {:.0} µs | {:.0} µs | **{us:.0} µs** | {:.0} µs |",
            r1.p50_ms * 1e3,
            o.total.latency_ms.p50 * 1e3,
            o.total.latency_ms.p99 * 1e3
        )?;
        goals.push(format!(
            "- MLP serving overhead at batch 1 ≤ 300 µs at p50: **{us:.0} µs** — {}",
            if us <= 300.0 { "met" } else { "NOT met" }
        ));
    }
    writeln!(m, "\n## 4. Memory\n\n| server | peak RSS |\n|---|---:|")?;
    for (mode, mib) in rss {
        writeln!(m, "| backend serving {mode} | {} |", mib.map_or("n/a".into(), |v| format!("{v:.0} MiB")))?;
    }
    writeln!(m, "\n## Goals\n\n{}", goals.join("\n"))?;
    Ok(m)
}
