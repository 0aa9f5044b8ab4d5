//! Where the rollout acts: the policy in force, read from the local Envoy's ECDS file, and a new
//! one put in force there (through `switchyard_deploy::apply`, the same update as
//! `envoy/apply-policy.sh`). In a cluster the operator (operator/) acts instead, on the same
//! judge and the same `traffic`.

use std::path::Path;

use switchyard_policy::Config;

use crate::error::Error;
use crate::judge::State;
use crate::store::Target;
use crate::traffic::with_traffic;
use switchyard_deploy::Policy;
use switchyard_deploy::apply::{apply_filter, in_force};
use switchyard_deploy::audit::{Actor, Via};

fn local(target: &Target) -> Result<(&Path, &Path), Error> {
    match (&target.policy, &target.bootstrap) {
        (Some(p), Some(b)) => Ok((p, b)),
        _ => Err(Error::NoTarget),
    }
}

/// The policy the local Envoy runs.
pub async fn in_force_at(target: &Target) -> Result<Policy, Error> {
    Ok(in_force(local(target)?.1)?)
}

/// Puts `cfg` in force, recorded for `actor`; it is written to the policy file too, so every
/// tool sees one policy. Returns the filter config's version.
pub async fn put_in_force(target: &Target, cfg: &Config, actor: &Actor) -> Result<String, Error> {
    let text = serde_json::to_string_pretty(cfg)? + "\n";
    let policy = Policy::parse(text).map_err(Error::InvalidPolicy)?;
    let (file, bootstrap) = local(target)?;
    // The controller's epochs only ever rise from the one in force, so nothing is moved
    // here unless someone else put an older policy in force meanwhile: then the file gets
    // what Envoy runs.
    let applied = apply_filter(&policy, &target.wasm, bootstrap, None, actor)?;
    switchyard_runtime::write_atomic(file, applied.policy.text())?;
    Ok(applied.version)
}

/// Who acts for the controller itself, in the audit trail.
pub fn controller(st: &State) -> Actor {
    Actor::new(&format!("rollout {}/{}", st.spec.model, st.spec.canary), Via::Controller)
}

/// Applies the traffic the state wants when it is not already in force, recorded for `actor`.
/// Returns what changed.
pub async fn reconcile(target: &Target, st: &State, actor: &Actor) -> Result<Option<String>, Error> {
    let current = in_force_at(target).await?;
    let traffic = st.traffic();
    match with_traffic(current.config(), st, traffic)? {
        Some(cfg) => {
            let version = put_in_force(target, &cfg, actor).await?;
            Ok(Some(format!("{} {traffic:?} in force (filter config {version})", st.spec.model)))
        }
        None => Ok(None),
    }
}
