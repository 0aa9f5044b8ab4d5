//! The Gateway API component (`k8s/components/gateway-api/generated`): Envoy Gateway runs the
//! gateway, the filter comes as an EnvoyExtensionPolicy and the split is an HTTPRoute per model.
//!
//! The filter keeps the local stack's cluster names. Envoy Gateway names its own clusters after
//! routes (`httproute/NS/NAME/rule/N`), which the project does not control and which change
//! when a rule moves; so the EnvoyProxy's bootstrap adds a cluster per version and one for the
//! collector under the policy's names (the filter's own calls: samples, shadow comparisons),
//! and the routing header carries the same names, which the HTTPRoutes match. No
//! EnvoyPatchPolicy: it is off unless an administrator enables it for the whole controller.

use serde_json::{Value, json};

use switchyard_contract::process::{backend, collector};

use super::shared::{headers, meta, traffic_policy, versions};
use crate::render::{HostPort, Policy, RenderErrors, envoy};

const HTTP_PORT: u16 = backend::HTTP.port;
const COLLECTOR_PORT: u16 = collector::HTTP.port;

/// The Gateway and the EnvoyProxy that configures its Envoy fleet.
pub const GATEWAY: &str = "switchyard";
const PROXY: &str = "switchyard-gateway";
/// The EnvoyExtensionPolicy, and its `spec.wasm` entry that carries the policy.
pub const EXTENSION: &str = "switchyard";
const UNKNOWN_MODEL: &str = "switchyard-unknown-model";
/// The GatewayClass Envoy Gateway's quickstart installs; k8s/README.md says how to use another.
const GATEWAY_CLASS: &str = "eg";
/// Gateway API's limit on rules per HTTPRoute (`maxItems` in its CRD).
const MAX_RULES: usize = 16;
/// The gateway's time limit for a request, as the Istio VirtualService's.
const TIMEOUT: &str = "60s";
/// Envoy's own default per-connection buffer, which the local gateway runs with; Envoy
/// Gateway's default (32 KiB) would refuse a request body the local stack accepts.
const BUFFER_LIMIT: &str = "1Mi";

fn part_of() -> Value {
    json!({"app.kubernetes.io/part-of": "switchyard"})
}

fn gateway_ref() -> Value {
    json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": GATEWAY})
}

fn gateway() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": meta(GATEWAY, part_of()),
        "spec": {
            "gatewayClassName": GATEWAY_CLASS,
            // Per Gateway, in this namespace: no cluster-scoped GatewayClass of our own.
            "infrastructure": {"parametersRef": {"group": "gateway.envoyproxy.io", "kind": "EnvoyProxy", "name": PROXY}},
            "listeners": [{"name": "http", "protocol": "HTTP", "port": 80, "allowedRoutes": {"namespaces": {"from": "Same"}}}],
        },
    })
}

/// The Envoy fleet: named as the other overlays' gateway (so `kubectl port-forward
/// svc/switchyard-gateway` works in Envoy Gateway's namespace), labelled for the PodMonitor,
/// with the policy's clusters and the filter's stats tags merged into its bootstrap.
fn envoy_proxy(policy: &Policy, namespace: &str) -> Result<Value, RenderErrors> {
    let svc = |name: &str, port: u16| HostPort { host: format!("{name}.{namespace}.svc.cluster.local"), port };
    let cfg = policy.config();
    let mut clusters: Vec<Value> =
        versions(policy).iter().map(|v| envoy::cluster(v.cluster, &svc(v.cluster, HTTP_PORT))).collect();
    if let Some(c) = &cfg.collector {
        clusters.push(envoy::cluster(&c.cluster, &svc("switchyard-collector", COLLECTOR_PORT)));
    }
    let bootstrap = json!({"stats_config": envoy::stats_config(cfg), "static_resources": {"clusters": clusters}});
    let value = serde_norway::to_string(&bootstrap)
        .map_err(|e| RenderErrors(vec![format!("the EnvoyProxy's bootstrap: {e}")]))?;
    let labels = json!({
        "app.kubernetes.io/name": PROXY,
        "app.kubernetes.io/part-of": "switchyard",
        "switchyard.dev/job": "switchyard-envoy",
    });
    Ok(json!({
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "EnvoyProxy",
        "metadata": meta(PROXY, part_of()),
        "spec": {
            "provider": {
                "type": "Kubernetes",
                "kubernetes": {
                    "envoyDeployment": {"name": PROXY, "replicas": 2, "pod": {"labels": labels}},
                    "envoyService": {"name": PROXY, "type": "ClusterIP"},
                    "envoyPDB": {"minAvailable": 1},
                },
            },
            // Merge: Envoy Gateway's own bootstrap (its xDS, its stats listener) stays; the
            // lists here are appended to its.
            "bootstrap": {"type": "Merge", "value": value},
        },
    }))
}

