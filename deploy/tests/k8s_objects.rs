//! `k8s/`: the rendered objects agree with each other and with the backend's contract.
//!
//! Every overlay (`k8s/overlays/*`) and job (`k8s/jobs/*`) is rendered with `kubectl kustomize`
//! and its objects are checked against each other, with the backend's flags, ports and health
//! paths taken from `switchyard_contract` and the policies parsed by `switchyard_policy`: what
//! no schema can say (`k8s/validate.py` validates each object against its schema).
//!
//! `each_kind_of_broken_object_is_caught` breaks the rendered objects in the ways these checks
//! exist for and fails unless every break is reported: checks that pass everything would pass
//! the first test too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::{Map, Value, json};
use switchyard_contract::paths::{HEALTH_LIVE, HEALTH_READY};
use switchyard_contract::process::{backend, collector};
use switchyard_deploy::render::k8s::security::{ENVOY_GATEWAY_NAMESPACE, MONITORING_NAMESPACE};
use switchyard_policy::Config;

/// The repository of Switchyard's own image (an overlay's `images:` sets the tag).
const IMAGE: &str = "switchyard/switchyard";
/// Volumes a job uses from what it is applied next to: the base's model repository, the batch
/// job's input and output.
const JOB_VOLUMES: [(&str, &str); 2] =
    [("PersistentVolumeClaim", "switchyard-models"), ("PersistentVolumeClaim", "switchyard-batch")];
/// The kinds whose `spec.template` is a pod template.
const POD_OWNERS: [&str; 4] = ["Deployment", "StatefulSet", "DaemonSet", "Job"];
/// InferenceService predictor fields that are KServe's own, not the PodSpec's.
const ISVC_COMPONENT_FIELDS: [&str; 16] = [
    "minReplicas",
    "maxReplicas",
    "scaleTarget",
    "scaleMetric",
    "scaleMetricType",
    "containerConcurrency",
    "timeout",
    "canaryTrafficPercent",
    "labels",
    "annotations",
    "deploymentStrategy",
    "logger",
    "batcher",
    "autoScaling",
    "model",
    "workerSpec",
];
/// What carries the policy, per field of a TrafficPolicy's `spec.carrier` (operator/src/crd.rs):
/// (field, kind, API group, resource).
const CARRIERS: [(&str, &str, &str, &str); 3] = [
    ("wasmPlugin", "WasmPlugin", "extensions.istio.io", "wasmplugins"),
    ("configMap", "ConfigMap", "", "configmaps"),
    ("envoyExtensionPolicy", "EnvoyExtensionPolicy", "gateway.envoyproxy.io", "envoyextensionpolicies"),
];
/// Kubernetes' default `terminationGracePeriodSeconds`.
const DEFAULT_TERMINATION_GRACE_SECONDS: i64 = 30;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root")
}

// --- reading the objects ----------------------------------------------------------------------

fn render(target: &Path) -> Vec<Value> {
    let out = Command::new("kubectl").arg("kustomize").arg(target).output().expect("kubectl (scripts/setup.sh)");
    assert!(out.status.success(), "kubectl kustomize {}: {}", target.display(), String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("kubectl kustomize writes UTF-8");
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", target.display())))
        .filter(|o| !o.is_null())
        .collect()
}

/// (`overlays/NAME` or `jobs/NAME`, its objects) of every target, rendered once.
fn targets() -> &'static [(String, Vec<Value>)] {
    static TARGETS: OnceLock<Vec<(String, Vec<Value>)>> = OnceLock::new();
    TARGETS.get_or_init(|| {
        let mut dirs = Vec::new();
        for d in ["overlays", "jobs"] {
            for entry in std::fs::read_dir(root().join("k8s").join(d)).expect("k8s/overlays and k8s/jobs") {
                let path = entry.expect("directory entry").path();
                if path.is_dir() {
                    let name = path.file_name().and_then(|n| n.to_str()).expect("UTF-8 name").to_owned();
                    dirs.push((format!("{d}/{name}"), path));
                }
            }
        }
        dirs.sort();
        dirs.into_iter().map(|(name, path)| (name, render(&path))).collect()
    })
}

fn target(name: &str) -> &'static [Value] {
    &targets().iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no target {name}")).1
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn object(v: &Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// Python's truth: null, false, 0, "" and empty collections are false.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A port as Kubernetes names it: a number or a port name.
fn port_key(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

fn shown(v: Option<i64>) -> String {
    v.map_or_else(|| "none".to_owned(), |n| n.to_string())
}

fn name_of(o: &Value) -> String {
    format!("{}/{}", s(&o["kind"]), s(&o["metadata"]["name"]))
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objs.iter().find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn exists(objs: &[Value], kind: &str, name: &str) -> bool {
    find(objs, kind, name).is_some()
}

#[derive(Default)]
struct Report {
    errors: Vec<String>,
}

impl Report {
    fn error(&mut self, at: &str, what: impl Into<String>) {
        let what: String = what.into();
        self.errors.push(format!("{at}: {what}"));
    }
}

// --- selectors and pods -----------------------------------------------------------------------

/// A label selector (a plain map, or matchLabels/matchExpressions) against a label set; an
/// empty selector matches nothing here (for a Service it would mean "no pods").
fn matches(selector: &Value, labels: &Map<String, Value>) -> bool {
    if selector.get("matchLabels").is_some() || selector.get("matchExpressions").is_some() {
        matches_parts(&object(&selector["matchLabels"]), arr(&selector["matchExpressions"]), labels)
    } else {
        matches_parts(&object(selector), &[], labels)
    }
}

fn matches_parts(match_labels: &Map<String, Value>, exprs: &[Value], labels: &Map<String, Value>) -> bool {
    if match_labels.is_empty() && exprs.is_empty() {
        return false;
    }
    if match_labels.iter().any(|(k, v)| labels.get(k) != Some(v)) {
        return false;
    }
    exprs.iter().all(|e| {
        let val = labels.get(s(&e["key"]));
        let values = arr(&e["values"]);
        match s(&e["operator"]) {
            "In" => val.is_some_and(|v| values.contains(v)),
            "NotIn" => val.is_none_or(|v| !values.contains(v)),
            "Exists" => val.is_some(),
            "DoesNotExist" => val.is_none(),
            _ => true,
        }
    })
}

/// What makes pods: its name, the labels its controller gives them, their spec, and their
/// namespace where it is not the target's.
struct Pod {
    owner: String,
    labels: Map<String, Value>,
    spec: Value,
    elsewhere: Option<&'static str>,
}

fn pod_templates(objs: &[Value]) -> Vec<Pod> {
    let mut pods = Vec::new();
    for o in objs {
        let kind = s(&o["kind"]);
        if POD_OWNERS.contains(&kind) {
            let t = &o["spec"]["template"];
            pods.push(Pod {
                owner: name_of(o),
                labels: object(&t["metadata"]["labels"]),
                spec: t["spec"].clone(),
                elsewhere: None,
            });
        } else if kind == "InferenceService" {
            let p = &o["spec"]["predictor"];
            // KServe (raw deployment) labels predictor pods with the ISVC's labels, the
            // predictor's own and these two.
            let mut labels = object(&o["metadata"]["labels"]);
            labels.extend(object(&p["labels"]));
            labels.insert("serving.kserve.io/inferenceservice".into(), o["metadata"]["name"].clone());
            labels.insert("component".into(), "predictor".into());
            let spec = object(p).into_iter().filter(|(k, _)| !ISVC_COMPONENT_FIELDS.contains(&k.as_str())).collect();
            pods.push(Pod { owner: name_of(o), labels, spec: Value::Object(spec), elsewhere: None });
        } else if kind == "EnvoyProxy" {
            // Envoy Gateway makes the pods, in its own namespace: its labels plus the
            // EnvoyProxy's, and its stats port (named `metrics`, 19001).
            let mut labels = object(&o["spec"]["provider"]["kubernetes"]["envoyDeployment"]["pod"]["labels"]);
            let proxy = &o["metadata"]["name"];
            for g in objs
                .iter()
                .filter(|g| g["kind"] == "Gateway" && &g["spec"]["infrastructure"]["parametersRef"]["name"] == proxy)
            {
                labels.insert("gateway.envoyproxy.io/owning-gateway-name".into(), g["metadata"]["name"].clone());
                labels.insert(
                    "gateway.envoyproxy.io/owning-gateway-namespace".into(),
                    g["metadata"]["namespace"].clone(),
                );
            }
            let spec =
                json!({"containers": [{"name": "envoy", "ports": [{"name": "metrics", "containerPort": 19001}]}]});
            pods.push(Pod { owner: name_of(o), labels, spec, elsewhere: Some(ENVOY_GATEWAY_NAMESPACE) });
        }
    }
    pods
}

/// Whether a scaler may target (kind, name): KServe raw mode makes Deployment NAME-predictor.
fn workload_exists(objs: &[Value], kind: &str, name: &str) -> bool {
    exists(objs, kind, name)
        || (kind == "Deployment"
            && name.strip_suffix("-predictor").is_some_and(|isvc| exists(objs, "InferenceService", isvc)))
}

/// Every container port of a pod, by name and by number.
fn container_ports(spec: &Value) -> BTreeMap<String, i64> {
    let mut ports = BTreeMap::new();
    for c in arr(&spec["containers"]) {
        for p in arr(&c["ports"]) {
            let Some(port) = p["containerPort"].as_i64() else { continue };
            if let Some(name) = p["name"].as_str() {
                ports.insert(name.to_owned(), port);
            }
            ports.insert(port.to_string(), port);
        }
    }
    ports
}

fn flag<'a>(argv: &[&'a str], name: &str) -> Option<&'a str> {
    for (i, a) in argv.iter().enumerate() {
        if *a == name && i + 1 < argv.len() {
            return Some(argv[i + 1]);
        }
        if let Some(value) = a.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')) {
            return Some(value);
        }
    }
    None
}

