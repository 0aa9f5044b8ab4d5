//! Putting a policy in force in a running Envoy, the one way every tool does it
//! (`switchyard-policy render filter`, which `envoy/apply-policy.sh` runs, and the rollout
//! controller): check it against the contract the running bootstrap recorded, then replace
//! the filter's ECDS file atomically, which Envoy picks up within a second on every worker
//! without dropping a request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use switchyard_policy::guard::{self, EpochMove};

use crate::audit::{self, AUDIT_FILE, Actor, AuditError, Record, Trail};
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
    #[error("the policy is in force, but its change could not be recorded: {0}")]
    Audit(#[from] AuditError),
    /// What the audit trail says against the policy in force ([`check_recorded`]).
    #[error("audit trail: {0}")]
    Trail(AuditError),
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

/// The file beside the bootstrap that keeps, per model, the highest guard epoch this Envoy
/// ran: `render envoy` starts it (a new Envoy has no latches), [`apply_filter`] raises it.
pub const EPOCHS_FILE: &str = "guard-epochs.json";

/// What [`apply_filter`] put in force.
#[derive(Debug)]
pub struct Applied {
    /// The ECDS resource's `version_info`.
    pub version: String,
    /// The ECDS file written.
    pub out: PathBuf,
    /// The policy in force: the one given, but for `moves`.
    pub policy: Policy,
    /// Guard epochs moved forward so that no old latch comes back ([`guard::carry_epochs`]).
    pub moves: Vec<EpochMove>,
}

/// Puts `policy` in force in the Envoy running `bootstrap`: refused (naming every difference)
/// when that bootstrap cannot serve it, else the ECDS file (`out`, by default `filter.yaml`
/// beside the bootstrap) is replaced. A guard epoch that would bring back a latch of an epoch
/// once in force is moved forward first, and said so in [`Applied::moves`]. The change is
/// recorded, with `actor`, in the audit trail beside the bootstrap ([`audit`]).
pub fn apply_filter(
    policy: &Policy,
    wasm: &Path,
    bootstrap: &Path,
    out: Option<&Path>,
    actor: &Actor,
) -> Result<Applied, ApplyError> {
    let running: Value = serde_json::from_slice(&read(bootstrap)?)
        .map_err(|e| invalid(bootstrap, format_args!("not a rendered bootstrap: {e}")))?;
    Contract::of_bootstrap(&running)
        .map_err(|e| invalid(bootstrap, e))?
        .check(policy.config())
        .map_err(|source| ApplyError::Refused { bootstrap: bootstrap.to_owned(), source })?;
    let out = out.map_or_else(|| bootstrap.with_file_name("filter.yaml"), Path::to_path_buf);
    // Held from reading what is in force to recording the change: a reader never sees one
    // without the other, and a concurrent tool waits its turn.
    let mut trail = Trail::exclusive(&bootstrap.with_file_name(AUDIT_FILE))?;
    // The policy in force, as far as it can be read: an unreadable ECDS file must not stop the
    // policy that replaces it (the epochs file still keeps every epoch that ran).
    let now = in_force(bootstrap).ok();
    let epochs_file = bootstrap.with_file_name(EPOCHS_FILE);
    let mut highest = read_epochs(&epochs_file)?;
    let mut next = policy.config().clone();
    let moves = guard::carry_epochs(&mut next, now.as_ref().map(Policy::config), &highest);
    let policy = if moves.is_empty() {
        policy.clone()
    } else {
        let text = serde_json::to_string_pretty(&next).map_err(|e| invalid(&out, e))? + "\n";
        Policy::parse(text).map_err(|e| invalid(&out, e))?
    };
    let doc = filter_config(&policy, &wasm_file(wasm)?);
    switchyard_runtime::write_atomic(&out, json_text(&doc)).map_err(ApplyError::Write)?;
    guard::record_epochs(policy.config(), &mut highest);
    write_epochs(&epochs_file, &highest)?;
    let version = doc.get("version_info").and_then(Value::as_str).unwrap_or_default().to_owned();
    trail.append(actor, now.as_ref(), &policy, &version, switchyard_runtime::now_ms())?;
    Ok(Applied { version, out, policy, moves })
}

/// Whether the policy the Envoy running `bootstrap` is given is the last one its audit trail
/// recorded ([`audit::check_in_force`]), read under the trail's lock so that a change being
/// made is seen with its record or not at all.
pub fn check_recorded(bootstrap: &Path) -> Result<Record, ApplyError> {
    let path = bootstrap.with_file_name(AUDIT_FILE);
    let _reading = Trail::shared(&path).map_err(ApplyError::Trail)?;
    let policy = in_force(bootstrap)?;
    audit::check_in_force(&path, &policy).map_err(ApplyError::Trail)
}

/// The highest guard epochs a bootstrap's Envoy ran; none when the file is missing.
fn read_epochs(path: &Path) -> Result<BTreeMap<String, u64>, ApplyError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|e| invalid(path, format_args!("not a guard epoch map: {e}")))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(source) => Err(ApplyError::Read { path: path.to_owned(), source }),
    }
}

/// Starts or replaces the epochs file beside `bootstrap`.
pub fn write_epochs(path: &Path, highest: &BTreeMap<String, u64>) -> Result<(), ApplyError> {
    let text = serde_json::to_string_pretty(highest).map_err(|e| invalid(path, e))? + "\n";
    switchyard_runtime::write_atomic(path, text).map_err(ApplyError::Write)
}

/// The epochs file of a new Envoy running `config`: its shared data starts empty, so only
/// its own epochs are known.
pub fn start_epochs(bootstrap: &Path, config: &switchyard_policy::Config) -> Result<(), ApplyError> {
    let mut highest = BTreeMap::new();
    guard::record_epochs(config, &mut highest);
    write_epochs(&bootstrap.with_file_name(EPOCHS_FILE), &highest)
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
