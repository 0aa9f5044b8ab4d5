//! `bench protocols`: the same models over REST with JSON tensors, REST with binary tensors and
//! gRPC, straight to the backend and through Envoy with the Switchyard filter, side by side in
//! one run, against the raw `forward` ceiling measured in the same run.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use switchyard_load::metadata::inputs_of;
use switchyard_load::payload::{GrpcTarget, build_body};
use switchyard_load::report::Report;
use switchyard_load::run::{self, Plan};
use switchyard_load::scenario::Load;
use switchyard_testkit::envoy::{Envoy, EnvoyOptions, envoy_bin};
use switchyard_testkit::free_port;
use switchyard_testkit::process::Log;

use crate::backend::{RawRow, raw_forward};
use crate::common::{Backend, Common, machine, median, stdout_of, write_section};

#[derive(clap::Args)]
pub struct ProtocolsArgs {
    #[command(flatten)]
    common: Common,
    /// Length of each measured run.
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Rounds over every cell (medians are reported).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Measuring time per batch size for the raw engine.
    #[arg(long, default_value_t = 3.0)]
    engine_seconds: f64,
    #[arg(long, default_value = "scripts/bench.sh protocols")]
    reproduce: String,
}

const FILTER_WASM: &str = "target/wasm32-wasip1/wasm-release/switchyard_filter.wasm";

/// The models, and the concurrencies of their cells: one client (latency) and enough to fill
/// the batch the goal names.
const MODELS: [(&str, [usize; 2]); 2] = [("mlp", [1, 32]), ("resnet18", [1, 8])];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Wire {
    Json,
    Binary,
    Grpc,
}

impl Wire {
    const ALL: [Wire; 3] = [Wire::Json, Wire::Binary, Wire::Grpc];

    fn name(self) -> &'static str {
        match self {
            Wire::Json => "REST, JSON",
            Wire::Binary => "REST, binary tensors",
            Wire::Grpc => "gRPC",
        }
    }
}

struct Cell {
    model: &'static str,
    wire: Wire,
    envoy: bool,
    concurrency: usize,
    rows_per_second: Vec<f64>,
    p50_ms: Vec<f64>,
    /// Per round: rows/s over the raw ceiling at this batch size, measured just before.
    of_ceiling: Vec<f64>,
    /// Per round: p50 minus the raw batch-1 `forward` p50 measured just before.
    over_forward_ms: Vec<f64>,
}

/// A closed-loop run of one cell.
async fn measure(addr: &str, model: &str, wire: Wire, concurrency: usize, seconds: f64) -> anyhow::Result<Report> {
    let grpc = wire == Wire::Grpc;
    let inputs = inputs_of(addr, model, Some("v1"), grpc).await?;
    let target = grpc.then(|| GrpcTarget { model: model.to_owned(), version: Some("v1".into()) });
    let body = build_body(&inputs, 1, wire == Wire::Binary, 7, None, target.as_ref())?;
    let path = if grpc {
        switchyard_oip::MODEL_INFER_PATH.to_owned()
    } else {
        format!("/v2/models/{model}/versions/v1/infer")
    };
    let plan = |secs: f64| {
        let mut p =
            Plan::simple(addr, &path, Some(body.clone()), Load::Closed(concurrency), Duration::from_secs_f64(secs));
        p.grpc = grpc;
        p
    };
    // Warm-up, not counted.
    run::execute(plan(1.0)).await?;
    let report = run::execute(plan(seconds)).await?;
    anyhow::ensure!(
        report.total.errors == 0,
        "{model}, {}: errors during the run: {:?} {:?}",
        wire.name(),
        report.total.by_status,
        report.total.by_cause
    );
    Ok(report)
}

fn policy() -> serde_json::Value {
    let model = |name: &str| {
        serde_json::json!({
            "versions": [{"name": "v1", "cluster": format!("{name}-v1"), "weight": 100}],
            "slo": {"availability": 0.99, "latency_ms": 1000},
        })
    };
    serde_json::json!({"models": {"mlp": model("mlp"), "resnet18": model("resnet18")}, "slo_windows": ["5m"]})
}