// --- the checks -------------------------------------------------------------------------------

/// A container running `switchyard-backend serve`: listens where its ports say, outside the
/// pod; probes the backend's health paths on its HTTP port; stops within the grace period.
fn check_backend_pod(owner: &str, spec: &Value, rep: &mut Report) {
    for c in arr(&spec["containers"]) {
        let argv: Vec<&str> = arr(&c["command"]).iter().chain(arr(&c["args"])).filter_map(Value::as_str).collect();
        let Some(program) = argv.first() else { continue };
        if Path::new(program).file_name().and_then(|n| n.to_str()) != Some(backend::PROCESS.binary)
            || !argv.contains(&backend::SERVE)
        {
            continue;
        }
        let at = format!("{owner} container {}", s(&c["name"]));
        let named: BTreeMap<&str, i64> =
            arr(&c["ports"]).iter().filter_map(|p| Some((p["name"].as_str()?, p["containerPort"].as_i64()?))).collect();
        for l in backend::PROCESS.listeners {
            let Some(addr) = flag(&argv, l.flag) else {
                rep.error(&at, format!("{} not given: the backend would listen on loopback only", l.flag));
                continue;
            };
            let (host, port) = addr.rsplit_once(':').unwrap_or(("", addr));
            if !["0.0.0.0", "[::]"].contains(&host) {
                rep.error(&at, format!("{} {addr}: not reachable from outside the pod", l.flag));
            }
            let declared = named.get(l.name).copied();
            if declared.is_none() || declared != port.parse().ok() {
                rep.error(&at, format!("{} {addr} but containerPort '{}' is {}", l.flag, l.name, shown(declared)));
            }
        }
        let ports = container_ports(spec);
        let http = named.get(backend::HTTP.name).copied();
        for (probe, want) in
            [("readinessProbe", Some(HEALTH_READY)), ("livenessProbe", Some(HEALTH_LIVE)), ("startupProbe", None)]
        {
            let get = &c[probe]["httpGet"];
            if get.is_null() {
                if want.is_some() {
                    rep.error(&at, format!("no {probe}"));
                }
                continue;
            }
            let path = get["path"].as_str();
            if let Some(want) = want
                && path != Some(want)
            {
                rep.error(&at, format!("{probe} path {} is not the backend's {want}", path.unwrap_or("none")));
            }
            if path != Some(HEALTH_READY) && path != Some(HEALTH_LIVE) {
                rep.error(
                    &at,
                    format!(
                        "{probe} path {}: the backend serves {HEALTH_READY} and {HEALTH_LIVE}",
                        path.unwrap_or("none")
                    ),
                );
            }
            let port = ports.get(&port_key(&get["port"])).copied();
            if port.is_none() || port != http {
                rep.error(&at, format!("{probe} port {} is not the HTTP port {}", port_key(&get["port"]), shown(http)));
            }
        }
        let grace = match flag(&argv, backend::SHUTDOWN_GRACE_FLAG) {
            None | Some("") => i64::try_from(backend::SHUTDOWN_GRACE_SECONDS).expect("a small number"),
            Some(g) => match g.parse() {
                Ok(g) => g,
                Err(_) => {
                    rep.error(&at, format!("{} {g}: not a whole number of seconds", backend::SHUTDOWN_GRACE_FLAG));
                    continue;
                }
            },
        };
        let stop = c["lifecycle"]["preStop"]["sleep"]["seconds"].as_i64().unwrap_or(0);
        let term = spec["terminationGracePeriodSeconds"].as_i64().unwrap_or(DEFAULT_TERMINATION_GRACE_SECONDS);
        if term <= grace + stop {
            rep.error(
                &at,
                format!(
                    "terminationGracePeriodSeconds {term} leaves no time: preStop {stop} s + {} {grace} s must end before it",
                    backend::SHUTDOWN_GRACE_FLAG
                ),
            );
        }
        if !truthy(&c["resources"]["requests"]) || !truthy(&c["resources"]["limits"]) {
            rep.error(&at, "resources need both requests and limits");
        }
    }
}

/// The tags of Switchyard's images and of the filter's OCI image.
fn image_tags(objs: &[Value]) -> BTreeSet<String> {
    let mut tags = BTreeSet::new();
    for pod in pod_templates(objs) {
        for c in arr(&pod.spec["initContainers"]).iter().chain(arr(&pod.spec["containers"])) {
            let image = s(&c["image"]);
            let (repo, tag) = image.split_once(':').unwrap_or((image, ""));
            if repo == IMAGE {
                tags.insert(if tag.is_empty() { "latest" } else { tag }.to_owned());
            }
        }
    }
    for o in objs.iter().filter(|o| o["kind"] == "WasmPlugin") {
        let url = s(&o["spec"]["url"]);
        if url.starts_with("oci://") {
            tags.insert(url.rsplit_once(':').map_or(url, |(_, tag)| tag).to_owned());
        }
    }
    for o in objs.iter().filter(|o| o["kind"] == "EnvoyExtensionPolicy") {
        for w in arr(&o["spec"]["wasm"]) {
            let url = s(&w["code"]["image"]["url"]);
            if let Some((_, tag)) = url.rsplit_once(':') {
                tags.insert(tag.to_owned());
            }
        }
    }
    tags
}

/// What `switchyard-policy check` does with a policy file.
fn check_policy(policy: &[u8], at: &str, rep: &mut Report) {
    if let Err(e) = Config::parse(policy) {
        rep.error(at, format!("switchyard-policy check refuses the policy: {e}"));
    }
}

fn check_service_port(objs: &[Value], host: &str, port: Option<i64>, at: &str, rep: &mut Report) {
    let name = host.split('.').next().unwrap_or_default();
    match find(objs, "Service", name) {
        None => rep.error(at, format!("routes to {host}: no such Service")),
        Some(svc) => {
            if let Some(port) = port
                && !arr(&svc["spec"]["ports"]).iter().any(|p| p["port"].as_i64() == Some(port))
            {
                rep.error(at, format!("routes to {host}:{port}: the Service has no port {port}"));
            }
        }
    }
}

/// The Envoy gateway's bootstrap: its clusters are DNS names of Service ports that exist.
fn check_bootstrap(cm: &Value, objs: &[Value], at: &str, rep: &mut Report) {
    match serde_json::from_str(s(&cm["data"]["envoy.json"])) {
        Ok(boot) => check_clusters(&boot, objs, at, rep),
        Err(e) => rep.error(at, format!("envoy.json: {e}")),
    }
}

/// A bootstrap's static clusters are DNS names of Service ports that exist.
fn check_clusters(boot: &Value, objs: &[Value], at: &str, rep: &mut Report) {
    for c in arr(&boot["static_resources"]["clusters"]) {
        let cluster = s(&c["name"]);
        for ep in arr(&c["load_assignment"]["endpoints"]) {
            for lb in arr(&ep["lb_endpoints"]) {
                let sa = &lb["endpoint"]["address"]["socket_address"];
                let addr = s(&sa["address"]);
                if !addr.is_empty() && addr.chars().all(|ch| ch.is_ascii_digit() || ch == '.') {
                    rep.error(at, format!("cluster {cluster} points at an IP address {addr}, not a Service"));
                    continue;
                }
                let kind = c["type"].as_str();
                if !matches!(kind, Some("STRICT_DNS" | "LOGICAL_DNS")) {
                    rep.error(
                        at,
                        format!("cluster {cluster} names a host but is {}, not DNS", kind.unwrap_or("STATIC")),
                    );
                }
                check_service_port(objs, addr, sa["port_value"].as_i64(), &format!("{at} cluster {cluster}"), rep);
            }
        }
    }
}

