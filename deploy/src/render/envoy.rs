//! Envoy's configuration for a policy: the static bootstrap (listener → Switchyard filter
//! through ECDS → router, internal headers stripped from clients; one cluster per version; stats tags) and the
//! filter's ECDS resource, which Envoy reloads when the file is atomically replaced.
//!
//! The bootstrap depends on a few names from the policy (the routing headers, the clusters,
//! the latency buckets). It records them in `node.metadata.switchyard` as a [`Contract`];
//! a policy applied later through ECDS is checked against it, so that a change Envoy could
//! only pick up with a restart is refused instead of silently breaking routing.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{HostPort, Policy, RenderErrors, collect};
use switchyard_policy::Config;
use switchyard_policy::hash::stable_hash;
use switchyard_policy::identity::{Identity, QUOTA_EXCEEDED, QUOTA_FILL_SECONDS, QUOTA_HEADER, Quota, TENANT_HEADER};

/// The filter's name in the HTTP filter chain and in its ECDS resource.
pub const FILTER_NAME: &str = "switchyard";
const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
/// Labels the filter encodes as `;key=value;` in its metric names; the bootstrap's
/// `stats_tags` turn them into Prometheus labels.
pub const LABELS: [&str; 8] = ["model", "version", "outcome", "reason", "result", "window", "sli", "tenant"];
/// Latency histogram bounds (ms); every model's SLO threshold is added, so that Prometheus
/// can count the requests within it exactly.
const DURATION_BUCKETS_MS: [u64; 14] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000];
/// The filter's latency histogram, as Envoy names Wasm metrics.
const DURATION_HISTOGRAM: &str = "wasmcustom.switchyard_request_duration_ms";
const ROUTE_TIMEOUT: &str = "60s";

/// The latency histogram's bucket bounds (ms) for `cfg`: the defaults plus every SLO threshold.
pub fn duration_buckets(cfg: &Config) -> Vec<u64> {
    let mut b: BTreeSet<u64> = DURATION_BUCKETS_MS.into_iter().collect();
    b.extend(cfg.models.values().filter_map(|m| m.slo.as_ref()).map(|s| s.latency_ms));
    b.into_iter().collect()
}

/// The filter's metric labels and latency buckets, as every Envoy running it needs them (the
/// local bootstrap, the Envoy gateway's, and Istio's gateway through a bootstrap override).
pub fn stats_config(cfg: &Config) -> Value {
    json!({
        "stats_tags": LABELS.iter().map(|k| json!({"tag_name": k, "regex": format!("(;{k}=([^;]*))")})).collect::<Vec<_>>(),
        "histogram_bucket_settings": [{"match": {"prefix": DURATION_HISTOGRAM}, "buckets": duration_buckets(cfg)}],
    })
}

/// What a rendered bootstrap took from its policy, and a later policy must keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    pub upstream_header: String,
    pub shadow_header: String,
    /// Every cluster the bootstrap defines.
    pub clusters: BTreeSet<String>,
    pub latency_buckets_ms: Vec<u64>,
    /// The token check and quotas Envoy runs (its JWT and local rate limit filters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
}

/// Why a bootstrap's contract cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("the bootstrap has no node.metadata.switchyard: it was not rendered by switchyard-policy render envoy")]
    NotOurs,
    #[error("the bootstrap's node.metadata.switchyard is unreadable: {0}")]
    Unreadable(#[from] serde_json::Error),
}

impl Contract {
    /// The contract a bootstrap recorded (`node.metadata.switchyard`).
    pub fn of_bootstrap(bootstrap: &Value) -> Result<Contract, BootstrapError> {
        let v = bootstrap.pointer("/node/metadata/switchyard").ok_or(BootstrapError::NotOurs)?;
        Ok(Contract::deserialize(v)?)
    }

    /// Every way `cfg` disagrees with the running bootstrap.
    pub fn check(&self, cfg: &Config) -> Result<(), RenderErrors> {
        let mut p = Vec::new();
        let restart = "changing it needs a new bootstrap (envoy/run.sh restarts Envoy with one)";
        for (field, now, new) in [
            ("upstream_header", &self.upstream_header, &cfg.upstream_header),
            ("shadow_header", &self.shadow_header, &cfg.shadow_header),
        ] {
            if now != new {
                p.push(format!("{field} is '{new}' but the running bootstrap routes and scrubs '{now}': {restart}"));
            }
        }
        let collector = cfg.collector.as_ref().map(|c| c.cluster.as_str());
        let named = cfg.models.values().flat_map(|m| m.versions.iter().map(|v| v.cluster.as_str()));
        let unknown: BTreeSet<&str> = named.chain(collector).filter(|c| !self.clusters.contains(*c)).collect();
        for c in unknown {
            p.push(format!("cluster '{c}' is not defined in the running bootstrap: {restart}"));
        }
        if cfg.identity != self.identity {
            p.push(format!("identity (tokens, tenants, quotas) differs from the running bootstrap's: {restart}"));
        }
        for (model, m) in &cfg.models {
            if let Some(slo) = &m.slo
                && !self.latency_buckets_ms.contains(&slo.latency_ms)
            {
                p.push(format!(
                    "models.{model}: slo.latency_ms {} is not a bound of the running latency histogram {:?}: {restart}",
                    slo.latency_ms, self.latency_buckets_ms
                ));
            }
        }
        collect((), p)
    }
}

