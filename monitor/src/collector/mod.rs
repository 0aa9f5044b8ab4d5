//! The sample collector: receives the envelopes the Envoy filter ships (`POST /v1/samples`, see
//! docs/sampling.md) and appends each as one line to a JSONL file, which the drift monitor
//! reads.
//!
//! The pieces, in the order a sample passes them: `http` validates the body into a line
//! ([`record`]) and offers it to the bounded [`queue`]; one writer thread takes whatever has
//! queued up, appends it, fsyncs once ([`file`](mod@file)) and only then lets the requests answer 200.

pub mod file;
mod http;
pub mod metrics;
pub mod queue;
pub mod record;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use prometheus_client::registry::Registry;
use switchyard_contract::process::{collector, tls};

pub use file::{FileConfig, Fsync, Writer};
pub use http::{App, Paths, router};
pub use metrics::Metrics;

/// The collector's command line (flags and environment), validated once by [`Config::validate`].
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Listener for samples (and `/metrics` and `/health` when there is no --admin-addr).
    #[arg(long = collector::HTTP.long(), env = collector::HTTP.env, default_value = collector::HTTP.default)]
    pub listen: SocketAddr,
    /// `/metrics` and `/health` on a listener of their own, plain (required with --tls-cert);
    /// the samples listener then answers `POST /v1/samples` only.
    #[arg(long = collector::ADMIN.long(), env = collector::ADMIN.env)]
    pub admin_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub tls: switchyard_tls::TlsArgs,
    /// JSONL file the samples are appended to (created if missing).
    #[arg(long, env = "SWITCHYARD_COLLECTOR_OUTPUT", default_value = "samples.jsonl")]
    pub output: PathBuf,
    /// Sample bodies above this get 413.
    #[arg(long, env = "SWITCHYARD_COLLECTOR_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// `always`: fdatasync each batch before acknowledging it; `never`: acknowledge once the
    /// batch is written (an OS crash may then lose acknowledged samples).
    #[arg(long, env = "SWITCHYARD_COLLECTOR_FSYNC", value_enum, default_value_t = Fsync::Always)]
    pub fsync: Fsync,
    /// Rotate the output before a sample would take it past this size; 0 never rotates.
    #[arg(long, env = "SWITCHYARD_COLLECTOR_MAX_FILE_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_file_bytes: u64,
    /// Rotated files kept (`FILE.1` newest … `FILE.N`); older ones are deleted.
    #[arg(long, env = "SWITCHYARD_COLLECTOR_MAX_FILES", default_value_t = 5)]
    pub max_files: usize,
    /// Retention: no sample older than this stays on disk (`30d`, `12h`; files are rotated
    /// and deleted whole, so the newest go up to a sixth of it early). Unset: kept until
    /// rotated out by --max-files.
    #[arg(long, env = "SWITCHYARD_COLLECTOR_MAX_AGE", value_parser = parse_age)]
    pub max_age: Option<std::time::Duration>,
    /// Samples waiting for the writer; beyond this, 503 with Retry-After.
    #[arg(long, env = "SWITCHYARD_COLLECTOR_MAX_QUEUED", default_value_t = 1024)]
    pub max_queued: usize,
    /// Bytes of samples waiting for (or being written by) the writer; beyond this, 503.
    #[arg(long, env = "SWITCHYARD_COLLECTOR_MAX_QUEUED_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_queued_bytes: usize,
}

impl Config {
    /// Every problem with the configuration, not only the first.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.max_body_bytes == 0 {
            problems.push("--max-body-bytes must be at least 1".to_owned());
        }
        if self.max_queued == 0 {
            problems.push("--max-queued must be at least 1".to_owned());
        }
        // The byte budget is counted in semaphore permits, which are taken 2^32 - 1 at most.
        if u32::try_from(self.max_queued_bytes).is_err() {
            problems.push(format!("--max-queued-bytes must be at most {}", u32::MAX));
        }
        // Otherwise a sample of the largest accepted size (plus its newline) could never queue.
        if self.max_queued_bytes <= self.max_body_bytes {
            problems.push(format!(
                "--max-queued-bytes ({}) must be larger than --max-body-bytes ({})",
                self.max_queued_bytes, self.max_body_bytes
            ));
        }
        if self.tls.files().is_some() && self.admin_addr.is_none() {
            problems.push(format!(
                "with {} the samples listener answers samples only: give {} for /metrics and /health",
                tls::CERT_FLAG,
                collector::ADMIN.flag
            ));
        }
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }

    pub fn file(&self) -> FileConfig {
        FileConfig {
            path: self.output.clone(),
            fsync: self.fsync,
            max_file_bytes: self.max_file_bytes,
            max_files: self.max_files,
            max_age: self.max_age,
        }
    }
}

