//! The audit trail of a local stack's policy changes. Every change a tool puts in force —
//! `switchyard-policy render filter` (which `envoy/apply-policy.sh` runs), the rollout
//! controller, the console through it — is appended by [`crate::apply::apply_filter`] to
//! `audit.jsonl` beside the bootstrap: when, who, through which tool, the hashes of the policy
//! before and after, and what changed. Each record carries the SHA-256 of the line before it,
//! so a record edited or removed afterwards breaks the chain ([`verify`]). A policy that Envoy
//! runs and no record put there (a filter file swapped by hand) is told apart by its hash
//! ([`check_in_force`]); the rollout controller checks at every tick and says so in a metric
//! that an alert watches.
//!
//! What it cannot do: someone with the stack user's rights can append a record of their own
//! (the file is 0600), and records cut from the end keep the chain (the policy in force then
//! no longer matches the last record, which [`check_in_force`] finds); in a cluster the
//! Kubernetes audit log is the record of who changed a TrafficPolicy, and the operator puts
//! back a carrier edited by hand (docs/threat-model.md).

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::render::Policy;

/// The trail, beside the bootstrap (and the filter config it audits).
pub const AUDIT_FILE: &str = "audit.jsonl";
/// Who the command-line tools record when `SWITCHYARD_ACTOR` is not set: the OS user.
pub const ACTOR_ENV: &str = "SWITCHYARD_ACTOR";

/// The tool a change came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// `switchyard-policy render filter` (`envoy/apply-policy.sh`).
    Cli,
    /// The rollout controller acting on a rollout's step.
    Controller,
    /// A write through the console (its bearer token), applied by the controller.
    Console,
}

/// Who made a change and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub who: String,
    pub via: Via,
}

impl Actor {
    /// The person at the command line: `$SWITCHYARD_ACTOR`, else the OS user.
    pub fn cli() -> Actor {
        let who = std::env::var(ACTOR_ENV).or_else(|_| std::env::var("USER")).unwrap_or_else(|_| "unknown".into());
        Actor { who: bounded(&who), via: Via::Cli }
    }

    pub fn new(who: &str, via: Via) -> Actor {
        Actor { who: bounded(who), via }
    }
}

/// A name fit for a record: printable, at most 64 characters.
pub fn bounded(who: &str) -> String {
    let s: String = who.chars().filter(|c| !c.is_control()).take(64).collect();
    if s.is_empty() { "anonymous".into() } else { s }
}

