//! `bench-filter`: what the Switchyard filter costs. The same open-loop load goes, in
//! alternating rounds, to the backend directly, to Envoy without the filter and to Envoy with
//! it (sampling 0% and 1%); then both Envoys are saturated closed-loop. Everything runs at
//! once on this machine, so the report gives differences and ratios measured side by side.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::bench::{Backend, Common, derived_repo, write_section};
use crate::client;
use crate::payload::{Body, build_body};
use crate::run::{self, Report};

#[derive(clap::Args)]
pub struct FilterBenchArgs {
    #[command(flatten)]
    common: Common,
    /// Open-loop rate for the latency comparison (requests/s).
    #[arg(long, default_value_t = 400.0)]
    rate: f64,
    /// Length of each measured run.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Concurrent clients for the saturation runs.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    #[arg(long, default_value = "scripts/bench.sh filter")]
    reproduce: String,
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn python() -> PathBuf {
    PathBuf::from(".venv/bin/python")
}

fn render(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(python()).arg("envoy/render.py").args(args).output().context("running envoy/render.py")?;
    if !out.status.success() {
        bail!("render.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

struct Envoy {
    proc: Proc,
    listen: String,
    admin: String,
}

impl Envoy {
    async fn start(
        dir: &Path,
        name: &str,
        policy: &Path,
        backend: &str,
        collector: &str,
        filter: bool,
    ) -> anyhow::Result<Envoy> {
        let (listen, admin) = (format!("127.0.0.1:{}", free_port()?), format!("127.0.0.1:{}", free_port()?));
        let (boot, ecds) = (dir.join(format!("{name}.yaml")), dir.join(format!("{name}-filter.yaml")));
        let wasm = "target/wasm32-wasip1/wasm-release/switchyard_filter.wasm";
        if filter {
            render(&["filter", "--policy", path(policy)?, "--wasm", wasm, "--out", path(&ecds)?])?;
        }
        let mut args = vec!["bootstrap", "--policy", path(policy)?, "--out", path(&boot)?, "--ecds", path(&ecds)?];
        let up1 = format!("mlp-v1={backend}");
        let up2 = format!("mlp-v2={backend}");
        args.extend(["--listen", &listen, "--admin", &admin, "--upstream", &up1, "--upstream", &up2]);
        args.extend(["--collector", collector]);
        if !filter {
            args.push("--no-filter");
        }
        render(&args)?;
        let child = Command::new(".venv/bin/envoy")
            .arg("-c")
            .arg(&boot)
            .args(["--disable-hot-restart", "--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting .venv/bin/envoy (run scripts/setup.sh)")?;
        let envoy = Envoy { proc: Proc(child), listen, admin };
        for _ in 0..300 {
            let loaded =
                !filter || envoy.stat("extension_config_discovery.http_filter.switchyard.update_success").await >= 1.0;
            if loaded && client::get(&envoy.listen, "/v2/health/live").await.is_ok_and(|(s, _)| s == 200) {
                return Ok(envoy);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("Envoy {name} did not come up in 30 s")
    }

    async fn stat(&self, name: &str) -> f64 {
        let Ok((200, body)) = client::get(&self.admin, &format!("/stats?filter=^{}$", name.replace('.', "\\."))).await
        else {
            return 0.0;
        };
        String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    /// Resident memory now and at its peak, MiB.
    fn memory_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proc.0.id())).unwrap_or_default();
        let kb = |key: &str| {
            status.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        };
        (kb("VmRSS:").unwrap_or(0.0) / 1024.0, kb("VmHWM:").unwrap_or(0.0) / 1024.0)
    }
}

fn path(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("non-UTF-8 path")
}

fn policy(rate: f64) -> serde_json::Value {
    serde_json::json!({
        "models": {"mlp": {
            "versions": [{"name": "v1", "cluster": "mlp-v1", "weight": 100}, {"name": "v2", "cluster": "mlp-v2", "weight": 0}],
            "sticky": {"header": "x-user-id"},
            "sampling": {"rate": rate, "max_body_bytes": 65536, "redact_headers": ["authorization"]},
            "slo": {"availability": 0.999, "latency_ms": 100}
        }},
        "collector": {"cluster": "collector"},
        "slo_windows": ["5m", "1h"]
    })
}

struct Row {
    name: &'static str,
    runs: Vec<Report>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

pub async fn run(a: FilterBenchArgs) -> anyhow::Result<()> {
    let bin_dir = std::env::current_exe()?.parent().context("no exe dir")?.to_path_buf();
    let dir = std::env::temp_dir().join(format!("switchyard-bench-filter-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // Batching off: the batcher's queue delay would dwarf the microseconds measured here.
    derived_repo(&a.common.model_repository, &dir.join("repo"), "mlp", false, None)?;
    let backend = Backend::start(&a.common.backend()?, &dir.join("repo")).await?;
    let mut collector = Command::new(bin_dir.join("switchyard-collector"))
        .args(["--listen", "127.0.0.1:0", "--output"])
        .arg(dir.join("samples.jsonl"))
        .stdout(Stdio::piped())
        .spawn()
        .context("starting switchyard-collector (cargo build --release)")?;
    let mut line = String::new();
    BufReader::new(collector.stdout.take().context("collector stdout")?).read_line(&mut line)?;
    let _collector = Proc(collector);
    let collector_addr =
        line.split_whitespace().find_map(|w| w.strip_prefix("http://")).context("collector address")?;
    let (p0, p1) = (dir.join("policy-0.json"), dir.join("policy-1.json"));
    std::fs::write(&p0, serde_json::to_vec(&policy(0.0))?)?;
    std::fs::write(&p1, serde_json::to_vec(&policy(0.01))?)?;
    // Three Envoys side by side, so no configuration changes (and VM restarts) between runs.
    let plain = Envoy::start(&dir, "plain", &p0, &backend.http, collector_addr, false).await?;
    let filtered = Envoy::start(&dir, "filtered", &p0, &backend.http, collector_addr, true).await?;
    let sampled = Envoy::start(&dir, "sampled", &p1, &backend.http, collector_addr, true).await?;

    let inputs = client::model_inputs(&backend.http, "mlp", Some("v1")).await?;
    let body = build_body(&inputs, 1, false, 3, None)?;
    let infer = "/v2/models/mlp/infer";
    // Saturation: model metadata, so the upstream is cheap and Envoy is what saturates.
    let metadata = "/v2/models/mlp";
    let some_body = || Some::<Body>(body.clone());
    let secs = Duration::from_secs_f64(a.seconds);
    let mut rows = vec![
        Row { name: "backend directly", runs: vec![] },
        Row { name: "Envoy, no filter", runs: vec![] },
        Row { name: "Envoy + filter, sampling 0%", runs: vec![] },
        Row { name: "Envoy + filter, sampling 1%", runs: vec![] },
    ];
    // Warm-up, not counted.
    for addr in [&backend.http, &plain.listen, &filtered.listen, &sampled.listen] {
        run::open(addr, infer, some_body(), a.rate, Duration::from_secs(2)).await?;
    }
    for round in 0..a.rounds {
        eprintln!(
            "bench-filter: latency round {}/{} ({} req/s open loop, {}s per run)",
            round + 1,
            a.rounds,
            a.rate,
            a.seconds
        );
        for (row, addr) in rows.iter_mut().zip([&backend.http, &plain.listen, &filtered.listen, &sampled.listen]) {
            row.runs.push(run::open(addr, infer, some_body(), a.rate, secs).await?);
        }
    }
    let mut saturation = (Vec::new(), Vec::new());
    for round in 0..a.rounds {
        eprintln!(
            "bench-filter: saturation round {}/{} ({} clients, {}s per run)",
            round + 1,
            a.rounds,
            a.clients,
            a.seconds
        );
        saturation.0.push(run::closed(&plain.listen, metadata, None, a.clients, secs).await?.total.throughput);
        saturation.1.push(run::closed(&filtered.listen, metadata, None, a.clients, secs).await?.total.throughput);
    }
    let samples = std::fs::read_to_string(dir.join("samples.jsonl")).map_or(0, |s| s.lines().count());
    let mem = (plain.memory_mib(), filtered.memory_mib());
    let md = report(&a, &rows, &saturation, mem, samples)?;
    write_section(&a.common.out, "filter", &md)?;
    println!("{md}");
    eprintln!("bench-filter: wrote {}", a.common.out.display());
    drop((plain, filtered, sampled, backend));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn report(
    a: &FilterBenchArgs,
    rows: &[Row],
    saturation: &(Vec<f64>, Vec<f64>),
    mem: ((f64, f64), (f64, f64)),
    samples: usize,
) -> anyhow::Result<String> {
    let mut m = String::new();
    writeln!(m, "# Benchmarks: the Envoy filter\n")?;
    writeln!(m, "Generated by `{}` — do not edit by hand; re-run it.\n", a.reproduce)?;
    writeln!(
        m,
        "- Machine: {}. Envoy 1.40 (V8), one backend serving `mlp` (batching off), the collector, two Envoys \
         (with and without the filter) and the load generator all share it.\n\
         - Latency: open loop at {} req/s, {}s per run, {} rounds alternating the four paths (three Envoys run side by \
         side, so nothing is reconfigured between runs). Medians of the rounds' percentiles.\n\
         - Saturation: closed loop, {} clients, {}s per run, {} rounds alternating the two Envoys.\n",
        crate::bench::machine(),
        a.rate,
        a.seconds,
        a.rounds,
        a.clients,
        a.seconds,
        a.rounds
    )?;
    writeln!(m, "## Latency (MLP inference, 1 row, JSON)\n")?;
    writeln!(
        m,
        "Service time is measured from the actual send; the scheduled columns from the intended send time \
         (coordinated-omission corrected; they also carry the generator's send lag, tens of µs on an idle core).\n"
    )?;
    writeln!(
        m,
        "| path | service p50 ms | service p99 ms | scheduled p50 ms | scheduled p99 ms | sent > 1 ms late | errors |\n|---|---:|---:|---:|---:|---:|---:|"
    )?;
    let pct = |r: &Row, f: fn(&Report) -> f64| median(r.runs.iter().map(f).collect());
    for r in rows {
        let errors: u64 = r.runs.iter().map(|x| x.total.errors).sum();
        let late: u64 = r.runs.iter().map(|x| x.total.late).sum();
        writeln!(
            m,
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {late} | {errors} |",
            r.name,
            pct(r, |x| x.total.service_ms.p50),
            pct(r, |x| x.total.service_ms.p99),
            pct(r, |x| x.total.latency_ms.p50),
            pct(r, |x| x.total.latency_ms.p99)
        )?;
    }
    let (base, zero, one) = (&rows[1], &rows[2], &rows[3]);
    let d = |r: &Row, f: fn(&Report) -> f64| (pct(r, f) - pct(base, f)) * 1000.0;
    writeln!(m, "\nAdded by the filter over Envoy without it, service time (µs):\n")?;
    writeln!(m, "| sampling | p50 | p99 |\n|---|---:|---:|")?;
    writeln!(m, "| 0% | {:.0} | {:.0} |", d(zero, |x| x.total.service_ms.p50), d(zero, |x| x.total.service_ms.p99))?;
    writeln!(m, "| 1% | {:.0} | {:.0} |", d(one, |x| x.total.service_ms.p50), d(one, |x| x.total.service_ms.p99))?;
    let (plain, filtered) = (median(saturation.0.clone()), median(saturation.1.clone()));
    let cost = 1.0 - filtered / plain;
    writeln!(m, "\n## Saturation throughput\n\n| Envoy | req/s (median) | rounds |\n|---|---:|---|")?;
    let list = |v: &[f64]| v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ");
    writeln!(m, "| without the filter | {plain:.0} | {} |", list(&saturation.0))?;
    writeln!(m, "| with the filter (sampling 0%) | {filtered:.0} | {} |", list(&saturation.1))?;
    writeln!(
        m,
        "\nThe filter costs **{:.1}%** of saturation throughput (`GET /v2/models/mlp` through Envoy to the backend; \
         the backend's share of the CPU is in both runs).\n",
        cost * 100.0
    )?;
    writeln!(m, "## Envoy memory\n\n| Envoy | RSS now | peak RSS |\n|---|---:|---:|")?;
    writeln!(m, "| without the filter | {:.0} MiB | {:.0} MiB |", mem.0.0, mem.0.1)?;
    writeln!(m, "| with the filter (V8, one VM per worker) | {:.0} MiB | {:.0} MiB |", mem.1.0, mem.1.1)?;
    writeln!(m, "\nPayload samples received by the collector during the 1% runs: {samples}.\n")?;
    let ok = |c: bool| if c { "met" } else { "NOT met" };
    let (p50, p99) = (
        d(zero, |x| x.total.service_ms.p50).max(d(one, |x| x.total.service_ms.p50)),
        d(zero, |x| x.total.service_ms.p99).max(d(one, |x| x.total.service_ms.p99)),
    );
    writeln!(m, "## Goals\n")?;
    writeln!(m, "- Filter adds ≤ 100 µs at p50: **{p50:.0} µs** (worse of 0% and 1% sampling) — {}", ok(p50 <= 100.0))?;
    writeln!(m, "- Filter adds ≤ 300 µs at p99: **{p99:.0} µs** — {}", ok(p99 <= 300.0))?;
    writeln!(
        m,
        "- Filter costs ≤ 15% of Envoy's saturation throughput: **{:.1}%** — {}",
        cost * 100.0,
        ok(cost <= 0.15)
    )?;
    Ok(m)
}
