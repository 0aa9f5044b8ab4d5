//! The drift thread: follows the collector's samples file through rotation
//! ([`switchyard_runtime::tail::Follow`]), hands each line to the [`Monitor`], and every
//! `evaluate_every_seconds` evaluates the windows and publishes the results for the server.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use switchyard_runtime::now_ms;
use switchyard_runtime::tail::{Follow, Polled};

use super::metrics::Metrics;
use super::monitor::Monitor;
use super::server::Shared;

/// What the drift thread reads and how often it evaluates.
pub struct Source {
    pub samples: PathBuf,
    pub max_line_bytes: usize,
    pub every: Duration,
}

/// Starts the drift thread; it runs until `stop` is set.
pub fn spawn(
    mut monitor: Monitor,
    metrics: Metrics,
    source: Source,
    shared: Shared,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    let Shared { results, alive } = shared;
    std::thread::Builder::new().name("drift".into()).spawn(move || {
        // Cleared however the thread ends, so /health says so.
        struct Alive(Arc<AtomicBool>);
        impl Drop for Alive {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Relaxed);
            }
        }
        let _alive = Alive(alive);
        let mut tail = Follow::new(source.samples, source.max_line_bytes);
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            // A line that panics (a bug: none should) is counted and skipped, never fatal.
            let polled = match tail.poll(20_000, |line| {
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| monitor.ingest_line(line))).is_err() {
                    metrics.skip("panic");
                }
            }) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the samples file; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                    Polled::default()
                }
            };
            for _ in 0..polled.oversized {
                metrics.skip("oversized");
            }
            let now = now_ms();
            monitor.update_ages(now);
            if Instant::now() >= next {
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| monitor.evaluate(now))).is_err() {
                    tracing::error!("an evaluation panicked (a bug): the windows are evaluated again next time");
                }
                if let (Ok(json), Ok(mut r)) = (serde_json::to_string(monitor.results()), results.lock()) {
                    *r = json;
                }
                next = Instant::now() + source.every;
            }
            if polled.lines == 0 {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    })
}
