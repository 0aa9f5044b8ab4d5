//! The CRDs: the committed files are what the types generate, and each schema is structural as
//! the API server requires (apiextensions.k8s.io/v1 refuses a CRD whose schema is not): every
//! node typed, no `$ref`, `additionalProperties` never beside `properties`, nothing under
//! `anyOf`/`oneOf`/`allOf`/`not` that sets a type or a default, every list-map key required.
//! k8s/validate.py validates the CRD objects against Kubernetes' own schemas and the examples
//! against these.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;

use serde_json::Value;
use switchyard_operator::crd::{definitions, files};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn the_committed_crds_are_what_the_types_generate() {
    for (name, text) in files().unwrap() {
        let path = root().join("k8s/crds").join(&name);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == text,
            "{} differs from operator/src/crd.rs: run `cargo run -p switchyard-operator -- crds --out k8s/crds`",
            path.display()
        );
    }
}

/// Every problem of `s` (at `at`) that makes a schema not structural.
fn structural(s: &Value, at: &str, problems: &mut Vec<String>) {
    let Some(o) = s.as_object() else {
        return problems.push(format!("{at}: not an object"));
    };
    let preserve = o.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    let int_or_string = o.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if o.contains_key("$ref") {
        problems.push(format!("{at}: $ref"));
    }
    match o.get("type").and_then(Value::as_str) {
        Some("object" | "array" | "string" | "integer" | "number" | "boolean") => {}
        Some(t) => problems.push(format!("{at}: unknown type {t}")),
        None if preserve || int_or_string => {}
        None => problems.push(format!("{at}: no type")),
    }
    if o.contains_key("properties") && o.contains_key("additionalProperties") {
        problems.push(format!("{at}: properties beside additionalProperties"));
    }
    if o.get("type").and_then(Value::as_str) == Some("array") && !o.contains_key("items") {
        problems.push(format!("{at}: an array without items"));
    }
    for logic in ["anyOf", "oneOf", "allOf", "not"] {
        let branches: Vec<&Value> = match o.get(logic) {
            Some(Value::Array(a)) => a.iter().collect(),
            Some(v) => vec![v],
            None => continue,
        };
        for b in branches {
            for forbidden in ["type", "default", "description", "nullable", "additionalProperties"] {
                if b.get(forbidden).is_some() {
                    problems.push(format!("{at}.{logic}: sets {forbidden}"));
                }
            }
        }
    }
    if o.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
        let required: Vec<&str> =
            o["items"]["required"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        for key in o["x-kubernetes-list-map-keys"].as_array().into_iter().flatten() {
            if !required.contains(&key.as_str().unwrap_or_default()) {
                problems.push(format!("{at}: list-map key {key} is not required"));
            }
        }
    }
    if let Some(p) = o.get("properties").and_then(Value::as_object) {
        for (k, v) in p {
            structural(v, &format!("{at}.{k}"), problems);
        }
    }
    if let Some(items) = o.get("items") {
        structural(items, &format!("{at}[]"), problems);
    }
    if let Some(a @ Value::Object(_)) = o.get("additionalProperties") {
        structural(a, &format!("{at}{{}}"), problems);
    }
}

#[test]
fn every_schema_is_structural_and_every_field_typed() {
    for (name, crd) in definitions().unwrap() {
        let v = serde_json::to_value(&crd).unwrap();
        assert_eq!(v["apiVersion"], "apiextensions.k8s.io/v1");
        for version in v["spec"]["versions"].as_array().unwrap() {
            let schema = &version["schema"]["openAPIV3Schema"];
            let mut problems = Vec::new();
            structural(schema, "openAPIV3Schema", &mut problems);
            // At the root only apiVersion, kind, metadata, spec and status; metadata is the
            // API server's own.
            let root: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
            assert!(root.iter().all(|k| ["apiVersion", "kind", "metadata", "spec", "status"].contains(&k.as_str())));
            assert!(schema["properties"].get("metadata").is_none_or(|m| m.get("properties").is_none()));
            assert!(problems.is_empty(), "{name} {}: {problems:#?}", version["name"]);
            assert_eq!(version["subresources"]["status"], serde_json::json!({}), "{name}: a status subresource");
            assert!(version["served"] == true && version["storage"] == true);
        }
        // Only the formats the API server knows.
        let text = serde_json::to_string(&v).unwrap();
        assert!(!text.contains("\"format\":\"uint"), "{name}: an unsigned format");
    }
}

#[test]
fn the_structural_check_catches_what_the_api_server_refuses() {
    let mut problems = Vec::new();
    let bad: Value = serde_json::json!({"type": "object", "properties": {
        "untyped": {"description": "x"},
        "list": {"type": "array"},
        "both": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}},
        "ref": {"$ref": "#/x"},
        "any": {"type": "string", "anyOf": [{"type": "string"}]},
        "conditions": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
            "items": {"type": "object", "properties": {"type": {"type": "string"}}}},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
    }});
    structural(&bad, "s", &mut problems);
    for needle in [
        "s.untyped: no type",
        "s.list: an array without items",
        "s.both: properties beside additionalProperties",
        "s.ref: $ref",
        "s.any.anyOf: sets type",
        "s.conditions: list-map key \"type\" is not required",
    ] {
        assert!(problems.iter().any(|p| p.starts_with(needle)), "{needle} not caught: {problems:#?}");
    }
    assert!(!problems.iter().any(|p| p.starts_with("s.free")), "{problems:#?}");
}

#[test]
fn the_committed_roles_are_what_the_table_generates() {
    use switchyard_operator::rbac::{CarrierRef, role_yaml};
    for (component, carrier) in [
        ("envoy-gateway", CarrierRef::ConfigMap("switchyard-gateway-filter".into())),
        ("istio", CarrierRef::WasmPlugin("switchyard".into())),
        ("gateway-api", CarrierRef::EnvoyExtensionPolicy("switchyard".into())),
    ] {
        let path = root().join("k8s/components").join(component).join("switchyard-operator-role.yaml");
        let fresh = role_yaml("switchyard-operator", &carrier, "switchyard-operator").unwrap();
        assert!(
            std::fs::read_to_string(&path).unwrap_or_default() == fresh,
            "{} differs from operator/src/rbac.rs: run `switchyard-operator role {}`",
            path.display(),
            carrier.flag()
        );
    }
}

/// The example rollout runs against the TrafficPolicy each gateway component declares: its
/// spec is valid to the rollout's own validator, and the policy has what it needs.
#[test]
fn the_example_rollout_runs_on_each_gateways_traffic_policy() {
    use switchyard_operator::crd::{ModelRollout, TrafficPolicy};
    let text = std::fs::read_to_string(root().join("k8s/examples/mlp-v2-modelrollout.yaml")).unwrap();
    let r: ModelRollout = serde_norway::from_str(&text).unwrap();
    let spec = r.spec.to_spec().unwrap();
    for component in ["envoy-gateway", "istio", "gateway-api"] {
        let path =
            root().join("k8s/components").join(component).join("generated/switchyard-gateway-trafficpolicy.yaml");
        let tp: TrafficPolicy = serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(tp.metadata.name.as_deref(), Some(r.spec.traffic_policy.as_str()), "{}", path.display());
        let (cfg, _) = switchyard_operator::carrier::desired(&tp, &[]).unwrap();
        let plan = spec.plan(&cfg).unwrap_or_else(|p| panic!("{}: {p:?}", path.display()));
        assert_eq!(plan.stable, "v1");
    }
}