/// Envoy with the filter in front of `b`, REST and gRPC on one listener.
fn start_envoy(dir: &Path, b: &Backend) -> anyhow::Result<Envoy> {
    let (listen, admin) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let policy_file = dir.join("policy.json");
    std::fs::write(&policy_file, serde_json::to_vec(&policy())?)?;
    let text = |p: &Path| p.to_str().map(str::to_owned).context("non-UTF-8 path");
    let mut args = vec!["render".to_owned(), "envoy".into(), "--policy".into(), text(&policy_file)?];
    args.extend(["--out-dir".into(), text(dir)?, "--wasm".into(), FILTER_WASM.into()]);
    args.extend(["--listen".into(), listen.clone(), "--admin".into(), admin.clone()]);
    for m in ["mlp", "resnet18"] {
        args.extend(["--upstream".into(), format!("{m}-v1={}", b.http)]);
        args.extend(["--grpc-upstream".into(), format!("{m}-v1={}", b.grpc)]);
    }
    stdout_of(Command::new("target/release/switchyard-policy").args(&args), "switchyard-policy render envoy")?;
    let options = EnvoyOptions { log_level: "error".into(), output: Log::Inherit, ..EnvoyOptions::default() };
    Envoy::start(Command::new(envoy_bin()), &dir.join("envoy.yaml"), &listen, &admin, &options)
        .with_context(|| format!("Envoy (its configuration is in {})", dir.display()))
}

