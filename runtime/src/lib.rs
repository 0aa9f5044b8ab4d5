//! The plumbing every Switchyard service shares, written once: a shutdown signal
//! ([`shutdown_signal`]), logging set-up ([`init_tracing`]), crash-safe file replacement
//! ([`write_atomic`]), following a file another process appends to and rotates ([`tail`]),
//! the wall clock in milliseconds ([`now_ms`]), and enum label values for Prometheus metrics
//! ([`label_values!`]).
//!
//! Kept deliberately small and free of policy: it depends on tokio and tracing-subscriber
//! only, so that every binary can use it without pulling anything else in.

pub mod exposition;
pub mod tail;

use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Resolves on SIGTERM or ctrl-c, whichever comes first. A signal that cannot be watched
/// never counts as received (the other one still can be).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Logs to stderr (stdout carries the lines that harnesses and people read), filtered by
/// `RUST_LOG` or else `info`, coloured only on a terminal. Call once, first thing in `main`.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Milliseconds since the Unix epoch (0 for a clock set before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Makes a fieldless enum a Prometheus label value: `label_values!(Reason { QueueFull =>
/// "queue_full", ... })` gives `Reason` a `pub fn as_str(self) -> &'static str` (the enum must
/// be `Copy`) and an `EncodeLabelValue` impl that writes that text, so a metric's label values
/// are a fixed set (bounded series) spelled once, in snake_case as Prometheus users expect.
///
/// The impl names `::prometheus_client::encoding::...`, which resolves in the crate that calls
/// the macro: that crate depends on `prometheus-client`, this one does not.
#[macro_export]
macro_rules! label_values {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),* }
            }
        }
        impl ::prometheus_client::encoding::EncodeLabelValue for $t {
            fn encode(
                &self,
                e: &mut ::prometheus_client::encoding::LabelValueEncoder<'_>,
            ) -> ::std::result::Result<(), ::std::fmt::Error> {
                ::std::fmt::Write::write_str(e, self.as_str())
            }
        }
    };
}

/// Replaces `path` with `bytes` so that no reader (Envoy watching an ECDS file, Prometheus
/// reloading, a resuming controller or monitor) ever sees a half-written file, and a crash
/// leaves either the old or the new content: write a temporary file beside it, flush it to
/// disk, rename it over `path`, then flush the directory. The directory is created if missing.
/// The error names the path.
pub fn write_atomic(path: &Path, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
    let named = |e: std::io::Error| std::io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display()));
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(named)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes.as_ref())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(named(e));
    }
    // The rename is durable only once the directory is; a failure here loses nothing already
    // visible to readers, so it is not an error.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/filter.yaml");
        write_atomic(&path, "a long first version\n").unwrap();
        write_atomic(&path, "short\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "short\n");
        let names: Vec<_> =
            std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["filter.yaml"]);
    }

    #[test]
    fn write_atomic_names_the_path_it_could_not_write() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "x").unwrap();
        let err = write_atomic(&blocker.join("under-a-file"), "y").unwrap_err();
        assert!(err.to_string().contains("under-a-file"), "{err}");
    }

    #[test]
    fn the_clock_is_past_2020() {
        assert!(now_ms() > 1_577_836_800_000);
    }
}
