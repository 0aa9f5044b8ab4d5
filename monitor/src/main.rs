//! `switchyard-collector`: receives the payload samples the Envoy filter ships
//! (`POST /v1/samples`, one JSON envelope per request, see docs/sampling.md) and appends each
//! as one line to a JSONL file. The drift monitor reads that file.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use clap::Parser;

#[derive(Parser)]
#[command(name = "switchyard-collector", version, about)]
struct Args {
    #[arg(long, env = "SWITCHYARD_COLLECTOR_ADDR", default_value = "127.0.0.1:9411")]
    listen: SocketAddr,
    /// JSONL file the samples are appended to (created if missing).
    #[arg(long, env = "SWITCHYARD_COLLECTOR_OUTPUT", default_value = "samples.jsonl")]
    output: PathBuf,
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    max_body_bytes: usize,
}

struct Sink {
    file: Mutex<std::fs::File>,
    received: AtomicU64,
    rejected: AtomicU64,
}

async fn receive(State(sink): State<Arc<Sink>>, body: Bytes) -> (StatusCode, String) {
    if serde_json::from_slice::<serde_json::Value>(&body).map_or(true, |v| !v.is_object()) {
        sink.rejected.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::BAD_REQUEST, "{\"error\":\"a sample must be one JSON object\"}".into());
    }
    // One write per line, so concurrent samples never interleave.
    let mut line = body.to_vec();
    line.retain(|b| *b != b'\n');
    line.push(b'\n');
    let written = sink.file.lock().unwrap_or_else(PoisonError::into_inner).write_all(&line);
    match written {
        Ok(()) => {
            sink.received.fetch_add(1, Ordering::Relaxed);
            (StatusCode::OK, "{}".into())
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{{\"error\":\"cannot write: {e}\"}}")),
    }
}

async fn stats(State(sink): State<Arc<Sink>>) -> String {
    format!(
        "# TYPE switchyard_collector_samples_received_total counter\nswitchyard_collector_samples_received_total {}\n\
         # TYPE switchyard_collector_samples_rejected_total counter\nswitchyard_collector_samples_rejected_total {}\n",
        sink.received.load(Ordering::Relaxed),
        sink.rejected.load(Ordering::Relaxed)
    )
}

async fn run(args: Args) -> anyhow::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.output)
        .with_context(|| format!("cannot open {}", args.output.display()))?;
    let sink = Arc::new(Sink { file: Mutex::new(file), received: AtomicU64::new(0), rejected: AtomicU64::new(0) });
    let app = Router::new()
        .route("/v1/samples", post(receive))
        .route("/metrics", get(stats))
        .route("/health", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(args.max_body_bytes))
        .with_state(sink);
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("cannot bind {}", args.listen))?;
    println!("switchyard-collector listening: http://{} -> {}", listener.local_addr()?, args.output.display());
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
        })
        .await?;
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
