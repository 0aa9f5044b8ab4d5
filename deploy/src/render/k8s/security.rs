//! Who may reach what inside the cluster: only the gateway reaches the backends' inference
//! ports and the collector's samples port, only the operator and Prometheus the read-only
//! admin ports, and everything else in the namespace is refused.
//!
//! Under Istio (`components/istio`) that is said twice: PeerAuthentication makes mutual TLS
//! STRICT, so every caller has an identity, and AuthorizationPolicies admit by identity (the
//! gateway's ServiceAccount). Prometheus runs outside the mesh, so the ports it scrapes stay
//! PERMISSIVE and admit only GET. Without a mesh (`components/envoy-gateway`,
//! `components/gateway-api`) NetworkPolicies admit by pod and namespace labels; they need a
//! CNI that enforces them (Calico, Cilium), which k8s/README.md says. Egress is not
//! restricted: what a pod may send depends on the cluster's DNS and API server addresses,
//! and the ingress side alone stops a pod from walking around the filter.

use serde_json::{Value, json};

use switchyard_contract::paths;
use switchyard_contract::process::{backend, collector, envoy, monitor, operator};

use super::shared::meta;

/// Where Prometheus runs (kube-prometheus' namespace, as the operator's `SWITCHYARD_PROMETHEUS`
/// says): it scrapes the admin ports.
pub const MONITORING_NAMESPACE: &str = "monitoring";
/// Where Envoy Gateway runs the Envoy fleet of a Gateway (its default deployment mode).
pub const ENVOY_GATEWAY_NAMESPACE: &str = "envoy-gateway-system";
/// The Istio gateway's ServiceAccount: its mesh identity, the one the backends admit.
pub const GATEWAY_ACCOUNT: &str = "switchyard-gateway";

fn part_of() -> Value {
    json!({"app.kubernetes.io/part-of": "switchyard"})
}

/// The pods of one of Switchyard's workloads, by the label every hand-written and generated
/// pod template carries.
fn app(name: &str) -> Value {
    json!({"matchLabels": {"app.kubernetes.io/name": name}})
}

const BACKEND: &str = "switchyard-backend";
const COLLECTOR: &str = "switchyard-collector";
const OPERATOR: &str = "switchyard-operator";
const GATEWAY: &str = "switchyard-gateway";

/// The gateway's pods, as a NetworkPolicy names a peer.
pub enum GatewayPeer {
    /// The Envoy gateway Deployment of `components/envoy-gateway`, in this namespace.
    OwnPods,
    /// Envoy Gateway's fleet for the Gateway named so in this namespace, in Envoy Gateway's
    /// namespace.
    EnvoyGateway { gateway: &'static str, namespace: String },
}

impl GatewayPeer {
    fn peer(&self) -> Value {
        match self {
            GatewayPeer::OwnPods => json!({"podSelector": app(GATEWAY)}),
            // Name and namespace: a Gateway of the same name elsewhere is not ours.
            GatewayPeer::EnvoyGateway { gateway, namespace } => json!({
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ENVOY_GATEWAY_NAMESPACE}},
                "podSelector": {"matchLabels": {
                    "gateway.envoyproxy.io/owning-gateway-name": gateway,
                    "gateway.envoyproxy.io/owning-gateway-namespace": namespace,
                }},
            }),
        }
    }
}

fn monitoring() -> Value {
    json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": MONITORING_NAMESPACE}}})
}

fn tcp(ports: &[u16]) -> Value {
    Value::Array(ports.iter().map(|p| json!({"port": p, "protocol": "TCP"})).collect())
}

fn network_policy(name: &str, pods: Value, ingress: Value) -> (String, Value) {
    let mut doc = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(name, part_of()),
        "spec": {"policyTypes": ["Ingress"]},
    });
    doc["spec"]["podSelector"] = pods;
    doc["spec"]["ingress"] = ingress;
    (format!("{name}-networkpolicy.yaml"), doc)
}