/// The filter routes by setting its upstream header to a version's cluster as the WasmPlugin's
/// policy names it: every such value needs a route, and every header route such a value.
fn check_routes_match_policy(vs: &Value, objs: &[Value], at: &str, rep: &mut Report) {
    let Some(plugin) = objs.iter().find(|o| o["kind"] == "WasmPlugin") else { return };
    let text = serde_json::to_vec(&plugin["spec"]["pluginConfig"]).expect("JSON");
    // A policy the filter would refuse is reported by the WasmPlugin's own check.
    let Ok(policy) = Config::parse(&text) else { return };
    let header = policy.upstream_header.as_str();
    let clusters: BTreeSet<&str> =
        policy.models.values().flat_map(|m| m.versions.iter().map(|v| v.cluster.as_str())).collect();
    let routes = arr(&vs["spec"]["http"]);
    let mut routed = BTreeSet::new();
    for route in routes {
        for m in arr(&route["match"]) {
            if let Some(value) = m["headers"][header]["exact"].as_str() {
                routed.insert(value);
                if !clusters.contains(value) {
                    rep.error(
                        at,
                        format!("route {} matches {header}: {value}, which the filter never sets", s(&route["name"])),
                    );
                }
            }
        }
    }
    for c in clusters.difference(&routed) {
        rep.error(at, format!("no route for {header}: {c} (a version of the WasmPlugin's policy)"));
    }
    // With the filter failed open, each model's requests go to its own stable version.
    for (model, m) in &policy.models {
        let Some(first) = m.versions.first() else { continue };
        let service = first.cluster.rsplit('|').next().unwrap_or_default();
        let stable = service.split('.').next().unwrap_or_default();
        let prefix = format!("/v2/models/{model}/");
        let sends = |r: &Value| {
            arr(&r["match"]).iter().any(|mt| mt["uri"]["prefix"] == prefix.as_str())
                && arr(&r["route"]).iter().map(|d| s(&d["destination"]["host"])).eq([stable])
        };
        if !routes.iter().any(sends) {
            rep.error(at, format!("no route sends {prefix} to {stable} when the filter fails open"));
        }
    }
}

/// Gateway API on Envoy Gateway. The filter routes by setting its upstream header to a
/// version's cluster as the EnvoyExtensionPolicy's policy names it: an HTTPRoute rule must
/// send each such value to that version's Service, on the model's path (Gateway API ranks a
/// longer path above more headers, so a header rule on a shorter path would lose to the
/// model's fail-open rule), and the EnvoyProxy's bootstrap must define every cluster the
/// filter calls itself. References between the objects resolve.
fn check_gateway_api(objs: &[Value], at: &str, rep: &mut Report) {
    let gateways = |o: &Value| -> Vec<String> {
        let refs = if o["kind"] == "HTTPRoute" { &o["spec"]["parentRefs"] } else { &o["spec"]["targetRefs"] };
        arr(refs)
            .iter()
            .filter(|r| r["kind"].as_str().is_none_or(|k| k == "Gateway"))
            .map(|r| s(&r["name"]).to_owned())
            .collect()
    };
    let kinds = ["HTTPRoute", "EnvoyExtensionPolicy", "ClientTrafficPolicy"];
    for o in objs.iter().filter(|o| kinds.contains(&s(&o["kind"]))) {
        for g in gateways(o) {
            if !exists(objs, "Gateway", &g) {
                rep.error(&format!("{at} {}", name_of(o)), format!("Gateway {g} does not exist"));
            }
        }
    }
    for g in objs.iter().filter(|o| o["kind"] == "Gateway" && o["apiVersion"] == "gateway.networking.k8s.io/v1") {
        let p = &g["spec"]["infrastructure"]["parametersRef"];
        if p["kind"] == "EnvoyProxy" && !exists(objs, "EnvoyProxy", s(&p["name"])) {
            rep.error(&format!("{at} {}", name_of(g)), format!("EnvoyProxy {} does not exist", s(&p["name"])));
        }
    }
    // (header value, path of the match, Service, rule) of every rule, and each model path's
    // rule without headers.
    let mut header_rules = Vec::new();
    let mut plain_rules: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for route in objs.iter().filter(|o| o["kind"] == "HTTPRoute") {
        let label = format!("{at} {}", name_of(route));
        for rule in arr(&route["spec"]["rules"]) {
            let backends: Vec<String> = arr(&rule["backendRefs"]).iter().map(|b| s(&b["name"]).to_owned()).collect();
            let mut refs: Vec<&Value> = arr(&rule["backendRefs"]).iter().collect();
            for f in arr(&rule["filters"]) {
                match s(&f["type"]) {
                    "RequestMirror" => refs.push(&f["requestMirror"]["backendRef"]),
                    "ExtensionRef" => {
                        let (kind, name) = (s(&f["extensionRef"]["kind"]), s(&f["extensionRef"]["name"]));
                        if !exists(objs, kind, name) {
                            rep.error(&label, format!("filter {kind} {name} does not exist"));
                        }
                    }
                    _ => {}
                }
            }
            for b in refs {
                check_service_port(objs, s(&b["name"]), b["port"].as_i64(), &label, rep);
            }
            for m in arr(&rule["matches"]) {
                let path = s(&m["path"]["value"]).to_owned();
                match arr(&m["headers"]) {
                    [] => plain_rules.entry(path).or_default().extend(backends.iter().cloned()),
                    // The shadow rules: two headers, one of them the upstream header.
                    headers => {
                        for h in headers {
                            header_rules.push((
                                s(&h["name"]).to_owned(),
                                s(&h["value"]).to_owned(),
                                path.clone(),
                                backends.clone(),
                                format!("{label} rule {}", s(&rule["name"])),
                            ));
                        }
                    }
                }
            }
        }
    }
    for ext in objs.iter().filter(|o| o["kind"] == "EnvoyExtensionPolicy") {
        let label = format!("{at} {}", name_of(ext));
        for w in arr(&ext["spec"]["wasm"]) {
            let text = serde_json::to_vec(&w["config"]).expect("JSON");
            check_policy(&text, &label, rep);
            let Ok(policy) = Config::parse(&text) else { continue };
            let header = policy.upstream_header.as_str();
            let mut clusters = BTreeSet::new();
            for (model, m) in &policy.models {
                let path = format!("/v2/models/{model}");
                for v in &m.versions {
                    clusters.insert(v.cluster.as_str());
                    let routed = header_rules.iter().any(|(h, value, p, backends, _)| {
                        h == header && value == &v.cluster && *p == path && backends == std::slice::from_ref(&v.cluster)
                    });
                    if !routed {
                        rep.error(
                            &label,
                            format!(
                                "no HTTPRoute rule sends {header}: {} on {path} to Service {}",
                                v.cluster, v.cluster
                            ),
                        );
                    }
                }
                let stable = m.versions.first().map(|v| v.cluster.clone());
                if plain_rules.get(&path).map(|b| b.first()) != Some(stable.as_ref()) {
                    rep.error(
                        &label,
                        format!(
                            "no HTTPRoute rule sends {path} to {} when the filter fails open",
                            stable.as_deref().unwrap_or("its stable version")
                        ),
                    );
                }
            }
            for (h, value, _, _, rule) in &header_rules {
                if h == header && !clusters.contains(value.as_str()) {
                    rep.error(rule, format!("matches {header}: {value}, which the filter never sets"));
                }
            }
            let called: BTreeSet<&str> =
                clusters.iter().copied().chain(policy.collector.as_ref().map(|c| c.cluster.as_str())).collect();
            for proxy in objs.iter().filter(|o| o["kind"] == "EnvoyProxy") {
                let plabel = format!("{at} {}", name_of(proxy));
                let boot: Value = match serde_norway::from_str(s(&proxy["spec"]["bootstrap"]["value"])) {
                    Ok(boot) => boot,
                    Err(e) => {
                        rep.error(&plabel, format!("spec.bootstrap.value: {e}"));
                        continue;
                    }
                };
                check_clusters(&boot, objs, &plabel, rep);
                let defined: BTreeSet<&str> =
                    arr(&boot["static_resources"]["clusters"]).iter().map(|c| s(&c["name"])).collect();
                for c in called.difference(&defined) {
                    rep.error(&plabel, format!("the filter calls cluster {c}, which its bootstrap does not define"));
                }
            }
            for ctp in objs.iter().filter(|o| o["kind"] == "ClientTrafficPolicy") {
                let removed = arr(&ctp["spec"]["headers"]["earlyRequestHeaders"]["remove"]);
                for h in [header, policy.shadow_header.as_str()] {
                    if !removed.iter().any(|r| r == h) {
                        rep.error(
                            &format!("{at} {}", name_of(ctp)),
                            format!("does not strip client-sent {h} before routing"),
                        );
                    }
                }
            }
        }
    }
}