pub async fn run(a: ProtocolsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(Path::new(FILTER_WASM).exists(), "{FILTER_WASM} not found: scripts/bench.sh protocols builds it");
    let bin = a.common.backend()?;
    let dir: PathBuf = std::env::temp_dir().join(format!("switchyard-bench-protocols-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut raw: Vec<(&str, Vec<RawRow>)> = Vec::new();
    let backend = Backend::start(&bin, &a.common.model_repository)?;
    let envoy = start_envoy(&dir, &backend)?;
    let mut cells = Vec::new();
    for (model, concurrencies) in MODELS {
        for concurrency in concurrencies {
            for envoy in [false, true] {
                for wire in Wire::ALL {
                    cells.push(Cell {
                        model,
                        wire,
                        envoy,
                        concurrency,
                        rows_per_second: vec![],
                        p50_ms: vec![],
                        of_ceiling: vec![],
                        over_forward_ms: vec![],
                    });
                }
            }
        }
    }
    // Round by round over every cell, so a change in the machine's speed touches all alike; the
    // raw ceiling is measured again in each round, just before its model's cells.
    for round in 0..a.rounds {
        for (model, concurrencies) in MODELS {
            let sizes = format!("1,{},{}", concurrencies[0], concurrencies[1]);
            let rows = raw_forward(&bin, &a.common.model_repository, None, a.engine_seconds, model, &sizes)?;
            let at = |b: usize| rows.iter().find(|r| r.batch_size == b).cloned();
            let forward_p50 = at(1).map_or(f64::NAN, |r| r.p50_ms);
            for c in cells.iter_mut().filter(|c| c.model == model) {
                let addr = if c.envoy {
                    envoy.listen.as_str()
                } else if c.wire == Wire::Grpc {
                    backend.grpc.as_str()
                } else {
                    backend.http.as_str()
                };
                eprintln!(
                    "bench: round {}/{}: {} {} c={} {}",
                    round + 1,
                    a.rounds,
                    c.model,
                    c.wire.name(),
                    c.concurrency,
                    if c.envoy { "through Envoy" } else { "direct" }
                );
                let r = measure(addr, c.model, c.wire, c.concurrency, a.seconds).await?;
                let ceiling = at(c.concurrency).map_or(f64::NAN, |r| r.rows_per_second);
                c.rows_per_second.push(r.total.rows_per_second);
                c.p50_ms.push(r.total.latency_ms.p50);
                c.of_ceiling.push(r.total.rows_per_second / ceiling);
                c.over_forward_ms.push(r.total.latency_ms.p50 - forward_p50);
            }
            match raw.iter_mut().find(|(m, _)| *m == model) {
                Some((_, all)) => all.extend(rows),
                None => raw.push((model, rows)),
            }
        }
    }
    drop(envoy);
    drop(backend);
    let _ = std::fs::remove_dir_all(&dir);
    let md = report(&a, &raw, &cells)?;
    write_section(&a.common.out, "protocols", &md)?;
    println!("{md}");
    eprintln!("bench: wrote {}", a.common.out.display());
    Ok(())
}

/// The raw ceiling at `batch` (rows/s, p50 ms), medians over the rounds.
fn raw_at(raw: &[(&str, Vec<RawRow>)], model: &str, batch: usize) -> Option<(f64, f64)> {
    let rows: Vec<&RawRow> =
        raw.iter().find(|(m, _)| *m == model)?.1.iter().filter(|r| r.batch_size == batch).collect();
    (!rows.is_empty()).then(|| {
        (median(rows.iter().map(|r| r.rows_per_second).collect()), median(rows.iter().map(|r| r.p50_ms).collect()))
    })
}

fn report(a: &ProtocolsArgs, raw: &[(&str, Vec<RawRow>)], cells: &[Cell]) -> anyhow::Result<String> {
    let device = raw.iter().flat_map(|(_, r)| r).next().map_or("?".into(), |r| r.device.clone());
    let get = |model: &str, wire: Wire, envoy: bool, c: usize| {
        cells.iter().find(|x| x.model == model && x.wire == wire && x.envoy == envoy && x.concurrency == c)
    };
    let rows = |x: Option<&Cell>| x.map_or(f64::NAN, |x| median(x.rows_per_second.clone()));
    let p50 = |x: Option<&Cell>| x.map_or(f64::NAN, |x| median(x.p50_ms.clone()));
    let of_ceiling = |x: Option<&Cell>| x.map_or(f64::NAN, |x| median(x.of_ceiling.clone()));
    let over_forward = |x: Option<&Cell>| x.map_or(f64::NAN, |x| median(x.over_forward_ms.clone()));
    let mut m = String::new();
    writeln!(m, "# Benchmarks: REST JSON vs REST binary vs gRPC\n")?;
    writeln!(m, "Generated by `{}` — do not edit by hand; re-run it.\n", a.reproduce)?;
    writeln!(m, "- Machine: {}; device: **{device}**; libtorch 2.11.0 via tch 0.24.0.", machine())?;
    writeln!(
        m,
        "- One backend (batching on, the demo configs) serves mlp and resnet18; one Envoy with the Switchyard filter \
         (split, SLO accounting; sampling off) sits in front of it, REST and gRPC on one listener. Closed-loop runs \
         of {}s after a 1s warm-up, 1 row per request, {} rounds over every cell, medians reported. The load \
         generator (switchyard-load, HTTP/1.1 for REST, HTTP/2 for gRPC, one connection per client) runs on the same \
         cores.",
        a.seconds, a.rounds
    )?;
    writeln!(
        m,
        "- Raw ceiling: bare `forward` (`bench-engine`), measured again in every round just before that model's \
         cells: the rows/s of a full batch of the cell's concurrency, and the p50 of one row. Ratios are taken round \
         by round, then the median.\n"
    )?;
    for (model, concurrencies) in MODELS {
        writeln!(m, "## {model}\n")?;
        writeln!(
            m,
            "| clients | wire | direct rows/s | direct p50 ms | through Envoy rows/s | through Envoy p50 ms | direct / raw ceiling |"
        )?;
        writeln!(m, "|---:|---|---:|---:|---:|---:|---:|")?;
        for c in concurrencies {
            for wire in Wire::ALL {
                let (d, e) = (get(model, wire, false, c), get(model, wire, true, c));
                writeln!(
                    m,
                    "| {c} | {} | {:.0} | {:.2} | {:.0} | {:.2} | {:.0}% |",
                    wire.name(),
                    rows(d),
                    p50(d),
                    rows(e),
                    p50(e),
                    100.0 * of_ceiling(d)
                )?;
            }
        }
        let raw1 = raw_at(raw, model, 1).map_or(f64::NAN, |r| r.1);
        let ceilings: Vec<String> = concurrencies
            .iter()
            .map(|c| format!("batch {c} {:.0} rows/s", raw_at(raw, model, *c).map_or(f64::NAN, |r| r.0)))
            .collect();
        writeln!(m, "\nRaw `forward` (medians over the rounds): batch 1 p50 {raw1:.2} ms; {}.\n", ceilings.join(", "))?;
    }
    writeln!(m, "## Goals\n")?;
    let verdict = |ok: bool| if ok { "**met**" } else { "**not met**" };
    let g8 = get("resnet18", Wire::Grpc, false, 8);
    let share = of_ceiling(g8);
    writeln!(
        m,
        "- resnet18 gRPC at 8 clients: {:.0} rows/s, {:.0}% of the raw ceiling at batch 8 (median of the rounds' \
         ratios); goal ≥ 95%: {}.",
        rows(g8),
        100.0 * share,
        verdict(share >= 0.95)
    )?;
    let g1 = get("resnet18", Wire::Grpc, false, 1);
    let over = over_forward(g1);
    writeln!(
        m,
        "- resnet18 gRPC at 1 client: p50 {:.2} ms, {over:+.2} ms over the batch-1 `forward` measured just before \
         (median of the rounds); goal ≤ forward + 2 ms: {}.",
        p50(g1),
        verdict(over <= 2.0)
    )?;
    let (g32, b32) = (rows(get("mlp", Wire::Grpc, false, 32)), rows(get("mlp", Wire::Binary, false, 32)));
    writeln!(
        m,
        "- mlp gRPC at 32 clients: {g32:.0} rows/s against REST binary {b32:.0} rows/s ({:.2}×); goal ≥ 1×: {}.",
        g32 / b32,
        verdict(g32 >= b32)
    )?;
    Ok(m)
}
