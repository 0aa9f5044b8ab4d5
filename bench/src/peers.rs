//! `peers`: Switchyard side by side with KServe's and MLServer's Python servers, serving the
//! same TorchScript files, driven by the same load generator with the same request bytes.
//! Every server runs for the whole benchmark and the cells are interleaved (each cell runs on
//! every server in turn), so the machine's drift touches all of them alike; the report gives
//! ratios within the run. Switchyard and KServe are measured over gRPC too (the same tensors in
//! `raw_input_contents`), as rows of their own.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use switchyard_load::metadata::model_inputs;
use switchyard_load::payload::{Body, GrpcTarget, build_body};
use switchyard_load::report::Report;
use switchyard_load::run::{self, Plan};
use switchyard_load::scenario::Load;
use switchyard_testkit::process::{Log, OnDrop, Process};
use switchyard_testkit::{free_port, try_request};

use crate::backend::raw_forward;
use crate::common::{Backend, Common, derive_model, machine, median, write_section};

#[derive(clap::Args)]
pub struct PeersArgs {
    #[command(flatten)]
    common: Common,
    /// Python of the KServe venv (scripts/bench.sh peers makes it).
    #[arg(long, default_value = ".cache/peers/kserve/bin/python")]
    kserve_python: PathBuf,
    /// Python of the MLServer venv (scripts/bench.sh peers makes it).
    #[arg(long, default_value = ".cache/peers/mlserver/bin/python")]
    mlserver_python: PathBuf,
    /// The peers' model servers (kserve_server.py, mlserver_server.py).
    #[arg(long, default_value = "bench/peers")]
    peers_dir: PathBuf,
    /// Seconds measured per cell and server, after the warm-up.
    #[arg(long, default_value_t = 15.0)]
    seconds: f64,
    #[arg(long, default_value_t = 2.0)]
    warmup_seconds: f64,
    /// The hold-to-fill of the "hold" rows: Switchyard's `max_queue_delay_us` and MLServer's
    /// `max_batch_time`.
    #[arg(long, default_value_t = 2000)]
    hold_us: u64,
    /// Seconds of bare `forward` per batch size for ResNet-18's raw figures.
    #[arg(long, default_value_t = 5.0)]
    engine_seconds: f64,
    #[arg(long, default_value = "scripts/bench.sh peers")]
    reproduce: String,
}

/// The cells: model and concurrent clients, one row per request.
const CELLS: [(&str, usize); 5] = [("mlp", 1), ("mlp", 8), ("mlp", 32), ("resnet18", 1), ("resnet18", 8)];
const MODELS: [&str; 2] = ["mlp", "resnet18"];

/// One server under test, started and ready, stopped when dropped.
struct Server {
    name: String,
    http: String,
    /// The name of its gRPC row and the address, for the servers measured over gRPC too.
    grpc: Option<(String, String)>,
    _process: Option<Process>,
    _backend: Option<Backend>,
}

/// One row of the tables: a server over one protocol.
struct Row {
    name: String,
    addr: String,
    grpc: bool,
}

/// The REST rows first, in the order of `servers` (the goals index them), then the gRPC rows.
fn rows(servers: &[Server]) -> Vec<Row> {
    let rest = servers.iter().map(|s| Row { name: s.name.clone(), addr: s.http.clone(), grpc: false });
    let grpc = servers.iter().filter_map(|s| s.grpc.clone()).map(|(name, addr)| Row { name, addr, grpc: true });
    rest.chain(grpc).collect()
}

fn wait_http_ready(p: &mut Process, http: &str, within: Duration) -> anyhow::Result<()> {
    p.wait_ready(within, "readiness (GET /v2/health/ready: 200)", || {
        try_request(http, "GET", "/v2/health/ready", &[], b"").is_ok_and(|r| r.status == 200)
            && MODELS.iter().all(|m| {
                try_request(http, "GET", &format!("/v2/models/{m}/ready"), &[], b"").is_ok_and(|r| r.status == 200)
            })
    })
}

fn python(py: &Path, script: &Path) -> anyhow::Result<Command> {
    anyhow::ensure!(
        py.exists(),
        "{} not found: scripts/bench.sh peers installs the peers' venvs (or pass --kserve-python/--mlserver-python)",
        py.display()
    );
    // Absolute but not canonical: the venv's python is a symlink that must stay one.
    let mut cmd = Command::new(std::path::absolute(py)?);
    cmd.arg(script).current_dir(script.parent().context("script without a folder")?);
    Ok(cmd)
}