/// One change put in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub time_unix_ms: u64,
    pub who: String,
    pub via: Via,
    /// The filter config's `version_info` Envoy loads.
    pub filter_config: String,
    /// SHA-256 of the policy's text put in force ([`policy_hash`]).
    pub policy_sha256: String,
    /// The same of the policy it replaced, when one was in force.
    pub before_sha256: Option<String>,
    /// The parts that differ ([`changes`]): before and after.
    pub before: Value,
    pub after: Value,
    /// SHA-256 of the previous line of the trail ("" for the first).
    pub prev: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: line {line}: {what}", path.display())]
    Broken { path: PathBuf, line: usize, what: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io { path: path.to_owned(), source }
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash a record keeps of a policy: of its text as put in force.
pub fn policy_hash(policy: &Policy) -> String {
    sha256(policy.text().as_bytes())
}

/// The parts of two policies that differ (models by name, other fields by key), as two
/// objects keyed alike: small enough to read.
pub fn changes(old: Option<&Policy>, new: &Policy) -> (Value, Value) {
    let value = |p: &Policy| serde_json::to_value(p.config()).unwrap_or_default();
    // Nothing before: every model is new.
    let (a, b) = (old.map_or_else(|| serde_json::json!({"models": {}}), value), value(new));
    let (mut before, mut after) = (serde_json::Map::new(), serde_json::Map::new());
    let empty = serde_json::Map::new();
    let (oa, ob) = (a.as_object().unwrap_or(&empty), b.as_object().unwrap_or(&empty));
    for key in oa.keys().chain(ob.keys().filter(|k| !oa.contains_key(*k))) {
        let (x, y) = (oa.get(key), ob.get(key));
        if x == y {
            continue;
        }
        if key == "models"
            && let (Some(Value::Object(mx)), Some(Value::Object(my))) = (x, y)
        {
            for m in mx.keys().chain(my.keys().filter(|k| !mx.contains_key(*k))) {
                if mx.get(m) != my.get(m) {
                    before.insert(format!("models.{m}"), mx.get(m).cloned().unwrap_or(Value::Null));
                    after.insert(format!("models.{m}"), my.get(m).cloned().unwrap_or(Value::Null));
                }
            }
            continue;
        }
        before.insert(key.clone(), x.cloned().unwrap_or(Value::Null));
        after.insert(key.clone(), y.cloned().unwrap_or(Value::Null));
    }
    (before.into(), after.into())
}

/// The trail, locked: exclusively by a tool for a change and its record together (so the two
/// are never seen apart, and two tools never chain to the same line), or shared by a reader
/// comparing the policy in force with the last record. Unlocked when dropped.
pub struct Trail {
    file: std::fs::File,
    path: PathBuf,
}

impl Trail {
    fn open(path: &Path, exclusive: bool) -> Result<Trail, AuditError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(io(path))?;
        if exclusive { file.lock() } else { file.lock_shared() }.map_err(io(path))?;
        Ok(Trail { file, path: path.to_owned() })
    }

    /// Held across putting a policy in force and [`Trail::append`]ing its record.
    pub fn exclusive(path: &Path) -> Result<Trail, AuditError> {
        Trail::open(path, true)
    }

    /// Held while reading the policy in force and the records.
    pub fn shared(path: &Path) -> Result<Trail, AuditError> {
        Trail::open(path, false)
    }

    /// Appends the record of `after` replacing `before`, chained to the trail's last line.
    pub fn append(
        &mut self,
        actor: &Actor,
        before: Option<&Policy>,
        after: &Policy,
        filter_config: &str,
        now_unix_ms: u64,
    ) -> Result<Record, AuditError> {
        let path = self.path.clone();
        let last = std::io::BufReader::new(&self.file).lines().map_while(Result::ok).filter(|l| !l.is_empty()).last();
        let (b, a) = changes(before, after);
        let record = Record {
            time_unix_ms: now_unix_ms,
            who: actor.who.clone(),
            via: actor.via,
            filter_config: filter_config.to_owned(),
            policy_sha256: policy_hash(after),
            before_sha256: before.map(policy_hash),
            before: b,
            after: a,
            prev: last.map(|l| sha256(l.as_bytes())).unwrap_or_default(),
        };
        let mut line = serde_json::to_string(&record).map_err(|e| io(&path)(e.into()))?;
        line.push('\n');
        self.file.write_all(line.as_bytes()).map_err(io(&path))?;
        self.file.sync_data().map_err(io(&path))?;
        Ok(record)
    }
}

/// [`Trail::append`] under a lock of its own (a change with nothing else to hold it for).
pub fn append(
    path: &Path,
    actor: &Actor,
    before: Option<&Policy>,
    after: &Policy,
    filter_config: &str,
    now_unix_ms: u64,
) -> Result<Record, AuditError> {
    Trail::exclusive(path)?.append(actor, before, after, filter_config, now_unix_ms)
}

/// Every record of the trail at `path`, oldest first, with the chain checked: an edited,
/// inserted or removed line (but the last ones) is an error naming it. No file: no records.
pub fn verify(path: &Path) -> Result<Vec<Record>, AuditError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(path)(e)),
    };
    let mut out = Vec::new();
    let mut prev = String::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
        let broken = |what: String| AuditError::Broken { path: path.to_owned(), line: i + 1, what };
        let r: Record = serde_json::from_str(line).map_err(|e| broken(format!("not a record: {e}")))?;
        if r.prev != prev {
            return Err(broken("does not chain to the line before it: the trail was edited".into()));
        }
        prev = sha256(line.as_bytes());
        out.push(r);
    }
    Ok(out)
}

