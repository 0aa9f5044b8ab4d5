//! `switchyard-load`: load generation against Open Inference Protocol servers, and the
//! benchmark suite that writes `docs/benchmarks.md`.

mod bench;
mod bench_filter;
mod client;
mod scrape;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "switchyard-load", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Closed-loop load: N concurrent clients, each sending as soon as it has its answer.
    Closed(ClosedArgs),
    /// The backend benchmark: raw engine ceiling, served throughput with batching on and
    /// off, serving overhead; writes a Markdown report.
    BenchBackend(bench::BenchArgs),
    /// The filter benchmark: backend direct vs Envoy without and with the filter (latency
    /// under open-loop load, saturation throughput, memory); writes a Markdown report.
    BenchFilter(bench_filter::FilterBenchArgs),
}

#[derive(Args)]
struct ClosedArgs {
    /// Inference listener, host:port.
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: String,
    #[arg(long)]
    model: String,
    #[arg(long)]
    version: Option<String>,
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Stop after this many requests…
    #[arg(long)]
    requests: Option<u64>,
    /// …or after this many seconds (default 10 when neither is given).
    #[arg(long)]
    seconds: Option<f64>,
    /// Rows per request.
    #[arg(long, default_value_t = 1)]
    rows: usize,
    /// Send tensors with the binary tensor data extension instead of JSON.
    #[arg(long)]
    binary: bool,
    /// Send `GET /v2/models/{m}` (model metadata) instead of inference: measures the request
    /// path (proxy, routing) with almost no model work.
    #[arg(long)]
    get: bool,
    /// Admin listener (host:port) to read batch sizes from, before and after.
    #[arg(long)]
    admin_addr: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Closed(a) => closed(a).await,
            Command::BenchBackend(a) => bench::run(a).await,
            Command::BenchFilter(a) => bench_filter::run(a).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Mean batch size and batches executed for a model version between two scrapes.
pub struct BatchStats {
    pub batches: f64,
    pub mean_rows: f64,
}

pub async fn scrape(admin: &str) -> anyhow::Result<Vec<scrape::Sample>> {
    let (status, body) = client::get(admin, "/metrics").await?;
    anyhow::ensure!(status == 200, "GET http://{admin}/metrics answered {status}");
    Ok(scrape::parse(&String::from_utf8_lossy(&body)))
}

pub fn batch_stats(before: &[scrape::Sample], after: &[scrape::Sample], model: &str, version: &str) -> BatchStats {
    let want = [("model", model), ("version", version)];
    let d = |n: &str| scrape::sum(after, n, &want) - scrape::sum(before, n, &want);
    let batches = d("switchyard_batch_size_count");
    BatchStats { batches, mean_rows: d("switchyard_batch_size_sum") / batches.max(1.0) }
}

async fn closed(a: ClosedArgs) -> anyhow::Result<()> {
    let inputs = client::model_inputs(&a.addr, &a.model, a.version.as_deref()).await?;
    let (body, header_len) = client::build_request(&inputs, a.rows, a.binary, 1)?;
    let mut path = match &a.version {
        Some(v) => format!("/v2/models/{}/versions/{v}", a.model),
        None => format!("/v2/models/{}", a.model),
    };
    if !a.get {
        path.push_str("/infer");
    }
    let before = match &a.admin_addr {
        Some(m) => Some(scrape(m).await?),
        None => None,
    };
    let duration = match (a.requests, a.seconds) {
        (None, None) => Some(Duration::from_secs(10)),
        (_, s) => s.map(Duration::from_secs_f64),
    };
    let target = client::Target { addr: a.addr.clone(), post: !a.get, path, body, header_len };
    let report = client::closed_loop(target, a.concurrency, a.requests, duration, a.rows).await?;
    let batches = match (&a.admin_addr, before) {
        (Some(m), Some(before)) => {
            let after = scrape(m).await?;
            let version = a.version.as_deref().unwrap_or("");
            Some(batch_stats(&before, &after, &a.model, version))
        }
        _ => None,
    };
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!(
        "{}{}: {} ok in {:.1}s = {:.0} req/s ({:.0} rows/s); latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
        a.model,
        a.version.as_deref().map(|v| format!(":{v}")).unwrap_or_default(),
        report.ok,
        report.seconds,
        report.requests_per_second,
        report.rows_per_second,
        report.p50_ms,
        report.p90_ms,
        report.p99_ms,
        report.max_ms
    );
    if !report.errors.is_empty() {
        println!("  errors: {:?}", report.errors);
    }
    if let Some(b) = batches {
        println!("  batches executed: {:.0}, mean batch size {:.2} rows", b.batches, b.mean_rows);
    }
    Ok(())
}