fn start_switchyard(bin: &Path, repo: &Path, name: &str, grpc_row: Option<&str>) -> anyhow::Result<Server> {
    eprintln!("bench: starting {name}");
    let b = Backend::start(bin, repo)?;
    Ok(Server {
        name: name.to_owned(),
        http: b.http.clone(),
        grpc: grpc_row.map(|row| (row.to_owned(), b.grpc.clone())),
        _process: None,
        _backend: Some(b),
    })
}

fn start_kserve(a: &PeersArgs, repo: &Path, work: &Path) -> anyhow::Result<Server> {
    eprintln!("bench: starting KServe");
    let (http, grpc) = (free_port(), free_port());
    let script = std::fs::canonicalize(a.peers_dir.join("kserve_server.py"))?;
    let mut cmd = python(&a.kserve_python, &script)?;
    cmd.arg("--model-repository").arg(repo).args(["--http_port", &http.to_string(), "--grpc_port", &grpc.to_string()]);
    // The per-request latency log line is a debugging aid; the access log stays, as shipped.
    cmd.args(["--enable_latency_logging", "false"]);
    let log = work.join("kserve.log");
    let mut p = Process::spawn("kserve", cmd, Log::File(log))?.on_drop(OnDrop::Terminate(Duration::from_secs(10)));
    let http = format!("127.0.0.1:{http}");
    wait_http_ready(&mut p, &http, Duration::from_secs(120))?;
    Ok(Server {
        name: "KServe 0.21 (Python server, custom `kserve.Model`)".into(),
        http,
        grpc: Some(("KServe 0.21 over gRPC (its `grpcio` server)".into(), format!("127.0.0.1:{grpc}"))),
        _process: Some(p),
        _backend: None,
    })
}

fn start_mlserver(a: &PeersArgs, repo: &Path, work: &Path, hold_us: u64, name: &str) -> anyhow::Result<Server> {
    eprintln!("bench: starting {name}");
    let ports = [free_port(), free_port(), free_port()];
    let script = std::fs::canonicalize(a.peers_dir.join("mlserver_server.py"))?;
    let mut cmd = python(&a.mlserver_python, &script)?;
    cmd.arg("--model-repository").arg(repo).arg("--workdir").arg(work.join(format!("mlserver-{hold_us}")));
    for (flag, port) in ["--http-port", "--grpc-port", "--metrics-port"].into_iter().zip(ports) {
        cmd.args([flag, &port.to_string()]);
    }
    cmd.args(["--max-batch-time-us", &hold_us.to_string()]);
    let log = work.join(format!("mlserver-{hold_us}.log"));
    let mut p = Process::spawn("mlserver", cmd, Log::File(log))?.on_drop(OnDrop::Terminate(Duration::from_secs(10)));
    let http = format!("127.0.0.1:{}", ports[0]);
    wait_http_ready(&mut p, &http, Duration::from_secs(180))?;
    Ok(Server { name: name.to_owned(), http, grpc: None, _process: Some(p), _backend: None })
}

/// The first output's values of one inference over REST.
fn infer_output(http: &str, model: &str, body: &Body) -> anyhow::Result<Vec<f64>> {
    let r = try_request(
        http,
        "POST",
        &format!("/v2/models/{model}/infer"),
        &[("content-type", "application/json")],
        &body.bytes,
    )
    .map_err(|e| anyhow::anyhow!("{model} at {http}: {e}"))?;
    if r.status != 200 {
        bail!("{model} at {http} answered {}: {}", r.status, String::from_utf8_lossy(&r.body).trim());
    }
    let v: serde_json::Value = serde_json::from_slice(&r.body).context("inference response is not JSON")?;
    let data = v["outputs"][0]["data"].as_array().context("response without outputs[0].data")?;
    data.iter().map(|x| x.as_f64().context("non-numeric output")).collect()
}

/// The first output's values of one inference over gRPC, raw or typed (FP32 either way).
async fn infer_output_grpc(addr: &str, body: &Body) -> anyhow::Result<Vec<f64>> {
    use prost::Message as _;
    let message = body.bytes.get(5..).context("gRPC body without its frame header")?;
    let answer = switchyard_load::http::grpc_call(addr, "ModelInfer", message).await?;
    let r = switchyard_oip::inference::ModelInferResponse::decode(answer).context("malformed ModelInferResponse")?;
    if let Some(raw) = r.raw_output_contents.first() {
        let values = raw.chunks_exact(4).map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
        return Ok(values.collect());
    }
    let typed = r.outputs.first().and_then(|o| o.contents.as_ref()).context("answer without outputs")?;
    Ok(typed.fp32_contents.iter().copied().map(f64::from).collect())
}

