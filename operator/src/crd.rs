//! The operator's custom resources, as Rust types: the CRDs (`switchyard-operator crds`,
//! checked in under `k8s/crds/`) are generated from them, so the schema the API server
//! enforces and the fields the operator reads cannot drift apart.
//!
//! Field names follow the Kubernetes API conventions (camelCase); a `ModelRollout`'s spec is
//! turned into the rollout controller's own [`Spec`] and checked by its one validator, so a
//! rollout means the same from a file (`switchyard-rollout start`) and from the cluster.

// kube's `printcolumn(...)` repeats `type_ = ...` once per column, which clippy reads as one
// attribute given twice.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use switchyard_rollout::spec::{Analysis, Spec, SpecError, Step};

/// The API group of both resources.
pub const GROUP: &str = "switchyard.dev";
/// Their one version, served and stored.
pub const VERSION: &str = "v1alpha1";

/// A canary rollout of one model version, judged against the stable version from the filter's
/// metrics and carried out by changing the weights of a [`TrafficPolicy`].
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "switchyard.dev",
    version = "v1alpha1",
    kind = "ModelRollout",
    namespaced,
    status = "ModelRolloutStatus",
    derive = "PartialEq",
    shortname = "mro",
    category = "switchyard",
    doc = "A canary rollout of one model version: steps of traffic, each judged against the stable version from the Switchyard filter's metrics, carried out through a TrafficPolicy.",
    printcolumn(name = "Model", type_ = "string", json_path = ".spec.model"),
    printcolumn(name = "Canary", type_ = "string", json_path = ".spec.canary"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Step", type_ = "integer", json_path = ".status.step"),
    printcolumn(name = "Weight", type_ = "integer", json_path = ".status.traffic.weight"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.lastDecision.reason", priority = "1"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ModelRolloutSpec {
    /// The TrafficPolicy, in the same namespace, whose model this rollout moves traffic in.
    #[schemars(length(min = 1, max = 253))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "trafficPolicy cannot change: start another rollout"}]))]
    pub traffic_policy: String,
    /// The model (a key of the policy's `models`).
    #[schemars(length(min = 1, max = 63))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "model cannot change: start another rollout"}]))]
    pub model: String,
    /// The version rolled out.
    #[schemars(length(min = 1, max = 63))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "canary cannot change: start another rollout"}]))]
    pub canary: String,
    /// The version it replaces and is judged against (default: the model's `guard.stable`,
    /// else its first version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<String>,
    #[schemars(length(min = 1, max = 64))]
    pub steps: Vec<RolloutStep>,
    #[serde(default)]
    pub analysis: RolloutAnalysis,
    /// Stops judging and advancing; traffic stays as it is. Set back to false to go on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Hold points (and quiet stages that are holding) up to this step index are released:
    /// `kubectl patch mro NAME --type merge -p '{"spec":{"approvedStep":2}}'`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub approved_step: Option<u32>,
    /// The canary takes all traffic now (the rollout ends promoted).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub promote: bool,
    /// The canary gets no traffic now (the rollout ends aborted). Wins over `promote`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abort: bool,
}

/// One stage: exactly one of `weight`, `ab`, `shadow`, `hold`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "[has(self.weight), has(self.ab) && self.ab, has(self.shadow), has(self.hold) && self.hold].filter(x, x).size() == 1",
    "message": "a step needs exactly one of weight, ab, shadow, hold"
}]))]
pub struct RolloutStep {
    /// The canary's share of the split, 0-100 (the stable version gets the rest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub weight: Option<u32>,
    /// Only requests whose override header names the canary reach it (its weight stays 0).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ab: bool,
    /// This percentage of requests is mirrored to the canary, which serves no client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub shadow: Option<f64>,
    /// Waits for `spec.approvedStep` to reach this step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hold: bool,
    /// How long the stage runs before it may promote (`30s`, `5m`, `1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub min_duration: Option<String>,
    /// Requests the canary must have served in the stage before it may promote (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u64>,
    /// A shadow stage only: the most the canary's answers may disagree with the stable
    /// version's, less the noise, as a share of compared rows (0-1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub max_disagreement: Option<f64>,
}