/// Bindings bind what exists; pods run as accounts that exist; the operator may get
/// and patch exactly the one object it is told carries the policy, nothing more.
fn check_rbac(objs: &[Value], pods: &[Pod], at: &str, rep: &mut Report) {
    for o in objs.iter().filter(|o| o["kind"] == "RoleBinding") {
        let label = format!("{at} {}", name_of(o));
        let (kind, name) = (s(&o["roleRef"]["kind"]), s(&o["roleRef"]["name"]));
        if !exists(objs, kind, name) {
            rep.error(&label, format!("binds {kind} {name}, which does not exist"));
        }
        for sub in arr(&o["subjects"]) {
            if sub["kind"] == "ServiceAccount" && !exists(objs, "ServiceAccount", s(&sub["name"])) {
                rep.error(&label, format!("binds ServiceAccount {}, which does not exist", s(&sub["name"])));
            }
        }
    }
    for pod in pods {
        let sa = s(&pod.spec["serviceAccountName"]);
        if !sa.is_empty() && !exists(objs, "ServiceAccount", sa) {
            rep.error(&format!("{at} {}", pod.owner), format!("runs as ServiceAccount {sa}, which does not exist"));
        }
    }
    let Some(operator) = find(objs, "Deployment", "switchyard-operator") else { return };
    let label = format!("{at} {}", name_of(operator));
    let policies: Vec<&Value> = objs.iter().filter(|o| o["kind"] == "TrafficPolicy").collect();
    if policies.is_empty() {
        rep.error(&label, "no TrafficPolicy: the operator would have no policy to carry");
    }
    // Each TrafficPolicy's carrier exists; the operator's rules on carrier kinds name exactly
    // those objects (the rest of its Role is generated from its code: operator/tests).
    let mut carried: Vec<(&str, &str, &str)> = Vec::new();
    for tp in &policies {
        let c = &tp["spec"]["carrier"];
        let named: Vec<_> = CARRIERS.iter().filter(|(field, ..)| c.get(*field).is_some()).collect();
        let [(field, kind, group, resource)] = named[..] else {
            rep.error(
                &format!("{at} {}", name_of(tp)),
                "spec.carrier needs exactly one of configMap, wasmPlugin, envoyExtensionPolicy",
            );
            continue;
        };
        let name = s(&c[*field]["name"]);
        if !exists(objs, kind, name) {
            rep.error(&format!("{at} {}", name_of(tp)), format!("its carrier {kind} {name} does not exist"));
        }
        carried.push((group, resource, name));
    }
    let sa = s(&operator["spec"]["template"]["spec"]["serviceAccountName"]);
    let binds_sa = |b: &Value| arr(&b["subjects"]).iter().any(|x| x["kind"] == "ServiceAccount" && x["name"] == sa);
    let roles: Vec<Option<&Value>> = objs
        .iter()
        .filter(|b| b["kind"] == "RoleBinding" && binds_sa(b))
        .map(|b| find(objs, s(&b["roleRef"]["kind"]), s(&b["roleRef"]["name"])))
        .collect();
    if !roles.iter().any(Option::is_some) {
        rep.error(&label, format!("ServiceAccount {sa} has no Role: it could not change traffic"));
    }
    if objs.iter().any(|o| o["kind"] == "ClusterRoleBinding" && arr(&o["subjects"]).iter().any(|x| x["name"] == sa)) {
        rep.error(&label, format!("ServiceAccount {sa} is bound cluster-wide: it may touch only its own namespace"));
    }
    let carrier_kinds: Vec<(&str, &str)> = CARRIERS.iter().map(|(_, _, g, r)| (*g, *r)).collect();
    for role in roles.into_iter().flatten() {
        for rule in arr(&role["rules"]) {
            let on_carrier = carrier_kinds
                .iter()
                .any(|(g, r)| rule["apiGroups"] == json!([g]) && arr(&rule["resources"]).iter().any(|x| x == r));
            if !on_carrier {
                continue;
            }
            let verbs_ok = arr(&rule["verbs"]).iter().all(|v| v == "get" || v == "patch");
            let allowed = carried.iter().any(|(g, r, n)| {
                rule["apiGroups"] == json!([g])
                    && rule["resources"] == json!([r])
                    && rule["resourceNames"] == json!([n])
            }) && verbs_ok;
            if !allowed {
                rep.error(
                    &format!("{at} {}", name_of(role)),
                    format!("grants more than get/patch on the carrier of a TrafficPolicy: {rule}"),
                );
            }
        }
    }
}

// --- who may reach what -----------------------------------------------------------------------

/// A gateway's pod: it runs Envoy (the plain gateway's container, Istio's injected gateway,
/// Envoy Gateway's fleet).
fn is_gateway(p: &Pod) -> bool {
    arr(&p.spec["containers"]).iter().any(|c| c["name"] == "envoy" || c["name"] == "istio-proxy")
}

/// The ports only the gateway may reach: the backends' inference ports and the collector's
/// samples port, as (pod, port number, what).
fn guarded_ports(pods: &[Pod]) -> Vec<(&Pod, i64, &'static str)> {
    let mut out = Vec::new();
    for p in pods.iter().filter(|p| p.elsewhere.is_none()) {
        for c in arr(&p.spec["containers"]) {
            let argv: Vec<&str> = arr(&c["command"]).iter().chain(arr(&c["args"])).filter_map(Value::as_str).collect();
            let program = argv.first().and_then(|p| Path::new(p).file_name()).and_then(|n| n.to_str());
            let named: BTreeMap<&str, i64> = arr(&c["ports"])
                .iter()
                .filter_map(|p| Some((p["name"].as_str()?, p["containerPort"].as_i64()?)))
                .collect();
            if program == Some(backend::PROCESS.binary) {
                for l in [backend::HTTP, backend::GRPC] {
                    out.extend(named.get(l.name).map(|n| (p, *n, "an inference port")));
                }
            } else if program == Some(collector::PROCESS.binary) {
                let port = flag(&argv, collector::HTTP.flag).and_then(|a| a.rsplit_once(':')?.1.parse().ok());
                out.extend(port.map(|n| (p, n, "the samples port")));
            }
        }
    }
    out
}

/// The ports Prometheus scrapes in this namespace, as (pod, port number, monitor).
fn scraped_ports<'a>(objs: &'a [Value], pods: &'a [Pod]) -> Vec<(&'a Pod, i64, String)> {
    let mut out = Vec::new();
    for m in objs.iter().filter(|o| o["kind"] == "ServiceMonitor" || o["kind"] == "PodMonitor") {
        let sel = &m["spec"]["selector"];
        let own = |p: &&Pod| p.elsewhere.is_none();
        if m["kind"] == "PodMonitor" {
            for e in arr(&m["spec"]["podMetricsEndpoints"]) {
                for p in pods.iter().filter(own).filter(|p| matches(sel, &p.labels)) {
                    out.extend(container_ports(&p.spec).get(&port_key(&e["port"])).map(|n| (p, *n, name_of(m))));
                }
            }
            continue;
        }
        for svc in objs.iter().filter(|x| x["kind"] == "Service" && matches(sel, &object(&x["metadata"]["labels"]))) {
            for e in arr(&m["spec"]["endpoints"]) {
                let Some(sp) = arr(&svc["spec"]["ports"]).iter().find(|sp| sp["name"] == e["port"]) else { continue };
                let target = port_key(if sp.get("targetPort").is_some() { &sp["targetPort"] } else { &sp["port"] });
                for p in pods.iter().filter(own).filter(|p| matches(&svc["spec"]["selector"], &p.labels)) {
                    out.extend(container_ports(&p.spec).get(&target).map(|n| (p, *n, name_of(m))));
                }
            }
        }
    }
    out
}

/// Whether a NetworkPolicy's pod selector (or an AuthorizationPolicy's or PeerAuthentication's
/// workload selector) selects a pod of this namespace; empty or absent selects them all.
fn selects(selector: &Value, p: &Pod) -> bool {
    p.elsewhere.is_none() && (!truthy(selector) || matches(selector, &p.labels))
}

/// Whether a rule's ports (NetworkPolicy: `[{port, endPort}]`, a name or a number; Istio:
/// strings of digits) admit this port of this pod; none listed admits every port.
fn admits_port(ports: &[Value], p: &Pod, n: i64) -> bool {
    ports.is_empty()
        || ports.iter().any(|x| {
            let port = if x.is_object() { &x["port"] } else { x };
            let number = port.as_i64().or_else(|| port.as_str().and_then(|s| s.parse().ok()));
            let number = number.or_else(|| container_ports(&p.spec).get(s(port)).copied());
            match (number, x["endPort"].as_i64()) {
                (Some(from), Some(to)) => (from..=to).contains(&n),
                (Some(from), None) => from == n,
                _ => false,
            }
        })
}

/// The pods a NetworkPolicy peer admits: `None` where it admits more than pods the target
/// knows (an ipBlock, every namespace, another namespace's pods by name that is not Envoy
/// Gateway's).
fn peer_pods<'a>(peer: &Value, pods: &'a [Pod]) -> Option<Vec<&'a Pod>> {
    if peer.get("ipBlock").is_some() {
        return None;
    }
    let namespace = match peer.get("namespaceSelector") {
        None => None,
        Some(sel) => {
            let name = object(&sel["matchLabels"])
                .get("kubernetes.io/metadata.name")
                .and_then(Value::as_str)
                .map(str::to_owned);
            match name {
                Some(n) if n == ENVOY_GATEWAY_NAMESPACE && sel["matchExpressions"].is_null() => {
                    Some(ENVOY_GATEWAY_NAMESPACE)
                }
                _ => return None,
            }
        }
    };
    let sel = &peer["podSelector"];
    if namespace.is_some() && !truthy(sel) {
        return None;
    }
    Some(pods.iter().filter(|p| p.elsewhere == namespace && (!truthy(sel) || matches(sel, &p.labels))).collect())
}

fn from_monitoring(peer: &Value) -> bool {
    object(&peer["namespaceSelector"]["matchLabels"]).get("kubernetes.io/metadata.name")
        == Some(&json!(MONITORING_NAMESPACE))
}

