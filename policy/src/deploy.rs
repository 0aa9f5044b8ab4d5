//! Putting a policy in force in a running Envoy, the one way every tool does it
//! (`switchyard-policy render filter`, which `envoy/apply-policy.sh` runs, and the rollout
//! controller): check it against the contract the running bootstrap recorded, then replace
//! the filter's ECDS file atomically, which Envoy picks up within a second on every worker
//! without dropping a request.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::render::Policy;
use crate::render::envoy::{Contract, filter_config};

/// Readers (Envoy watching the ECDS file, Prometheus reloading, a resuming controller) never
/// see a half-written file: write a temporary file beside it, then rename.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), String> {
    let err = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}

/// An absolute path, as Envoy must be given (it may run elsewhere than the caller's directory).
pub fn absolute(path: &Path) -> Result<String, String> {
    std::path::absolute(path).map(|p| p.to_string_lossy().into_owned()).map_err(|e| format!("{}: {e}", path.display()))
}

/// The filter binary's absolute path, or a clear error when it is not built.
pub fn wasm_file(path: &Path) -> Result<String, String> {
    if !path.is_file() {
        return Err(format!("filter binary {} not found: build it with scripts/build-filter.sh", path.display()));
    }
    absolute(path)
}

/// JSON text Envoy reads (as YAML).
pub fn json_text(v: &Value) -> String {
    // A Value always serialises.
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

/// Puts `policy` in force in the Envoy running `bootstrap`: refused (naming every difference)
/// when that bootstrap cannot serve it, else the ECDS file (`out`, by default `filter.yaml`
/// beside the bootstrap) is replaced. Returns the resource's `version_info` and the file.
pub fn apply_filter(
    policy: &Policy,
    wasm: &Path,
    bootstrap: &Path,
    out: Option<&Path>,
) -> Result<(String, PathBuf), String> {
    let text = std::fs::read(bootstrap).map_err(|e| format!("cannot read {}: {e}", bootstrap.display()))?;
    let running: Value =
        serde_json::from_slice(&text).map_err(|e| format!("{}: not a rendered bootstrap: {e}", bootstrap.display()))?;
    Contract::of_bootstrap(&running)
        .map_err(|e| format!("{}: {e}", bootstrap.display()))?
        .check(policy.config())
        .map_err(|e| format!("refused: the Envoy running {} cannot serve this policy: {e}", bootstrap.display()))?;
    let out = out.map_or_else(|| bootstrap.with_file_name("filter.yaml"), Path::to_path_buf);
    let doc = filter_config(policy, &wasm_file(wasm)?);
    write_atomic(&out, &json_text(&doc))?;
    Ok((doc.get("version_info").and_then(Value::as_str).unwrap_or_default().to_owned(), out))
}

/// The policy in force in the Envoy running `bootstrap`: the one its ECDS file (`filter.yaml`
/// beside it, as [`apply_filter`] writes it) hands the filter.
pub fn in_force(bootstrap: &Path) -> Result<Policy, String> {
    let path = bootstrap.with_file_name("filter.yaml");
    let text = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let doc: Value =
        serde_json::from_slice(&text).map_err(|e| format!("{}: not a filter config: {e}", path.display()))?;
    policy_of_filter_config(&doc).map_err(|e| format!("{}: {e}", path.display()))
}

/// The policy an ECDS document ([`filter_config`]'s) hands the filter.
pub fn policy_of_filter_config(doc: &Value) -> Result<Policy, String> {
    let policy = doc
        .pointer("/resources/0/typed_config/config/configuration/value")
        .and_then(Value::as_str)
        .ok_or("no policy in it")?;
    Policy::parse(policy.to_owned()).map_err(|e| e.to_string())
}

/// The `.wasm` an ECDS document loads.
pub fn wasm_of_filter_config(doc: &Value) -> Option<&str> {
    doc.pointer("/resources/0/typed_config/config/vm_config/code/local/filename").and_then(Value::as_str)
}