/// Envoy's fault filter aborting (or delaying) `percent` % of the requests routed to
/// `cluster`. The share can be changed while Envoy runs, through its admin runtime
/// ([`Fault::runtime_key`]): a drill arms a fault at 0 % and turns it on at the onset.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub cluster: String,
    pub percent: f64,
    pub action: FaultAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer with this status instead of the upstream.
    Abort(u16),
    /// Hold the request this many milliseconds before it goes upstream.
    Delay(u64),
}

impl FromStr for Fault {
    type Err = String;

    /// `CLUSTER=PERCENT[:STATUS]` (abort, STATUS 503 by default) or `CLUSTER=PERCENT:MSms`
    /// (delay).
    fn from_str(s: &str) -> Result<Fault, String> {
        let bad = || {
            format!(
                "fault '{s}' is not CLUSTER=PERCENT[:STATUS] or CLUSTER=PERCENT:MSms with 0 <= PERCENT <= 100, \
                 200 <= STATUS < 600, 0 < MS <= 600000"
            )
        };
        let (cluster, rest) = s.split_once('=').ok_or_else(bad)?;
        let (percent, what) = rest.split_once(':').unwrap_or((rest, "503"));
        let percent: f64 = percent.parse().map_err(|_| bad())?;
        let action = match what.strip_suffix("ms") {
            Some(ms) => FaultAction::Delay(ms.parse().ok().filter(|ms| (1..=600_000).contains(ms)).ok_or_else(bad)?),
            None => FaultAction::Abort(what.parse().ok().filter(|s| (200..600).contains(s)).ok_or_else(bad)?),
        };
        if cluster.is_empty() || !(0.0..=100.0).contains(&percent) {
            return Err(bad());
        }
        Ok(Fault { cluster: cluster.to_owned(), percent, action })
    }
}

impl Fault {
    /// The admin runtime key that overrides the share, in whole percents (Envoy reads an
    /// integer runtime value as a percentage): `POST /runtime_modify?KEY=100` is 100 %.
    pub fn runtime_key(&self) -> String {
        let kind = match self.action {
            FaultAction::Abort(_) => "abort",
            FaultAction::Delay(_) => "delay",
        };
        format!("switchyard.fault.{}.{kind}_percent", self.cluster)
    }

    fn filter_name(&self) -> String {
        match self.action {
            FaultAction::Abort(_) => format!("fault-{}", self.cluster),
            FaultAction::Delay(_) => format!("delay-{}", self.cluster),
        }
    }
}

/// What the bootstrap needs besides the policy.
#[derive(Debug, Clone)]
pub struct BootstrapOptions {
    pub listen: HostPort,
    pub admin: HostPort,
    /// Absolute path of the ECDS file Envoy watches (see [`filter_config`]).
    pub ecds_path: String,
    /// The directory Envoy watches for the ECDS file being moved in, when it is not the file
    /// itself that changes: a mounted ConfigMap swaps a symlink (`..data`) beside it.
    pub ecds_watched_directory: Option<String>,
    /// An address for every cluster the policy names.
    pub upstreams: BTreeMap<String, HostPort>,
    /// The gRPC address of each of those clusters' backends (all of them, or none): each
    /// becomes the HTTP/2 cluster `<cluster>-grpc` the filter routes gRPC calls to.
    pub grpc_upstreams: BTreeMap<String, HostPort>,
    /// The largest gRPC call Envoy holds while the filter places it (413 beyond).
    pub grpc_max_message_bytes: u64,
    /// The collector's address, needed when the policy has a collector.
    pub collector: Option<HostPort>,
    /// Where requests go that the filter did not route (not a model path, or the filter
    /// failed open); the first model's first version by default.
    pub default_cluster: Option<String>,
    /// Without the filter: plain Envoy, the benchmarks' baseline.
    pub no_filter: bool,
    pub faults: Vec<Fault>,
    /// Mutual TLS to the backends (REST and gRPC clusters) and the collector: Envoy's client
    /// certificate, the CA theirs chain to, and the names they must carry.
    pub upstream_tls: Option<UpstreamTls>,
    /// The JWKS file (absolute) Envoy checks client tokens against, for a policy with
    /// `identity` (`switchyard-policy render certs` writes one).
    pub jwks: Option<String>,
}

/// Envoy's side of mutual TLS to an upstream (`switchyard-policy render certs` writes the files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    pub ca: String,
    pub cert: String,
    pub key: String,
    /// The DNS name the backends' certificates must carry (and the SNI Envoy sends them)...
    pub backend_name: String,
    /// ...and the collector's.
    pub collector_name: String,
}

impl UpstreamTls {
    /// The transport socket of a cluster whose certificate names `server_name`, speaking
    /// `alpn` (`http/1.1`, `h2`).
    fn transport_socket(&self, server_name: &str, alpn: &str) -> Value {
        json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": server_name,
                "common_tls_context": {
                    "alpn_protocols": [alpn],
                    "tls_certificates": [{"certificate_chain": {"filename": self.cert}, "private_key": {"filename": self.key}}],
                    "validation_context": {
                        "trusted_ca": {"filename": self.ca},
                        "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": server_name}}],
                    },
                },
            },
        })
    }
}