/// Every peer must compute what Switchyard computes for the same tensors: the benchmark
/// compares servers of one model, not different models.
async fn same_answers(rows: &[Row], bodies: &[Bodies]) -> anyhow::Result<()> {
    let Some((reference, peers)) = rows.split_first() else { return Ok(()) };
    for b in bodies {
        let model = b.model;
        let want = infer_output(&reference.addr, model, &b.rest)?;
        for r in peers {
            let got =
                if r.grpc { infer_output_grpc(&r.addr, &b.grpc).await } else { infer_output(&r.addr, model, &b.rest) };
            let got = got.with_context(|| format!("{}: {model}", r.name))?;
            // Relative: ResNet-18's 1000 probabilities are each about 1e-3, so an absolute
            // bound would let a different model through.
            let off = want.iter().zip(&got).find(|(a, b)| (*a - *b).abs() > 1e-7 + 1e-4 * a.abs());
            if got.len() != want.len() || off.is_some() {
                bail!(
                    "{} answers {model} differently from Switchyard ({} values; first difference {off:?})",
                    r.name,
                    got.len()
                );
            }
        }
    }
    Ok(())
}

/// One model's request, as V2 JSON and as a gRPC message with the same tensors.
struct Bodies {
    model: &'static str,
    rest: Body,
    grpc: Body,
}

struct Cell {
    model: &'static str,
    clients: usize,
    body_bytes: usize,
    /// Per row, in the order of `rows`.
    results: Vec<Report>,
}

/// The raw figures the ResNet-18 goals compare with.
struct Raw {
    p50_ms_batch1: f64,
    /// The most rows/s bare `forward` reaches at any batch size up to 8 (8 clients with one row
    /// each can fill no larger batch).
    ceiling_8: f64,
    ceiling_batch: usize,
}

