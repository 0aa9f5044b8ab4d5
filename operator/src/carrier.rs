//! The object that carries a TrafficPolicy's policy to the data plane, and the policy the
//! operator writes into it: the TrafficPolicy's own, with the traffic of every rollout that
//! names it. The overlay creates the object; the operator owns one field of it (server-side
//! apply, field manager [`MANAGER`]): the Envoy gateway ConfigMap's ECDS document, or the Istio
//! WasmPlugin's `spec.pluginConfig`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use switchyard_deploy::Policy;
use switchyard_deploy::apply::policy_of_filter_config;
use switchyard_deploy::render::envoy::filter_config;
use switchyard_deploy::render::json_text;
use switchyard_policy::Config;
use switchyard_policy::guard::carry_epochs;
use switchyard_rollout::judge::State;
use switchyard_rollout::traffic::with_traffic;

use crate::MANAGER;
use crate::crd::{ModelRollout, TrafficPolicy};
use crate::error::Error;
use crate::status::{state_of, traffic_text};

/// Envoy Gateway's EnvoyExtensionPolicy.
pub fn envoy_extension_policy_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.envoyproxy.io", "v1alpha1", "EnvoyExtensionPolicy"),
        "envoyextensionpolicies",
    )
}

/// Istio's WasmPlugin (k8s-openapi has types for core kinds only).
pub fn wasm_plugin_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("extensions.istio.io", "v1alpha1", "WasmPlugin"),
        "wasmplugins",
    )
}

/// Which field of which object.
enum Kind {
    /// Istio: the WasmPlugin's `spec.pluginConfig`.
    WasmPlugin,
    /// Envoy Gateway: the `config` of the EnvoyExtensionPolicy's `spec.wasm` entry so named.
    EnvoyExtensionPolicy { wasm: String },
    /// The Envoy gateway: the ECDS document under `key`, loading the `.wasm` at `wasm`.
    ConfigMap { key: String, wasm: String },
}

/// Where `tp`'s policy goes.
pub struct Target {
    kind: Kind,
    namespace: String,
    resource: ApiResource,
    name: String,
}

impl Target {
    pub fn of(tp: &TrafficPolicy) -> Result<Target, Error> {
        let namespace = tp.namespace().ok_or_else(|| Error::NoNamespace(tp.name_any()))?;
        let c = &tp.spec.carrier;
        let (kind, resource, name) = match (&c.config_map, &c.wasm_plugin, &c.envoy_extension_policy) {
            (Some(cm), None, None) => (
                Kind::ConfigMap { key: cm.key.clone(), wasm: cm.wasm.clone() },
                ApiResource::erase::<ConfigMap>(&()),
                cm.name.clone(),
            ),
            (None, Some(w), None) => (Kind::WasmPlugin, wasm_plugin_resource(), w.name.clone()),
            (None, None, Some(e)) => {
                (Kind::EnvoyExtensionPolicy { wasm: e.wasm.clone() }, envoy_extension_policy_resource(), e.name.clone())
            }
            // The CRD's validation rule refuses these; an object written before it is said so.
            _ => {
                return Err(Error::InvalidPolicy(vec![
                    "spec.carrier must name exactly one of configMap, wasmPlugin, envoyExtensionPolicy".into(),
                ]));
            }
        };
        Ok(Target { kind, namespace, resource, name })
    }

