//! The `watch` command: the streaming monitor. Follows the collector's JSONL file, keeps per
//! model and version the last rows in every configured window, and every
//! `evaluate_every_seconds` tests each window against the model's reference.
//!
//! [`run`] puts the pieces together: the [`Options`], the
//! [`Monitor`] (state and rules, [`super::monitor`]) with its reference store
//! ([`super::store`]), the drift thread that follows the file ([`super::follow`]), and the
//! server for `/metrics`, `/health` and `/v1/drift` ([`super::server`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry;

use super::config::Config;
use super::follow::{self, Source};
use super::metrics::Metrics;
use super::monitor::Monitor;
use super::options::Options;
use super::server::{self, Shared};

/// Runs until SIGTERM or ctrl-c.
pub async fn run(options: Options) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&options.config)
        .with_context(|| format!("cannot read {}", options.config.display()))?;
    let config =
        Config::parse(&text).map_err(|p| anyhow::anyhow!("{}:\n  {}", options.config.display(), p.join("\n  ")))?;
    std::fs::create_dir_all(&options.state).with_context(|| format!("cannot create {}", options.state.display()))?;
    let metrics = Metrics::default();
    let mut registry = Registry::with_prefix("switchyard_drift");
    metrics.register(&mut registry);
    let every = Duration::from_secs_f64(config.evaluate_every_seconds);
    let monitor = Monitor::new(config, metrics.clone(), Some(options.state.clone()))
        .map_err(|p| anyhow::anyhow!("{}:\n  {}", options.config.display(), p.join("\n  ")))?;
    let shared = Shared::default();
    let stop = Arc::new(AtomicBool::new(false));
    let source = Source { samples: options.samples.clone(), max_line_bytes: options.max_line_bytes, every };
    let worker = follow::spawn(monitor, metrics, source, shared.clone(), stop.clone())?;
    let app = server::router(registry, shared);
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot bind {}", options.listen))?;
    println!("switchyard-monitor listening: http://{} <- {}", listener.local_addr()?, options.samples.display());
    axum::serve(listener, app).with_graceful_shutdown(switchyard_runtime::shutdown_signal()).await?;
    stop.store(true, Ordering::Relaxed);
    match tokio::task::spawn_blocking(move || worker.join()).await {
        Ok(Ok(())) => Ok(()),
        _ => anyhow::bail!("the drift thread failed"),
    }
}
