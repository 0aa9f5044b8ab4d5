//! `bench protocols`: the same models over REST with JSON tensors, REST with binary tensors and
//! gRPC, straight to the backend and through Envoy with the Switchyard filter, side by side in
//! one run, against the raw `forward` ceiling measured in the same run.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use switchyard_load::metadata::inputs_of;
use switchyard_load::payload::{GrpcTarget, build_body};
use switchyard_load::report::Report;
use switchyard_load::run::{self, Plan};
use switchyard_load::scenario::Load;
use switchyard_testkit::envoy::{Envoy, EnvoyOptions, envoy_bin};
use switchyard_testkit::free_port;
use switchyard_testkit::process::Log;

use crate::backend::{RawRow, raw_forward};
use crate::common::{Backend, Common, f64_or_nan, machine, median, shown, stdout_of, write_record, write_section};

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

/// How a cell's requests travel (the demo's closed-loop phases name theirs the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Json,
    Binary,
    Grpc,
}

impl Wire {
    const ALL: [Wire; 3] = [Wire::Json, Wire::Binary, Wire::Grpc];

    pub const fn name(self) -> &'static str {
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
    let record = record(&a, &raw, &cells);
    let md = record.markdown();
    write_section(&a.common.out, "protocols", &md)?;
    let json = write_record(&a.common.out, "protocols", &record)?;
    println!("{md}");
    eprintln!("bench: wrote {} and {}", a.common.out.display(), json.display());
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

/// The `protocols` section's figures (`docs/bench/protocols.json`), as the report prints them:
/// the Markdown is rendered from this ([`ProtocolsRecord::markdown`]). A missing figure is NaN
/// (`null` in the JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProtocolsRecord {
    /// The command that reproduces it.
    pub generated_by: String,
    pub machine: String,
    pub device: String,
    /// Seconds per measured run, and rounds over every cell (medians are reported).
    pub seconds: f64,
    pub rounds: usize,
    pub models: Vec<ProtocolsModel>,
    pub goals: ProtocolsGoals,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProtocolsModel {
    pub model: String,
    pub cells: Vec<ProtocolsCell>,
    /// Bare `forward`, medians over the rounds.
    pub raw_forward: RawForward,
}

/// One row: closed-loop clients and a wire format, straight to the backend and through Envoy
/// with the filter (medians over the rounds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProtocolsCell {
    pub clients: usize,
    /// `REST, JSON`, `REST, binary tensors` or `gRPC`.
    pub wire: String,
    #[serde(deserialize_with = "f64_or_nan")]
    pub direct_rows_per_s: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub direct_p50_ms: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub envoy_rows_per_s: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub envoy_p50_ms: f64,
    /// Direct rows/s over the raw ceiling at a batch of `clients`, percent.
    #[serde(deserialize_with = "f64_or_nan")]
    pub direct_of_raw_ceiling_pct: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawForward {
    #[serde(deserialize_with = "f64_or_nan")]
    pub batch1_p50_ms: f64,
    pub ceilings: Vec<BatchCeiling>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchCeiling {
    pub batch: usize,
    #[serde(deserialize_with = "f64_or_nan")]
    pub rows_per_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProtocolsGoals {
    /// resnet18 gRPC at 8 clients: ≥ 95% of the raw ceiling at batch 8.
    pub resnet18_grpc_8_clients: CeilingGoal,
    /// resnet18 gRPC at 1 client: p50 ≤ the batch-1 `forward` + 2 ms.
    pub resnet18_grpc_1_client: OverheadGoal,
    /// mlp gRPC at 32 clients: ≥ REST with binary tensors.
    pub mlp_grpc_32_clients: RatioGoal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CeilingGoal {
    #[serde(deserialize_with = "f64_or_nan")]
    pub rows_per_s: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub of_raw_ceiling_pct: f64,
    pub met: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverheadGoal {
    #[serde(deserialize_with = "f64_or_nan")]
    pub p50_ms: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub over_forward_ms: f64,
    pub met: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RatioGoal {
    #[serde(deserialize_with = "f64_or_nan")]
    pub grpc_rows_per_s: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub binary_rows_per_s: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub ratio: f64,
    pub met: bool,
}

fn record(a: &ProtocolsArgs, raw: &[(&str, Vec<RawRow>)], cells: &[Cell]) -> ProtocolsRecord {
    let device = raw.iter().flat_map(|(_, r)| r).next().map_or("?".into(), |r| r.device.clone());
    let get = |model: &str, wire: Wire, envoy: bool, c: usize| {
        cells.iter().find(|x| x.model == model && x.wire == wire && x.envoy == envoy && x.concurrency == c)
    };
    let rows = |x: Option<&Cell>| x.map_or(f64::NAN, |x| median(x.rows_per_second.clone()));
    let p50 = |x: Option<&Cell>| x.map_or(f64::NAN, |x| median(x.p50_ms.clone()));
    let of_ceiling = |x: Option<&Cell>| x.map_or(f64::NAN, |x| median(x.of_ceiling.clone()));
    let over_forward = |x: Option<&Cell>| x.map_or(f64::NAN, |x| median(x.over_forward_ms.clone()));
    let models = MODELS
        .iter()
        .map(|(model, concurrencies)| ProtocolsModel {
            model: (*model).to_owned(),
            cells: concurrencies
                .iter()
                .flat_map(|c| Wire::ALL.map(|w| (*c, w)))
                .map(|(c, wire)| {
                    let (d, e) = (get(model, wire, false, c), get(model, wire, true, c));
                    ProtocolsCell {
                        clients: c,
                        wire: wire.name().to_owned(),
                        direct_rows_per_s: shown(rows(d), 0),
                        direct_p50_ms: shown(p50(d), 2),
                        envoy_rows_per_s: shown(rows(e), 0),
                        envoy_p50_ms: shown(p50(e), 2),
                        direct_of_raw_ceiling_pct: shown(100.0 * of_ceiling(d), 0),
                    }
                })
                .collect(),
            raw_forward: RawForward {
                batch1_p50_ms: shown(raw_at(raw, model, 1).map_or(f64::NAN, |r| r.1), 2),
                ceilings: concurrencies
                    .iter()
                    .map(|c| BatchCeiling {
                        batch: *c,
                        rows_per_s: shown(raw_at(raw, model, *c).map_or(f64::NAN, |r| r.0), 0),
                    })
                    .collect(),
            },
        })
        .collect();
    let g8 = get("resnet18", Wire::Grpc, false, 8);
    let g1 = get("resnet18", Wire::Grpc, false, 1);
    let (g32, b32) = (rows(get("mlp", Wire::Grpc, false, 32)), rows(get("mlp", Wire::Binary, false, 32)));
    ProtocolsRecord {
        generated_by: a.reproduce.clone(),
        machine: machine(),
        device,
        seconds: a.seconds,
        rounds: a.rounds,
        models,
        goals: ProtocolsGoals {
            resnet18_grpc_8_clients: CeilingGoal {
                rows_per_s: shown(rows(g8), 0),
                of_raw_ceiling_pct: shown(100.0 * of_ceiling(g8), 0),
                met: of_ceiling(g8) >= 0.95,
            },
            resnet18_grpc_1_client: OverheadGoal {
                p50_ms: shown(p50(g1), 2),
                over_forward_ms: shown(over_forward(g1), 2),
                met: over_forward(g1) <= 2.0,
            },
            mlp_grpc_32_clients: RatioGoal {
                grpc_rows_per_s: shown(g32, 0),
                binary_rows_per_s: shown(b32, 0),
                ratio: shown(g32 / b32, 2),
                met: g32 >= b32,
            },
        },
    }
}

impl ProtocolsRecord {
    pub fn markdown(&self) -> String {
        let mut m = String::new();
        let _ = self.write_markdown(&mut m);
        m
    }

    fn write_markdown(&self, m: &mut String) -> std::fmt::Result {
        writeln!(m, "# Benchmarks: REST JSON vs REST binary vs gRPC\n")?;
        writeln!(m, "Generated by `{}` — do not edit by hand; re-run it.\n", self.generated_by)?;
        writeln!(m, "- Machine: {}; device: **{}**; libtorch 2.11.0 via tch 0.24.0.", self.machine, self.device)?;
        writeln!(
            m,
            "- One backend (batching on, the demo configs) serves mlp and resnet18; one Envoy with the Switchyard filter \
             (split, SLO accounting; sampling off) sits in front of it, REST and gRPC on one listener. Closed-loop runs \
             of {}s after a 1s warm-up, 1 row per request, {} rounds over every cell, medians reported. The load \
             generator (switchyard-load, HTTP/1.1 for REST, HTTP/2 for gRPC, one connection per client) runs on the same \
             cores.",
            self.seconds, self.rounds
        )?;
        writeln!(
            m,
            "- Raw ceiling: bare `forward` (`bench-engine`), measured again in every round just before that model's \
             cells: the rows/s of a full batch of the cell's concurrency, and the p50 of one row. Ratios are taken round \
             by round, then the median.\n"
        )?;
        for model in &self.models {
            writeln!(m, "## {}\n", model.model)?;
            writeln!(
                m,
                "| clients | wire | direct rows/s | direct p50 ms | through Envoy rows/s | through Envoy p50 ms | direct / raw ceiling |"
            )?;
            writeln!(m, "|---:|---|---:|---:|---:|---:|---:|")?;
            for c in &model.cells {
                writeln!(
                    m,
                    "| {} | {} | {:.0} | {:.2} | {:.0} | {:.2} | {:.0}% |",
                    c.clients,
                    c.wire,
                    c.direct_rows_per_s,
                    c.direct_p50_ms,
                    c.envoy_rows_per_s,
                    c.envoy_p50_ms,
                    c.direct_of_raw_ceiling_pct
                )?;
            }
            let raw = &model.raw_forward;
            let ceilings: Vec<String> =
                raw.ceilings.iter().map(|c| format!("batch {} {:.0} rows/s", c.batch, c.rows_per_s)).collect();
            writeln!(
                m,
                "\nRaw `forward` (medians over the rounds): batch 1 p50 {:.2} ms; {}.\n",
                raw.batch1_p50_ms,
                ceilings.join(", ")
            )?;
        }
        writeln!(m, "## Goals\n")?;
        let verdict = |ok: bool| if ok { "**met**" } else { "**not met**" };
        let g = &self.goals;
        let (g8, g1, g32) = (&g.resnet18_grpc_8_clients, &g.resnet18_grpc_1_client, &g.mlp_grpc_32_clients);
        writeln!(
            m,
            "- resnet18 gRPC at 8 clients: {:.0} rows/s, {:.0}% of the raw ceiling at batch 8 (median of the rounds' \
             ratios); goal ≥ 95%: {}.",
            g8.rows_per_s,
            g8.of_raw_ceiling_pct,
            verdict(g8.met)
        )?;
        writeln!(
            m,
            "- resnet18 gRPC at 1 client: p50 {:.2} ms, {:+.2} ms over the batch-1 `forward` measured just before \
             (median of the rounds); goal ≤ forward + 2 ms: {}.",
            g1.p50_ms,
            g1.over_forward_ms,
            verdict(g1.met)
        )?;
        writeln!(
            m,
            "- mlp gRPC at 32 clients: {:.0} rows/s against REST binary {:.0} rows/s ({:.2}×); goal ≥ 1×: {}.",
            g32.grpc_rows_per_s,
            g32.binary_rows_per_s,
            g32.ratio,
            verdict(g32.met)
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ProtocolsRecord;

    #[test]
    fn the_protocols_json_holds_the_figures_of_its_section() {
        crate::common::tests::check_record::<ProtocolsRecord>("protocols", ProtocolsRecord::markdown);
    }
}