    /// `configmap/NAME`, `wasmplugin/NAME` or `envoyextensionpolicy/NAME`.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.resource.kind.to_lowercase(), self.name)
    }

    fn api(&self, client: &Client) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), &self.namespace, &self.resource)
    }

    /// The policy in the object as the API server returned it; why not, when it holds none
    /// (a fresh overlay's object, or one edited by hand): the operator then simply writes it.
    pub fn policy_in(&self, object: &Value) -> Result<Policy, NoPolicy> {
        let why = |s: String| NoPolicy(s);
        let text = match &self.kind {
            Kind::WasmPlugin => {
                let config = object.pointer("/spec/pluginConfig").ok_or_else(|| why("no spec.pluginConfig".into()))?;
                json_text(config)
            }
            Kind::EnvoyExtensionPolicy { wasm } => {
                let entry = wasm_entry(object, wasm).ok_or_else(|| why(format!("no spec.wasm entry named {wasm}")))?;
                json_text(entry.get("config").ok_or_else(|| why(format!("spec.wasm[{wasm}] has no config")))?)
            }
            Kind::ConfigMap { key, .. } => {
                let doc = object.get("data").and_then(|d| d.get(key)).and_then(Value::as_str);
                let doc: Value = serde_json::from_str(doc.ok_or_else(|| why(format!("no data.{key}")))?)
                    .map_err(|e| why(format!("data.{key} is not an ECDS document: {e}")))?;
                policy_of_filter_config(&doc).map_err(|e| why(format!("data.{key}: {e}")))?.text().to_owned()
            }
        };
        Policy::parse(text).map_err(|e| why(format!("the policy in it is invalid: {e}")))
    }

    /// The server-side apply body that puts `policy` in the carrier (`object`, as read), and
    /// the filter config's version.
    pub fn apply_body(&self, policy: &Policy, object: &Value) -> Result<(Value, String), Error> {
        let metadata = json!({"name": self.name, "namespace": self.namespace});
        match &self.kind {
            Kind::ConfigMap { key, wasm } => {
                let doc = filter_config(policy, wasm);
                let version = doc.get("version_info").and_then(Value::as_str).unwrap_or_default().to_owned();
                let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata,
                    "data": {key.as_str(): json_text(&doc)}});
                Ok((body, version))
            }
            Kind::WasmPlugin => {
                let config: Value = serde_json::from_str(policy.text())?;
                let version = format!("{:016x}", switchyard_policy::hash::stable_hash(policy.text().as_bytes()));
                let body = json!({"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
                    "metadata": metadata, "spec": {"pluginConfig": config}});
                Ok((body, version))
            }
            Kind::EnvoyExtensionPolicy { wasm } => {
                let config: Value = serde_json::from_str(policy.text())?;
                let version = format!("{:016x}", switchyard_policy::hash::stable_hash(policy.text().as_bytes()));
                let missing = || Error::CarrierMissing {
                    carrier: format!("{} with a spec.wasm entry named {wasm}", self.describe()),
                    namespace: self.namespace.clone(),
                };
                let mut entries =
                    object.pointer("/spec/wasm").and_then(Value::as_array).cloned().ok_or_else(missing)?;
                let entry = entries.iter_mut().find(|e| e["name"] == wasm.as_str()).ok_or_else(missing)?;
                entry["config"] = config;
                // The list is atomic: applied whole, as read, and only over what was read.
                let mut metadata = metadata;
                metadata["resourceVersion"] = object["metadata"]["resourceVersion"].clone();
                let body = json!({"apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "EnvoyExtensionPolicy",
                    "metadata": metadata, "spec": {"wasm": entries}});
                Ok((body, version))
            }
        }
    }
}

/// The `spec.wasm` entry named `name` of an EnvoyExtensionPolicy.
fn wasm_entry<'a>(object: &'a Value, name: &str) -> Option<&'a Value> {
    object.pointer("/spec/wasm")?.as_array()?.iter().find(|e| e["name"] == name)
}

/// Why a carrier holds no policy the operator can read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NoPolicy(String);

/// What [`put_in_force`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct InForce {
    /// The filter config's version in the carrier now.
    pub version: String,
    /// Whether this call changed the carrier (false: it already had the policy).
    pub changed: bool,
    /// The rollouts whose traffic is in it, `NAME: TRAFFIC`.
    pub rollouts: Vec<String>,
    /// `configmap/NAME` or `wasmplugin/NAME`.
    pub carrier: String,
}

/// The policy of `tp` with the traffic of each rollout in `rollouts` that names it and has
/// started, ended ones too (an aborted canary stays out, a promoted one in, until the rollout is
/// deleted: its traffic then goes back to the TrafficPolicy's).
pub fn desired(tp: &TrafficPolicy, rollouts: &[ModelRollout]) -> Result<(Config, Vec<String>), Error> {
    let text = serde_json::to_string_pretty(&tp.spec.policy)? + "\n";
    let base = Policy::parse(text).map_err(|e| Error::InvalidPolicy(e.0))?;
    // Carried as is, it would have the filter refuse every model request: no gateway in a
    // cluster sets the tenant yet.
    if base.config().identity.is_some() {
        let why = switchyard_deploy::render::k8s::IDENTITY_NOT_IN_CLUSTER;
        return Err(Error::InvalidPolicy(vec![why.to_owned()]));
    }
    let mut cfg = base.config().clone();
    let mut named = Vec::new();
    let mut ours: Vec<&ModelRollout> = rollouts
        .iter()
        .filter(|r| {
            r.namespace() == tp.namespace()
                && r.spec.traffic_policy == tp.name_any()
                && r.metadata.deletion_timestamp.is_none()
        })
        .collect();
    // Oldest first: when an ended rollout and a newer one name the same model, the newer one's
    // traffic is what stays.
    ours.sort_by_key(|r| (r.metadata.creation_timestamp.as_ref().map(|t| t.0), r.name_any()));
    for r in ours {
        let Ok(spec) = r.spec.to_spec() else { continue };
        let Some(state) = state_of(r, spec) else { continue };
        let traffic = state.traffic();
        if let Some(next) = with_traffic(&cfg, &state, traffic).map_err(Error::Traffic)? {
            cfg = next;
        }
        named.push(format!("{}: {}", r.name_any(), describe_traffic(&state)));
    }
    Ok((cfg, named))
}