/// NetworkPolicies, where a target has them: a default deny; only gateway pods reach the
/// guarded ports; clients reach the gateway; Prometheus reaches what it scrapes; every port
/// named is one the selected pods have.
fn check_network_policies(objs: &[Value], pods: &[Pod], at: &str, rep: &mut Report) {
    let policies: Vec<&Value> = objs.iter().filter(|o| o["kind"] == "NetworkPolicy").collect();
    if policies.is_empty() {
        return;
    }
    let ingress = |np: &Value| arr(&np["spec"]["policyTypes"]).iter().any(|t| t == "Ingress");
    if !policies
        .iter()
        .any(|np| !truthy(&np["spec"]["podSelector"]) && ingress(np) && arr(&np["spec"]["ingress"]).is_empty())
    {
        rep.error(at, "no default-deny NetworkPolicy: a pod added later would accept every caller");
    }
    // The rules that admit (pod, port), with their policy.
    let rules_for = |p: &Pod, n: i64| -> Vec<(&Value, &Value)> {
        policies
            .iter()
            .filter(|np| ingress(np) && selects(&np["spec"]["podSelector"], p))
            .flat_map(|np| arr(&np["spec"]["ingress"]).iter().map(move |r| (*np, r)))
            .filter(|(_, r)| admits_port(arr(&r["ports"]), p, n))
            .collect()
    };
    for (p, n, what) in guarded_ports(pods) {
        for (np, r) in rules_for(p, n) {
            let from = arr(&r["from"]);
            let only_gateway = !from.is_empty()
                && from.iter().all(|peer| {
                    peer_pods(peer, pods).is_some_and(|hit| !hit.is_empty() && hit.iter().all(|q| is_gateway(q)))
                });
            if !only_gateway {
                rep.error(
                    &format!("{at} {}", name_of(np)),
                    format!(
                        "admits {} to {what} {n} of {}: only the gateway may reach it",
                        Value::Array(from.to_vec()),
                        p.owner
                    ),
                );
            }
        }
    }
    for p in pods.iter().filter(|p| p.elsewhere.is_none() && is_gateway(p)) {
        let listener = container_ports(&p.spec).get("http").copied();
        if let Some(n) = listener
            && !rules_for(p, n).iter().any(|(_, r)| arr(&r["from"]).is_empty())
        {
            rep.error(&format!("{at} {}", p.owner), format!("the gateway's listener {n} is not open to clients"));
        }
    }
    for (p, n, monitor) in scraped_ports(objs, pods) {
        if !rules_for(p, n)
            .iter()
            .any(|(_, r)| arr(&r["from"]).is_empty() || arr(&r["from"]).iter().any(from_monitoring))
        {
            rep.error(
                &format!("{at} {monitor}"),
                format!(
                    "scrapes port {n} of {}, which no NetworkPolicy opens to Prometheus ({MONITORING_NAMESPACE})",
                    p.owner
                ),
            );
        }
    }
    for np in &policies {
        let hit: Vec<&Pod> = pods.iter().filter(|p| selects(&np["spec"]["podSelector"], p)).collect();
        for x in arr(&np["spec"]["ingress"]).iter().flat_map(|r| arr(&r["ports"])) {
            let known = hit.iter().any(|p| {
                container_ports(&p.spec)
                    .iter()
                    .any(|(name, n)| x["port"] == json!(name) || x["port"].as_i64() == Some(*n))
            });
            if !known {
                rep.error(
                    &format!("{at} {}", name_of(np)),
                    format!("port {} is no container port of the pods it selects", x["port"]),
                );
            }
        }
    }
}

/// Istio's policies, where a target has them: STRICT mutual TLS for the namespace and on every
/// guarded port; allow-nothing; only the gateway's account reaches the guarded ports; what
/// stays plain text admits GET only.
fn check_mesh_policies(objs: &[Value], pods: &[Pod], at: &str, rep: &mut Report) {
    let authz: Vec<&Value> = objs.iter().filter(|o| o["kind"] == "AuthorizationPolicy").collect();
    let peer_auth: Vec<&Value> = objs.iter().filter(|o| o["kind"] == "PeerAuthentication").collect();
    if authz.is_empty() && peer_auth.is_empty() {
        return;
    }
    let namespace = objs.iter().find_map(|o| o["metadata"]["namespace"].as_str()).unwrap_or_default();
    if !peer_auth.iter().any(|pa| !truthy(&pa["spec"]["selector"]) && pa["spec"]["mtls"]["mode"] == "STRICT") {
        rep.error(at, "no namespace-wide STRICT PeerAuthentication: callers outside the mesh get in");
    }
    if !authz.iter().any(|a| !truthy(&a["spec"])) {
        rep.error(at, "no allow-nothing AuthorizationPolicy: a workload without a policy admits everyone");
    }
    let gateway_accounts: BTreeSet<&str> = pods
        .iter()
        .filter(|p| p.elsewhere.is_none() && is_gateway(p))
        .map(|p| p.spec["serviceAccountName"].as_str().unwrap_or("default"))
        .collect();
    // The mode a pod's port runs in: a port-level setting, else the workload's, else the namespace's.
    let plain_text = |p: &Pod, n: i64| {
        let mut modes = peer_auth.iter().filter(|pa| selects(&pa["spec"]["selector"], p));
        modes.any(|pa| {
            let level = &pa["spec"]["portLevelMtls"][n.to_string()]["mode"];
            let mode = if level.is_null() { &pa["spec"]["mtls"]["mode"] } else { level };
            mode == "PERMISSIVE" || mode == "DISABLE"
        })
    };
    let rules_for = |p: &Pod, n: i64| -> Vec<(&Value, &Value)> {
        authz
            .iter()
            .filter(|a| truthy(&a["spec"]) && a["spec"]["action"].as_str().unwrap_or("ALLOW") == "ALLOW")
            .filter(|a| selects(&a["spec"]["selector"], p))
            .flat_map(|a| arr(&a["spec"]["rules"]).iter().map(move |r| (*a, r)))
            .filter(|(_, r)| {
                let to = arr(&r["to"]);
                to.is_empty() || to.iter().any(|t| admits_port(arr(&t["operation"]["ports"]), p, n))
            })
            .collect()
    };
    for (p, n, what) in guarded_ports(pods) {
        if plain_text(p, n) {
            rep.error(
                &format!("{at} {}", p.owner),
                format!("{what} {n} accepts plain text: callers without a mesh identity"),
            );
        }
        for (a, r) in rules_for(p, n) {
            let sources: Vec<&Value> = arr(&r["from"]).iter().map(|f| &f["source"]).collect();
            let only_gateway = !sources.is_empty()
                && sources.iter().all(|src| {
                    object(src).keys().all(|k| k == "principals")
                        && !arr(&src["principals"]).is_empty()
                        && arr(&src["principals"]).iter().all(|x| {
                            gateway_accounts.iter().any(|sa| s(x).ends_with(&format!("/ns/{namespace}/sa/{sa}")))
                        })
                });
            if !only_gateway {
                rep.error(
                    &format!("{at} {}", name_of(a)),
                    format!(
                        "admits {} to {what} {n} of {}: only the gateway's account ({gateway_accounts:?}) may reach it",
                        Value::Array(arr(&r["from"]).to_vec()),
                        p.owner
                    ),
                );
            }
        }
    }
    for p in pods.iter().filter(|p| p.elsewhere.is_none()) {
        for n in container_ports(&p.spec).into_values().collect::<BTreeSet<_>>() {
            if !plain_text(p, n) {
                continue;
            }
            for (a, r) in rules_for(p, n) {
                let read_only = arr(&r["to"]).iter().all(|t| t["operation"]["methods"] == json!(["GET"]));
                if arr(&r["to"]).is_empty() || !read_only {
                    rep.error(
                        &format!("{at} {}", name_of(a)),
                        format!("port {n} of {} is plain text and admits more than GET", p.owner),
                    );
                }
            }
        }
    }
    for pol in authz.iter().chain(&peer_auth) {
        let hit: Vec<&Pod> = pods.iter().filter(|p| selects(&pol["spec"]["selector"], p)).collect();
        let port_level = object(&pol["spec"]["portLevelMtls"]);
        let named = arr(&pol["spec"]["rules"])
            .iter()
            .flat_map(|r| arr(&r["to"]))
            .flat_map(|t| arr(&t["operation"]["ports"]))
            .filter_map(|x| x.as_str().and_then(|x| x.parse::<i64>().ok()))
            .chain(port_level.keys().filter_map(|k| k.parse().ok()));
        for n in named {
            if !hit.iter().any(|p| container_ports(&p.spec).values().any(|x| *x == n)) {
                rep.error(
                    &format!("{at} {}", name_of(pol)),
                    format!("port {n} is no container port of the pods it selects"),
                );
            }
        }
    }
}

