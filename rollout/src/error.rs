//! The controller's errors: what a command, a tick or the console's write can fail with. The
//! layers below have their own (`StoreError`, `Refused`, `SpecError`); they pass
//! through unchanged, so every message reads as it did where it arose.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use switchyard_policy::ConfigErrors;

use crate::judge::Refused;
use crate::spec::{BadDuration, SpecError};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The state does not allow the command.
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error(transparent)]
    Duration(#[from] BadDuration),
    /// Reading the policy in force from a local Envoy, or putting one in force there (the
    /// deploy crate's own words: a bootstrap that cannot serve it, a filter not built).
    #[error(transparent)]
    Deploy(#[from] switchyard_deploy::apply::ApplyError),
    /// Writing a file (the error names it).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("the rollout names no policy file and bootstrap")]
    NoTarget,
    #[error("the policy in force has no model '{0}'")]
    NoModel(String),
    #[error("model '{0}' has no guard in the policy in force")]
    NoGuard(String),
    #[error("the rollout would make an invalid policy: {0}")]
    InvalidPolicy(ConfigErrors),
    /// The filter's metrics could not be read.
    #[error("metrics at {addr}: {source}")]
    MetricsUnreachable { addr: String, source: anyhow::Error },
    #[error("metrics at {addr}{path} answered {status}")]
    MetricsStatus { addr: String, path: String, status: u16 },
    /// The metrics source (Envoy's admin listener locally, Prometheus in a cluster) did not answer.
    #[error("no metrics from {addr} within {within:?}")]
    MetricsSilent { addr: String, within: Duration },
    /// The collector's comparisons could not be read.
    #[error("collector {addr}: {source}")]
    CollectorUnreachable { addr: String, source: anyhow::Error },
    #[error("collector {addr} answered {status}")]
    CollectorStatus { addr: String, status: u16 },
    #[error("the state's lock: {0}")]
    Lock(tokio::task::JoinError),
    /// A command with no rollout to act on.
    #[error("no rollout in {}: `start` one first", .0.display())]
    NotStarted(PathBuf),
    #[error("no rollout in {}", .0.display())]
    NoRollout(PathBuf),
    /// A command's new state was saved, but its traffic could not be put in force.
    #[error("saved, but its traffic is not in force yet: {0} (`run` applies it)")]
    NotInForce(Box<Error>),
    #[error("cannot read the spec from stdin: {0}")]
    SpecStdin(std::io::Error),
    #[error("cannot read {}: {source}", path.display())]
    SpecUnreadable { path: PathBuf, source: std::io::Error },
    #[error("{}: {source}", path.display())]
    Spec { path: PathBuf, source: SpecError },
    /// A valid spec that the policy in force (or the arguments) cannot carry out: every problem.
    #[error("{}: {}", path.display(), problems.join("; "))]
    Impossible { path: PathBuf, problems: Vec<String> },
    #[error("a rollout of {model}/{canary} is {phase} in {}: promote or abort it first", dir.display())]
    Busy { model: String, canary: String, phase: &'static str, dir: PathBuf },
    /// The console's policy edit changes weights a running rollout sets.
    #[error(
        "a rollout of {model}/{canary} is {phase}: it sets {model}'s weights; promote, abort or finish it first (other fields may be edited)"
    )]
    OwnsWeights { model: String, canary: String, phase: &'static str },
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// The console's bearer token could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the token file {}: {source}", path.display())]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("{}: the token must be at least 16 printable characters", .0.display())]
    Weak(PathBuf),
    #[error("cannot {what} /dev/urandom: {source}")]
    Random { what: &'static str, source: std::io::Error },
    #[error("cannot {what} {}: {source}", path.display())]
    Write { what: &'static str, path: PathBuf, source: std::io::Error },
}