fn describe_traffic(state: &State) -> String {
    format!("{} ({})", traffic_text(state), state.phase.name())
}

/// Writes `tp`'s policy, with its rollouts' traffic, into its carrier unless the carrier has it
/// already. Guard epochs only move forward: one lower than the carrier's is kept at the
/// carrier's, so re-rendering never brings back a latch the guard had cleared.
pub async fn put_in_force(client: &Client, tp: &TrafficPolicy, rollouts: &[ModelRollout]) -> Result<InForce, Error> {
    let target = Target::of(tp)?;
    let (mut cfg, named) = desired(tp, rollouts)?;
    let api = target.api(client);
    let object = api
        .get_opt(&target.name)
        .await?
        .ok_or_else(|| Error::CarrierMissing { carrier: target.describe(), namespace: target.namespace.clone() })?;
    let object = serde_json::to_value(&object)?;
    let in_force = target.policy_in(&object);
    if let Err(why) = &in_force {
        tracing::warn!(carrier = %target.describe(), %why, "the carrier holds no policy: writing it");
    }
    let in_force = in_force.ok();
    carry_epochs(&mut cfg, in_force.as_ref().map(Policy::config), &BTreeMap::new());
    let text = serde_json::to_string_pretty(&cfg)? + "\n";
    let policy = Policy::parse(text).map_err(|e| Error::InvalidPolicy(e.0))?;
    let (body, version) = target.apply_body(&policy, &object)?;
    let changed = in_force.as_ref().map(Policy::config) != Some(policy.config());
    if changed {
        api.patch(&target.name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&body)).await?;
    }
    Ok(InForce { version, changed, rollouts: named, carrier: target.describe() })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn rollout(name: &str, created: &str, phase: &str, step: u32, weight: u32) -> ModelRollout {
        serde_json::from_value(json!({
            "apiVersion": "switchyard.dev/v1alpha1", "kind": "ModelRollout",
            "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created},
            "spec": {"trafficPolicy": "tp", "model": "m", "canary": "v2", "steps": [{"weight": weight}, {"weight": 100}]},
            "status": {"phase": phase, "step": step, "progress": {"stable": "v1", "applied": step, "stepStartedMs": 0, "baseline": {}}}
        }))
        .unwrap()
    }

    #[test]
    fn the_newest_rollout_of_a_model_has_the_last_word() {
        let tp: TrafficPolicy = serde_json::from_value(json!({
            "apiVersion": "switchyard.dev/v1alpha1", "kind": "TrafficPolicy",
            "metadata": {"name": "tp", "namespace": "ns"},
            "spec": {"carrier": {"configMap": {"name": "cm"}}, "policy": {"models": {"m": {"versions": [
                {"name": "v1", "cluster": "m-v1", "weight": 100}, {"name": "v2", "cluster": "m-v2", "weight": 0}]}}}}
        }))
        .unwrap();
        // An aborted rollout from yesterday named after the running one alphabetically.
        let old = rollout("z-old", "2026-12-06T10:00:00Z", "Aborted", 0, 50);
        let new = rollout("a-new", "2026-12-07T10:00:00Z", "Running", 0, 30);
        let (cfg, named) = desired(&tp, &[new.clone(), old.clone()]).unwrap();
        assert_eq!(cfg.models["m"].versions[1].weight, 30, "{named:?}");
        assert_eq!(named, ["z-old: v2 at 0%, v1 at 100% (aborted)", "a-new: v2 at 30%, v1 at 70% (running)"]);
        // Another namespace, another policy, or deleted: left out.
        let mut elsewhere = new;
        elsewhere.metadata.namespace = Some("other".into());
        let (cfg, _) = desired(&tp, &[elsewhere, old]).unwrap();
        assert_eq!(cfg.models["m"].versions[1].weight, 0);
    }

    /// No gateway in a cluster sets the tenant yet: carried, the policy would have the filter
    /// refuse every model request. Refused with the reason instead (the carrier keeps its own).
    #[test]
    fn a_policy_with_identity_is_not_carried_into_a_cluster() {
        let tp: TrafficPolicy = serde_json::from_value(json!({
            "apiVersion": "switchyard.dev/v1alpha1", "kind": "TrafficPolicy",
            "metadata": {"name": "tp", "namespace": "ns"},
            "spec": {"carrier": {"configMap": {"name": "cm"}}, "policy": {
                "models": {"m": {"versions": [{"name": "v1", "cluster": "m-v1", "weight": 100}]}},
                "identity": {"issuer": "i"}}}
        }))
        .unwrap();
        match desired(&tp, &[]) {
            Err(Error::InvalidPolicy(why)) => assert!(why[0].contains("not rendered for Kubernetes yet"), "{why:?}"),
            other => panic!("carried: {:?}", other.map(|(_, named)| named)),
        }
    }
}
