//! What the Kubernetes renderers share (the core objects and each gateway component): a
//! policy's versions with their Kubernetes names, object metadata, the routing headers, the
//! TrafficPolicy the operator reconciles. Imports nothing of its siblings.

use serde_json::{Value, json};

use crate::render::Policy;

/// One policy version with its Kubernetes names.
pub(super) struct Version<'a> {
    pub model: &'a str,
    pub version: &'a str,
    pub cluster: &'a str,
    /// The first version of a model: it never scales to zero.
    pub stable: bool,
}

pub(super) fn versions(policy: &Policy) -> Vec<Version<'_>> {
    let mut out = Vec::new();
    for (model, m) in &policy.config().models {
        for (i, v) in m.versions.iter().enumerate() {
            out.push(Version { model, version: &v.name, cluster: &v.cluster, stable: i == 0 });
        }
    }
    out
}

pub(super) fn meta(name: &str, labels: Value) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("name".into(), json!(name));
    m.insert("labels".into(), labels);
    Value::Object(m)
}

/// The routing headers' names, as the filter sets them.
pub(super) fn headers(policy: &Policy) -> (&str, &str) {
    let cfg = policy.config();
    (cfg.upstream_header.as_str(), cfg.shadow_header.as_str())
}

/// The TrafficPolicy the operator reconciles (operator/): the policy as the gateway runs it,
/// and the object that carries it there. The carrier starts with the same policy, so the
/// gateway serves before the operator first writes it.
pub(super) fn traffic_policy(policy: &Value, carrier: &Value) -> Value {
    let labels = json!({"app.kubernetes.io/name": "switchyard-gateway", "app.kubernetes.io/part-of": "switchyard"});
    json!({
        "apiVersion": "switchyard.dev/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": meta("switchyard-gateway", labels),
        "spec": {"policy": policy, "carrier": carrier},
    })
}
