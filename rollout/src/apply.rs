//! Where the rollout acts: the policy in force, read from the local Envoy's ECDS file or from
//! the Kubernetes object that carries it, and a new one put in force there (through
//! `switchyard_policy::deploy`, the same update as `envoy/apply-policy.sh`).

use std::path::Path;

use switchyard_policy::Config;

use crate::error::Error;
use crate::judge::State;
use crate::kube::Read;
use crate::store::Target;
use crate::traffic::with_traffic;
use switchyard_deploy::Policy;
use switchyard_deploy::apply::{apply_filter, in_force};

/// The policy in force, as read from where the rollout acts.
pub enum InForce {
    Local(Policy),
    Kube(Read),
}

impl InForce {
    pub fn policy(&self) -> &Policy {
        match self {
            InForce::Local(p) => p,
            InForce::Kube(r) => &r.policy,
        }
    }
}

fn local(target: &Target) -> Result<(&Path, &Path), Error> {
    match (&target.policy, &target.bootstrap) {
        (Some(p), Some(b)) => Ok((p, b)),
        _ => Err(Error::NoTarget),
    }
}

pub async fn in_force_at(target: &Target) -> Result<InForce, Error> {
    match &target.kube {
        Some(k) => Ok(InForce::Kube(k.in_force().await?)),
        None => Ok(InForce::Local(in_force(local(target)?.1)?)),
    }
}

/// Puts `cfg` in force: locally it is written to the policy file too, so every tool sees one
/// policy; in a cluster the object replaced is the one `now` was read from, unchanged since.
/// Returns the filter config's version.
pub async fn put_in_force(target: &Target, now: &InForce, cfg: &Config) -> Result<String, Error> {
    let text = serde_json::to_string_pretty(cfg)? + "\n";
    let policy = Policy::parse(text).map_err(Error::InvalidPolicy)?;
    if let (InForce::Kube(read), Some(k)) = (now, &target.kube) {
        return Ok(k.apply(read, &policy).await?);
    }
    let (file, bootstrap) = local(target)?;
    // The controller's epochs only ever rise from the one in force, so nothing is moved
    // here unless someone else put an older policy in force meanwhile: then the file gets
    // what Envoy runs.
    let applied = apply_filter(&policy, &target.wasm, bootstrap, None)?;
    switchyard_runtime::write_atomic(file, applied.policy.text())?;
    Ok(applied.version)
}

/// Applies the traffic the state wants when it is not already in force. Returns what changed.
pub async fn reconcile(target: &Target, st: &State) -> Result<Option<String>, Error> {
    let current = in_force_at(target).await?;
    let traffic = st.traffic();
    match with_traffic(current.policy().config(), st, traffic)? {
        Some(cfg) => {
            let version = put_in_force(target, &current, &cfg).await?;
            Ok(Some(format!("{} {traffic:?} in force (filter config {version})", st.spec.model)))
        }
        None => Ok(None),
    }
}