/// `c` with `tls` as its transport to `server_name`, when there is one.
fn secured(mut c: Value, tls: Option<&UpstreamTls>, server_name: impl Fn(&UpstreamTls) -> &str, alpn: &str) -> Value {
    if let (Some(tls), Some(o)) = (tls, c.as_object_mut()) {
        o.insert("transport_socket".into(), tls.transport_socket(server_name(tls), alpn));
    }
    c
}

fn backend_name(t: &UpstreamTls) -> &str {
    &t.backend_name
}

fn address(hp: &HostPort) -> Value {
    json!({"socket_address": {"address": hp.host, "port_value": hp.port}})
}

fn path_source(o: &BootstrapOptions) -> Value {
    match &o.ecds_watched_directory {
        Some(dir) => json!({"path": o.ecds_path, "watched_directory": {"path": dir}}),
        None => json!({"path": o.ecds_path}),
    }
}

pub(crate) fn cluster(name: &str, hp: &HostPort) -> Value {
    // A name (a Kubernetes Service) is resolved, and re-resolved as its addresses change.
    let kind = if hp.host.parse::<std::net::IpAddr>().is_ok() { "STATIC" } else { "STRICT_DNS" };
    json!({
        "name": name,
        "type": kind,
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address(hp)}}]}]},
    })
}

/// A cluster whose backends speak HTTP/2 (gRPC) in cleartext.
fn grpc_cluster(name: &str, hp: &HostPort) -> Value {
    let mut c = cluster(name, hp);
    if let Some(o) = c.as_object_mut() {
        let options = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            },
        });
        o.insert("typed_extension_protocol_options".into(), options);
    }
    c
}

const BUFFER_FILTER: &str = "envoy.filters.http.buffer";

/// Holds a gRPC call's headers (and its message) until the whole message has passed the
/// Switchyard filter: Envoy gives a Wasm filter no body while it holds the headers itself,
/// and the router must not see the headers before the filter has read the model from the
/// message and set the routing header. Only the routes a call reaches before it is placed
/// (`unrouted_grpc`) have it; every other route turns it off.
fn buffer_filter(max_request_bytes: u64) -> Value {
    json!({
        "name": BUFFER_FILTER,
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer", "max_request_bytes": max_request_bytes},
    })
}

fn without_buffer(mut route: Value) -> Value {
    if let Some(o) = route.as_object_mut() {
        let off = json!({
            BUFFER_FILTER: {"@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute", "disabled": true},
        });
        o.insert("typed_per_filter_config".into(), off);
    }
    route
}

/// gRPC calls the filter placed: it names the version's gRPC cluster (and the shadow's) in
/// filter state, as their headers have passed it by then; one route per cluster, and per
/// cluster and shadow for mirrored calls.
fn placed_grpc(twins: &BTreeSet<String>) -> Vec<Value> {
    use switchyard_policy::grpc::{CLUSTER_PROPERTY, SERVICE_PREFIX, SHADOW_PROPERTY, filter_state_key};
    let is =
        |property: &str, cluster: &str| json!({"key": filter_state_key(property), "string_match": {"exact": cluster}});
    let mut routes = Vec::new();
    for c in twins {
        for shadow in twins.iter().filter(|s| *s != c) {
            routes.push(json!({
                "match": {"prefix": SERVICE_PREFIX, "filter_state": [is(CLUSTER_PROPERTY, c), is(SHADOW_PROPERTY, shadow)]},
                "route": {"cluster": c, "timeout": ROUTE_TIMEOUT, "request_mirror_policies": [{"cluster": shadow}]},
            }));
        }
    }
    for c in twins {
        routes.push(json!({
            "match": {"prefix": SERVICE_PREFIX, "filter_state": [is(CLUSTER_PROPERTY, c)]},
            "route": {"cluster": c, "timeout": ROUTE_TIMEOUT},
        }));
    }
    routes
}

/// gRPC calls the filter did not route. One naming a model in its message could only be
/// guessed at here, so with the filter failed open it is refused (Envoy answers a gRPC
/// request's 503 as UNAVAILABLE); server-wide calls go to the default version's backend.
fn unrouted_grpc(default_grpc: Option<&str>) -> Vec<Value> {
    let refuse = |method: &str| {
        json!({
            "match": {"path": format!("{}{method}", switchyard_policy::grpc::SERVICE_PREFIX)},
            "direct_response": {"status": 503, "body": {"inline_string": "the call was not placed by the Switchyard filter"}},
        })
    };
    let mut routes: Vec<Value> = ["ModelInfer", "ModelMetadata", "ModelReady"].into_iter().map(refuse).collect();
    let server_wide = match default_grpc {
        Some(c) => {
            json!({"match": {"prefix": switchyard_policy::grpc::SERVICE_PREFIX}, "route": {"cluster": c, "timeout": ROUTE_TIMEOUT}})
        }
        None => json!({
            "match": {"prefix": switchyard_policy::grpc::SERVICE_PREFIX},
            "direct_response": {"status": 503, "body": {"inline_string": "no gRPC upstream is configured"}},
        }),
    };
    routes.push(without_buffer(server_wide));
    routes
}