/// Every check across one target's objects; its problems, each prefixed with `at`.
fn cross(objs: &[Value], at: &str) -> Vec<String> {
    let mut rep = Report::default();
    let pods = pod_templates(objs);
    let namespaces: BTreeSet<Option<&str>> =
        objs.iter().filter(|o| o["kind"] != "Namespace").map(|o| o["metadata"]["namespace"].as_str()).collect();
    if namespaces.len() != 1 {
        rep.error(at, format!("objects spread over namespaces {namespaces:?}"));
    }

    for svc in objs.iter().filter(|o| o["kind"] == "Service") {
        let label = format!("{at} {}", name_of(svc));
        let sel = &svc["spec"]["selector"];
        let hit: Vec<&Pod> = pods.iter().filter(|p| matches(sel, &p.labels)).collect();
        if hit.is_empty() {
            rep.error(&label, format!("selects no pod template ({sel})"));
        }
        for p in arr(&svc["spec"]["ports"]) {
            let target = port_key(if p.get("targetPort").is_some() { &p["targetPort"] } else { &p["port"] });
            for pod in &hit {
                if !container_ports(&pod.spec).contains_key(&target) {
                    rep.error(&label, format!("targetPort {target} is no container port of {}", pod.owner));
                }
            }
        }
    }

    for o in objs {
        let label = format!("{at} {}", name_of(o));
        let kind = s(&o["kind"]);
        let spec = &o["spec"];
        if kind == "PodDisruptionBudget" && !pods.iter().any(|p| matches(&spec["selector"], &p.labels)) {
            rep.error(&label, "selects no pod template");
        }
        if kind == "ScaledObject" || kind == "HorizontalPodAutoscaler" {
            let r = &spec["scaleTargetRef"];
            let (ref_kind, ref_name) = (r["kind"].as_str().unwrap_or("Deployment"), s(&r["name"]));
            if !workload_exists(objs, ref_kind, ref_name) {
                rep.error(&label, format!("targets {ref_kind}/{ref_name}, which does not exist"));
            }
            let isvc = find(objs, "InferenceService", ref_name.strip_suffix("-predictor").unwrap_or(ref_name));
            let floor =
                spec[if kind == "ScaledObject" { "minReplicaCount" } else { "minReplicas" }].as_i64().unwrap_or(1);
            if let Some(isvc) = isvc {
                let isvc_floor = isvc["spec"]["predictor"]["minReplicas"].as_i64().unwrap_or(1);
                if isvc_floor != floor {
                    rep.error(
                        &label,
                        format!(
                            "scales down to {floor} but the InferenceService's minReplicas is {isvc_floor}: \
                             KServe and the scaler would fight"
                        ),
                    );
                }
            }
        }
        if kind == "WasmPlugin" {
            let pc = if spec["pluginConfig"].is_null() { json!({}) } else { spec["pluginConfig"].clone() };
            check_policy(&serde_json::to_vec(&pc).expect("JSON"), &label, &mut rep);
        }
        // Istio's: Gateway API's Gateway selects no pods, its controller makes them.
        let istio = s(&o["apiVersion"]).starts_with("networking.istio.io/") || kind == "WasmPlugin";
        if istio && ["WasmPlugin", "EnvoyFilter", "Gateway"].contains(&kind) {
            let sel = [&spec["selector"], &spec["workloadSelector"]].into_iter().find(|v| truthy(v));
            let sel = sel.map_or_else(Map::new, |sel| {
                object(sel.get("matchLabels").or_else(|| sel.get("labels")).unwrap_or(sel))
            });
            if !pods.iter().any(|p| matches_parts(&sel, &[], &p.labels)) {
                rep.error(&label, format!("its selector {} matches no gateway pod", Value::Object(sel)));
            }
        }
        if kind == "VirtualService" {
            check_routes_match_policy(o, objs, &label, &mut rep);
            for g in arr(&spec["gateways"]) {
                if !exists(objs, "Gateway", s(g)) {
                    rep.error(&label, format!("gateway {} does not exist", s(g)));
                }
            }
            for route in arr(&spec["http"]) {
                let mut dests: Vec<&Value> = arr(&route["route"]).iter().map(|d| &d["destination"]).collect();
                if route.get("mirror").is_some() {
                    dests.push(&route["mirror"]);
                }
                for d in dests {
                    check_service_port(objs, s(&d["host"]), d["port"]["number"].as_i64(), &label, &mut rep);
                }
            }
        }
        if kind == "ServiceMonitor" || kind == "PodMonitor" {
            let sel = &spec["selector"];
            let (names, endpoints): (Vec<BTreeSet<String>>, _) = if kind == "ServiceMonitor" {
                let names = objs
                    .iter()
                    .filter(|x| x["kind"] == "Service" && matches(sel, &object(&x["metadata"]["labels"])))
                    .map(|x| {
                        arr(&x["spec"]["ports"]).iter().filter_map(|p| p["name"].as_str()).map(str::to_owned).collect()
                    })
                    .collect();
                (names, arr(&spec["endpoints"]))
            } else {
                let names = pods
                    .iter()
                    .filter(|p| matches(sel, &p.labels))
                    .map(|p| container_ports(&p.spec).into_keys().collect())
                    .collect();
                (names, arr(&spec["podMetricsEndpoints"]))
            };
            if names.is_empty() {
                rep.error(&label, "selects nothing");
            }
            for e in endpoints {
                let port = port_key(&e["port"]);
                if names.iter().any(|n| !n.contains(&port)) {
                    rep.error(&label, format!("port {port} is not named on everything it selects"));
                }
            }
        }
        if kind == "ConfigMap" && o["metadata"]["name"] == "switchyard-gateway-bootstrap" {
            check_bootstrap(o, objs, &label, &mut rep);
        }
        if kind == "ConfigMap" && o["metadata"]["name"] == "switchyard-gateway-filter" {
            for text in o["data"].as_object().into_iter().flat_map(Map::values) {
                let ecds: Value = match serde_norway::from_str(s(text)) {
                    Ok(ecds) => ecds,
                    Err(e) => {
                        rep.error(&label, format!("not YAML: {e}"));
                        continue;
                    }
                };
                for r in arr(&ecds["resources"]) {
                    if let Some(cfg) = r["typed_config"]["config"]["configuration"]["value"].as_str() {
                        check_policy(cfg.as_bytes(), &label, &mut rep);
                    }
                }
            }
        }
    }

    for o in objs.iter().filter(|o| POD_OWNERS.contains(&s(&o["kind"]))) {
        let cm = s(&o["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/bootstrapOverride"]);
        if !cm.is_empty() && !exists(objs, "ConfigMap", cm) {
            rep.error(&format!("{at} {}", name_of(o)), format!("bootstrapOverride ConfigMap {cm} does not exist"));
        }
    }
    check_rbac(objs, &pods, at, &mut rep);
    check_gateway_api(objs, at, &mut rep);
    check_network_policies(objs, &pods, at, &mut rep);
    check_mesh_policies(objs, &pods, at, &mut rep);
    for pod in &pods {
        check_backend_pod(&format!("{at} {}", pod.owner), &pod.spec, &mut rep);
        for v in arr(&pod.spec["volumes"]) {
            let volume_ref = if v.get("configMap").is_some() {
                Some(("ConfigMap", s(&v["configMap"]["name"])))
            } else if v.get("persistentVolumeClaim").is_some() {
                Some(("PersistentVolumeClaim", s(&v["persistentVolumeClaim"]["claimName"])))
            } else {
                None
            };
            // Jobs are applied next to an overlay (and the merge next to the batch job) and use
            // their volumes.
            if let Some((kind, name)) = volume_ref
                && !exists(objs, kind, name)
                && !(pod.owner.starts_with("Job/") && JOB_VOLUMES.contains(&(kind, name)))
            {
                rep.error(
                    &format!("{at} {}", pod.owner),
                    format!("volume {}: {kind} {name} does not exist", s(&v["name"])),
                );
            }
        }
    }
    let tags = image_tags(objs);
    if tags.len() > 1 {
        rep.error(at, format!("Switchyard images and the filter's OCI image disagree on the tag: {tags:?}"));
    }
    rep.errors
}

#[test]
fn the_objects_of_every_overlay_and_job_agree_with_each_other_and_the_backend() {
    let names: Vec<&str> = targets().iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "jobs/batch",
            "jobs/batch-merge",
            "overlays/deployments-envoy",
            "overlays/deployments-gateway-api",
            "overlays/kserve-istio",
            "overlays/kserve-istio-gpu"
        ]
    );
    let errors: Vec<String> = targets().iter().flat_map(|(name, objs)| cross(objs, name)).collect();
    assert!(errors.is_empty(), "{} problem(s):\n{}", errors.len(), errors.join("\n"));
}

// --- the self-test ----------------------------------------------------------------------------

/// The object of this kind (and name), to break.
fn obj<'a>(objs: &'a mut [Value], kind: &str, name: Option<&str>) -> &'a mut Value {
    objs.iter_mut()
        .find(|o| o["kind"] == kind && name.is_none_or(|n| o["metadata"]["name"] == n))
        .unwrap_or_else(|| panic!("no {kind} {name:?}"))
}

fn isvc_container(objs: &mut [Value]) -> &mut Value {
    &mut obj(objs, "InferenceService", None)["spec"]["predictor"]["containers"][0]
}

fn replace_in_data(objs: &mut [Value], config_map: &str, key: &str, from: &str, to: &str) {
    let data = &mut obj(objs, "ConfigMap", Some(config_map))["data"][key];
    let text = s(data);
    assert!(text.contains(from), "ConfigMap {config_map} {key} has no {from}");
    *data = text.replacen(from, to, 1).into();
}