/// Whether the policy in force is the one the trail's last record put there: `Err` names
/// what is wrong (a policy no tool recorded, or a broken trail).
pub fn check_in_force(trail: &Path, in_force: &Policy) -> Result<Record, AuditError> {
    let records = verify(trail)?;
    let hash = policy_hash(in_force);
    match records.last() {
        Some(r) if r.policy_sha256 == hash => Ok(r.clone()),
        Some(r) => Err(AuditError::Broken {
            path: trail.to_owned(),
            line: records.len(),
            what: format!(
                "the policy in force ({}) is not the last one recorded ({}, by {} via {:?}): it was changed outside the tools",
                short(&hash),
                short(&r.policy_sha256),
                r.who,
                r.via
            ),
        }),
        None => Err(AuditError::Broken {
            path: trail.to_owned(),
            line: 0,
            what: format!("no record, but a policy is in force ({})", short(&hash)),
        }),
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(weight: u32) -> Policy {
        let text = format!(
            r#"{{"models": {{"mlp": {{"versions": [{{"name": "v1", "cluster": "a", "weight": {weight}}}, {{"name": "v2", "cluster": "b", "weight": {}}}]}}}}}}"#,
            100 - weight
        );
        Policy::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn changes_name_only_what_differs() {
        let two = |w: u32| {
            let text = format!(
                r#"{{"models": {{"a": {{"versions": [{{"name": "v1", "cluster": "a-v1", "weight": {w}}}]}},
                                 "b": {{"versions": [{{"name": "v1", "cluster": "b-v1", "weight": 1}}]}}}}}}"#
            );
            Policy::parse(text).unwrap_or_else(|e| panic!("{e}"))
        };
        let (before, after) = changes(Some(&two(1)), &two(2));
        assert_eq!(before.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()), Some(vec!["models.a".into()]));
        assert_eq!(after["models.a"]["versions"][0]["weight"], 2);
        let (before, after) = changes(None, &two(2));
        let none = before.as_object().is_some_and(|o| o.contains_key("models.a") && o.values().all(Value::is_null));
        assert!(none, "nothing before the first: {before}");
        assert!(after.get("models.a").is_some() && after.get("models.b").is_some());
    }

    #[test]
    fn the_trail_chains_each_change_and_an_edit_or_a_swap_is_found() {
        let dir = std::env::temp_dir().join(format!("switchyard-audit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let trail = dir.join(AUDIT_FILE);
        let (p90, p50, p0) = (policy(90), policy(50), policy(0));
        append(&trail, &Actor::new("alice", Via::Cli), None, &p90, "v1", 1).unwrap_or_else(|e| panic!("{e}"));
        let r = append(&trail, &Actor::new("ci\nbot", Via::Controller), Some(&p90), &p50, "v2", 2)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.who, "cibot", "control characters are dropped");
        assert_eq!(r.before["models.mlp"]["versions"][0]["weight"], 90);
        assert_eq!(r.after["models.mlp"]["versions"][0]["weight"], 50);
        assert_eq!(r.before_sha256.as_deref(), Some(policy_hash(&p90).as_str()));
        let records = verify(&trail).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].prev, "");
        // What is in force is what the last record says.
        assert!(check_in_force(&trail, &p50).is_ok());
        let swapped = check_in_force(&trail, &p0).unwrap_err().to_string();
        assert!(
            swapped.contains("changed outside the tools") && swapped.contains("by cibot via Controller"),
            "{swapped}"
        );
        // An edited record breaks the chain at the line after it.
        let text = std::fs::read_to_string(&trail).unwrap_or_default();
        std::fs::write(&trail, text.replacen("alice", "mallory", 1)).unwrap_or_else(|e| panic!("{e}"));
        let e = verify(&trail).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("edited"), "{e}");
        // So does a removed one.
        let second = text.lines().nth(1).unwrap_or_default();
        std::fs::write(&trail, format!("{second}\n")).unwrap_or_else(|e| panic!("{e}"));
        assert!(verify(&trail).unwrap_err().to_string().contains("line 1"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&trail).unwrap_or_else(|e| panic!("{e}")).permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