/// How the canary is judged; every field has the rollout controller's default.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAnalysis {
    /// Abort when the canary's error ratio exceeds the stable one's by this much (absolute,
    /// default 0.01)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_increase: Option<f64>,
    /// ...with this confidence (one-sided Fisher exact test; default 0.99); likewise latency
    /// (Mann-Whitney U).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// Abort when the canary's median latency exceeds the stable one's by this factor
    /// (default 1.25)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ratio: Option<f64>,
    /// ...and by this many milliseconds at least (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_latency_increase_ms: Option<f64>,
    /// A stage that has not seen its minimum requests by then holds instead of failing
    /// (default 10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub quiet_deadline: Option<String>,
    /// Compared rows a stage with `maxDisagreement` needs before it is judged (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_compared_rows: Option<u64>,
}

/// Where a rollout is: what `kubectl get modelrollouts` shows, and all the operator needs to
/// resume it (no other state is kept anywhere).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelRolloutStatus {
    /// The spec generation this status was written for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Running, Paused, Holding, Promoted, Aborted or Invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The step in force (0-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<Decision>,
    /// `Ready` (the spec is valid and its TrafficPolicy can carry it) and `Progressing`
    /// (true while the rollout runs; its reason says why not otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The judge's own state, to resume from after a restart or a failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

/// The traffic the rollout asks for, and whether its TrafficPolicy's carrier has it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficStatus {
    /// The canary's share of the split.
    pub weight: u32,
    /// A/B: the canary reached only through the override header.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ab: bool,
    /// The percentage mirrored to the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_percent: Option<f64>,
}

/// The last decision, with the numbers it was made on.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// start, apply, advance, hold, pause, resume, promote or abort.
    pub decision: String,
    pub reason: String,
    /// When (RFC 3339).
    pub time: String,
    /// Requests and failures of each version in the step so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<VersionCounts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<VersionCounts>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionCounts {
    pub requests: u64,
    pub errors: u64,
}

/// The judge's state beside what the spec says.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// The stable version, resolved at start.
    pub stable: String,
    /// The step whose traffic is in force, and since when (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<u32>,
    pub step_started_ms: u64,
    /// Why the rollout holds or was aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_reason: Option<String>,
    /// Whether the override allow-list had the canary before the rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_was_allowed: Option<bool>,
    /// The filter's counters when the step came into force (the judge's baseline).
    #[schemars(schema_with = "free_form")]
    pub baseline: serde_json::Value,
}

/// The filter's policy for one gateway, and the object that carries it to the data plane:
/// the operator validates it with the filter's own parser and writes it, with the traffic of
/// every rollout that names it, into that object.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "switchyard.dev",
    version = "v1alpha1",
    kind = "TrafficPolicy",
    namespaced,
    status = "TrafficPolicyStatus",
    derive = "PartialEq",
    shortname = "stp",
    category = "switchyard",
    doc = "The Switchyard filter's policy (models, versions, weights, override, guard, shadow, sampling) and the object that carries it to the gateway.",
    printcolumn(name = "Carrier", type_ = "string", json_path = ".status.carrier"),
    printcolumn(name = "Valid", type_ = "string", json_path = ".status.conditions[?(@.type==\"Valid\")].status"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Version", type_ = "string", json_path = ".status.filterConfigVersion"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicySpec {
    /// The policy, as `envoy/policy.json` (docs/policy.md). Checked by the filter's own parser:
    /// every problem is listed in the status, and an invalid policy is never written.
    #[schemars(schema_with = "free_form")]
    pub policy: serde_json::Value,
    pub carrier: Carrier,
}

/// Exactly one of `configMap` (the Envoy gateway), `wasmPlugin` (Istio) or
/// `envoyExtensionPolicy` (Envoy Gateway, Gateway API).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "[has(self.configMap), has(self.wasmPlugin), has(self.envoyExtensionPolicy)].filter(x, x).size() == 1",
    "message": "a carrier is exactly one of configMap, wasmPlugin, envoyExtensionPolicy"
}]))]
pub struct Carrier {
    /// The Envoy gateway's ECDS ConfigMap: the operator owns `data[key]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapCarrier>,
    /// Istio's WasmPlugin: the operator owns `spec.pluginConfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasm_plugin: Option<WasmPluginCarrier>,
    /// Envoy Gateway's EnvoyExtensionPolicy: the operator writes the `config` of its `spec.wasm`
    /// entry named `wasm` (an atomic list: it applies the whole list as it read it, with that
    /// one `config` replaced, under the `resourceVersion` it read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envoy_extension_policy: Option<EnvoyExtensionPolicyCarrier>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvoyExtensionPolicyCarrier {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The `spec.wasm[].name` of the filter (default `switchyard`).
    #[serde(default = "default_wasm_entry")]
    pub wasm: String,
}