/// A way to break a target's objects, and what the report must then say.
struct Break {
    target: &'static str,
    what: &'static str,
    apply: fn(&mut Vec<Value>),
    needle: &'static str,
}

fn breaks() -> Vec<Break> {
    const KSERVE: &str = "overlays/kserve-istio";
    const ENVOY: &str = "overlays/deployments-envoy";
    const GATEWAY_API: &str = "overlays/deployments-gateway-api";
    vec![
        Break {
            target: KSERVE,
            what: "a policy switchyard-policy check refuses",
            apply: |o| {
                obj(o, "WasmPlugin", None)["spec"]["pluginConfig"]["models"]["mlp"]["versions"][0]["cluster"] =
                    "".into();
            },
            needle: "switchyard-policy check refuses",
        },
        Break {
            target: KSERVE,
            what: "a Service selecting no pods",
            apply: |o| {
                obj(o, "Service", Some("mlp-v1"))["spec"]["selector"]["switchyard.dev/backend"] = "mlp-v9".into();
            },
            needle: "selects no pod template",
        },
        Break {
            target: KSERVE,
            what: "a ScaledObject targeting nothing",
            apply: |o| obj(o, "ScaledObject", None)["spec"]["scaleTargetRef"]["name"] = "nope-predictor".into(),
            needle: "targets Deployment/nope-predictor, which does not exist",
        },
        Break {
            target: KSERVE,
            what: "an InferenceService floor that disagrees with its ScaledObject",
            apply: |o| obj(o, "InferenceService", Some("mlp-v2"))["spec"]["predictor"]["minReplicas"] = 1.into(),
            needle: "KServe and the scaler would fight",
        },
        Break {
            target: KSERVE,
            what: "a readiness probe on the wrong path",
            apply: |o| isvc_container(o)["readinessProbe"]["httpGet"]["path"] = "/ready".into(),
            needle: "readinessProbe path /ready is not the backend's",
        },
        Break {
            target: KSERVE,
            what: "an HTTP port that disagrees with --http-addr",
            apply: |o| isvc_container(o)["ports"][0]["containerPort"] = 9000.into(),
            needle: backend::HTTP.flag,
        },
        Break {
            target: KSERVE,
            what: "a grace period no longer than the drain",
            apply: |o| {
                obj(o, "InferenceService", None)["spec"]["predictor"]["terminationGracePeriodSeconds"] =
                    backend::SHUTDOWN_GRACE_SECONDS.into();
            },
            needle: "leaves no time",
        },
        Break {
            target: KSERVE,
            what: "an image tag that disagrees",
            apply: |o| isvc_container(o)["image"] = format!("{IMAGE}:0.0.9").into(),
            needle: "disagree on the tag",
        },
        Break {
            target: KSERVE,
            what: "a VirtualService routing to a missing Service",
            apply: |o| {
                obj(o, "VirtualService", None)["spec"]["http"][0]["route"][0]["destination"]["host"] = "mlp-v7".into();
            },
            needle: "routes to mlp-v7: no such Service",
        },
        Break {
            target: KSERVE,
            what: "a route on a header value the filter never sets",
            apply: |o| {
                obj(o, "VirtualService", None)["spec"]["http"][1]["match"][0]["headers"]["x-switchyard-upstream"]["exact"] =
                    "mlp-v1".into();
            },
            needle: "which the filter never sets",
        },
        Break {
            target: KSERVE,
            what: "a fail-open route that sends a model to another model's version",
            apply: |o| {
                let http = &mut obj(o, "VirtualService", None)["spec"]["http"];
                let route = http
                    .as_array_mut()
                    .and_then(|h| h.iter_mut().find(|r| r["name"] == "resnet18-unrouted"))
                    .expect("route resnet18-unrouted");
                route["route"][0]["destination"]["host"] = "mlp-v1".into();
            },
            needle: "when the filter fails open",
        },
        Break {
            target: KSERVE,
            what: "a missing bootstrap override (the filter's metric labels)",
            apply: |o| {
                o.retain(|x| {
                    !(x["kind"] == "ConfigMap" && x["metadata"]["name"] == "switchyard-gateway-bootstrap-override")
                });
            },
            needle: "bootstrapOverride ConfigMap switchyard-gateway-bootstrap-override does not exist",
        },
        Break {
            target: KSERVE,
            what: "a RoleBinding to a ServiceAccount that does not exist",
            apply: |o| obj(o, "RoleBinding", Some("switchyard-operator"))["subjects"][0]["name"] = "nobody".into(),
            needle: "ServiceAccount nobody, which does not exist",
        },
        Break {
            target: KSERVE,
            what: "a WasmPlugin selecting no gateway pods",
            apply: |o| obj(o, "WasmPlugin", None)["spec"]["selector"]["matchLabels"]["istio"] = "ingressgateway".into(),
            needle: "matches no gateway pod",
        },
        Break {
            target: KSERVE,
            what: "a ServiceMonitor on a port name no Service has",
            apply: |o| {
                obj(o, "ServiceMonitor", Some("switchyard-backend"))["spec"]["endpoints"][0]["port"] = "metrics".into();
            },
            needle: "port metrics is not named",
        },
        Break {
            target: ENVOY,
            what: "an operator Role that grants more than get/patch on its carrier",
            apply: |o| {
                let rules = obj(o, "Role", Some("switchyard-operator"))["rules"].as_array_mut().expect("rules");
                let carrier =
                    rules.iter_mut().find(|r| r["resources"] == json!(["configmaps"])).expect("a carrier rule");
                carrier["verbs"] = json!(["get", "patch", "delete"]);
            },
            needle: "grants more than get/patch",
        },
        Break {
            target: ENVOY,
            what: "an operator Role on every ConfigMap",
            apply: |o| {
                let rules = obj(o, "Role", Some("switchyard-operator"))["rules"].as_array_mut().expect("rules");
                let carrier =
                    rules.iter_mut().find(|r| r["resources"] == json!(["configmaps"])).expect("a carrier rule");
                carrier.as_object_mut().expect("a rule").remove("resourceNames").expect("resourceNames");
            },
            needle: "grants more than get/patch",
        },
        Break {
            target: ENVOY,
            what: "a TrafficPolicy whose carrier does not exist",
            apply: |o| {
                obj(o, "TrafficPolicy", None)["spec"]["carrier"]["configMap"]["name"] = "nope".into();
            },
            needle: "its carrier ConfigMap nope does not exist",
        },
        Break {
            target: ENVOY,
            what: "an HPA targeting nothing",
            apply: |o| obj(o, "HorizontalPodAutoscaler", None)["spec"]["scaleTargetRef"]["name"] = "nope".into(),
            needle: "targets Deployment/nope, which does not exist",
        },
        Break {
            target: ENVOY,
            what: "a bootstrap cluster on a Service port that does not exist",
            apply: |o| {
                let from = format!("\"port_value\": {}", backend::HTTP.port);
                replace_in_data(o, "switchyard-gateway-bootstrap", "envoy.json", &from, "\"port_value\": 8080");
            },
            needle: "has no port 8080",
        },
        Break {
            target: ENVOY,
            what: "an ECDS file whose policy switchyard-policy check refuses",
            apply: |o| {
                replace_in_data(
                    o,
                    "switchyard-gateway-filter",
                    "filter.yaml",
                    r#"\"weight\": 100"#,
                    r#"\"weight\": -1"#,
                );
            },
            needle: "switchyard-policy check refuses",
        },
        Break {
            target: ENVOY,
            what: "a volume from a ConfigMap that does not exist",
            apply: |o| {
                obj(o, "Deployment", Some("switchyard-gateway"))["spec"]["template"]["spec"]["volumes"][0]["configMap"]
                    ["name"] = "missing".into();
            },
            needle: "ConfigMap missing does not exist",
        },
        Break {
            target: GATEWAY_API,
            what: "a version's header rule on a shorter path than the model's fail-open rule",
            apply: |o| {
                let rule = http_rule(o, "switchyard-mlp", "mlp-v2");
                rule["matches"][0]["path"]["value"] = "/".into();
            },
            needle: "no HTTPRoute rule sends x-switchyard-upstream: mlp-v2 on /v2/models/mlp",
        },
        Break {
            target: GATEWAY_API,
            what: "an HTTPRoute mirroring to a missing Service",
            apply: |o| {
                let rule = http_rule(o, "switchyard-mlp", "mlp-v1-shadow-mlp-v2");
                let mirror = rule["filters"]
                    .as_array_mut()
                    .and_then(|f| f.iter_mut().find(|f| f["type"] == "RequestMirror"))
                    .expect("a mirror");
                mirror["requestMirror"]["backendRef"]["name"] = "mlp-v7".into();
            },
            needle: "routes to mlp-v7: no such Service",
        },
        Break {
            target: GATEWAY_API,
            what: "a fail-open rule that sends a model to another model's version",
            apply: |o| http_rule(o, "switchyard-resnet18", "unrouted")["backendRefs"][0]["name"] = "mlp-v1".into(),
            needle: "no HTTPRoute rule sends /v2/models/resnet18 to resnet18-v1 when the filter fails open",
        },
        Break {
            target: GATEWAY_API,
            what: "an EnvoyProxy bootstrap without the collector's cluster",
            apply: |o| {
                let value = &mut obj(o, "EnvoyProxy", None)["spec"]["bootstrap"]["value"];
                let mut boot: Value = serde_norway::from_str(s(value)).expect("YAML");
                let clusters = boot["static_resources"]["clusters"].as_array_mut().expect("clusters");
                clusters.retain(|c| c["name"] != "collector");
                *value = serde_norway::to_string(&boot).expect("YAML").into();
            },
            needle: "the filter calls cluster collector, which its bootstrap does not define",
        },
        Break {
            target: GATEWAY_API,
            what: "a ClientTrafficPolicy that lets a client send the shadow header",
            apply: |o| {
                obj(o, "ClientTrafficPolicy", None)["spec"]["headers"]["earlyRequestHeaders"]["remove"] =
                    json!(["x-switchyard-upstream"]);
            },
            needle: "does not strip client-sent x-switchyard-shadow",
        },
        Break {
            target: GATEWAY_API,
            what: "an EnvoyExtensionPolicy whose policy switchyard-policy check refuses",
            apply: |o| {
                obj(o, "EnvoyExtensionPolicy", None)["spec"]["wasm"][0]["config"]["models"]["mlp"]["versions"][0]["weight"] =
                    (-1).into();
            },
            needle: "switchyard-policy check refuses",
        },
        Break {
            target: GATEWAY_API,
            what: "the unknown-model response filter missing",
            apply: |o| o.retain(|x| x["kind"] != "HTTPRouteFilter"),
            needle: "filter HTTPRouteFilter switchyard-unknown-model does not exist",
        },
        Break {
            target: GATEWAY_API,
            what: "an operator Role on every EnvoyExtensionPolicy",
            apply: |o| {
                let rules = obj(o, "Role", Some("switchyard-operator"))["rules"].as_array_mut().expect("rules");
                let carrier = rules
                    .iter_mut()
                    .find(|r| r["resources"] == json!(["envoyextensionpolicies"]))
                    .expect("a carrier rule");
                carrier.as_object_mut().expect("a rule").remove("resourceNames").expect("resourceNames");
            },
            needle: "grants more than get/patch",
        },
        Break {
            target: GATEWAY_API,
            what: "the Envoy PodMonitor on the plain gateway's port name",
            apply: |o| {
                obj(o, "PodMonitor", Some("switchyard-envoy"))["spec"]["podMetricsEndpoints"][0]["port"] =
                    "http-envoy-prom".into();
            },
            needle: "port http-envoy-prom is not named",
        },
        Break {
            target: ENVOY,
            what: "a NetworkPolicy that admits every pod to the backends' inference ports",
            apply: |o| {
                obj(o, "NetworkPolicy", Some("switchyard-backend"))["spec"]["ingress"][0]["from"] =
                    json!([{"podSelector": {}}]);
            },
            needle: "only the gateway may reach it",
        },
        Break {
            target: ENVOY,
            what: "no default-deny NetworkPolicy",
            apply: |o| o.retain(|x| x["metadata"]["name"] != "switchyard-default-deny"),
            needle: "no default-deny NetworkPolicy",
        },
        Break {
            target: ENVOY,
            what: "the gateway's listener shut to clients",
            apply: |o| {
                obj(o, "NetworkPolicy", Some("switchyard-gateway"))["spec"]["ingress"][0]["from"] =
                    json!([{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "switchyard-operator"}}}]);
            },
            needle: "is not open to clients",
        },
        Break {
            target: ENVOY,
            what: "Prometheus shut out of the backends' admin port",
            apply: |o| {
                let rules = obj(o, "NetworkPolicy", Some("switchyard-backend"))["spec"]["ingress"].as_array_mut();
                rules.expect("ingress rules").truncate(1);
            },
            needle: "which no NetworkPolicy opens to Prometheus",
        },
        Break {
            target: ENVOY,
            what: "a NetworkPolicy port the pods do not listen on",
            apply: |o| {
                obj(o, "NetworkPolicy", Some("switchyard-collector"))["spec"]["ingress"][0]["ports"][0]["port"] =
                    9999.into();
            },
            needle: "port 9999 is no container port of the pods it selects",
        },
        Break {
            target: GATEWAY_API,
            what: "the samples port open to every pod of Envoy Gateway's namespace",
            apply: |o| {
                let peer = &mut obj(o, "NetworkPolicy", Some("switchyard-collector"))["spec"]["ingress"][0]["from"][0];
                peer.as_object_mut().expect("a peer").remove("podSelector");
            },
            needle: "only the gateway may reach it",
        },
        Break {
            target: KSERVE,
            what: "the Istio gateway running as the namespace's default account",
            apply: |o| {
                let spec = &mut obj(o, "Deployment", Some("switchyard-gateway"))["spec"]["template"]["spec"];
                spec.as_object_mut().expect("a pod spec").remove("serviceAccountName");
            },
            needle: "only the gateway's account ({\"default\"}) may reach it",
        },
        Break {
            target: KSERVE,
            what: "an AuthorizationPolicy that admits any caller to the inference ports",
            apply: |o| {
                let rule = &mut obj(o, "AuthorizationPolicy", Some("switchyard-backend"))["spec"]["rules"][0];
                rule.as_object_mut().expect("a rule").remove("from");
            },
            needle: "only the gateway's account",
        },
        Break {
            target: KSERVE,
            what: "an inference port in plain text",
            apply: |o| {
                obj(o, "PeerAuthentication", Some("switchyard-backend"))["spec"]["portLevelMtls"]["8000"] =
                    json!({"mode": "PERMISSIVE"});
            },
            needle: "an inference port 8000 accepts plain text",
        },
        Break {
            target: KSERVE,
            what: "a plain-text admin port that admits POST",
            apply: |o| {
                obj(o, "AuthorizationPolicy", Some("switchyard-backend"))["spec"]["rules"][1]["to"][0]["operation"]["methods"] =
                    json!(["GET", "POST"]);
            },
            needle: "is plain text and admits more than GET",
        },
        Break {
            target: KSERVE,
            what: "no allow-nothing AuthorizationPolicy",
            apply: |o| o.retain(|x| x["metadata"]["name"] != "switchyard-allow-nothing"),
            needle: "no allow-nothing AuthorizationPolicy",
        },
    ]
}