/// The fault filter sits after the Switchyard filter: it matches the routing header the
/// filter set, and the filter sees its responses like any upstream answer.
fn fault_filter(f: &Fault, upstream_header: &str) -> Value {
    // Millionths, so that fractional percentages are exact.
    let percentage = json!({"numerator": (f.percent * 10_000.0).round() as u64, "denominator": "MILLION"});
    let mut config = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
        "headers": [{"name": upstream_header, "string_match": {"exact": f.cluster}}],
    });
    let (field, value, runtime) = match f.action {
        FaultAction::Abort(status) => {
            ("abort", json!({"http_status": status, "percentage": percentage}), "abort_percent_runtime")
        }
        FaultAction::Delay(ms) => (
            "delay",
            json!({"fixed_delay": format!("{}s", ms as f64 / 1000.0), "percentage": percentage}),
            "delay_percent_runtime",
        ),
    };
    if let Some(c) = config.as_object_mut() {
        c.insert(field.into(), value);
        c.insert(runtime.into(), json!(f.runtime_key()));
    }
    json!({"name": f.filter_name(), "typed_config": config})
}

/// Model requests the filter did not route (it failed open, or the model is not in the
/// policy): each model goes only to its own stable version, and an unknown model is answered
/// 404 by Envoy itself, never sent to some other model's cluster.
fn unrouted_model_paths(cfg: &Config) -> Vec<Value> {
    let mut routes = Vec::new();
    for (model, m) in &cfg.models {
        let Some(stable) = m.versions.first() else { continue };
        let route = json!({"cluster": stable.cluster, "timeout": ROUTE_TIMEOUT});
        routes.push(json!({"match": {"path": format!("/v2/models/{model}")}, "route": route}));
        routes.push(json!({"match": {"prefix": format!("/v2/models/{model}/")}, "route": route}));
    }
    let not_found = |m: Value| {
        json!({
            "match": m,
            "direct_response": {"status": 404, "body": {"inline_string": "{\"error\":\"unknown model\"}"}},
            "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
        })
    };
    routes.push(not_found(json!({"prefix": "/v2/models/"})));
    routes.push(not_found(json!({"path": "/v2/models"})));
    routes
}