/// The NetworkPolicies of a gateway component without a mesh. Kubelet probes come from the
/// node, which the CNIs that enforce NetworkPolicy admit without a rule.
pub fn network_policies(gateway: &GatewayPeer) -> Vec<(String, Value)> {
    let gw = gateway.peer();
    let mut out = vec![
        // Every pod of the namespace that no rule below admits anything to.
        network_policy("switchyard-default-deny", json!({}), json!([])),
        network_policy(
            BACKEND,
            app(BACKEND),
            json!([
                {"from": [gw], "ports": tcp(&[backend::HTTP.port, backend::GRPC.port])},
                {"from": [monitoring()], "ports": tcp(&[backend::ADMIN.port])},
            ]),
        ),
        network_policy(
            COLLECTOR,
            app(COLLECTOR),
            json!([
                {"from": [gw], "ports": tcp(&[collector::HTTP.port])},
                // The operator reads the shadow comparisons' counters and the drift per column.
                {"from": [{"podSelector": app(OPERATOR)}, monitoring()], "ports": tcp(&[collector::ADMIN.port, monitor::HTTP.port])},
            ]),
        ),
        network_policy(
            OPERATOR,
            app(OPERATOR),
            json!([{"from": [monitoring()], "ports": tcp(&[operator::ADMIN.port])}]),
        ),
    ];
    if let GatewayPeer::OwnPods = gateway {
        // Clients from anywhere; Envoy's admin listener (runtime changes, /quitquitquit) only
        // for Prometheus' scrape of /stats/prometheus.
        out.push(network_policy(
            GATEWAY,
            app(GATEWAY),
            json!([
                {"ports": tcp(&[envoy::LISTENER.port])},
                {"from": [monitoring()], "ports": tcp(&[envoy::ADMIN.port])},
            ]),
        ));
    }
    out
}

fn ports(ports: &[u16]) -> Value {
    Value::Array(ports.iter().map(|p| json!(p.to_string())).collect())
}

fn peer_authentication(name: &str, pods: Option<Value>, permissive: &[u16]) -> (String, Value) {
    let mut spec = json!({"mtls": {"mode": "STRICT"}});
    if let Some(pods) = pods {
        spec["selector"] = pods;
    }
    if !permissive.is_empty() {
        spec["portLevelMtls"] = permissive.iter().map(|p| (p.to_string(), json!({"mode": "PERMISSIVE"}))).collect();
    }
    let doc = json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": meta(name, part_of()),
        "spec": spec,
    });
    (format!("{name}-peerauthentication.yaml"), doc)
}

fn authorization_policy(name: &str, spec: Value) -> (String, Value) {
    let mut doc = json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": meta(name, part_of()),
    });
    doc["spec"] = spec;
    (format!("{name}-authorizationpolicy.yaml"), doc)
}

/// The gateway's mesh identity in any trust domain (`*/` keeps the policies right where the
/// mesh's trust domain is not `cluster.local`).
pub fn gateway_principal(namespace: &str) -> String {
    format!("*/ns/{namespace}/sa/{GATEWAY_ACCOUNT}")
}

/// Istio's PeerAuthentications and AuthorizationPolicies for `components/istio`.
pub fn istio(namespace: &str) -> Vec<(String, Value)> {
    let gw = json!([{"source": {"principals": [gateway_principal(namespace)]}}]);
    let read_only = |p: &[u16]| json!({"to": [{"operation": {"ports": ports(p), "methods": ["GET"]}}]});
    vec![
        peer_authentication("switchyard", None, &[]),
        // Prometheus, outside the mesh, scrapes these in plain text; GET only (below).
        peer_authentication(BACKEND, Some(app(BACKEND)), &[backend::ADMIN.port]),
        peer_authentication(COLLECTOR, Some(app(COLLECTOR)), &[collector::ADMIN.port, monitor::HTTP.port]),
        peer_authentication(OPERATOR, Some(app(OPERATOR)), &[operator::ADMIN.port]),
        // An ALLOW policy without rules: whatever no policy below admits is refused.
        authorization_policy("switchyard-allow-nothing", json!({})),
        // The public way in.
        authorization_policy(GATEWAY, json!({"selector": {"matchLabels": {"istio": GATEWAY}}, "rules": [{}]})),
        authorization_policy(
            BACKEND,
            json!({
                "selector": app(BACKEND),
                "rules": [
                    {"from": gw, "to": [{"operation": {"ports": ports(&[backend::HTTP.port, backend::GRPC.port])}}]},
                    read_only(&[backend::ADMIN.port]),
                ],
            }),
        ),
        authorization_policy(
            COLLECTOR,
            json!({
                "selector": app(COLLECTOR),
                "rules": [
                    {"from": gw, "to": [{"operation": {"ports": ports(&[collector::HTTP.port]), "methods": ["POST"], "paths": [paths::SAMPLES]}}]},
                    read_only(&[collector::ADMIN.port, monitor::HTTP.port]),
                ],
            }),
        ),
        authorization_policy(
            OPERATOR,
            json!({"selector": app(OPERATOR), "rules": [read_only(&[operator::ADMIN.port])]}),
        ),
    ]
}