/// The rule so named of the HTTPRoute so named.
fn http_rule<'a>(objs: &'a mut [Value], route: &str, rule: &str) -> &'a mut Value {
    obj(objs, "HTTPRoute", Some(route))["spec"]["rules"]
        .as_array_mut()
        .and_then(|r| r.iter_mut().find(|r| r["name"] == rule))
        .unwrap_or_else(|| panic!("no rule {rule} in HTTPRoute {route}"))
}

#[test]
fn each_kind_of_broken_object_is_caught() {
    let breaks = breaks();
    let mut missed = Vec::new();
    for b in &breaks {
        let clean = target(b.target);
        let before = cross(clean, b.target);
        assert!(before.is_empty(), "{} does not pass to begin with:\n{}", b.target, before.join("\n"));
        let mut objs = clean.to_vec();
        (b.apply)(&mut objs);
        assert!(objs != clean, "{}: {} changed nothing", b.target, b.what);
        let errors = cross(&objs, b.target);
        match errors.iter().find(|e| e.contains(b.needle)) {
            Some(caught) => println!("ok   {}: {} -> {caught}", b.target, b.what),
            None => missed.push(format!("{}: {} was not caught (errors: {errors:?})", b.target, b.what)),
        }
    }
    assert!(missed.is_empty(), "{} of {} breaks slipped through:\n{}", missed.len(), breaks.len(), missed.join("\n"));
    assert_eq!(breaks.len(), 42);
}

/// The selector semantics the checks rely on, on their own.
#[test]
fn selectors_match_as_kubernetes_matches_them() {
    let labels = object(&json!({"app": "a", "tier": "web"}));
    assert!(matches(&json!({"app": "a"}), &labels));
    assert!(!matches(&json!({"app": "b"}), &labels));
    assert!(!matches(&json!({}), &labels), "an empty selector selects nothing here");
    assert!(matches(&json!({"matchLabels": {"app": "a"}}), &labels));
    let expr =
        |op: &str, values: Value| json!({"matchExpressions": [{"key": "tier", "operator": op, "values": values}]});
    assert!(matches(&expr("In", json!(["web", "db"])), &labels));
    assert!(!matches(&expr("NotIn", json!(["web"])), &labels));
    assert!(matches(&expr("Exists", json!([])), &labels));
    assert!(!matches(&expr("DoesNotExist", json!([])), &labels));
    let argv = ["serve", "--http-addr", "0.0.0.0:8000", "--grpc-addr=0.0.0.0:8001"];
    assert_eq!(flag(&argv, "--http-addr"), Some("0.0.0.0:8000"));
    assert_eq!(flag(&argv, "--grpc-addr"), Some("0.0.0.0:8001"));
    assert_eq!(flag(&argv, "--admin-addr"), None);
}
