//! What the operator may ask of the API server, written once: its Role is rendered from this
//! table (`switchyard-operator role`), and the tests fail when the code makes a request no rule
//! grants, or a rule grants something no request needs (operator/tests/rbac.rs).

use serde_json::{Value, json};

use crate::crd::GROUP;

/// Which objects a rule is limited to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// Every object of the resource in the namespace (list and watch cannot be limited).
    Any,
    /// The one object carrying the policy.
    Carrier,
    /// The operator's Lease.
    Lease,
}

/// One rule of the Role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub group: &'static str,
    /// `resource` or `resource/subresource`.
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
    pub names: Names,
    /// Which code needs it.
    pub why: &'static str,
}

/// The operator's rules, but the carrier's (which depends on the gateway: [`carrier_rule`]).
pub const RULES: &[Rule] = &[
    Rule {
        group: GROUP,
        resource: "modelrollouts",
        verbs: &["list", "watch", "patch"],
        names: Names::Any,
        why: "the watches (controller, console); the fresh list each carrier write reads; the finalizer, by JSON patch",
    },
    Rule {
        group: GROUP,
        resource: "modelrollouts/status",
        verbs: &["patch"],
        names: Names::Any,
        why: "a rollout's state, by server-side apply",
    },
    Rule {
        group: GROUP,
        resource: "trafficpolicies",
        verbs: &["get", "list", "watch"],
        names: Names::Any,
        why: "the controller's watch; a rollout reads the policy it names",
    },
    Rule {
        group: GROUP,
        resource: "trafficpolicies/status",
        verbs: &["patch"],
        names: Names::Any,
        why: "a policy's problems and version in force, by server-side apply",
    },
    Rule {
        group: "events.k8s.io",
        resource: "events",
        verbs: &["create"],
        names: Names::Any,
        why: "an Event per decision",
    },
    Rule {
        group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["create"],
        names: Names::Any,
        why: "the Lease, made by the first replica (create cannot be limited to a name)",
    },
    Rule {
        group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "patch"],
        names: Names::Lease,
        why: "leader election: read, claim and renew the Lease",
    },
];

/// The object carrying the policy, as the Role names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CarrierRef {
    ConfigMap(String),
    WasmPlugin(String),
    EnvoyExtensionPolicy(String),
}

impl CarrierRef {
    /// `switchyard-operator role`'s flag naming it.
    pub fn flag(&self) -> String {
        match self {
            CarrierRef::ConfigMap(n) => format!("--config-map {n}"),
            CarrierRef::WasmPlugin(n) => format!("--wasm-plugin {n}"),
            CarrierRef::EnvoyExtensionPolicy(n) => format!("--envoy-extension-policy {n}"),
        }
    }
}

/// The carrier's rule: read it, and apply the one field the operator owns.
pub fn carrier_rule(carrier: &CarrierRef) -> (Rule, String) {
    let (group, resource, name) = match carrier {
        CarrierRef::ConfigMap(n) => ("", "configmaps", n),
        CarrierRef::WasmPlugin(n) => ("extensions.istio.io", "wasmplugins", n),
        CarrierRef::EnvoyExtensionPolicy(n) => ("gateway.envoyproxy.io", "envoyextensionpolicies", n),
    };
    let rule = Rule {
        group,
        resource,
        verbs: &["get", "patch"],
        names: Names::Carrier,
        why: "the policy in force, read and written by server-side apply",
    };
    (rule, name.clone())
}

/// Every rule with the names it is limited to.
pub fn rules(carrier: &CarrierRef, lease: &str) -> Vec<(Rule, Vec<String>)> {
    let (c, name) = carrier_rule(carrier);
    RULES
        .iter()
        .chain(std::iter::once(&c))
        .map(|r| {
            let names = match r.names {
                Names::Any => Vec::new(),
                Names::Carrier => vec![name.clone()],
                Names::Lease => vec![lease.to_owned()],
            };
            (*r, names)
        })
        .collect()
}

/// The operator's Role, with a comment line per rule saying what needs it.
pub fn role(name: &str, carrier: &CarrierRef, lease: &str) -> (Value, Vec<String>) {
    let rules = rules(carrier, lease);
    let why = rules.iter().map(|(r, _)| format!("{} {:?}: {}", r.resource, r.verbs, r.why)).collect();
    let rules: Vec<Value> = rules
        .into_iter()
        .map(|(r, names)| {
            let mut rule = json!({"apiGroups": [r.group], "resources": [r.resource], "verbs": r.verbs});
            if !names.is_empty() {
                rule["resourceNames"] = json!(names);
            }
            rule
        })
        .collect();
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "switchyard"}},
        "rules": rules,
    });
    (role, why)
}

/// The Role as the file checked in beside the gateway component: a header naming the command
/// that wrote it, a comment per rule saying what needs it, the object.
pub fn role_yaml(name: &str, carrier: &CarrierRef, lease: &str) -> Result<String, serde_norway::Error> {
    let (role, why) = role(name, carrier, lease);
    let flag = carrier.flag();
    let mut out = format!(
        "# Generated by `switchyard-operator role {flag}` from operator/src/rbac.rs, the requests the\n\
         # operator's code makes (operator/tests/reconcile.rs checks the two agree): do not edit.\n"
    );
    for w in why {
        out.push_str(&format!("#   {w}\n"));
    }
    Ok(out + &serde_norway::to_string(&role)?)
}
