//! The reference store: a reference collected from a version's first rows, kept in the state
//! directory (`MODEL.reference.json`) so that a restart does not collect it again, as long as
//! the config still asks for the same version and number of rows.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::evaluate::Reference;

/// What the state directory holds for a model: the reference summarised from a version's
/// first rows, and the config it answers to.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    version: String,
    rows: usize,
    reference: Reference,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: PathBuf) -> Store {
        Store { dir }
    }

    fn path(&self, model: &str) -> PathBuf {
        self.dir.join(format!("{model}.reference.json"))
    }

    /// The saved reference of `model` if there is one for `version` and `rows`. One of another
    /// version or size, or one that cannot be read, is logged and left to be collected again.
    pub fn load(&self, model: &str, version: &str, rows: usize) -> Option<Reference> {
        let path = self.path(model);
        if !path.exists() {
            return None;
        }
        match read(&path) {
            Ok(s) if s.version == version && s.rows == rows => {
                tracing::info!(model, rows = s.reference.rows, "reference summary loaded from the state directory");
                Some(s.reference)
            }
            Ok(_) => {
                tracing::warn!(model, "the saved reference is of another version or size: collecting it again");
                None
            }
            Err(e) => {
                let e = format!("{}: {e}", path.display());
                tracing::warn!(model, error = %e, "cannot read the saved reference: collecting it again");
                None
            }
        }
    }

    /// Writes a collected reference (atomically: a crash leaves the old file or the new one).
    /// A failure is logged: the reference still works until a restart, which then collects it
    /// again.
    pub fn save(&self, model: &str, version: &str, rows: usize, reference: &Reference) {
        let saved = Saved { version: version.to_owned(), rows, reference: reference.clone() };
        let path = self.path(model);
        let written = serde_json::to_vec(&saved).map_err(std::io::Error::other).and_then(|mut bytes| {
            bytes.push(b'\n');
            switchyard_runtime::write_atomic(&path, bytes)
        });
        if let Err(e) = written {
            tracing::error!(path = %path.display(), error = %e, "cannot save the reference summary; it will be collected again after a restart");
        } else {
            tracing::info!(model, path = %path.display(), rows = reference.rows, "reference collected and saved");
        }
    }
}

fn read(path: &Path) -> anyhow::Result<Saved> {
    Ok(serde_json::from_slice(&std::fs::read(path)?)?)
}