/// The static bootstrap; every problem (a cluster without an address, …) is reported.
pub fn bootstrap(cfg: &Config, o: &BootstrapOptions) -> Result<Value, RenderErrors> {
    let mut p = Vec::new();
    let needed: Vec<&str> = cfg.models.values().flat_map(|m| m.versions.iter().map(|v| v.cluster.as_str())).collect();
    let missing: BTreeSet<&str> = needed.iter().copied().filter(|c| !o.upstreams.contains_key(*c)).collect();
    if !missing.is_empty() {
        p.push(format!("no upstream address for cluster(s) {}", missing.into_iter().collect::<Vec<_>>().join(", ")));
    }
    let default = o.default_cluster.clone().or_else(|| needed.first().map(|c| (*c).to_owned())).unwrap_or_default();
    if !o.upstreams.contains_key(&default) {
        p.push(format!("the default cluster '{default}' has no upstream address"));
    }
    let tls = o.upstream_tls.as_ref();
    let mut clusters: Vec<Value> =
        o.upstreams.iter().map(|(n, hp)| secured(cluster(n, hp), tls, backend_name, "http/1.1")).collect();
    let mut defined: BTreeSet<String> = o.upstreams.keys().cloned().collect();
    if !o.grpc_upstreams.is_empty() {
        let no_grpc: BTreeSet<&str> = needed.iter().copied().filter(|c| !o.grpc_upstreams.contains_key(*c)).collect();
        if !no_grpc.is_empty() {
            let list = no_grpc.into_iter().collect::<Vec<_>>().join(", ");
            p.push(format!("no gRPC upstream address for cluster(s) {list} (give one for every cluster, or none)"));
        }
        for (name, hp) in &o.grpc_upstreams {
            let twin = switchyard_policy::grpc::cluster(name);
            if !defined.insert(twin.clone()) {
                p.push(format!("cluster '{twin}' is defined twice: '{name}''s gRPC twin has its name"));
            }
            clusters.push(secured(grpc_cluster(&twin, hp), tls, backend_name, "h2"));
        }
    }
    let default_grpc = o.grpc_upstreams.contains_key(&default).then(|| switchyard_policy::grpc::cluster(&default));
    if let Some(c) = &cfg.collector {
        match &o.collector {
            Some(hp) => {
                clusters.push(secured(cluster(&c.cluster, hp), tls, |t| &t.collector_name, "http/1.1"));
                defined.insert(c.cluster.clone());
            }
            None => {
                p.push(format!("the policy ships samples to cluster '{}': give the collector's address", c.cluster));
            }
        }
    }
    if o.no_filter && !o.faults.is_empty() {
        p.push("faults need the Switchyard filter (they match the routing header it sets)".into());
    }
    let mut names = BTreeSet::new();
    for f in &o.faults {
        if !defined.contains(&f.cluster) {
            p.push(format!("fault for unknown cluster '{}'", f.cluster));
        }
        if !names.insert(f.filter_name()) {
            p.push(format!("two faults of one kind for cluster '{}'", f.cluster));
        }
    }
    let identity = match (&cfg.identity, &o.jwks) {
        (Some(id), Some(jwks)) => Some((id, jwks.as_str())),
        (Some(_), None) => {
            p.push("the policy has identity: give the JWKS Envoy checks tokens against (--jwks FILE)".into());
            None
        }
        (None, _) => None,
    };
    let (upstream, shadow) = (cfg.upstream_header.as_str(), cfg.shadow_header.as_str());
    let present = |name: &str| json!({"name": name, "present_match": true});
    // The filter chose a version and a shadow: route to the version's cluster, mirror to the
    // shadow's.
    let mirrored = json!({
        "match": {"prefix": "/", "headers": [present(upstream), present(shadow)]},
        "route": {
            "cluster_header": upstream,
            "timeout": ROUTE_TIMEOUT,
            "request_mirror_policies": [{"cluster_header": shadow}],
        },
    });
    // The filter chose a version only. A mirror policy costs the router about 12 k instructions
    // on every request of its route, mirrored or not (callgrind: a fifth of what the filter
    // added), so only the route above has one.
    let chosen = json!({
        "match": {"prefix": "/", "headers": [present(upstream)]},
        "route": {"cluster_header": upstream, "timeout": ROUTE_TIMEOUT},
    });
    // Not a model path (health, server metadata): the default cluster.
    let fallback = json!({"match": {"prefix": "/"}, "route": {"cluster": default, "timeout": ROUTE_TIMEOUT}});
    let router = json!({"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}});
    let quota = identity.and_then(|(id, _)| quota_filter(id));
    let (routes, mut filters) = if o.no_filter {
        (vec![fallback], quota.into_iter().chain([router]).collect())
    } else {
        let mut filters = vec![json!({
            "name": FILTER_NAME,
            "config_discovery": {
                "config_source": {"path_config_source": path_source(o), "resource_api_version": "V3"},
                "type_urls": [WASM_TYPE],
            },
        })];
        let grpc = !o.grpc_upstreams.is_empty();
        if grpc {
            filters.push(buffer_filter(o.grpc_max_message_bytes));
        }
        // After the filter (and the buffer that holds a gRPC call until the filter has placed
        // it): the filter sees the quota's 429 and counts it for the tenant, as `quota`.
        filters.extend(quota);
        filters.extend(o.faults.iter().map(|f| fault_filter(f, upstream)));
        filters.push(router);
        let mut routes = vec![mirrored, chosen];
        if grpc {
            let twins: BTreeSet<String> = needed.iter().map(|c| switchyard_policy::grpc::cluster(c)).collect();
            routes.extend(placed_grpc(&twins));
        }
        routes.extend(unrouted_model_paths(cfg));
        routes.push(fallback);
        if grpc {
            // The buffer holds only gRPC calls not yet placed: the refusal routes they match
            // until the filter has named their cluster. Every other route turns it off.
            let fallback = routes.pop();
            routes = routes.into_iter().map(without_buffer).collect();
            routes.extend(unrouted_grpc(default_grpc.as_deref()));
            routes.extend(fallback.map(without_buffer));
        }
        (routes, filters)
    };
    // First: a request without a valid token is answered 401 before anything else runs.
    if let Some((id, jwks)) = identity {
        filters.insert(0, jwt_filter(id, jwks));
    }
    let mut internal = vec![upstream, shadow];
    if identity.is_some() {
        internal.push(TENANT_HEADER);
    }
    let buckets = duration_buckets(cfg);
    let contract = Contract {
        upstream_header: upstream.to_owned(),
        shadow_header: shadow.to_owned(),
        clusters: defined,
        latency_buckets_ms: buckets,
        identity: cfg.identity.clone(),
    };
    let mut doc = json!({
        "node": {"id": "switchyard-local", "cluster": "switchyard", "metadata": {"switchyard": contract}},
        "admin": {"address": address(&o.admin)},
        // Histograms are published at each flush; 1 s keeps dashboards and tests current.
        "stats_flush_interval": "1s",
        "stats_config": stats_config(cfg),
        "static_resources": {
            "listeners": [{
                "name": "ingress",
                "address": address(&o.listen),
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "ingress",
                        // Paths are matched, decided on and forwarded in one canonical form:
                        // dot segments resolved, slashes merged, and an escaped slash (%2F,
                        // %5C), which a backend could decode into another path, refused (400).
                        "normalize_path": true,
                        "merge_slashes": true,
                        "path_with_escaped_slashes_action": "REJECT_REQUEST",
                        // The client is whoever connected, whatever x-forwarded-for it sends.
                        // No address is internal: internal_address_config is left unset, which
                        // in Envoy 1.40 means none (an explicit empty list would mean loopback
                        // and RFC 1918, checked by e2e/tests/hostile.rs). So every client is
                        // external, and the x-envoy-* request controls it sends (retries,
                        // upstream timeouts) are dropped before they are honoured.
                        "use_remote_address": true,
                        // A client that trickles its headers is cut off (slowloris).
                        "request_headers_timeout": "10s",
                        "route_config": {
                            "name": "models",
                            // Clients must never choose a route: Envoy removes these from every
                            // external request (all of them, with use_remote_address) before any
                            // filter runs or a route is picked, so this holds with the filter
                            // failed open too. (A header_mutation filter in front is not enough:
                            // removing a header there does not re-pick the route.)
                            // With identity, the tenant header too: Envoy's JWT filter sets
                            // it from the token, after this.
                            "internal_only_headers": internal,
                            "virtual_hosts": [{"name": "models", "domains": ["*"], "routes": routes}],
                        },
                        "http_filters": filters,
                    },
                }]}],
            }],
            "clusters": clusters,
        },
    });
    if !o.faults.is_empty()
        && let Some(d) = doc.as_object_mut()
    {
        // An admin layer, so that `POST /runtime_modify` turns a fault on and off.
        d.insert("layered_runtime".into(), json!({"layers": [{"name": "admin", "admin_layer": {}}]}));
    }
    collect(doc, p)
}

