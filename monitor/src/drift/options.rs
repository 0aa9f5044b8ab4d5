//! The `watch` command's options (flags and environment).

use std::net::SocketAddr;
use std::path::PathBuf;

/// The `watch` command's options.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The collector's JSONL file to follow (read from its start: a restart rebuilds the
    /// windows from what the file still holds).
    #[arg(long, env = "SWITCHYARD_MONITOR_SAMPLES", default_value = "samples.jsonl")]
    pub samples: PathBuf,
    /// The monitor's JSON config (docs/drift.md).
    #[arg(long, env = "SWITCHYARD_MONITOR_CONFIG")]
    pub config: PathBuf,
    /// Listener for `/metrics`, `/health` and `/v1/drift`.
    #[arg(long, env = "SWITCHYARD_MONITOR_ADDR", default_value = "127.0.0.1:9412")]
    pub listen: SocketAddr,
    /// Where references collected from a version's first rows are kept across restarts.
    #[arg(long, env = "SWITCHYARD_MONITOR_STATE", default_value = "monitor-state")]
    pub state: PathBuf,
    /// Lines longer than this are counted (`reason="oversized"`) and skipped.
    #[arg(long, env = "SWITCHYARD_MONITOR_MAX_LINE_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_line_bytes: usize,
}
