//! `drift`: the drift monitor's two costs, and Evidently beside it on the same data.
//! - ingest: mlp-sized collector lines (64 features, 2 probabilities, real headers) through
//!   the streaming monitor's `ingest_line` on one thread, beside plain `serde_json` parsing of
//!   the same lines (the floor any JSON reader pays);
//! - evaluation: all 64 numerical columns of a 10,000-row window against a 100,000-row
//!   reference (Evidently's defaults pick normalised Wasserstein), the reference summarised
//!   once beforehand; then Evidently 0.7's `Report([DataDriftPreset()])` on the same rows in
//!   its benchmark-only venv (bench/peers/evidently_drift.py): time, and every column's
//!   decision and score compared.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use switchyard_drift::Summary;
use switchyard_monitor::drift::config::{Config, Rules};
use switchyard_monitor::drift::evaluate::{Reference, ReferenceColumn, evaluate};
use switchyard_monitor::drift::metrics::Metrics;
use switchyard_monitor::drift::monitor::Monitor;
use switchyard_runtime::tail::Follow;

use switchyard_testkit::Rng;

use crate::common::{machine, median, stdout_of, write_section};

#[derive(clap::Args)]
pub struct DriftArgs {
    /// Collector lines ingested (after as many again as a warm-up).
    #[arg(long, default_value_t = 200_000)]
    samples: usize,
    #[arg(long, default_value_t = 100_000)]
    reference_rows: usize,
    #[arg(long, default_value_t = 10_000)]
    current_rows: usize,
    /// The second cell's reference: at most 1,000 rows, so Evidently picks K-S.
    #[arg(long, default_value_t = 1_000)]
    small_reference_rows: usize,
    #[arg(long, default_value_t = 64)]
    columns: usize,
    /// Timed evaluations (ours) and Evidently runs; the report gives the median.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Python of the benchmark-only venv with evidently (scripts/bench.sh drift makes it).
    #[arg(long, default_value = ".cache/peers/evidently/bin/python")]
    python: PathBuf,
    #[arg(long, default_value = "docs/benchmarks.md")]
    out: PathBuf,
    #[arg(long, default_value = "scripts/bench.sh drift")]
    reproduce: String,
}

/// One collector line as the filter ships an mlp exchange (its f32 data printed as f32).
fn sample_line(rng: &mut Rng, i: usize) -> String {
    let features: Vec<f32> = (0..64).map(|_| rng.normal() as f32).collect();
    let p = (1.0 / (1.0 + (-f64::from(features[0])).exp())) as f32;
    json!({
        "schema": 1, "model": "mlp", "version": "v2", "request_id": format!("{i:08x}-a3f1-4935-bc23-2e9809673765"),
        "start_unix_ms": 1_796_000_000_000u64 + i as u64, "duration_ms": 2, "status": 200, "outcome": "success",
        "request": {"headers": [[":authority", "127.0.0.1:10000"], [":path", "/v2/models/mlp/infer"], [":method", "POST"],
            ["content-type", "application/json"], ["content-length", "768"], ["x-request-id", "60d1a0b1-a3f1-4935-bc23-2e9809673765"]],
            "body": {"inputs": [{"name": "features", "shape": [1, 64], "datatype": "FP32", "data": features}]}, "bytes": 768, "truncated": false},
        "response": {"headers": [[":status", "200"], ["content-type", "application/json"], ["content-length", "139"]],
            "body": {"model_name": "mlp", "model_version": "v2", "outputs": [{"name": "probabilities", "shape": [1, 2], "datatype": "FP32", "data": [1.0 - p, p]}]},
            "bytes": 139, "truncated": false}
    })
    .to_string()
}

struct Ingest {
    per_s: f64,
    parse_per_s: f64,
    mean_bytes: f64,
}