/// The provider Envoy's JWT filter names the policy's token check by.
const JWT_PROVIDER: &str = "switchyard";
/// Paths served without a token: the orchestrators' health checks (REST and gRPC).
fn public_paths() -> [String; 4] {
    let grpc = switchyard_policy::grpc::SERVICE_PREFIX;
    [
        switchyard_contract::paths::HEALTH_LIVE.to_owned(),
        switchyard_contract::paths::HEALTH_READY.to_owned(),
        format!("{grpc}ServerLive"),
        format!("{grpc}ServerReady"),
    ]
}
/// Verified tokens Envoy keeps per worker, so a client's next request skips the signature check.
const JWT_CACHE_SIZE: u32 = 10_000;
/// Local rate limit buckets kept for tenants the policy does not name (least recently used
/// go first; one that comes back starts with a full bucket).
const MAX_DYNAMIC_TENANTS: u32 = 10_000;

/// Envoy's JWT filter: every request but the public paths needs a token `jwks` verifies, from
/// the policy's issuer (and audience); the tenant claim becomes the tenant header, and the
/// token is not forwarded (backends and samples never see it).
fn jwt_filter(id: &Identity, jwks: &str) -> Value {
    let mut provider = json!({
        "issuer": id.issuer,
        "local_jwks": {"filename": jwks},
        // The header only: Envoy would also take `?access_token=`, and not strip it from the
        // request it forwards (`forward: false` removes header tokens only).
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "forward": false,
        "claim_to_headers": [{"header_name": TENANT_HEADER, "claim_name": id.tenant_claim}],
        "clock_skew_seconds": 60,
        // Verified tokens are kept (expiry still checked on every use): an ES256 signature
        // check costs ~100 µs of Envoy CPU, most of a request's (docs/benchmarks.md, tls).
        "jwt_cache_config": {"jwt_cache_size": JWT_CACHE_SIZE},
    });
    if !id.audiences.is_empty() {
        provider["audiences"] = json!(id.audiences);
    }
    let mut rules: Vec<Value> = public_paths().iter().map(|p| json!({"match": {"path": p}})).collect();
    rules.push(json!({"match": {"prefix": "/"}, "requires": {"provider_name": JWT_PROVIDER}}));
    json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {JWT_PROVIDER: provider},
            "rules": rules,
        },
    })
}

fn token_bucket(q: Quota) -> Value {
    json!({"max_tokens": q.burst(), "tokens_per_fill": q.requests_per_second, "fill_interval": format!("{QUOTA_FILL_SECONDS}s")})
}

/// Envoy's local rate limit, one token bucket per tenant: a named tenant's own quota, every
/// other tenant its own bucket of the default quota. `None` when the policy sets no quota.
fn quota_filter(id: &Identity) -> Option<Value> {
    let mut descriptors: Vec<Value> = id
        .tenants
        .iter()
        .filter_map(|(name, t)| Some((name, t.quota?)))
        .map(|(name, q)| json!({"entries": [{"key": "tenant", "value": name}], "token_bucket": token_bucket(q)}))
        .collect();
    if let Some(q) = id.default_quota {
        // No value: a bucket per distinct tenant (Envoy's dynamic descriptors).
        descriptors.push(json!({"entries": [{"key": "tenant"}], "token_bucket": token_bucket(q)}));
    }
    if descriptors.is_empty() {
        return None;
    }
    let all = json!({"default_value": {"numerator": 100, "denominator": "HUNDRED"}});
    let header =
        |k: &str, v: &str| json!({"append_action": "OVERWRITE_IF_EXISTS_OR_ADD", "header": {"key": k, "value": v}});
    Some(json!({
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "tenant_quota",
            // Requests that name no tenant (the public health paths) are not limited here.
            "token_bucket": {"max_tokens": u32::MAX, "tokens_per_fill": u32::MAX, "fill_interval": "1s"},
            "filter_enabled": all,
            "filter_enforced": all,
            "descriptors": descriptors,
            "rate_limits": [{"actions": [{"request_headers": {"header_name": TENANT_HEADER, "descriptor_key": "tenant"}}]}],
            "max_dynamic_descriptors": MAX_DYNAMIC_TENANTS,
            "response_headers_to_add": [
                header("retry-after", &QUOTA_FILL_SECONDS.to_string()),
                header(QUOTA_HEADER, QUOTA_EXCEEDED),
            ],
            "rate_limited_as_resource_exhausted": true,
        },
    }))
}