/// The filter on every route of the Gateway, carrying the policy as the local stack runs it.
fn extension_policy(policy: &Policy, filter_url: &str) -> Result<Value, RenderErrors> {
    Ok(json!({
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "EnvoyExtensionPolicy",
        "metadata": meta(EXTENSION, part_of()),
        "spec": {
            "targetRefs": [gateway_ref()],
            "wasm": [{
                "name": EXTENSION,
                // Envoy Gateway pulls the image itself and serves the module to its Envoys.
                "code": {"type": "Image", "image": {"url": filter_url.trim_start_matches("oci://")}},
                "config": plain(policy)?,
                // A filter that cannot load must not take traffic down: requests then take
                // the unrouted rules (each model's stable version).
                "failOpen": true,
            }],
        },
    }))
}

/// The policy as the file has it: the clusters keep their names (see the module's comment).
pub fn plain(policy: &Policy) -> Result<Value, RenderErrors> {
    serde_json::from_str(policy.text()).map_err(|e| RenderErrors(vec![format!("policy is not a JSON object: {e}")]))
}

/// Client-sent copies of the routing headers go before routing and before any filter, so a
/// filter that failed open cannot let a client pick a version.
fn client_traffic_policy(policy: &Policy) -> Value {
    let (upstream, shadow) = headers(policy);
    json!({
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "ClientTrafficPolicy",
        "metadata": meta(GATEWAY, part_of()),
        "spec": {
            "targetRefs": [gateway_ref()],
            "headers": {"earlyRequestHeaders": {"remove": [upstream, shadow]}},
            "connection": {"bufferLimit": BUFFER_LIMIT},
        },
    })
}

fn unknown_model_filter() -> Value {
    json!({
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "HTTPRouteFilter",
        "metadata": meta(UNKNOWN_MODEL, part_of()),
        "spec": {"directResponse": {
            "statusCode": 404,
            "contentType": "application/json",
            "body": {"type": "Inline", "inline": "{\"error\":\"unknown model\"}"},
        }},
    })
}

fn backend(cluster: &str) -> Value {
    json!({"name": cluster, "port": HTTP_PORT})
}

fn prefix(path: &str) -> Value {
    json!({"type": "PathPrefix", "value": path})
}

fn exact(name: &str, value: &str) -> Value {
    json!({"type": "Exact", "name": name, "value": value})
}

fn route(name: &str, rules: &[Value]) -> Result<Value, RenderErrors> {
    if rules.len() > MAX_RULES {
        return Err(RenderErrors(vec![format!(
            "HTTPRoute {name} would need {} rules, and Gateway API allows {MAX_RULES}: fewer versions, or no shadow",
            rules.len()
        )]));
    }
    Ok(json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": meta(name, part_of()),
        "spec": {"parentRefs": [{"name": GATEWAY}], "rules": rules},
    }))
}

/// A route per model. Gateway API ranks matches by path first and by the number of header
/// matches second, so each version's rule matches the model's path prefix as well as its
/// header: same path as the unrouted rule, one header more, so it wins while the filter runs.
fn model_routes(policy: &Policy) -> Result<Vec<(String, Value)>, RenderErrors> {
    let (upstream, shadow) = headers(policy);
    let strip = json!({"type": "RequestHeaderModifier", "requestHeaderModifier": {"remove": [upstream, shadow]}});
    let mut out = Vec::new();
    for (model, m) in &policy.config().models {
        let path = prefix(&format!("/v2/models/{model}"));
        let shadow_cluster =
            m.shadow.as_ref().and_then(|s| m.versions.iter().find(|v| v.name == s.version)).map(|v| v.cluster.as_str());
        let mut rules = Vec::new();
        for v in &m.versions {
            if let Some(s) = shadow_cluster.filter(|s| *s != v.cluster) {
                // Two header matches outrank the version's own rule. The filter decided the
                // mirror (its own percentage); the route mirrors every request it gets.
                rules.push(json!({
                    "name": format!("{}-shadow-{s}", v.cluster),
                    "matches": [{"path": path, "headers": [exact(upstream, &v.cluster), exact(shadow, s)]}],
                    "filters": [strip, {"type": "RequestMirror", "requestMirror": {"backendRef": backend(s)}}],
                    "backendRefs": [backend(&v.cluster)],
                    "timeouts": {"request": TIMEOUT},
                }));
            }
            rules.push(json!({
                "name": v.cluster,
                "matches": [{"path": path, "headers": [exact(upstream, &v.cluster)]}],
                "filters": [strip],
                "backendRefs": [backend(&v.cluster)],
                "timeouts": {"request": TIMEOUT},
            }));
        }
        // The filter did not route (it failed open): the model's own stable version.
        if let Some(stable) = m.versions.first() {
            rules.push(json!({
                "name": "unrouted",
                "matches": [{"path": path}],
                "filters": [strip],
                "backendRefs": [backend(&stable.cluster)],
                "timeouts": {"request": TIMEOUT},
            }));
        }
        let name = format!("switchyard-{model}");
        out.push((format!("{name}-httproute.yaml"), route(&name, &rules)?));
    }
    Ok(out)
}