fn ingest(a: &DriftArgs) -> anyhow::Result<Ingest> {
    let mut rng = Rng(1);
    let lines: Vec<String> = (0..a.samples).map(|i| sample_line(&mut rng, i)).collect();
    let config = Config::parse(r#"{"models": {"mlp": {"reference": {"version": "v1", "rows": 1000}}}}"#)
        .map_err(|p| anyhow::anyhow!(p.join("; ")))?;
    let mut monitor = Monitor::new(config, Metrics::default(), None).map_err(|p| anyhow::anyhow!(p.join("; ")))?;
    // Warm-up: the windows fill to their capacity, so the timed run pays for evictions too.
    for l in &lines {
        monitor.ingest_line(l);
    }
    // Timed as `watch` runs: the file read by the tail, each line parsed and its rows added.
    let path = std::env::temp_dir().join(format!("switchyard-bench-samples-{}.jsonl", std::process::id()));
    std::fs::write(&path, lines.join("\n") + "\n")?;
    let mut tail = Follow::new(path.clone(), 8 * 1024 * 1024);
    let t = Instant::now();
    let mut read = 0;
    while read < lines.len() {
        let polled = tail.poll(20_000, |l| monitor.ingest_line(l))?;
        anyhow::ensure!(polled.lines > 0, "the tail stopped after {read} lines");
        read += polled.lines;
    }
    let per_s = a.samples as f64 / t.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    let t = Instant::now();
    let mut n = 0usize;
    for l in &lines {
        let v: Value = serde_json::from_str(l)?;
        n += usize::from(v.is_object());
    }
    let parse_per_s = n as f64 / t.elapsed().as_secs_f64();
    let mean_bytes = lines.iter().map(String::len).sum::<usize>() as f64 / lines.len() as f64;
    Ok(Ingest { per_s, parse_per_s, mean_bytes })
}

fn write_f64(path: &std::path::Path, rows: &[Vec<f64>]) -> anyhow::Result<()> {
    let mut bytes = Vec::with_capacity(rows.len() * rows.first().map_or(0, Vec::len) * 8);
    for r in rows {
        for x in r {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
    }
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// One evaluation cell measured on both sides.
struct Cell {
    reference_rows: usize,
    test: String,
    summarise_s: f64,
    our_s: f64,
    evidently_s: f64,
    evidently_version: String,
    columns: usize,
    same: usize,
    differ: Vec<String>,
    max_rel: f64,
    ours_dataset: (bool, usize),
    evidently_dataset: (Value, Value),
}

/// `reference_rows` × columns against `a.current_rows`: columns 0-7 of the window shifted by
/// 0.5 sd, 8-15 by 0.05 (near the thresholds), the rest not.
fn cell(a: &DriftArgs, reference_rows: usize, seed: u64) -> anyhow::Result<Cell> {
    let mut rng = Rng(seed);
    let shift = |c: usize| {
        if c < 8 {
            0.5
        } else if c < 16 {
            0.05
        } else {
            0.0
        }
    };
    let reference: Vec<Vec<f64>> =
        (0..reference_rows).map(|_| (0..a.columns).map(|_| rng.normal()).collect()).collect();
    let current: Vec<Vec<f64>> =
        (0..a.current_rows).map(|_| (0..a.columns).map(|c| rng.normal() + shift(c)).collect()).collect();
    let dir = std::env::temp_dir().join(format!("switchyard-bench-drift-{}-{reference_rows}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (rf, cf) = (dir.join("reference.f64"), dir.join("current.f64"));
    write_f64(&rf, &reference)?;
    write_f64(&cf, &current)?;
    println!(
        "evaluation: {} columns, {}-row window against a {reference_rows}-row reference",
        a.columns, a.current_rows
    );
    let t = Instant::now();
    let summary = Reference {
        source: "bench".into(),
        rows: reference_rows,
        columns: (0..a.columns)
            .map(|c| ReferenceColumn {
                name: format!("f{c}"),
                kind: switchyard_drift::Kind::Numerical,
                summary: Summary::numerical(reference.iter().map(|r| r[c])),
            })
            .collect(),
    };
    let summarise_s = t.elapsed().as_secs_f64();
    let columns: Vec<Vec<f64>> = (0..a.columns).map(|c| current.iter().map(|r| r[c]).collect()).collect();
    let rules = Rules::default();
    let mut times = Vec::new();
    let mut ours = None;
    for _ in 0..a.repeat.max(1) {
        let t = Instant::now();
        // Every row judged, as Evidently does (the bench compares the statistics, not the guard).
        let e = evaluate(&summary, &rules, 1, |name, _| {
            let c: usize = name.strip_prefix('f')?.parse().ok()?;
            Some(Summary::numerical(columns[c].iter().copied()))
        });
        times.push(t.elapsed().as_secs_f64());
        ours = Some(e);
    }
    let ours = ours.context("no evaluation")?;
    let our_s = median(times.clone());
    println!(
        "    ours: {:.1} ms (median of {}), reference summarised once in {:.0} ms",
        our_s * 1e3,
        times.len(),
        summarise_s * 1e3
    );
    let out = dir.join("evidently.json");
    let mut cmd = Command::new(&a.python);
    cmd.arg("bench/peers/evidently_drift.py")
        .args(["--reference"])
        .arg(&rf)
        .arg("--current")
        .arg(&cf)
        .args(["--columns", &a.columns.to_string(), "--repeat", &a.repeat.to_string(), "--out"])
        .arg(&out);
    stdout_of(&mut cmd, "evidently_drift.py")?;
    let ev: Value = serde_json::from_slice(&std::fs::read(&out)?)?;
    let _ = std::fs::remove_dir_all(&dir);
    let evidently_s = ev["seconds_median"].as_f64().context("no seconds_median")?;
    let (mut same, mut differ, mut max_rel) = (0, Vec::new(), 0.0f64);
    for c in &ours.columns {
        let e = &ev["columns"][&c.column];
        let d = c.drift.context("a column without a result")?;
        let es = e["score"].as_f64().unwrap_or(f64::NAN);
        if es != d.score {
            max_rel = max_rel.max(((d.score - es) / es).abs());
        }
        if Some(d.drifted) == e["drifted"].as_bool() {
            same += 1;
        } else {
            differ.push(c.column.clone());
        }
    }
    let test = ours.columns.first().and_then(|c| c.drift).map_or_else(String::new, |d| d.test.to_string());
    let c = Cell {
        reference_rows,
        test,
        summarise_s,
        our_s,
        evidently_s,
        evidently_version: ev["evidently_version"].as_str().unwrap_or("?").to_owned(),
        columns: ours.columns.len(),
        same,
        differ,
        max_rel,
        ours_dataset: (ours.dataset.drifted, ours.dataset.drifted_columns),
        evidently_dataset: (ev["dataset_drift"].clone(), ev["drifted_columns"].clone()),
    };
    println!(
        "    Evidently {}: {:.2} s (median of {}); ours is {:.0}x faster; decisions identical on {} of {} columns, scores within {:.1e} relative",
        c.evidently_version,
        c.evidently_s,
        a.repeat,
        c.evidently_s / c.our_s,
        c.same,
        c.columns,
        c.max_rel
    );
    Ok(c)
}

pub async fn run(a: DriftArgs) -> anyhow::Result<()> {
    println!("ingest: {} mlp-sized collector lines from a file through the streaming monitor (one thread)", a.samples);
    let ing = ingest(&a)?;
    println!("    {:.0} samples/s (plain serde_json parse of the same lines: {:.0}/s)", ing.per_s, ing.parse_per_s);
    if !a.python.exists() {
        bail!("{} is missing: scripts/bench.sh drift creates Evidently's benchmark-only venv", a.python.display());
    }
    // The goal's cell (a large reference: normalised Wasserstein), then a small one (K-S).
    let cells = [cell(&a, a.reference_rows, 14)?, cell(&a, a.small_reference_rows, 15)?];

    let mut m = String::new();
    writeln!(m, "## Drift monitor: ingest, and evaluation against Evidently\n")?;
    writeln!(m, "Generated by `{}` — do not edit by hand; re-run it.\n", a.reproduce)?;
    writeln!(m, "Machine: {}. One thread each; medians of {} runs.\n", machine(), a.repeat.max(1))?;
    writeln!(m, "| measurement | result | goal |\n|---|---|---|")?;
    writeln!(
        m,
        "| streaming ingest: mlp-sized collector lines ({:.0} bytes: 64 features, 2 probabilities, headers) read from the samples file, parsed, rows added to the windows; one core | **{:.0} samples/s** (plain `serde_json` parse of the same lines: {:.0}/s, {:.0}% of it) | ≥ 50,000 |",
        ing.mean_bytes,
        ing.per_s,
        ing.parse_per_s,
        100.0 * ing.per_s / ing.parse_per_s
    )?;
    for (i, c) in cells.iter().enumerate() {
        let goal = if i == 0 { "≥ 20×" } else { "" };
        writeln!(
            m,
            "| {} numerical columns, {}-row window vs {}-row reference (test `{}`; reference summarised once: {:.0} ms): ours | **{:.1} ms** | |",
            c.columns,
            a.current_rows,
            c.reference_rows,
            c.test,
            c.summarise_s * 1e3,
            c.our_s * 1e3
        )?;
        writeln!(
            m,
            "| the same with Evidently {} `Report([DataDriftPreset()])` | {:.2} s — **ours {:.0}× faster** | {goal} |",
            c.evidently_version,
            c.evidently_s,
            c.evidently_s / c.our_s
        )?;
        writeln!(
            m,
            "| drift decisions identical; largest relative score difference | **{} of {}** columns{}; dataset drift: ours {} ({} columns), Evidently {} ({}); {:.1e} | all; ≤ 1e-9 |",
            c.same,
            c.columns,
            if c.differ.is_empty() { String::new() } else { format!(" (differ: {})", c.differ.join(", ")) },
            c.ours_dataset.0,
            c.ours_dataset.1,
            c.evidently_dataset.0,
            c.evidently_dataset.1,
            c.max_rel
        )?;
    }
    writeln!(
        m,
        "\nThe data: standard normal columns; in the window columns 0-7 are shifted by 0.5 sd and 8-15 by 0.05 sd (near the thresholds), the rest not. With a reference of at most 1,000 rows Evidently picks K-S: its exact p-value costs O(window × band) per column (scipy computes the same, compiled with Pythran), so that ratio is smaller. Evidently runs in a benchmark-only venv (`bench/peers/requirements-evidently.txt`), never a product dependency. Ours is the monitor's own code path (`switchyard_monitor::drift::evaluate` over `switchyard_drift`): each window column is summarised (sorted) and merged with the reference's sorted values; Evidently recomputes everything from the two DataFrames each time (and, per its profile, each column three times, plus its plots)."
    )?;
    write_section(&a.out, "drift", &m)?;
    println!("==> {}", a.out.display());
    let differ: Vec<&String> = cells.iter().flat_map(|c| &c.differ).collect();
    if !differ.is_empty() {
        bail!("drift decisions differ from Evidently's on {differ:?}");
    }
    Ok(())
}
