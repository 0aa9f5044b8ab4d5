//! In a cluster the policy in force lives in a Kubernetes object, not a local file: the Istio
//! `WasmPlugin`'s `spec.pluginConfig`, or the Envoy gateway's ECDS ConfigMap (the document
//! `switchyard_policy::deploy` writes locally, under one key). The controller reads it and
//! replaces it through the API server.
//!
//! The API is reached through `kubectl proxy` in the controller's pod (plain HTTP on loopback,
//! authenticated as the pod's service account): the controller needs no TLS stack or token
//! handling of its own, and its Role decides what it may touch (k8s/README.md).
//!
//! Every change is one JSON Patch (RFC 6902) that first tests the `resourceVersion` it read:
//! a change made by someone else meanwhile fails the patch (409/422) instead of being
//! overwritten, and the next tick reads again.

use hyper::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use switchyard_deploy::Policy;
use switchyard_deploy::apply::{policy_of_filter_config, wasm_of_filter_config};
use switchyard_deploy::render::envoy::filter_config;
use switchyard_deploy::render::json_text;

/// Which object carries the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Carrier {
    /// Istio: the filter's `pluginConfig`.
    WasmPlugin { name: String },
    /// The Envoy gateway: its ECDS file, `key` of the ConfigMap it is mounted from.
    ConfigMap { name: String, key: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kube {
    /// `kubectl proxy`, HOST:PORT.
    pub api: String,
    pub namespace: String,
    pub carrier: Carrier,
}

/// What went wrong reading or changing the object.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The object holds no policy where its carrier keeps one, or an invalid one.
    #[error("{object}: {problem}")]
    Object { object: String, problem: String },
    /// No answer through `kubectl proxy`.
    #[error("{call}: the Kubernetes API (kubectl proxy at {api}): {source}")]
    Unreachable { call: String, api: String, source: anyhow::Error },
    /// The API server said no; `message` is its Status object's (forbidden by RBAC, not found,
    /// a conflict).
    #[error("{call}: {status}: {message}")]
    Refused { call: String, status: u16, message: String },
    #[error("{call}: not a JSON object: {source}")]
    NotJson { call: String, source: serde_json::Error },
    #[error("the ConfigMap's document loads no .wasm")]
    NoWasm,
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
}

/// The object as read: the policy in it, and what a replacement needs.
pub struct Read {
    pub policy: Policy,
    resource_version: String,
    /// The ConfigMap's ECDS document loads this `.wasm`; a replacement keeps it.
    wasm: Option<String>,
}

impl Kube {
    /// The object's API path.
    pub fn path(&self) -> String {
        let ns = &self.namespace;
        match &self.carrier {
            Carrier::WasmPlugin { name } => {
                format!("/apis/extensions.istio.io/v1alpha1/namespaces/{ns}/wasmplugins/{name}")
            }
            Carrier::ConfigMap { name, .. } => format!("/api/v1/namespaces/{ns}/configmaps/{name}"),
        }
    }

    /// What a person reads in messages: `wasmplugin/NAME in NS`.
    pub fn describe(&self) -> String {
        match &self.carrier {
            Carrier::WasmPlugin { name } => format!("wasmplugin/{name} in {}", self.namespace),
            Carrier::ConfigMap { name, key } => format!("configmap/{name} ({key}) in {}", self.namespace),
        }
    }