/// The filter's ECDS resource: the policy's text as the plugin configuration (the filter
/// parses it with the same [`Config::parse`]), the `.wasm` at the absolute path `wasm_path`.
/// `version_info` changes with either, which is what makes Envoy reload.
pub fn filter_config(policy: &Policy, wasm_path: &str) -> Value {
    let policy_text = policy.text();
    let version = stable_hash(format!("{wasm_path}\n{policy_text}").as_bytes());
    json!({
        "version_info": format!("{version:016x}"),
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": FILTER_NAME,
            "typed_config": {
                "@type": WASM_TYPE,
                "config": {
                    "name": FILTER_NAME,
                    "root_id": FILTER_NAME,
                    "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": policy_text},
                    // A crashed VM must not take traffic down: requests then bypass the filter
                    // and take the fallback route (the stable version).
                    "failure_policy": "FAIL_OPEN",
                    "vm_config": {"vm_id": FILTER_NAME, "runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": wasm_path}}},
                },
            },
        }],
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const POLICY: &str = r#"{
        "models": {
            "mlp": {"versions": [{"name": "v1", "cluster": "mlp-v1", "weight": 90}, {"name": "v2", "cluster": "mlp-v2", "weight": 10}],
                    "slo": {"availability": 0.999, "latency_ms": 120}}
        },
        "collector": {"cluster": "collector"}
    }"#;

    fn hp(s: &str) -> HostPort {
        s.parse().unwrap()
    }

    fn options() -> BootstrapOptions {
        BootstrapOptions {
            listen: hp("127.0.0.1:10000"),
            admin: hp("127.0.0.1:9901"),
            ecds_path: "/tmp/filter.yaml".into(),
            ecds_watched_directory: None,
            upstreams: [("mlp-v1".to_owned(), hp("127.0.0.1:8101")), ("mlp-v2".to_owned(), hp("127.0.0.1:8102"))]
                .into(),
            grpc_upstreams: [("mlp-v1".to_owned(), hp("127.0.0.1:8111")), ("mlp-v2".to_owned(), hp("127.0.0.1:8112"))]
                .into(),
            grpc_max_message_bytes: 1 << 20,
            collector: Some(hp("127.0.0.1:9411")),
            default_cluster: None,
            no_filter: false,
            faults: vec!["mlp-v2=12.5:500".parse().unwrap()],
            upstream_tls: None,
            jwks: None,
        }
    }

    #[test]
    fn with_upstream_tls_every_cluster_presents_envoys_certificate_and_checks_its_upstreams_name() {
        let mut o = options();
        o.upstream_tls = Some(UpstreamTls {
            ca: "/c/ca.pem".into(),
            cert: "/c/envoy.pem".into(),
            key: "/c/envoy-key.pem".into(),
            backend_name: "backend".into(),
            collector_name: "collector".into(),
        });
        let b = bootstrap(&Config::parse(POLICY.as_bytes()).unwrap(), &o).unwrap();
        let clusters = b["static_resources"]["clusters"].as_array().unwrap();
        for c in clusters {
            let name = if c["name"] == "collector" { "collector" } else { "backend" };
            let ctx = &c["transport_socket"]["typed_config"];
            assert_eq!(ctx["sni"], name, "{c}");
            let common = &ctx["common_tls_context"];
            assert_eq!(common["tls_certificates"][0]["private_key"]["filename"], "/c/envoy-key.pem");
            assert_eq!(common["validation_context"]["match_typed_subject_alt_names"][0]["matcher"]["exact"], name);
            let alpn = if c["name"].as_str().unwrap().ends_with("-grpc") { "h2" } else { "http/1.1" };
            assert_eq!(common["alpn_protocols"][0], alpn, "{c}");
        }
        assert_eq!(clusters.iter().filter(|c| c.get("transport_socket").is_some()).count(), 5);
    }

    #[test]
    fn bootstrap_routes_on_the_policy_headers_and_records_its_contract() {
        let cfg = Config::parse(POLICY.as_bytes()).unwrap();
        let b = bootstrap(&cfg, &options()).unwrap();
        let hcm = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
        let routes = &hcm["route_config"]["virtual_hosts"][0]["routes"];
        // Mirrored only when the filter set the shadow header; the router pays for a mirror
        // policy on every request of its route.
        let headers =
            |r: &Value| r["match"]["headers"].as_array().unwrap().iter().map(|h| h["name"].clone()).collect::<Vec<_>>();
        assert_eq!(headers(&routes[0]), [json!("x-switchyard-upstream"), json!("x-switchyard-shadow")]);
        assert_eq!(routes[0]["route"]["request_mirror_policies"][0]["cluster_header"], "x-switchyard-shadow");
        assert_eq!(headers(&routes[1]), [json!("x-switchyard-upstream")]);
        assert_eq!(routes[1]["route"].get("request_mirror_policies"), None);
        for r in [&routes[0], &routes[1]] {
            assert_eq!(r["route"]["cluster_header"], "x-switchyard-upstream");
        }
        // Placed gRPC calls: by the filter state the filter set, mirrored pairs first.
        assert_eq!(routes[2]["route"]["request_mirror_policies"][0]["cluster"], "mlp-v2-grpc");
        assert_eq!(routes[2]["match"]["filter_state"][0]["key"], "wasm.switchyard_cluster");
        assert_eq!(routes[4]["route"]["cluster"], "mlp-v1-grpc");
        assert_eq!(routes[4]["match"]["filter_state"].as_array().unwrap().len(), 1);
        assert_eq!(routes[6]["route"]["cluster"], "mlp-v1");
        let names: Vec<&str> =
            hcm["http_filters"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["switchyard", "envoy.filters.http.buffer", "fault-mlp-v2", "envoy.filters.http.router"]);
        assert_eq!(hcm["http_filters"][2]["typed_config"]["abort"]["percentage"]["numerator"], 125_000);
        assert_eq!(
            hcm["route_config"]["internal_only_headers"],
            json!(["x-switchyard-upstream", "x-switchyard-shadow"])
        );
        assert_eq!((&hcm["normalize_path"], &hcm["use_remote_address"]), (&json!(true), &json!(true)));
        let routes = routes.as_array().unwrap();
        assert!(routes.iter().any(|r| r["match"]["prefix"] == "/v2/models/" && r["direct_response"]["status"] == 404));
        assert_eq!(routes.last().unwrap()["route"]["cluster"], "mlp-v1");
        let buckets = &b["stats_config"]["histogram_bucket_settings"][0]["buckets"];
        assert!(buckets.as_array().unwrap().contains(&json!(120)));
        let contract = Contract::of_bootstrap(&b).unwrap();
        assert_eq!(
            contract.clusters.iter().map(String::as_str).collect::<Vec<_>>(),
            ["collector", "mlp-v1", "mlp-v1-grpc", "mlp-v2", "mlp-v2-grpc"]
        );
        assert!(contract.check(&cfg).is_ok());
        // gRPC: an HTTP/2 twin of each version's cluster; calls the filter did not place are
        // refused, server-wide ones go to the default version.
        let clusters = b["static_resources"]["clusters"].as_array().unwrap();
        let twin = clusters.iter().find(|c| c["name"] == "mlp-v2-grpc").unwrap();
        let http = &twin["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
        assert_eq!(http["explicit_http_config"], json!({"http2_protocol_options": {}}));
        assert_eq!(
            twin["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["port_value"],
            8112
        );
        let infer = routes.iter().find(|r| r["match"]["path"] == "/inference.GRPCInferenceService/ModelInfer").unwrap();
        assert_eq!(infer["direct_response"]["status"], 503);
        // Only a call not yet placed is held for the filter; every other route turns it off.
        let held: Vec<_> = routes
            .iter()
            .filter(|r| r.get("typed_per_filter_config").is_none())
            .map(|r| r["match"]["path"].clone())
            .collect();
        assert_eq!(held.len(), 3, "{held:?}");
        assert_eq!(hcm["http_filters"][1]["typed_config"]["max_request_bytes"], 1 << 20);
        let server = routes.iter().find(|r| r["match"]["prefix"] == "/inference.GRPCInferenceService/").unwrap();
        assert_eq!(server["route"]["cluster"], "mlp-v1-grpc");
        // All or none.
        let mut o = options();
        o.grpc_upstreams.remove("mlp-v2");
        let e = bootstrap(&cfg, &o).unwrap_err().to_string();
        assert!(e.contains("no gRPC upstream address for cluster(s) mlp-v2"), "{e}");
    }

    #[test]
    fn bootstrap_reports_every_missing_address() {
        let cfg = Config::parse(POLICY.as_bytes()).unwrap();
        let mut o = options();
        o.upstreams.clear();
        o.collector = None;
        o.faults.push("nowhere=5".parse().unwrap());
        let e = bootstrap(&cfg, &o).unwrap_err().to_string();
        for needle in [
            "cluster(s) mlp-v1, mlp-v2",
            "default cluster 'mlp-v1'",
            "cluster 'collector'",
            "unknown cluster 'nowhere'",
        ] {
            assert!(e.contains(needle), "{needle:?} missing in {e}");
        }
    }

    #[test]
    fn a_policy_the_bootstrap_cannot_serve_is_refused() {
        let cfg = Config::parse(POLICY.as_bytes()).unwrap();
        let contract = Contract::of_bootstrap(&bootstrap(&cfg, &options()).unwrap()).unwrap();
        let renamed = POLICY
            .replacen("\"models\"", "\"upstream_header\": \"x-route\", \"models\"", 1)
            .replace("mlp-v2", "mlp-v3")
            .replace("120", "130");
        let e = contract.check(&Config::parse(renamed.as_bytes()).unwrap()).unwrap_err().to_string();
        for needle in ["upstream_header is 'x-route'", "cluster 'mlp-v3' is not defined", "slo.latency_ms 130"] {
            assert!(e.contains(needle), "{needle:?} missing in {e}");
        }
        assert!(Contract::of_bootstrap(&json!({"node": {}})).is_err());
    }

    #[test]
    fn faults_parse_strictly() {
        assert_eq!(
            "c=5".parse::<Fault>().unwrap(),
            Fault { cluster: "c".into(), percent: 5.0, action: FaultAction::Abort(503) }
        );
        assert_eq!("c=0:500".parse::<Fault>().unwrap().action, FaultAction::Abort(500));
        assert_eq!("c=100:250ms".parse::<Fault>().unwrap().action, FaultAction::Delay(250));
        assert_eq!("c=0:250ms".parse::<Fault>().unwrap().runtime_key(), "switchyard.fault.c.delay_percent");
        for bad in ["c", "=5", "c=-1", "c=101", "c=5:99", "c=x", "c=5:abc", "c=5:0ms", "c=5:xms"] {
            assert!(bad.parse::<Fault>().is_err(), "{bad}");
        }
    }

    #[test]
    fn filter_config_version_follows_policy_and_wasm() {
        let policy = Policy::parse(POLICY.to_owned()).unwrap();
        let a = filter_config(&policy, "/a.wasm");
        assert_eq!(a["resources"][0]["typed_config"]["config"]["configuration"]["value"], POLICY);
        assert_ne!(a["version_info"], filter_config(&policy, "/b.wasm")["version_info"]);
        assert_eq!(a["version_info"], filter_config(&policy, "/a.wasm")["version_info"]);
        let other = Policy::parse(POLICY.replace("90", "80")).unwrap();
        assert_ne!(a["version_info"], filter_config(&other, "/a.wasm")["version_info"]);
    }
}