/// The least retention the collector takes: a minute (each file then spans ten seconds).
const MIN_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// Why a `--max-age` was refused.
#[derive(Debug, thiserror::Error)]
enum AgeError {
    #[error(transparent)]
    NotADuration(#[from] switchyard_policy::duration::NotADuration),
    #[error("'{0}' is under the minimum of 1m")]
    TooShort(String),
}

fn parse_age(s: &str) -> Result<std::time::Duration, AgeError> {
    let d = switchyard_policy::duration::parse(s)?;
    if d < MIN_AGE {
        return Err(AgeError::TooShort(s.to_owned()));
    }
    Ok(d)
}

/// Serves until SIGTERM or ctrl-c, then answers what is in flight, lets the writer store what
/// is queued, and returns.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let metrics = Metrics::default();
    let mut registry = Registry::with_prefix("switchyard");
    metrics.register(registry.sub_registry_with_prefix("collector"));
    metrics.shadow.register(registry.sub_registry_with_prefix("shadow"));
    let writer = Writer::open(config.file(), metrics.clone())
        .with_context(|| format!("cannot open {}", config.output.display()))?;
    let (queue, jobs) = queue::bounded(config.max_queued, config.max_queued_bytes);
    let writer = queue::spawn_writer(writer, jobs, metrics.clone()).context("cannot start the writer thread")?;
    let app = Arc::new(App { queue, metrics, registry });
    // Retention without traffic: an empty job wakes the writer, which expires old files.
    let ticker = config.max_age.map(|age| {
        let app = app.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(file::retention_tick(age));
            loop {
                every.tick().await;
                let _ = app.queue.try_push(Vec::new());
            }
        })
    });
    // Read before anything is bound: a missing or mismatched file is a start-up error.
    let tls = config
        .tls
        .files()
        .map(|f| switchyard_tls::ServerTls::load(&f, &[b"http/1.1"]))
        .transpose()
        .context("the samples listener's TLS")?;
    let listener =
        tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("cannot bind {}", config.listen))?;
    let admin = match config.admin_addr {
        Some(a) => Some(tokio::net::TcpListener::bind(a).await.with_context(|| format!("cannot bind {a}"))?),
        None => None,
    };
    let admin_said = match &admin {
        Some(l) => format!(" admin http://{}", l.local_addr()?),
        None => String::new(),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!(
        "switchyard-collector listening: samples {scheme}://{}{admin_said} -> {}",
        listener.local_addr()?,
        config.output.display()
    );
    // The admin listener stays up until the samples listener has drained.
    let admin_task = admin.map(|l| {
        let r = router(app.clone(), config.max_body_bytes, Paths::Admin);
        tokio::spawn(async move { axum::serve(l, r).await })
    });
    let shutdown = switchyard_runtime::shutdown_signal();
    match tls {
        Some(tls) => {
            let counter = app.metrics.tls_refused.clone();
            let refused: switchyard_tls::OnRefused = Arc::new(move || {
                counter.inc();
            });
            let l = switchyard_tls::TlsListener::new(listener, &tls, "samples", refused)?;
            let r = router(app, config.max_body_bytes, Paths::Samples);
            axum::serve(l, r).with_graceful_shutdown(shutdown).await?;
        }
        None => {
            // With an admin listener of its own, the samples port answers samples only: a
            // NetworkPolicy or mesh policy that admits the gateway there admits nothing else.
            let which = if admin_task.is_some() { Paths::Samples } else { Paths::All };
            let r = router(app, config.max_body_bytes, which);
            axum::serve(listener, r).with_graceful_shutdown(shutdown).await?;
        }
    }
    if let Some(t) = admin_task {
        t.abort();
    }
    // It holds the queue open: the writer stops only once every handle is gone.
    if let Some(t) = ticker {
        t.abort();
        let _ = t.await;
    }
    // Every connection is closed, so the queue's sender is gone: the writer drains and stops.
    match tokio::task::spawn_blocking(move || writer.join()).await {
        Ok(Ok(())) => Ok(()),
        _ => anyhow::bail!("the writer thread failed"),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Config;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    fn parse(args: &[&str]) -> Config {
        Cli::try_parse_from(std::iter::once("switchyard-collector").chain(args.iter().copied())).unwrap().config
    }

    #[test]
    fn defaults_are_valid_and_fsync_always() {
        let c = parse(&[]);
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.fsync, super::Fsync::Always);
        assert!(parse(&["--fsync", "never"]).fsync == super::Fsync::Never);
    }

    #[test]
    fn every_problem_is_reported() {
        let c = parse(&["--max-queued", "0", "--max-body-bytes", "100", "--max-queued-bytes", "100"]);
        let problems = c.validate().unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("--max-queued "), "{problems:?}");
        assert!(problems[1].contains("must be larger than --max-body-bytes"), "{problems:?}");
    }
}