    /// The policy in the object as the API server returned it.
    pub fn read(&self, object: &Value) -> Result<Read, KubeError> {
        let at = |problem: String| KubeError::Object { object: self.describe(), problem };
        let resource_version = object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .ok_or_else(|| at("no metadata.resourceVersion".into()))?
            .to_owned();
        let (text, wasm) = match &self.carrier {
            Carrier::WasmPlugin { .. } => {
                let config = object.pointer("/spec/pluginConfig").ok_or_else(|| at("no spec.pluginConfig".into()))?;
                (json_text(config), None)
            }
            Carrier::ConfigMap { key, .. } => {
                let doc = object
                    .get("data")
                    .and_then(|d| d.get(key))
                    .and_then(Value::as_str)
                    .ok_or_else(|| at(format!("no data.{key}")))?;
                let doc: Value =
                    serde_json::from_str(doc).map_err(|e| at(format!("data.{key} is not an ECDS document: {e}")))?;
                let policy = policy_of_filter_config(&doc).map_err(|e| at(format!("data.{key}: {e}")))?;
                let wasm = wasm_of_filter_config(&doc).ok_or_else(|| at(format!("data.{key} loads no local .wasm")))?;
                (policy.text().to_owned(), Some(wasm.to_owned()))
            }
        };
        let policy = Policy::parse(text).map_err(|e| at(format!("the policy in it is invalid: {e}")))?;
        Ok(Read { policy, resource_version, wasm })
    }

    /// The JSON Patch that puts `policy` in the object read as `read`, and the filter config
    /// version it carries (for the Envoy gateway, the ECDS `version_info`).
    pub fn patch(&self, read: &Read, policy: &Policy) -> Result<(Value, String), KubeError> {
        let test = json!({"op": "test", "path": "/metadata/resourceVersion", "value": read.resource_version});
        match &self.carrier {
            Carrier::WasmPlugin { .. } => {
                let config: Value = serde_json::from_str(policy.text())?;
                // Replaced whole: a merge patch would keep keys the new policy dropped.
                let replace = json!({"op": "replace", "path": "/spec/pluginConfig", "value": config});
                let version = format!("{:016x}", switchyard_policy::hash::stable_hash(policy.text().as_bytes()));
                Ok((json!([test, replace]), version))
            }
            Carrier::ConfigMap { key, .. } => {
                let wasm = read.wasm.as_deref().ok_or(KubeError::NoWasm)?;
                let doc = filter_config(policy, wasm);
                let version = doc.get("version_info").and_then(Value::as_str).unwrap_or_default().to_owned();
                let path = format!("/data/{}", key.replace('~', "~0").replace('/', "~1"));
                Ok((json!([test, {"op": "replace", "path": path, "value": json_text(&doc)}]), version))
            }
        }
    }