/// What no model route takes: a model the policy does not name gets the local stack's 404,
/// anything else (server health and metadata) the first model's stable version.
fn default_route(policy: &Policy) -> Result<Value, RenderErrors> {
    let (upstream, shadow) = headers(policy);
    let strip = json!({"type": "RequestHeaderModifier", "requestHeaderModifier": {"remove": [upstream, shadow]}});
    let unknown = json!({"type": "ExtensionRef", "extensionRef": {
        "group": "gateway.envoyproxy.io", "kind": "HTTPRouteFilter", "name": UNKNOWN_MODEL,
    }});
    let mut rules =
        vec![json!({"name": "unknown-model", "matches": [{"path": prefix("/v2/models")}], "filters": [unknown]})];
    if let Some(first) = policy.config().models.values().next().and_then(|m| m.versions.first()) {
        rules.push(json!({
            "name": "default",
            "matches": [{"path": prefix("/")}],
            "filters": [strip],
            "backendRefs": [backend(&first.cluster)],
            "timeouts": {"request": TIMEOUT},
        }));
    }
    route(GATEWAY, &rules)
}

/// Every object of the component, by file name: Services in `namespace`, the filter's OCI
/// image at `filter_url`.
pub fn objects(policy: &Policy, namespace: &str, filter_url: &str) -> Result<Vec<(String, Value)>, RenderErrors> {
    let carrier = json!({"envoyExtensionPolicy": {"name": EXTENSION, "wasm": EXTENSION}});
    let mut out = vec![
        ("switchyard-gateway.yaml".to_owned(), gateway()),
        ("switchyard-gateway-envoyproxy.yaml".to_owned(), envoy_proxy(policy, namespace)?),
        ("switchyard-envoyextensionpolicy.yaml".to_owned(), extension_policy(policy, filter_url)?),
        ("switchyard-clienttrafficpolicy.yaml".to_owned(), client_traffic_policy(policy)),
        ("switchyard-unknown-model-httproutefilter.yaml".to_owned(), unknown_model_filter()),
        ("switchyard-httproute.yaml".to_owned(), default_route(policy)?),
        ("switchyard-gateway-trafficpolicy.yaml".to_owned(), traffic_policy(&plain(policy)?, &carrier)),
    ];
    out.extend(model_routes(policy)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> Policy {
        Policy::parse(text.to_owned()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn each_version_rule_outranks_its_models_fail_open_rule_and_names_a_bootstrap_cluster() {
        let p = policy(include_str!("../../../../envoy/policy.json"));
        let routes = model_routes(&p).unwrap_or_else(|e| panic!("{e}"));
        let (_, mlp) =
            routes.iter().find(|(f, _)| f == "switchyard-mlp-httproute.yaml").unwrap_or_else(|| panic!("mlp"));
        let rules = mlp["spec"]["rules"].as_array().cloned().unwrap_or_default();
        let unrouted = rules.iter().find(|r| r["name"] == "unrouted").unwrap_or_else(|| panic!("unrouted"));
        let path = &unrouted["matches"][0]["path"];
        for r in rules.iter().filter(|r| r["name"] != "unrouted") {
            // Same path as the fail-open rule and at least one header more: Gateway API's
            // precedence then picks it whenever the filter set the header.
            assert_eq!(&r["matches"][0]["path"], path, "{r}");
            assert!(!r["matches"][0]["headers"].as_array().is_none_or(Vec::is_empty), "{r}");
        }
        let text = serde_json::to_string(&envoy_proxy(&p, "switchyard").unwrap_or_default()).unwrap_or_default();
        for c in ["mlp-v1", "mlp-v2", "resnet18-v1", "resnet18-v2", "collector"] {
            assert!(text.contains(&format!("name: {c}\\n")), "{c} in {text}");
        }
    }

    #[test]
    fn a_model_with_more_versions_than_a_route_holds_is_refused_by_name() {
        let versions: Vec<String> =
            (0..17).map(|i| format!(r#"{{"name": "v{i}", "cluster": "m-v{i}", "weight": 1}}"#)).collect();
        let text = format!(r#"{{"models": {{"m": {{"versions": [{}]}}}}}}"#, versions.join(","));
        let e = model_routes(&policy(&text)).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("HTTPRoute switchyard-m would need 18 rules, and Gateway API allows 16"), "{e}");
    }
}
