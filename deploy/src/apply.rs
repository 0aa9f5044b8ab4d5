//! Putting a policy in force in a running Envoy, the one way every tool does it
//! (`switchyard-policy render filter`, which `envoy/apply-policy.sh` runs, and the rollout
//! controller): check it against the contract the running bootstrap recorded, then replace
//! the filter's ECDS file atomically, which Envoy picks up within a second on every worker
//! without dropping a request.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::render::envoy::{Contract, filter_config};
use crate::render::{Policy, RenderErrors, json_text};

/// Why a policy was not put in force, or could not be read back; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Write(std::io::Error),
    #[error("{}: {what}", path.display())]
    Invalid { path: PathBuf, what: String },
    #[error("refused: the Envoy running {} cannot serve this policy: {source}", bootstrap.display())]
    Refused { bootstrap: PathBuf, source: RenderErrors },
    #[error("filter binary {} not found: build it with scripts/build-filter.sh", .0.display())]
    NoFilter(PathBuf),
    #[error("{}: {source}", path.display())]
    Path { path: PathBuf, source: std::io::Error },
}

/// Why an ECDS document yields no policy.
#[derive(Debug, thiserror::Error)]
pub enum FilterConfigError {
    #[error("no policy in it")]
    NoPolicy,
    #[error(transparent)]
    Policy(#[from] switchyard_policy::ConfigErrors),
}

fn read(path: &Path) -> Result<Vec<u8>, ApplyError> {
    std::fs::read(path).map_err(|source| ApplyError::Read { path: path.to_owned(), source })
}

fn invalid(path: &Path, what: impl std::fmt::Display) -> ApplyError {
    ApplyError::Invalid { path: path.to_owned(), what: what.to_string() }
}

/// An absolute path, as Envoy must be given (it may run elsewhere than the caller's directory).
pub fn absolute(path: &Path) -> Result<String, ApplyError> {
    std::path::absolute(path)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|source| ApplyError::Path { path: path.to_owned(), source })
}

/// The filter binary's absolute path, or a clear error when it is not built.
pub fn wasm_file(path: &Path) -> Result<String, ApplyError> {
    if !path.is_file() {
        return Err(ApplyError::NoFilter(path.to_owned()));
    }
    absolute(path)
}

/// Puts `policy` in force in the Envoy running `bootstrap`: refused (naming every difference)
/// when that bootstrap cannot serve it, else the ECDS file (`out`, by default `filter.yaml`
/// beside the bootstrap) is replaced. Returns the resource's `version_info` and the file.
pub fn apply_filter(
    policy: &Policy,
    wasm: &Path,
    bootstrap: &Path,
    out: Option<&Path>,
) -> Result<(String, PathBuf), ApplyError> {
    let running: Value = serde_json::from_slice(&read(bootstrap)?)
        .map_err(|e| invalid(bootstrap, format_args!("not a rendered bootstrap: {e}")))?;
    Contract::of_bootstrap(&running)
        .map_err(|e| invalid(bootstrap, e))?
        .check(policy.config())
        .map_err(|source| ApplyError::Refused { bootstrap: bootstrap.to_owned(), source })?;
    let out = out.map_or_else(|| bootstrap.with_file_name("filter.yaml"), Path::to_path_buf);
    let doc = filter_config(policy, &wasm_file(wasm)?);
    switchyard_runtime::write_atomic(&out, json_text(&doc)).map_err(ApplyError::Write)?;
    Ok((doc.get("version_info").and_then(Value::as_str).unwrap_or_default().to_owned(), out))
}

/// The policy in force in the Envoy running `bootstrap`: the one its ECDS file (`filter.yaml`
/// beside it, as [`apply_filter`] writes it) hands the filter.
pub fn in_force(bootstrap: &Path) -> Result<Policy, ApplyError> {
    let path = bootstrap.with_file_name("filter.yaml");
    let doc: Value =
        serde_json::from_slice(&read(&path)?).map_err(|e| invalid(&path, format_args!("not a filter config: {e}")))?;
    policy_of_filter_config(&doc).map_err(|e| invalid(&path, e))
}

/// The policy an ECDS document ([`filter_config`]'s) hands the filter.
pub fn policy_of_filter_config(doc: &Value) -> Result<Policy, FilterConfigError> {
    let policy = doc
        .pointer("/resources/0/typed_config/config/configuration/value")
        .and_then(Value::as_str)
        .ok_or(FilterConfigError::NoPolicy)?;
    Ok(Policy::parse(policy.to_owned())?)
}

/// The `.wasm` an ECDS document loads.
pub fn wasm_of_filter_config(doc: &Value) -> Option<&str> {
    doc.pointer("/resources/0/typed_config/config/vm_config/code/local/filename").and_then(Value::as_str)
}
