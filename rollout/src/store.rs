//! The rollout's durable state: a directory holding `state.json` (replaced atomically and
//! synced after every change, so a controller killed at any point resumes where it was),
//! `events.jsonl` (one line per decision, appended and synced) and `lock` (every command and
//! the controller hold it while they read, decide and write, so two never act at once).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::judge::State;

/// Where the rollout acts: the policy file it rewrites and what `switchyard_deploy::apply` needs
/// to put it in force in the running Envoy (in a cluster the operator acts: operator/).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<PathBuf>,
    pub wasm: PathBuf,
    /// Where the filter's metrics are read, HOST:PORT: Envoy's admin listener, or in a cluster
    /// Prometheus (which has every gateway pod's).
    pub envoy_admin: String,
    /// The path read there: Envoy's `/stats/prometheus`, or Prometheus's `/federate?match[]=…`.
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
    /// The collector, HOST:PORT, read for the shadow comparisons (steps with `max_disagreement`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collector: Option<String>,
}

pub fn default_metrics_path() -> String {
    "/stats/prometheus".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub target: Target,
    pub state: State,
}

/// The state directory, locked for as long as this lives.
pub struct Store {
    dir: PathBuf,
    _lock: File,
}

/// What went wrong with the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    /// `state.json` is not a saved rollout (written by another version, or by hand).
    #[error("{}: {source}", path.display())]
    Unreadable { path: PathBuf, source: serde_json::Error },
    /// Replacing `state.json` failed (the error names the file).
    #[error(transparent)]
    Save(std::io::Error),
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io { what, path, source }
}

impl Store {
    /// Takes the directory's lock (waiting for whoever holds it: a command or a tick takes well
    /// under a second).
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let path = dir.join("lock");
        let lock =
            OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io("open", &path))?;
        lock.lock().map_err(io("lock", &path))?;
        Ok(Store { dir: dir.to_owned(), _lock: lock })
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    pub fn events_path(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }

    /// The saved rollout; `None` when none was ever started here.
    pub fn load(&self) -> Result<Option<Saved>, StoreError> {
        let path = self.state_path();
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map(Some).map_err(|source| StoreError::Unreadable { path, source })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &path)(e)),
        }
    }

    /// Replaces the state: a temporary file, synced, renamed over the old one, the directory
    /// synced; a crash leaves the old state or the new, never half of one.
    pub fn save(&self, saved: &Saved) -> Result<(), StoreError> {
        let text = serde_json::to_vec_pretty(saved)?;
        switchyard_runtime::write_atomic(&self.state_path(), text).map_err(StoreError::Save)
    }

    /// Appends one event line (synced).
    pub fn event(&self, event: &serde_json::Value) -> Result<(), StoreError> {
        let path = self.events_path();
        let mut f = OpenOptions::new().create(true).append(true).open(&path).map_err(io("open", &path))?;
        let mut line = serde_json::to_vec(event)?;
        line.push(b'\n');
        f.write_all(&line).map_err(io("append to", &path))?;
        f.sync_data().map_err(io("sync", &path))
    }
}