fn default_wasm_entry() -> String {
    "switchyard".into()
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapCarrier {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key holding the ECDS file (default `filter.yaml`).
    #[serde(default = "default_key")]
    pub key: String,
    /// Where the gateway's Envoy finds the filter's `.wasm` (default: where the image has it).
    #[serde(default = "default_wasm")]
    pub wasm: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WasmPluginCarrier {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

fn default_key() -> String {
    "filter.yaml".into()
}

fn default_wasm() -> String {
    switchyard_deploy::render::k8s::WASM_PATH.into()
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `configmap/NAME` or `wasmplugin/NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    /// The version of the filter config in the carrier (for the Envoy gateway, the ECDS
    /// `version_info`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_config_version: Option<String>,
    /// Every problem the filter's parser found (empty when valid).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// The rollouts whose traffic is in the carrier, `NAME: weight W`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollouts: Vec<String>,
    /// `Valid` (the policy parses) and `Ready` (the carrier has it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// An object the API server keeps as it is given; the operator validates it.
fn free_form(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

impl ModelRolloutSpec {
    /// The rollout controller's spec: defaults filled in, validated by its one validator.
    pub fn to_spec(&self) -> Result<Spec, SpecError> {
        let d = Analysis::default();
        let a = &self.analysis;
        let step_default = Step::with_defaults();
        Spec {
            model: self.model.clone(),
            canary: self.canary.clone(),
            stable: self.stable.clone(),
            steps: self
                .steps
                .iter()
                .map(|s| Step {
                    weight: s.weight,
                    ab: s.ab,
                    shadow: s.shadow,
                    hold: s.hold,
                    min_duration: s.min_duration.clone().unwrap_or_else(|| step_default.min_duration.clone()),
                    min_requests: s.min_requests.unwrap_or(step_default.min_requests),
                    max_disagreement: s.max_disagreement,
                })
                .collect(),
            analysis: Analysis {
                max_error_increase: a.max_error_increase.unwrap_or(d.max_error_increase),
                confidence: a.confidence.unwrap_or(d.confidence),
                max_latency_ratio: a.max_latency_ratio.unwrap_or(d.max_latency_ratio),
                min_latency_increase_ms: a.min_latency_increase_ms.unwrap_or(d.min_latency_increase_ms),
                quiet_deadline: a.quiet_deadline.clone().unwrap_or(d.quiet_deadline),
                min_compared_rows: a.min_compared_rows.unwrap_or(d.min_compared_rows),
            },
        }
        .validated()
    }
}

/// The CRDs as the API server is given them, each with the file name it is checked in under
/// (`k8s/crds/`). schemars names unsigned integers' formats `uint32`/`uint64`, which the API
/// server does not know (it drops them with a warning): they are written as `int32`/`int64`,
/// with the `minimum: 0` schemars already adds.
pub fn definitions() -> Result<Vec<(String, CustomResourceDefinition)>, serde_json::Error> {
    [ModelRollout::crd(), TrafficPolicy::crd()]
        .into_iter()
        .map(|crd| {
            let mut v = serde_json::to_value(&crd)?;
            known_formats(&mut v);
            let crd: CustomResourceDefinition = serde_json::from_value(v)?;
            let name = format!("{}-customresourcedefinition.yaml", crd.metadata.name.clone().unwrap_or_default());
            Ok((name, crd))
        })
        .collect()
}

fn known_formats(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(o) => {
            if let Some(f) = o.get_mut("format") {
                match f.as_str() {
                    Some("uint32" | "uint16" | "uint8") => *f = "int32".into(),
                    Some("uint64" | "uint") => *f = "int64".into(),
                    _ => {}
                }
            }
            o.values_mut().for_each(known_formats);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(known_formats),
        _ => {}
    }
}

/// The CRDs as YAML files: (file name, text), with a header saying where they come from.
pub fn files() -> Result<Vec<(String, String)>, Box<dyn std::error::Error>> {
    definitions()?
        .into_iter()
        .map(|(name, crd)| {
            let text = format!(
                "# Generated by `switchyard-operator crds --out k8s/crds` from operator/src/crd.rs: do not edit.\n{}",
                serde_norway::to_string(&crd)?
            );
            Ok((name, text))
        })
        .collect()
}