pub async fn run(a: PeersArgs) -> anyhow::Result<()> {
    let bin = a.common.backend()?;
    let work = std::env::temp_dir().join(format!("switchyard-bench-peers-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = measure(&a, &bin, &work).await;
    if result.is_err() {
        eprintln!("bench: the peers' logs are in {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    let (servers, cells, raw) = result?;
    let md = report(&a, &servers, &cells, &raw)?;
    write_section(&a.common.out, "peers", &md)?;
    println!("{md}");
    eprintln!("bench: wrote {}", a.common.out.display());
    Ok(())
}

/// The rows' names, each with whether it is a gRPC row.
type Names = Vec<(String, bool)>;

async fn measure(a: &PeersArgs, bin: &Path, work: &Path) -> anyhow::Result<(Names, Vec<Cell>, Raw)> {
    let src = &a.common.model_repository;
    let (default_repo, hold_repo) = (work.join("repo-default"), work.join("repo-hold"));
    for m in MODELS {
        derive_model(src, &default_repo, m, |_| {})?;
        derive_model(src, &hold_repo, m, |cfg| cfg["batching"]["max_queue_delay_us"] = a.hold_us.into())?;
    }
    let default_repo = std::fs::canonicalize(default_repo)?;
    let grpc_row = "Switchyard over gRPC, default config";
    let servers = vec![
        start_switchyard(bin, &default_repo, "Switchyard, default config (work-conserving)", Some(grpc_row))?,
        start_switchyard(
            bin,
            &hold_repo,
            &format!("Switchyard, opt-in hold `max_queue_delay_us: {}`", a.hold_us),
            None,
        )?,
        start_kserve(a, &default_repo, work)?,
        start_mlserver(
            a,
            &default_repo,
            work,
            a.hold_us,
            &format!("MLServer 1.7.1, adaptive batching (`max_batch_time` {} µs)", a.hold_us),
        )?,
    ];
    let rows = rows(&servers);
    let mut bodies = Vec::new();
    for model in MODELS {
        let inputs = model_inputs(&servers[0].http, model, Some("v1")).await?;
        // V2 JSON, one row: the body every REST row gets, byte for byte; the gRPC rows get the
        // same values (same seed) in `raw_input_contents`, with no version (peers have none).
        let target = GrpcTarget { model: model.to_owned(), version: None };
        let rest = build_body(&inputs, 1, false, 7, None, None)?;
        let grpc = build_body(&inputs, 1, false, 7, None, Some(&target))?;
        bodies.push(Bodies { model, rest, grpc });
    }
    same_answers(&rows, &bodies).await?;
    eprintln!("bench: every server answers both models as Switchyard does, over REST and gRPC");

    let mut cells = Vec::new();
    let mut raw = None;
    for (model, clients) in CELLS {
        if model == "resnet18" && raw.is_none() {
            // Measured here, next to the cells it is compared with; the servers idle meanwhile.
            let rows = raw_forward(bin, src, None, a.engine_seconds, model, "1,2,4,8")?;
            let best = rows.iter().max_by(|x, y| x.rows_per_second.total_cmp(&y.rows_per_second));
            raw = Some(Raw {
                p50_ms_batch1: rows.iter().find(|r| r.batch_size == 1).map_or(f64::NAN, |r| r.p50_ms),
                ceiling_8: best.map_or(f64::NAN, |r| r.rows_per_second),
                ceiling_batch: best.map_or(0, |r| r.batch_size),
            });
        }
        let b = bodies.iter().find(|b| b.model == model).context("no body")?;
        let rest_path = format!("/v2/models/{model}/infer");
        let mut results = Vec::new();
        for r in &rows {
            eprintln!("bench: {model}, {clients} clients, {}: {}s", r.name, a.seconds);
            let (path, body) =
                if r.grpc { (switchyard_oip::MODEL_INFER_PATH, &b.grpc) } else { (rest_path.as_str(), &b.rest) };
            let plan = |secs: f64| {
                let load = Load::Closed(clients);
                let mut p = Plan::simple(&r.addr, path, Some(body.clone()), load, Duration::from_secs_f64(secs));
                p.grpc = r.grpc;
                p
            };
            run::execute(plan(a.warmup_seconds)).await?;
            results.push(run::execute(plan(a.seconds)).await?);
        }
        cells.push(Cell { model, clients, body_bytes: b.rest.bytes.len(), results });
    }
    let names = rows.into_iter().map(|r| (r.name, r.grpc)).collect();
    Ok((names, cells, raw.context("no ResNet-18 cell ran")?))
}

fn report(a: &PeersArgs, servers: &[(String, bool)], cells: &[Cell], raw: &Raw) -> anyhow::Result<String> {
    let mut m = String::new();
    writeln!(m, "# Benchmarks: Switchyard and its peers\n")?;
    writeln!(m, "Generated by `{}` — do not edit by hand; re-run it.\n", a.reproduce)?;
    writeln!(
        m,
        "- Machine: {}. Every server ran for the whole run and each cell ran on every server in turn \
         ({}s after a {}s warm-up), so compare ratios within this table, not across runs.\n\
         - Load: `switchyard-load`'s closed loop (the library behind `switchyard-load closed`), V2 JSON, one row per \
         request, the same bytes to every server (ResNet-18's body: {:.2} MB); the generator shares the 2 cores with \
         the server, as it would with oha. The gRPC rows send the same values as a `ModelInferRequest` with the \
         tensor in `raw_input_contents` (what `tritonclient[grpc]` sends), one HTTP/2 connection per client.\n\
         - The same TorchScript files (`models/repo/*/v1/model.pt`) on torch/libtorch 2.11.0, CPU, default thread \
         counts; before measuring, every server's answer to that body was checked against Switchyard's.\n\
         - Peers as shipped, each in its own benchmark-only venv (`bench/peers/`): KServe's `ModelServer` with a \
         custom `kserve.Model` (one worker; its latency log line off, its access log on), MLServer with a custom \
         runtime (`parallel_workers` 1, debug off, adaptive batching with the model's `max_batch_size`).\n",
        machine(),
        a.seconds,
        a.warmup_seconds,
        cells.iter().find(|c| c.model == "resnet18").map_or(0.0, |c| c.body_bytes as f64 / 1e6),
    )?;
    writeln!(m, "## Requests/s (p50)\n")?;
    let header: Vec<String> = cells.iter().map(|c| format!("{} c={}", c.model, c.clients)).collect();
    writeln!(m, "| server | {} |", header.join(" | "))?;
    writeln!(m, "|---|{}", "---:|".repeat(cells.len()))?;
    for (i, (s, _)) in servers.iter().enumerate() {
        let row: Vec<String> = cells
            .iter()
            .map(|c| {
                let t = &c.results[i].total;
                let errors = if t.errors > 0 { format!(", {} errors", t.errors) } else { String::new() };
                format!("{} ({}{errors})", rate(t.throughput), ms(t.latency_ms.p50))
            })
            .collect();
        writeln!(m, "| {s} | {} |", row.join(" | "))?;
    }
    writeln!(m, "\n## p99 latency\n")?;
    writeln!(m, "| server | {} |", header.join(" | "))?;
    writeln!(m, "|---|{}", "---:|".repeat(cells.len()))?;
    for (i, (s, _)) in servers.iter().enumerate() {
        let row: Vec<String> = cells.iter().map(|c| ms(c.results[i].total.latency_ms.p99)).collect();
        writeln!(m, "| {s} | {} |", row.join(" | "))?;
    }
    let ratios = |m: &mut String, of: usize, peers: &mut dyn Iterator<Item = (usize, &String)>| -> std::fmt::Result {
        writeln!(m, "| peer | {} |", header.join(" | "))?;
        writeln!(m, "|---|{}", "---:|".repeat(cells.len()))?;
        for (i, s) in peers {
            let row: Vec<String> = cells
                .iter()
                .map(|c| format!("{:.2}×", c.results[of].total.throughput / c.results[i].total.throughput))
                .collect();
            writeln!(m, "| {s} | {} |", row.join(" | "))?;
        }
        Ok(())
    };
    writeln!(m, "\n## Ratios: Switchyard (default config) ÷ peer, requests/s\n")?;
    ratios(&mut m, 0, &mut servers.iter().enumerate().skip(1).filter(|(_, (_, g))| !g).map(|(i, (s, _))| (i, s)))?;
    // The first gRPC row is Switchyard's (`rows` keeps the order of `servers`).
    if let Some(of) = servers.iter().position(|(_, g)| *g) {
        writeln!(m, "\n## Ratios: Switchyard over gRPC ÷ peer, requests/s\n")?;
        let others = servers.iter().enumerate().filter(|(i, (_, g))| *i == 0 || (*g && *i != of));
        ratios(&mut m, of, &mut others.map(|(i, (s, _))| (i, s)))?;
    }
    writeln!(
        m,
        "\nResNet-18 raw, bare `forward` in `switchyard-backend bench-engine` between the cells: p50 {} at batch 1; \
         ceiling for 8 clients {:.1} rows/s (at batch {}).",
        ms(raw.p50_ms_batch1),
        raw.ceiling_8,
        raw.ceiling_batch
    )?;
    writeln!(m, "\n## Goals (issue 12)\n")?;
    let cell = |model: &str, clients: usize| cells.iter().find(|c| c.model == model && c.clients == clients);
    // Column 2 is KServe: servers are started in the order of `measure`.
    let kserve = 2;
    for (clients, goal) in [(1, 3.0), (8, 10.0), (32, 25.0)] {
        if let Some(c) = cell("mlp", clients) {
            let x = c.results[0].total.throughput / c.results[kserve].total.throughput;
            let p99 = c.results[0].total.latency_ms.p99;
            let extra = if clients == 32 { format!(", p99 {} (goal ≤ 2 ms)", ms(p99)) } else { String::new() };
            let met = x >= goal && (clients != 32 || p99 <= 2.0);
            writeln!(m, "- mlp c={clients}: ≥ {goal}× KServe: **{x:.2}×**{extra} — {}", verdict(met))?;
        }
    }
    if let Some(c) = cell("resnet18", 1) {
        let p50 = c.results[0].total.latency_ms.p50;
        let over = p50 - raw.p50_ms_batch1;
        writeln!(
            m,
            "- resnet18 c=1: p50 ≤ raw forward p50 + 5 ms: **{} = raw {} + {}** — {}",
            ms(p50),
            ms(raw.p50_ms_batch1),
            ms(over),
            verdict(over <= 5.0)
        )?;
    }
    if let Some(c) = cell("resnet18", 8) {
        let share = c.results[0].total.rows_per_second / raw.ceiling_8;
        writeln!(
            m,
            "- resnet18 c=8: ≥ 95% of the raw ceiling: **{:.1}%** ({:.1} ÷ {:.1} rows/s) — {}",
            share * 100.0,
            c.results[0].total.rows_per_second,
            raw.ceiling_8,
            verdict(share >= 0.95)
        )?;
    }
    let ratios: Vec<f64> =
        cells.iter().map(|c| c.results[0].total.throughput / c.results[kserve].total.throughput).collect();
    writeln!(m, "\nMedian Switchyard ÷ KServe over the cells: {:.2}×.", median(ratios))?;
    let grpc: Vec<usize> = servers.iter().enumerate().filter(|(_, (_, g))| *g).map(|(i, _)| i).collect();
    if let [ours, theirs] = grpc[..] {
        let ratios: Vec<f64> =
            cells.iter().map(|c| c.results[ours].total.throughput / c.results[theirs].total.throughput).collect();
        writeln!(m, "Median Switchyard ÷ KServe over gRPC: {:.2}×.", median(ratios))?;
    }
    Ok(m)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn rate(x: f64) -> String {
    if x >= 100.0 { format!("{x:.0}") } else { format!("{x:.1}") }
}

fn ms(x: f64) -> String {
    if x >= 10.0 { format!("{x:.1} ms") } else { format!("{x:.2} ms") }
}