    async fn call(&self, method: Method, content_type: Option<&str>, body: Vec<u8>) -> Result<Value, KubeError> {
        let call = format!("{method} {}", self.describe());
        let (status, body) =
            match switchyard_load::http::request(&self.api, method, &self.path(), content_type, body.into()).await {
                Ok(answer) => answer,
                Err(source) => return Err(KubeError::Unreachable { call, api: self.api.clone(), source }),
            };
        if status != 200 {
            // The API server's Status object says why (forbidden by RBAC, not found, conflict).
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|s| s.get("message").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect());
            return Err(KubeError::Refused { call, status, message });
        }
        serde_json::from_slice(&body).map_err(|source| KubeError::NotJson { call, source })
    }

    pub async fn in_force(&self) -> Result<Read, KubeError> {
        let object = self.call(Method::GET, None, Vec::new()).await?;
        self.read(&object)
    }

    /// Puts `policy` in force unless the object changed since `read`. Returns the version.
    pub async fn apply(&self, read: &Read, policy: &Policy) -> Result<String, KubeError> {
        let (patch, version) = self.patch(read, policy)?;
        let body = serde_json::to_vec(&patch)?;
        self.call(Method::PATCH, Some("application/json-patch+json"), body).await?;
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const POLICY: &str = r#"{"models": {"m": {"versions": [
        {"name": "v1", "cluster": "outbound|8000||m-v1.ns.svc.cluster.local", "weight": 100},
        {"name": "v2", "cluster": "outbound|8000||m-v2.ns.svc.cluster.local", "weight": 0}]}}}"#;

    fn kube(carrier: Carrier) -> Kube {
        Kube { api: "127.0.0.1:8001".into(), namespace: "ns".into(), carrier }
    }

    #[test]
    fn a_wasm_plugin_is_read_and_its_plugin_config_replaced_whole_after_a_version_test() {
        let k = kube(Carrier::WasmPlugin { name: "switchyard".into() });
        assert_eq!(k.path(), "/apis/extensions.istio.io/v1alpha1/namespaces/ns/wasmplugins/switchyard");
        let object = json!({"metadata": {"resourceVersion": "41"}, "spec": {"pluginConfig": serde_json::from_str::<Value>(POLICY).unwrap()}});
        let read = k.read(&object).unwrap();
        assert_eq!(read.policy.config().models["m"].versions[0].weight, 100);
        let mut cfg = read.policy.config().clone();
        cfg.models.get_mut("m").unwrap().versions[1].weight = 10;
        let next = Policy::parse(serde_json::to_string(&cfg).unwrap()).unwrap();
        let (patch, _) = k.patch(&read, &next).unwrap();
        assert_eq!(patch[0], json!({"op": "test", "path": "/metadata/resourceVersion", "value": "41"}));
        assert_eq!(patch[1]["op"], "replace");
        assert_eq!(patch[1]["path"], "/spec/pluginConfig");
        assert_eq!(patch[1]["value"]["models"]["m"]["versions"][1]["weight"], 10);
    }

    #[test]
    fn a_config_map_keeps_its_wasm_and_gets_a_new_ecds_version() {
        let k = kube(Carrier::ConfigMap { name: "gw".into(), key: "filter.yaml".into() });
        assert_eq!(k.path(), "/api/v1/namespaces/ns/configmaps/gw");
        let policy = Policy::parse(POLICY.to_owned()).unwrap();
        let doc = filter_config(&policy, "/etc/switchyard/filter/switchyard_filter.wasm");
        let object = json!({"metadata": {"resourceVersion": "7"}, "data": {"filter.yaml": json_text(&doc)}});
        let read = k.read(&object).unwrap();
        let mut cfg = read.policy.config().clone();
        cfg.models.get_mut("m").unwrap().versions[1].weight = 50;
        let next = Policy::parse(serde_json::to_string(&cfg).unwrap()).unwrap();
        let (patch, version) = k.patch(&read, &next).unwrap();
        assert_eq!(patch[1]["path"], "/data/filter.yaml");
        let new_doc: Value = serde_json::from_str(patch[1]["value"].as_str().unwrap()).unwrap();
        assert_eq!(wasm_of_filter_config(&new_doc), Some("/etc/switchyard/filter/switchyard_filter.wasm"));
        assert_eq!(policy_of_filter_config(&new_doc).unwrap().config(), next.config());
        assert_eq!(new_doc["version_info"], version.as_str());
        assert_ne!(doc["version_info"], version.as_str());
    }

    #[test]
    fn objects_without_a_policy_are_refused_with_the_reason() {
        let k = kube(Carrier::WasmPlugin { name: "w".into() });
        let e = k.read(&json!({"metadata": {"resourceVersion": "1"}, "spec": {}})).err().unwrap().to_string();
        assert_eq!(e, "wasmplugin/w in ns: no spec.pluginConfig");
        let e = k.read(&json!({"spec": {"pluginConfig": {}}})).err().unwrap().to_string();
        assert!(e.contains("no metadata.resourceVersion"), "{e}");
        let e = k
            .read(&json!({"metadata": {"resourceVersion": "1"}, "spec": {"pluginConfig": {"models": 3}}}))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("the policy in it is invalid"), "{e}");
        let c = kube(Carrier::ConfigMap { name: "gw".into(), key: "filter.yaml".into() });
        let e = c
            .read(&json!({"metadata": {"resourceVersion": "1"}, "data": {"filter.yaml": "{"}}))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("data.filter.yaml is not an ECDS document"), "{e}");
    }
}
