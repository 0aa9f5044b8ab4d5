//! One HTTP request through the filter: routing on the way in; on the way out the version
//! header, the request's accounting and, when sampled, its sample.

use proxy_wasm::types::Action;
use switchyard_policy::grpc::{self, Method, Prefix, PrefixError};
use switchyard_policy::identity::{QUOTA_EXCEEDED, QUOTA_HEADER, TENANT_HEADER};
use switchyard_policy::paths;
use switchyard_policy::sampling::{Capture, Meta, SampleResult};
use switchyard_policy::slo::{DEADLINE_BY_CLIENT, DEADLINE_HEADER};

use crate::host::{self, Dir, Host};
use crate::worker::{Compared, ModelVersion, Route, Routing, Shared, Worker};

struct Routed {
    at: ModelVersion,
    start_ms: u64,
    /// `:status` as the response headers passed (local replies included).
    status: Option<u16>,
    /// A 504 the backend marked as the client's own deadline passing.
    client_deadline: bool,
    /// A 429 the gateway's quota answered.
    quota_exceeded: bool,
    /// The tenant's label index and name, with `identity` in the policy.
    tenant: Option<(usize, String)>,
    /// A sampled request's capture, and its `x-request-id`.
    capture: Option<(Capture, Option<String>)>,
    /// A compared request's capture (its own cap), with the shadow version and the path sent.
    compare: Option<(usize, Capture, String)>,
    /// A gRPC call: its outcome is its `grpc-status`, when one came.
    grpc: Option<Option<u32>>,
}

pub struct Stream {
    worker: Option<Shared>,
    routed: Option<Routed>,
    /// A gRPC call still to be placed from the start of its message, where its model is,
    /// with its request headers as they passed (Envoy has no request headers to give a Wasm
    /// filter in its body callbacks, and asking for them there fails).
    placing: Option<Vec<(String, String)>>,
}

impl Stream {
    pub fn new(worker: Option<Shared>) -> Self {
        Stream { worker, routed: None, placing: None }
    }

    /// Routes the request; `Pause` only when the filter answered it itself (400).
    ///
    /// Each header is its own host call, so only those the decision needs are read (a header
    /// that is absent is the cheapest call there is); all of them only for a sampled request.
    pub fn request_headers(&mut self, h: &mut impl Host, end_of_stream: bool) -> Action {
        let Some(shared) = self.worker.clone() else { return Action::Continue };
        let Ok(mut w) = shared.try_borrow_mut() else { return Action::Continue };
        let path = h.header(Dir::Request, ":path");
        // A gRPC call names its model in its message. Envoy gives a Wasm filter no body before
        // it lets the headers go, so the headers go on, to the buffer filter rendered after
        // this one, which holds them (and the message) until the body has passed here and
        // the routing header is set (see `switchyard_deploy::render::envoy`).
        if let Some(method) = path.as_deref().and_then(grpc::method) {
            let [upstream_header, shadow_header] = w.internal_headers();
            drop_client_copies(h, &[upstream_header, shadow_header]);
            if method == Method::Unscoped {
                w.count_grpc_unrouted(false);
                return Action::Continue;
            }
            if end_of_stream {
                w.count_grpc_unrouted(true);
                let e = PrefixError::Truncated;
                h.send_grpc_reply(e.grpc_status(), e.message());
                return Action::Pause;
            }
            self.placing = Some(h.headers(Dir::Request));
            return Action::Continue;
        }
        // A model request needs a tenant (with `identity`): refused before any routing decision
        // is made or counted.
        let tenant = match path.as_deref().filter(|p| paths::is_model_scoped(p)).map(|_| tenant_of(h, &w, None)) {
            None | Some(Ok(None)) => None,
            Some(Ok(t)) => t,
            Some(Err(e)) => {
                let [upstream_header, shadow_header] = w.internal_headers();
                drop_client_copies(h, &[upstream_header, shadow_header]);
                w.count_no_tenant();
                let body = serde_json::json!({ "error": e.message() }).to_string();
                h.send_local_reply(403, &[("content-type", "application/json")], body.as_bytes());
                return Action::Pause;
            }
        };
        let routing = w.route(|name| if name == ":path" { path.clone() } else { h.header(Dir::Request, name) });
        // Client copies of the internal headers would let a client pick a route: those the
        // filter does not set below are dropped (Envoy's `internal_only_headers` removes them
        // first in the bootstrap rendered here; this holds wherever the filter runs).
        let [upstream_header, shadow_header] = w.internal_headers();
        let route = match routing {
            Routing::Routed(route) => route,
            Routing::Unrouted => {
                drop_client_copies(h, &[upstream_header, shadow_header]);
                return Action::Continue;
            }
            Routing::Refused(e) => {
                drop_client_copies(h, &[upstream_header, shadow_header]);
                // Passing it on would let the backend decode the names its own way, past every
                // decision made here.
                let body = serde_json::json!({ "error": e.message() }).to_string();
                h.send_local_reply(400, &[("content-type", "application/json")], body.as_bytes());
                return Action::Pause;
            }
        };
        self.apply(h, &w, &route, None, tenant);
        Action::Continue
    }

    /// Sets the routing headers (or, for gRPC, properties) of a routed request and starts its
    /// captures; `headers`: the request's headers when they were read already.
    fn apply(
        &mut self,
        h: &mut impl Host,
        w: &Worker,
        route: &Route,
        headers: Option<Vec<(String, String)>>,
        tenant: Option<(usize, String)>,
    ) {
        let Some(set) = w.route_headers(route) else { return };
        // (A gRPC call's copies went when its headers passed.)
        if set.shadow.1.is_none() && !route.grpc {
            drop_client_copies(h, &[set.shadow.0]);
        }
        // The headers as Envoy handed them on, before the filter's own are set.
        let wanted = route.sample_cap.is_some() || route.compare.is_some();
        let headers = wanted.then(|| headers.unwrap_or_else(|| h.headers(Dir::Request)));
        let find = |name: &str| headers.iter().flatten().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let request_id = find("x-request-id");
        let compare = route.compare.map(|(shadow, cap)| {
            let path = route.path.clone().or_else(|| find(":path")).unwrap_or_default();
            (shadow, Capture::new(cap, headers.clone().unwrap_or_default()), path)
        });
        let capture = route.sample_cap.map(|cap| (Capture::new(cap, headers.unwrap_or_default()), request_id));
        if route.grpc {
            // Past the headers: the routes match these instead (see `policy::grpc`).
            h.set_property(grpc::CLUSTER_PROPERTY, set.upstream.1.as_bytes());
            if let Some(cluster) = &set.shadow.1 {
                h.set_property(grpc::SHADOW_PROPERTY, cluster.as_bytes());
            }
        } else {
            let (name, cluster) = set.upstream;
            h.set_header(Dir::Request, name, Some(&cluster));
            if let Some(path) = &route.path {
                h.set_header(Dir::Request, ":path", Some(path));
            }
            if let (name, Some(cluster)) = set.shadow {
                h.set_header(Dir::Request, name, Some(&cluster));
            }
        }
        let grpc = route.grpc.then_some(None);
        self.routed = Some(Routed {
            at: route.at,
            start_ms: h.now_ms(),
            status: None,
            client_deadline: false,
            quota_exceeded: false,
            tenant,
            capture,
            compare,
            grpc,
        });
    }

    /// A request body chunk of a request whose buffered body is now `size` bytes.
    pub fn request_body(&mut self, h: &mut impl Host, size: usize, end_of_stream: bool) -> Action {
        if let Some(headers) = self.placing.take() {
            return self.place_grpc(h, headers, size, end_of_stream);
        }
        self.body(h, Dir::Request, size);
        Action::Continue
    }

    /// Reads the model from the start of a gRPC call's message and routes the call; until
    /// enough of the message has arrived, Envoy buffers it (at most `grpc::MAX_PREFIX` bytes
    /// are ever read). A call that cannot be placed is answered here, never passed on.
    fn place_grpc(
        &mut self,
        h: &mut impl Host,
        headers: Vec<(String, String)>,
        size: usize,
        end_of_stream: bool,
    ) -> Action {
        let Some(shared) = self.worker.clone() else { return Action::Continue };
        let Ok(mut w) = shared.try_borrow_mut() else { return Action::Continue };
        let head = h.body(Dir::Request, size.min(grpc::MAX_PREFIX));
        let target = match grpc::parse_prefix(&head, end_of_stream || size >= grpc::MAX_PREFIX) {
            Ok(Prefix::NeedMore) => {
                drop(w);
                self.placing = Some(headers);
                return Action::Pause;
            }
            Ok(Prefix::Target(t)) => t,
            Err(e) => {
                w.count_grpc_unrouted(true);
                h.send_grpc_reply(e.grpc_status(), e.message());
                return Action::Pause;
            }
        };
        // A model call needs a tenant (with `identity`): refused before any routing decision.
        let tenant = match tenant_of(h, &w, Some(&headers)) {
            Ok(t) => t,
            Err(e) => {
                w.count_no_tenant();
                h.send_grpc_reply(grpc::GRPC_PERMISSION_DENIED, &e.message());
                return Action::Pause;
            }
        };
        let find = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let routing = w.route_grpc(target.model, target.version, find);
        let route = match routing {
            Routing::Routed(route) => route,
            // Envoy's routes could only guess at a model they cannot read: refused here.
            Routing::Unrouted | Routing::Refused(_) => {
                h.send_grpc_reply(grpc::GRPC_NOT_FOUND, "unknown model");
                return Action::Pause;
            }
        };
        // As a REST path loses its `/versions/{v}`: the backend serves what the filter chose.
        if let Some(head) = grpc::without_version(&head, &target)
            && !h.replace_request_body_prefix(target.prefix_len, &head)
        {
            h.send_grpc_reply(grpc::GRPC_INTERNAL, "the proxy could not rewrite the message");
            return Action::Pause;
        }
        self.apply(h, &w, &route, Some(headers), tenant);
        drop(w);
        // The route was picked when the headers passed (a refusal: the call was not placed
        // yet); without a new pick the cluster set now would go unread.
        if !h.clear_route_cache() {
            h.send_grpc_reply(grpc::GRPC_INTERNAL, "the proxy could not route the call");
            return Action::Pause;
        }
        self.body(h, Dir::Request, size);
        Action::Continue
    }

    pub fn body(&mut self, h: &mut impl Host, dir: Dir, size: usize) {
        let Some(r) = self.routed.as_mut() else { return };
        let sampled = r.capture.as_mut().map(|(c, _)| c);
        let compared = r.compare.as_mut().map(|(_, c, _)| c);
        for c in [sampled, compared].into_iter().flatten() {
            let side = match dir {
                Dir::Request => &mut c.request,
                Dir::Response => &mut c.response,
            };
            side.take(size, |n| h.body(dir, n));
        }
    }

    pub fn response_headers(&mut self, h: &mut impl Host) {
        let Some(r) = self.routed.as_mut() else { return };
        r.status = h.header(Dir::Response, ":status").and_then(|s| s.parse().ok());
        // Only a 504 can be the client's deadline: other responses pay no host call for it.
        if r.status == Some(504) {
            r.client_deadline =
                h.header(Dir::Response, DEADLINE_HEADER).is_some_and(|v| v.trim() == DEADLINE_BY_CLIENT);
        }
        // A trailers-only gRPC response (an error, or Envoy's own reply) has its status here.
        if let Some(g) = r.grpc.as_mut() {
            *g = grpc_status(h, Dir::Response);
            if *g == Some(grpc::GRPC_DEADLINE_EXCEEDED) {
                r.client_deadline =
                    h.header(Dir::Response, DEADLINE_HEADER).is_some_and(|v| v.trim() == DEADLINE_BY_CLIENT);
            }
        }
        // Only a 429 (RESOURCE_EXHAUSTED) can be the gateway's quota: no host call otherwise.
        if r.tenant.is_some() && (r.status == Some(429) || r.grpc == Some(Some(grpc::GRPC_RESOURCE_EXHAUSTED))) {
            r.quota_exceeded = h.header(Dir::Response, QUOTA_HEADER).is_some_and(|v| v.trim() == QUOTA_EXCEEDED);
        }
        if r.capture.is_some() || r.compare.is_some() {
            let headers = h.headers(Dir::Response);
            if let Some((_, c, _)) = r.compare.as_mut() {
                c.response.set_headers(headers.clone());
            }
            if let Some((c, _)) = r.capture.as_mut() {
                c.response.set_headers(headers);
            }
        }
        // No version answered a quota refusal: none is named.
        if r.quota_exceeded {
            return;
        }
        let Some(w) = self.worker.as_ref().and_then(|w| w.try_borrow().ok()) else { return };
        if let Some((name, version)) = w.version_header(r.at) {
            h.set_header(Dir::Response, name, Some(version));
        }
    }

    /// A gRPC call's trailers: its status, and whether a DEADLINE_EXCEEDED was the client's.
    pub fn response_trailers(&mut self, h: &mut impl Host) {
        let Some(r) = self.routed.as_mut() else { return };
        let Some(g) = r.grpc.as_mut() else { return };
        *g = h.response_trailer(grpc::STATUS_HEADER).and_then(|v| v.trim().parse().ok());
        if *g == Some(grpc::GRPC_DEADLINE_EXCEEDED) {
            r.client_deadline = h.response_trailer(DEADLINE_HEADER).is_some_and(|v| v.trim() == DEADLINE_BY_CLIENT);
        }
    }

    /// Accounts the finished request and queues its sample, if it has one.
    pub fn finish(&mut self, h: &mut impl Host) {
        let (Some(shared), Some(r)) = (&self.worker, self.routed.as_mut()) else { return };
        let Ok(mut w) = shared.try_borrow_mut() else { return };
        // A gRPC call counts as the HTTP status its grpc-status stands for; an HTTP 200 that
        // ended without one was cut off.
        let status = match (r.grpc, r.status) {
            (Some(Some(g)), Some(200)) => Some(grpc::http_status(g)),
            (Some(None), Some(200)) => None,
            _ => r.status,
        };
        let outcome = host::outcome(h, status, r.client_deadline, r.quota_exceeded);
        let latency_ms = h.now_ms().saturating_sub(r.start_ms);
        w.record_finished(h, r.at, r.tenant.as_ref().map(|(i, _)| *i), outcome, latency_ms);
        if r.quota_exceeded {
            // No version saw it: nothing to compare (a replay would put the refused load on the
            // shadow) and no sample of a model's answer.
            if let Some((shadow, ..)) = r.compare.take() {
                w.skip_compare(r.at, shadow);
            }
            if r.capture.take().is_some() {
                w.count_sample(r.at, SampleResult::Dropped);
            }
            return;
        }
        if r.capture.is_none() && r.compare.is_none() {
            return;
        }
        let start_unix_ms = host::request_start_ms(h).unwrap_or(r.start_ms);
        if let Some((shadow, capture, path)) = r.compare.take() {
            let request_id = capture.request.header("x-request-id").unwrap_or_default().to_owned();
            let c = Compared {
                shadow,
                path,
                request_id,
                start_unix_ms,
                capture,
                status: r.status,
                duration_ms: latency_ms,
            };
            w.queue_compare(r.at, c);
        }
        let Some((capture, request_id)) = r.capture.take() else { return };
        let Some((model, version, s)) = w.sampling(r.at) else { return };
        let meta = Meta {
            model,
            version,
            request_id: request_id.as_deref().unwrap_or_default(),
            start_unix_ms,
            duration_ms: latency_ms,
            status,
            outcome,
            tenant: r.tenant.as_ref().map(|(_, t)| t.as_str()),
        };
        match capture.envelope(&meta, s) {
            Some(body) => w.queue_sample(r.at, body),
            // Not even a header-less envelope fits: dropped like a sample that finds the queue full.
            None => w.count_sample(r.at, SampleResult::Dropped),
        }
    }
}

/// The tenant Envoy named for this request (`headers`: a gRPC call's, read when they passed),
/// with `identity` in the policy; one host call then, none without.
fn tenant_of(
    h: &mut impl Host,
    w: &Worker,
    headers: Option<&[(String, String)]>,
) -> Result<Option<(usize, String)>, crate::worker::NoTenant> {
    if !w.has_identity() {
        return Ok(None);
    }
    let value = match headers {
        Some(headers) => headers.iter().find(|(k, _)| k == TENANT_HEADER).map(|(_, v)| v.clone()),
        None => h.header(Dir::Request, TENANT_HEADER),
    };
    Ok(w.tenant(value.as_deref())?.zip(value))
}

fn grpc_status(h: &mut impl Host, dir: Dir) -> Option<u32> {
    h.header(dir, grpc::STATUS_HEADER).and_then(|v| v.trim().parse().ok())
}

/// Removes these request headers where the client sent them (a lookup first: an absent header
/// is a cheaper host call than a removal, which also makes Envoy pick the route again).
fn drop_client_copies(h: &mut impl Host, names: &[&str]) {
    for name in names {
        if h.header(Dir::Request, name).is_some() {
            h.set_header(Dir::Request, name, None);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, clippy::panic)]

    use std::cell::RefCell;
    use std::rc::Rc;

    use serde_json::{Value, json};
    use switchyard_policy::Config;

    use switchyard_policy::capture::REDACTED;
    use switchyard_policy::slo::{Counts, Window, WindowSpec};

    use super::*;
    use crate::fake::{FakeHost, FakeStore};
    use crate::host::{DOWNSTREAM_CONNECTION_TERMINATION, DOWNSTREAM_REMOTE_RESET};
    use crate::worker::Worker;

    fn two_versions(extra: Value) -> Value {
        let mut model = json!({"versions": [
            {"name": "v1", "cluster": "mlp-v1", "weight": 100},
            {"name": "v2", "cluster": "mlp-v2", "weight": 0}
        ]});
        let Value::Object(extra) = extra else { panic!("{extra} is not an object") };
        model.as_object_mut().unwrap().extend(extra);
        json!({"models": {"mlp": model}, "collector": {"cluster": "collector", "max_queued": 2, "max_in_flight": 1}})
    }

    fn worker(h: &mut FakeHost, config: &Value) -> Shared {
        let config = Config::parse(config.to_string().as_bytes()).unwrap();
        let w = Rc::new(RefCell::new(Worker::new(config, h)));
        h.calls.clear();
        w
    }

    /// Runs the request the fake holds through a new stream, answered with `status` (`None`: no
    /// response came back; other response headers as the fake holds them), the bodies passing
    /// in these chunks.
    fn run(h: &mut FakeHost, w: &Shared, status: Option<u16>, request_body: &[&[u8]], response_body: &[&[u8]]) {
        let mut s = Stream::new(Some(w.clone()));
        s.request_headers(h, false);
        for chunk in request_body {
            h.request_chunk = chunk.to_vec();
            s.body(h, Dir::Request, chunk.len());
        }
        if let Some(status) = status {
            h.response_headers.retain(|(k, _)| k != ":status");
            h.response_headers.insert(0, (":status".into(), status.to_string()));
            s.response_headers(h);
            for chunk in response_body {
                h.response_chunk = chunk.to_vec();
                s.body(h, Dir::Response, chunk.len());
            }
        }
        s.finish(h);
    }

    fn flush(h: &mut FakeHost, w: &Shared) {
        w.borrow_mut().flush_counters(h);
    }

    fn samples_posted(w: &Shared, token: Option<u32>) -> Vec<Value> {
        let mut posted = Vec::new();
        w.borrow_mut().dispatch_samples(|c, body| {
            assert_eq!(c.cluster, "collector");
            posted.push(serde_json::from_slice(body).unwrap());
            token
        });
        posted
    }

    #[test]
    fn client_copies_of_the_internal_routing_headers_are_removed() {
        let mut h = FakeHost::default();
        let w = worker(&mut h, &two_versions(json!({})));
        let forged = [("x-switchyard-upstream", "mlp-v2"), ("x-switchyard-shadow", "mlp-v2")];
        h.request(&[&[(":path", "/v2/models/mlp/infer")][..], &forged].concat());
        run(&mut h, &w, Some(200), &[], &[]);
        assert_eq!(h.request_header("x-switchyard-upstream"), Some("mlp-v1"));
        assert_eq!(h.request_header("x-switchyard-shadow"), None, "no shadow is configured");
        // Requests the filter does not route lose them as well.
        for path in ["/v2/models/nope/infer", "/healthz"] {
            h.request(&[&[(":path", path)][..], &forged].concat());
            run(&mut h, &w, Some(404), &[], &[]);
            assert_eq!(h.request_header("x-switchyard-upstream"), None, "{path}");
            assert_eq!(h.request_header("x-switchyard-shadow"), None, "{path}");
        }
        flush(&mut h, &w);
        assert_eq!(h.counter("switchyard_unrouted_requests_total;reason=unknown_model"), 1);
        assert_eq!(h.counter("switchyard_unrouted_requests_total;reason=not_a_model_path"), 1);
    }

    #[test]
    fn a_version_in_the_path_is_stripped_and_honoured_only_when_allowed() {
        let mut h = FakeHost::default();
        let w = worker(&mut h, &two_versions(json!({"override": {"header": "x-pin", "allow": ["v2"]}})));
        for (path, cluster, stripped, version) in [
            ("/v2/models/mlp/versions/v2/infer?x=1", "mlp-v2", "/v2/models/mlp/infer?x=1", "v2"),
            // Not allowed: split as usual, and still sent without the version segment.
            ("/v2/models/mlp/versions/v9/infer", "mlp-v1", "/v2/models/mlp/infer", "v1"),
            ("/v2/models/mlp/versions/v2", "mlp-v2", "/v2/models/mlp", "v2"),
        ] {
            h.request(&[(":path", path)]);
            run(&mut h, &w, Some(200), &[], &[]);
            assert_eq!(h.request_header("x-switchyard-upstream"), Some(cluster), "{path}");
            assert_eq!(h.request_header(":path"), Some(stripped), "{path}");
            assert_eq!(h.response_header("x-switchyard-version"), Some(version), "{path}");
        }
        // An unversioned path is left alone.
        h.request(&[(":path", "/v2/models/mlp/infer"), ("x-pin", "v2")]);
        h.calls.clear();
        run(&mut h, &w, Some(200), &[], &[]);
        assert_eq!(h.request_header("x-switchyard-upstream"), Some("mlp-v2"));
        assert_eq!(h.count("set_header"), 2, "upstream and version headers only: {:?}", h.calls);
        flush(&mut h, &w);
        assert_eq!(h.counter("switchyard_override_refused_total;model=mlp"), 1);
        assert_eq!(h.counter("switchyard_route_decisions_total;model=mlp;version=v2;reason=override"), 3);
    }

    #[test]
    fn outcomes_come_from_the_status_and_for_failures_envoy_response_flags() {
        let mut h = FakeHost::default();
        let w = worker(&mut h, &two_versions(json!({})));
        // UT, UF, LR and SI in Envoy's response-flag bits.
        let (ut, uf, lr, si) = (0x4, 0x20, 0x8, 0x1_0000);
        let (dc, dr) = (DOWNSTREAM_CONNECTION_TERMINATION, DOWNSTREAM_REMOTE_RESET);
        for (status, flags, outcome) in [
            (None, Some(dc), "client_gone"),
            (None, Some(dc | lr), "client_gone"),
            (None, Some(dr), "client_gone"),
            // The answer had passed: what it said stands.
            (Some(503), Some(dc), "5xx"),
            (Some(200), Some(ut), "success"),
            (Some(404), None, "4xx"),
            (Some(503), None, "5xx"),
            (Some(503), Some(uf), "upstream_reset"),
            (Some(500), Some(ut), "timeout"),
            (Some(502), Some(si), "timeout"),
            (Some(504), None, "timeout"),
            (None, Some(lr), "upstream_reset"),
            (None, None, "upstream_reset"),
        ] {
            let name = format!("switchyard_requests_total;model=mlp;version=v1;outcome={outcome}");
            let before = h.counter(&name);
            h.request(&[(":path", "/v2/models/mlp/infer")]);
            h.response_flags = flags;
            h.calls.clear();
            run(&mut h, &w, status, &[], &[]);
            flush(&mut h, &w);
            assert_eq!(h.counter(&name), before + 1, "{status:?} {flags:?}");
            // The flags are a host call: read only when the status does not settle it.
            let read = status.is_none_or(|s| s >= 500);
            assert_eq!(h.count("property_u64"), usize::from(read), "{status:?}");
        }
    }

    /// A compared request: not mirrored by Envoy; once the primary has answered, the same
    /// request goes to the shadow and to the primary again, and the three answers to the
    /// collector in one record; every comparison ends in one counted result.
    #[test]
    fn a_compared_request_is_replayed_to_the_shadow_and_the_primary_and_shipped_whole() {
        let mut h = FakeHost::default();
        let compare = json!({"shadow": {"version": "v2", "percent": 100,
            "compare": {"percent": 100, "max_body_bytes": 128, "max_pending": 2}}});
        let w = worker(&mut h, &two_versions(compare));
        let out =
            |x: f32| format!(r#"{{"outputs":[{{"name":"y","shape":[1,2],"datatype":"FP32","data":[{x},0.5]}}]}}"#);
        h.request(&[
            (":path", "/v2/models/mlp/versions/v1/infer"),
            ("content-type", "application/json"),
            ("x-request-id", "r-7"),
        ]);
        run(&mut h, &w, Some(200), &[br#"{"inputs":"#, br#"[1]}"#], &[out(0.25).as_bytes()]);
        assert_eq!(h.request_header("x-switchyard-shadow"), None, "compared, so not mirrored");
        let mut made = Vec::new();
        w.borrow_mut().dispatch_compares(&mut h, &mut made);
        let calls: Vec<_> =
            h.dispatched.iter().map(|(t, c, p, _, b)| (*t, c.as_str(), p.as_str(), b.clone())).collect();
        let body = br#"{"inputs":[1]}"#.to_vec();
        assert_eq!(
            calls,
            [(1, "mlp-v2", "/v2/models/mlp/infer", body.clone()), (2, "mlp-v1", "/v2/models/mlp/infer", body)]
        );
        assert!(h.dispatched[0].3.contains(&("content-type".into(), "application/json".into())));
        assert_eq!(made, [1, 2]);
        // The shadow answers; the record waits for the noise call.
        (h.call_status, h.call_body) = (Some(200), out(0.75).into_bytes());
        let n = h.call_body.len();
        assert!(w.borrow_mut().compare_answered(&mut h, 1, n, &mut made));
        assert!(h.posted.is_empty());
        (h.call_status, h.call_body) = (Some(200), out(0.25).into_bytes());
        let n = h.call_body.len();
        assert!(w.borrow_mut().compare_answered(&mut h, 2, n, &mut made));
        let (token, record) = h.posted.last().cloned().unwrap();
        let r: Value = serde_json::from_slice(&record).unwrap();
        assert_eq!((&r["kind"], &r["request_id"]), (&json!("comparison"), &json!("r-7")));
        assert_eq!(r["primary"]["body"]["outputs"][0]["data"], json!([0.25, 0.5]));
        assert_eq!(r["shadow"]["body"]["outputs"][0]["data"], json!([0.75, 0.5]));
        assert_eq!((&r["shadow"]["version"], &r["noise"]["version"]), (&json!("v2"), &json!("v1")));
        assert!(!w.borrow_mut().compare_answered(&mut h, 99, 0, &mut made), "not a comparison's call");
        h.call_status = Some(200);
        assert!(w.borrow_mut().compare_answered(&mut h, token, 0, &mut made));

        // A request over the cap is skipped; beyond max_pending, dropped; a call that cannot be
        // made, failed.
        h.request(&[(":path", "/v2/models/mlp/infer")]);
        run(&mut h, &w, Some(200), &[&[b'x'; 129]], &[b"{}"]);
        for _ in 0..3 {
            h.request(&[(":path", "/v2/models/mlp/infer")]);
            run(&mut h, &w, Some(200), &[b"{}"], &[b"{}"]);
        }
        h.refuse_calls = true;
        w.borrow_mut().dispatch_compares(&mut h, &mut made);
        flush(&mut h, &w);
        let count = |r: &str| h.counter(&format!("switchyard_shadow_compares_total;model=mlp;version=v2;result={r}"));
        assert_eq!(
            ["started", "sent", "skipped", "dropped", "failed"].map(count),
            [5, 1, 1, 1, 2],
            "one sent, then one too large, two held and failed, one beyond max_pending"
        );
        assert_eq!(h.counter("switchyard_shadow_requests_total;model=mlp;version=v2"), 5);
        // Only inference is compared: a metadata request is mirrored as ever.
        h.request(&[(":path", "/v2/models/mlp")]);
        run(&mut h, &w, Some(200), &[], &[b"{}"]);
        assert_eq!(h.request_header("x-switchyard-shadow"), Some("mlp-v2"));
        flush(&mut h, &w);
        assert_eq!(h.counter("switchyard_shadow_compares_total;model=mlp;version=v2;result=started"), 5);
    }

    #[test]
    fn a_sample_keeps_bodies_up_to_max_body_bytes_and_says_it_cut_them() {
        let mut h = FakeHost::default();
        let w = worker(&mut h, &two_versions(json!({"sampling": {"rate": 1.0, "max_body_bytes": 8}})));
        h.request(&[(":path", "/v2/models/mlp/infer"), ("x-request-id", "r-1")]);
        run(&mut h, &w, Some(200), &[b"0123456", b"789", b"abc"], &[b"[1,2]"]);
        // Once the cap is reached the rest of the body is not even read.
        assert_eq!(h.count("body"), 3, "{:?}", h.calls);
        let posted = samples_posted(&w, Some(1));
        let s = &posted[0];
        assert_eq!((&s["model"], &s["version"], &s["request_id"]), (&json!("mlp"), &json!("v1"), &json!("r-1")));
        assert_eq!(s["request"]["bytes"], 13);
        assert_eq!(s["request"]["truncated"], true);
        assert_eq!(s["request"]["body"], "01234567");
        assert_eq!(s["response"]["truncated"], false);
        assert_eq!(s["response"]["body"], json!([1, 2]));
    }

    #[test]
    fn the_sample_queue_is_bounded_and_every_sample_is_accounted_for() {
        let mut h = FakeHost::default();
        let w = worker(&mut h, &two_versions(json!({"sampling": {"rate": 1.0}})));
        for _ in 0..3 {
            h.request(&[(":path", "/v2/models/mlp/infer")]);
            run(&mut h, &w, Some(200), &[], &[]);
        }
        // max_in_flight 1: one call at a time.
        assert_eq!(samples_posted(&w, Some(10)).len(), 1);
        assert_eq!(samples_posted(&w, Some(11)).len(), 0);
        w.borrow_mut().call_done(99, || panic!("not our call: its status must not be read"));
        w.borrow_mut().call_done(10, || SampleResult::Sent);
        // The second queued sample: the call cannot be made.
        assert_eq!(samples_posted(&w, None).len(), 1);
        assert_eq!(samples_posted(&w, Some(12)).len(), 0, "the third was never queued");
        flush(&mut h, &w);
        let count = |r: &str| h.counter(&format!("switchyard_samples_total;model=mlp;version=v1;result={r}"));
        assert_eq!([count("captured"), count("sent"), count("failed"), count("dropped")], [3, 1, 1, 1]);
    }

    #[test]
    fn host_calls_per_request() {
        let mut h = FakeHost::default();
        let w = worker(&mut h, &two_versions(json!({"slo": {"availability": 0.99, "latency_ms": 100}})));
        h.request(&[(":path", "/v2/models/mlp/infer")]);
        h.now_ms = 1_000;
        let mut s = Stream::new(Some(w));
        s.request_headers(&mut h, false);
        h.now_ms = 1_042;
        s.body(&mut h, Dir::Request, 10);
        h.response_headers = vec![(":status".into(), "200".into())];
        s.response_headers(&mut h);
        s.body(&mut h, Dir::Response, 10);
        s.finish(&mut h);
        // An unsampled request: the path and the mirror header (absent) are read, no body, no
        // flags, and every counter stays in the worker.
        let expected = ["header", "header", "set_header", "now_ms", "header", "set_header", "now_ms", "record_metric"];
        assert_eq!(h.calls, expected);
        assert_eq!(h.recorded("switchyard_request_duration_ms;model=mlp;version=v1"), [42]);

        let w = worker(&mut h, &two_versions(json!({"sampling": {"rate": 1.0}})));
        h.request(&[(":path", "/v2/models/mlp/infer")]);
        run(&mut h, &w, Some(200), &[b"{}"], &[b"{}"]);
        let sampled = [
            "header",
            "header",
            "headers",
            "set_header",
            "now_ms",
            "body",
            "header",
            "headers",
            "set_header",
            "body",
            "now_ms",
            "record_metric",
            "property_u64",
        ];
        assert_eq!(h.calls, sampled);
    }
    #[test]
    fn tenants_are_counted_by_label_and_a_request_without_one_is_refused() {
        let mut h = FakeHost::default();
        let mut config = two_versions(json!({"sampling": {"rate": 1.0}}));
        config["identity"] = json!({"issuer": "i", "tenants": {"team-a": {}}});
        let w = worker(&mut h, &config);
        let send = |h: &mut FakeHost, tenant: Option<&str>, status: u16, quota: bool| {
            let mut headers = vec![(":path", "/v2/models/mlp/infer")];
            headers.extend(tenant.map(|t| (TENANT_HEADER, t)));
            h.request(&headers);
            h.response_headers = if quota { vec![(QUOTA_HEADER.into(), QUOTA_EXCEEDED.into())] } else { vec![] };
            run(h, &w, Some(status), &[], &[]);
        };
        send(&mut h, Some("team-a"), 200, false);
        // The sample says whose request it was.
        let posted = samples_posted(&w, Some(1));
        assert_eq!(posted[0]["tenant"], "team-a");
        w.borrow_mut().call_done(1, || SampleResult::Sent);
        send(&mut h, Some("zeta"), 200, false);
        assert_eq!(samples_posted(&w, Some(2))[0]["tenant"], "zeta", "the tenant's own name, not its label");
        w.borrow_mut().call_done(2, || SampleResult::Sent);
        send(&mut h, Some("omega"), 503, false);
        assert_eq!(samples_posted(&w, Some(3)).len(), 1);
        w.borrow_mut().call_done(3, || SampleResult::Sent);
        flush(&mut h, &w);
        let dropped = |h: &FakeHost| h.counter("switchyard_samples_total;model=mlp;version=v1;result=dropped");
        let dropped_before = dropped(&h);
        // The gateway's quota, then a version that shed load itself.
        send(&mut h, Some("team-a"), 429, true);
        flush(&mut h, &w);
        assert_eq!(dropped(&h), dropped_before + 1, "no sample of a quota refusal: counted as dropped");
        assert!(samples_posted(&w, Some(4)).is_empty(), "nothing queued for it");
        assert_eq!(h.response_header("x-switchyard-version"), None, "no version answered a quota refusal");
        send(&mut h, Some("team-a"), 429, false);
        assert!(h.local_replies.is_empty());
        flush(&mut h, &w);
        let decisions = |h: &FakeHost| {
            ["v1", "v2"]
                .map(|v| h.counter(&format!("switchyard_route_decisions_total;model=mlp;version={v};reason=weighted")))
        };
        let decided = decisions(&h);
        h.calls.clear();
        send(&mut h, None, 200, false);
        let reply = h.local_replies.pop().expect("a 403");
        assert_eq!(reply.status, 403);
        assert!(String::from_utf8_lossy(&reply.body).contains("no 'tenant' claim"), "{reply:?}");
        assert_eq!(h.request_header("x-switchyard-upstream"), None, "refused before routing");
        flush(&mut h, &w);
        assert_eq!(decisions(&h), decided, "no routing decision made or counted for it");
        let tenant =
            |t: &str, o: &str| h.counter(&format!("switchyard_tenant_requests_total;tenant={t};model=mlp;outcome={o}"));
        assert_eq!([tenant("team-a", "success"), tenant("team-a", "quota"), tenant("team-a", "overloaded")], [1, 1, 1]);
        assert_eq!([tenant("other", "success"), tenant("other", "5xx")], [1, 1]);
        assert_eq!(h.counter("switchyard_requests_total;model=mlp;version=v1;outcome=quota"), 1);
        assert_eq!(h.counter("switchyard_unrouted_requests_total;reason=no_tenant"), 1);
        // The quota refusal is counted, not timed: only the two answered requests are.
        assert_eq!(h.recorded("switchyard_tenant_request_duration_ms;tenant=team-a;model=mlp").len(), 2);
    }

    /// `:path` as the backend will see it, the cluster chosen, and the version header.
    fn routed(h: &FakeHost) -> (Option<&str>, Option<&str>, Option<&str>) {
        (
            h.request_header(":path"),
            h.request_header("x-switchyard-upstream"),
            h.response_header("x-switchyard-version"),
        )
    }

    /// The attack: percent-encoded names reached a backend that decodes them as `mlp` while the
    /// filter saw an unknown model: no split, allow-list, shadow, sampling or SLO.
    #[test]
    fn percent_encoded_names_are_decided_on_and_forwarded_decoded() {
        let mut h = FakeHost::default();
        let w = worker(
            &mut h,
            &two_versions(json!({
                "override": {"header": "x-pin", "allow": ["v2"]},
                "sampling": {"rate": 1.0},
                "slo": {"availability": 0.99, "latency_ms": 100}
            })),
        );
        for (path, forwarded, cluster, version) in [
            ("/v2/models/ml%70/infer", "/v2/models/mlp/infer", "mlp-v1", "v1"),
            ("/v2/models/%6dlp/versions/v2/infer", "/v2/models/mlp/infer", "mlp-v2", "v2"),
            ("/v2/models/%6D%6C%70/%76ersions/%762/infer?a=%70", "/v2/models/mlp/infer?a=%70", "mlp-v2", "v2"),
            // Not allowed once decoded either: split as usual.
            ("/v2/models/ml%70/versions/v%31/infer", "/v2/models/mlp/infer", "mlp-v1", "v1"),
        ] {
            h.request(&[(":path", path)]);
            run(&mut h, &w, Some(200), &[b"{}"], &[b"{}"]);
            assert_eq!(routed(&h), (Some(forwarded), Some(cluster), Some(version)), "{path}");
        }
        flush(&mut h, &w);
        let c = |name: &str| h.counter(name);
        assert_eq!(c("switchyard_requests_total;model=mlp;version=v1;outcome=success"), 2);
        assert_eq!(c("switchyard_requests_total;model=mlp;version=v2;outcome=success"), 2);
        assert_eq!(c("switchyard_route_decisions_total;model=mlp;version=v2;reason=override"), 2);
        assert_eq!(c("switchyard_override_refused_total;model=mlp"), 1, "v1 is not in allow");
        assert_eq!(h.counter_sum("switchyard_samples_total;model=mlp;version=v1;result=captured"), 2);
        assert_eq!(h.counter_sum("switchyard_unrouted_requests_total"), 0);
        let posted = samples_posted(&w, Some(1));
        assert_eq!(posted[0]["model"], "mlp");
        let mut store = FakeStore::default();
        w.borrow_mut().flush_slo(&mut h, &mut store);
        let spec = WindowSpec::parse("5m").unwrap();
        let (bytes, _) = &store.map["switchyard/slo/mlp/v2/300"];
        assert_eq!(Window::decode(&spec, bytes).unwrap().totals(0).total, 2);
    }

    #[test]
    fn undecodable_model_paths_are_answered_400_by_the_filter() {
        let mut h = FakeHost::default();
        let w = worker(&mut h, &two_versions(json!({})));
        for path in [
            "/v2/models/ml%7/infer",
            "/v2/models/ml%zzp/infer",
            "/v2/models/mlp%2Finfer",
            "/v2/models/%2e%2e/infer",
            "/v2/models/ml%20p/infer",
            "/v2/models/mlp/versions/v%2f1/infer",
            "/v2/models/mlp/versions//infer",
        ] {
            h.request(&[(":path", path), ("x-switchyard-upstream", "mlp-v2")]);
            let mut s = Stream::new(Some(w.clone()));
            assert_eq!(s.request_headers(&mut h, false), Action::Pause, "{path}");
            let reply = &h.local_replies[..];
            assert_eq!(reply.len(), 1, "{path}");
            assert_eq!(reply[0].status, 400);
            assert_eq!(reply[0].headers, [("content-type".to_owned(), "application/json".to_owned())]);
            let body: Value = serde_json::from_slice(&reply[0].body).unwrap();
            assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
            assert_eq!(h.request_header("x-switchyard-upstream"), None, "{path}");
            s.finish(&mut h);
        }
        flush(&mut h, &w);
        assert_eq!(h.counter("switchyard_unrouted_requests_total;reason=invalid_path"), 7);
        assert_eq!(h.counter_sum("switchyard_requests_total"), 0);
    }

    #[test]
    fn an_unknown_model_after_decoding_is_left_to_envoy() {
        let mut h = FakeHost::default();
        let w = worker(&mut h, &two_versions(json!({})));
        h.request(&[(":path", "/v2/models/n%6fpe/infer")]);
        let mut s = Stream::new(Some(w.clone()));
        assert_eq!(s.request_headers(&mut h, false), Action::Continue);
        assert_eq!(routed(&h), (Some("/v2/models/n%6fpe/infer"), None, None));
        assert!(h.local_replies.is_empty());
        flush(&mut h, &w);
        assert_eq!(h.counter("switchyard_unrouted_requests_total;reason=unknown_model"), 1);
    }

    fn slo_totals(h: &mut FakeHost, w: &Shared, version: &str) -> Counts {
        let mut store = FakeStore::default();
        w.borrow_mut().flush_slo(h, &mut store);
        let spec = WindowSpec::parse("5m").unwrap();
        store
            .map
            .get(&format!("switchyard/slo/mlp/{version}/300"))
            .and_then(|(b, _)| Window::decode(&spec, b))
            .map(|win| win.totals(h.now_ms))
            .unwrap_or_default()
    }

    /// The attack: clients hanging up, or timing out by their own deadline, burnt the version's
    /// error budget (as `upstream_reset` and `timeout`).
    #[test]
    fn what_the_client_did_is_not_charged_to_the_version() {
        let mut h = FakeHost::default();
        let w = worker(&mut h, &two_versions(json!({"slo": {"availability": 0.99, "latency_ms": 100}})));
        let send = |h: &mut FakeHost, status: Option<u16>, extra: &[(&str, &str)], flags, ms: u64| {
            h.request(&[(":path", "/v2/models/mlp/infer")]);
            h.response_headers = extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            h.response_flags = flags;
            let mut s = Stream::new(Some(w.clone()));
            s.request_headers(h, false);
            h.now_ms += ms;
            if let Some(status) = status {
                h.response_headers.insert(0, (":status".into(), status.to_string()));
                s.response_headers(h);
            }
            s.finish(h);
        };
        let deadline = [("x-switchyard-deadline", "client")];
        let dc = Some(DOWNSTREAM_CONNECTION_TERMINATION);
        send(&mut h, None, &[], dc, 50); // hung up quickly: not an event at all
        send(&mut h, None, &[], dc, 500); // hung up after the threshold: the version was slow
        send(&mut h, Some(504), &deadline, None, 50);
        send(&mut h, Some(504), &deadline, None, 500);
        send(&mut h, Some(504), &[("x-switchyard-deadline", "server")], None, 50); // the version's timeout
        send(&mut h, Some(429), &[], None, 5); // shed load: the server's doing
        send(&mut h, Some(200), &[], None, 5);
        flush(&mut h, &w);
        let c = |o: &str| h.counter(&format!("switchyard_requests_total;model=mlp;version=v1;outcome={o}"));
        assert_eq!(
            [c("client_gone"), c("client_deadline"), c("timeout"), c("overloaded"), c("success")],
            [2, 2, 1, 1, 1]
        );
        assert_eq!(c("4xx"), 0);
        assert_eq!(c("upstream_reset"), 0);
        // Availability: the timeout, the 429 and the success; latency: the success and the two
        // client-ended requests that were already slow.
        assert_eq!(slo_totals(&mut h, &w, "v1"), Counts { total: 3, bad: 2, latency_total: 3, latency_bad: 2 });
    }

    #[test]
    fn the_deadline_header_costs_a_host_call_only_on_a_504() {
        let mut h = FakeHost::default();
        let w = worker(&mut h, &two_versions(json!({})));
        for (status, header_calls) in [(200, 1), (503, 1), (504, 2)] {
            h.request(&[(":path", "/v2/models/mlp/infer")]);
            let mut s = Stream::new(Some(w.clone()));
            s.request_headers(&mut h, false);
            h.calls.clear();
            h.response_headers = vec![(":status".into(), status.to_string())];
            s.response_headers(&mut h);
            s.finish(&mut h);
            assert_eq!(h.count("header"), header_calls, "{status}: {:?}", h.calls);
        }
    }

    #[test]
    fn samples_never_carry_credentials_and_an_allow_list_keeps_only_its_headers() {
        let mut h = FakeHost::default();
        let w = worker(&mut h, &two_versions(json!({"sampling": {"rate": 1.0}})));
        let creds = [
            ("authorization", "Bearer SECRET-A"),
            ("cookie", "sid=SECRET-B"),
            ("x-api-key", "SECRET-C"),
            ("x-ok", "fine"),
        ];
        h.request(&[&[(":path", "/v2/models/mlp/infer")][..], &creds].concat());
        h.response_headers = vec![("set-cookie".into(), "sid=SECRET-D".into())];
        run(&mut h, &w, Some(200), &[], &[]);
        let text = samples_posted(&w, Some(1))[0].to_string();
        for secret in ["SECRET-A", "SECRET-B", "SECRET-C", "SECRET-D"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert!(text.contains(REDACTED) && text.contains("fine"), "{text}");

        let w = worker(
            &mut h,
            &two_versions(json!({"sampling": {"rate": 1.0, "capture_headers": [":path", "authorization"]}})),
        );
        h.request(&[&[(":path", "/v2/models/mlp/infer")][..], &creds].concat());
        run(&mut h, &w, Some(200), &[], &[]);
        let s = &samples_posted(&w, Some(2))[0];
        assert_eq!(s["request"]["headers"], json!([[":path", "/v2/models/mlp/infer"], ["authorization", REDACTED]]));
        assert_eq!(s["response"]["headers"], json!([]));
    }

    #[test]
    fn the_sample_queue_is_bounded_in_bytes_too() {
        let mut h = FakeHost::default();
        let mut config = two_versions(json!({"sampling": {"rate": 1.0, "max_body_bytes": 1024}}));
        config["collector"]["max_queued"] = json!(100);
        // Room for one envelope of a 1 KiB-capped model, not for two large ones.
        config["collector"]["max_queued_bytes"] = json!(switchyard_policy::capture::envelope_bound(1024));
        let w = worker(&mut h, &config);
        let big = vec![b'x'; 1000];
        for _ in 0..3 {
            h.request(&[(":path", "/v2/models/mlp/infer"), ("x-pad", "p".repeat(40_000).as_str())]);
            run(&mut h, &w, Some(200), &[&big], &[]);
        }
        flush(&mut h, &w);
        let count = |r: &str| h.counter(&format!("switchyard_samples_total;model=mlp;version=v1;result={r}"));
        assert_eq!([count("captured"), count("dropped")], [3, 2]);
        assert_eq!(samples_posted(&w, Some(1)).len(), 1);
        // Once shipped, the bytes are free again.
        h.request(&[(":path", "/v2/models/mlp/infer")]);
        run(&mut h, &w, Some(200), &[&big], &[]);
        w.borrow_mut().call_done(1, || SampleResult::Sent);
        assert_eq!(samples_posted(&w, Some(2)).len(), 1);
    }

    /// Two workers (two Envoy threads) sharing one store: failures seen by one take the canary
    /// out of both, latched; the sticky user and the override fall back to the stable version.
    #[test]
    fn the_guard_trips_on_one_worker_and_every_worker_routes_around_it() {
        let policy = two_versions(json!({
            "versions": [{"name": "v1", "cluster": "mlp-v1", "weight": 50}, {"name": "v2", "cluster": "mlp-v2", "weight": 50}],
            "override": {"header": "x-pin", "allow": ["v2"]},
            "sticky": {"header": "x-user"},
            "guard": {"min_requests": 10}
        }));
        let mut store = FakeStore::default();
        let (mut h1, mut h2) = (FakeHost::default(), FakeHost::default());
        let (w1, w2) = (worker(&mut h1, &policy), worker(&mut h2, &policy));
        let served = |h: &mut FakeHost, w: &Shared, headers: &[(&str, &str)], status: u16| {
            h.request(&[&[(":path", "/v2/models/mlp/infer")][..], headers].concat());
            let mut s = Stream::new(Some(w.clone()));
            s.request_headers(h, false);
            let cluster = h.request_header("x-switchyard-upstream").unwrap().to_owned();
            let status = if cluster == "mlp-v2" { status } else { 200 };
            h.response_headers = vec![(":status".into(), status.to_string())];
            s.response_headers(h);
            s.finish(h);
            cluster
        };
        // Healthy: both versions serve, the guard judges and leaves them be.
        for t in 0..10 {
            for i in 0..10 {
                served(&mut h1, &w1, &[("x-user", &format!("u{i}"))], 200);
            }
            h1.now_ms = t * 100;
            w1.borrow_mut().flush_guard(&mut h1, &mut store);
        }
        assert!(h1.logs.iter().all(|(_, l)| !l.contains("guard")), "{:?}", h1.logs);
        // v2 starts failing; worker 1 sees it.
        for t in 10..20 {
            for i in 0..10 {
                served(&mut h1, &w1, &[("x-user", &format!("u{i}"))], 503);
            }
            h1.now_ms = t * 100;
            w1.borrow_mut().flush_guard(&mut h1, &mut store);
        }
        let tripped: Vec<&String> =
            h1.logs.iter().map(|(_, l)| l).filter(|l| l.contains("guard took mlp/v2")).collect();
        assert_eq!(tripped.len(), 1, "{:?}", h1.logs);
        assert!(tripped[0].contains("error ratio"), "{}", tripped[0]);
        assert_eq!(h1.recorded("switchyard_guard_out;model=mlp;version=v2"), vec![0, 1], "0 at the first tick, then 1");
        // Worker 2 never saw a failure: its next tick reads the latch.
        h2.now_ms = 2000;
        w2.borrow_mut().flush_guard(&mut h2, &mut store);
        assert!(h2.logs.iter().any(|(_, l)| l.contains("guard: mlp/v2 is out of the split (latched: error ratio")));
        // Since when and on which SLI, the same in both workers: the latch says it.
        let since = |h: &FakeHost, sli: &str| {
            h.recorded(&format!("switchyard_guard_out_since_seconds;model=mlp;version=v2;sli={sli}"))
        };
        assert_eq!(since(&h1, "availability"), vec![0, 1], "tripped at 1.x s (the fake clock)");
        assert_eq!(since(&h2, "availability").last(), Some(&1));
        assert!(since(&h1, "latency").iter().all(|s| *s == 0));
        for (h, w) in [(&mut h1, &w1), (&mut h2, &w2)] {
            for i in 0..50 {
                let user = format!("u{i}");
                assert_eq!(served(h, w, &[("x-user", &user)], 200), "mlp-v1");
                assert_eq!(served(h, w, &[("x-pin", "v2")], 200), "mlp-v1");
            }
            w.borrow_mut().flush_counters(h);
            // Every override, and the sticky users whose key points at v2.
            assert!(h.counter("switchyard_route_decisions_total;model=mlp;version=v1;reason=guard") > 50);
        }
        // Worker 2's Envoy thread swaps to a policy without v2: v2's gauges go back to 0
        // (Envoy keeps the stat; a last 1 would keep the guard's alert firing).
        let without = two_versions(json!({"versions": [{"name": "v1", "cluster": "mlp-v1", "weight": 100}]}));
        let w2b = worker(&mut h2, &without);
        w2b.borrow_mut().adopt(&mut h2, &mut w2.borrow_mut());
        assert_eq!(h2.recorded("switchyard_guard_out;model=mlp;version=v2").last(), Some(&0));
        assert_eq!(since(&h2, "availability").last(), Some(&0));
        // Latched: long after the failures have left the window, still out.
        h1.now_ms = 60_000;
        w1.borrow_mut().flush_guard(&mut h1, &mut store);
        assert_eq!(served(&mut h1, &w1, &[("x-pin", "v2")], 200), "mlp-v1");
        // A policy swap keeps it out (same epoch); a new epoch clears it.
        let swapped = worker(&mut h1, &policy);
        swapped.borrow_mut().adopt(&mut h1, &mut w1.borrow_mut());
        assert_eq!(served(&mut h1, &swapped, &[("x-pin", "v2")], 200), "mlp-v1", "back in before the first tick");
        let keys = store.map.len();
        let mut next = policy.clone();
        next["models"]["mlp"]["guard"]["epoch"] = json!(1);
        let cleared = worker(&mut h1, &next);
        cleared.borrow_mut().adopt(&mut h1, &mut swapped.borrow_mut());
        cleared.borrow_mut().flush_guard(&mut h1, &mut store);
        assert_eq!(store.map.len(), keys, "a new epoch reuses the guard's keys");
        assert_eq!(served(&mut h1, &cleared, &[("x-pin", "v2")], 200), "mlp-v2");
        // ...with an empty window: the failures that tripped epoch 0 do not trip epoch 1.
        for _ in 0..20 {
            served(&mut h1, &cleared, &[("x-user", "u1")], 200);
        }
        h1.now_ms = 2000;
        cleared.borrow_mut().flush_guard(&mut h1, &mut store);
        assert_eq!(served(&mut h1, &cleared, &[("x-pin", "v2")], 200), "mlp-v2", "{:?}", h1.logs);
        assert_eq!(
            h1.recorded("switchyard_guard_out;model=mlp;version=v2").last(),
            Some(&0),
            "the new epoch shows it back in"
        );
        assert_eq!(since(&h1, "availability").last(), Some(&0));
    }

    /// A gRPC frame holding a ModelInferRequest-like message: fields 1–2, then the inputs.
    fn grpc_body(model: &str, version: Option<&str>) -> Vec<u8> {
        let mut msg = vec![0x0a, model.len() as u8];
        msg.extend_from_slice(model.as_bytes());
        if let Some(v) = version {
            msg.extend_from_slice(&[0x12, v.len() as u8]);
            msg.extend_from_slice(v.as_bytes());
        }
        msg.extend_from_slice(&[0x2a, 3, 1, 2, 3]);
        let mut out = vec![0];
        out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        out.extend_from_slice(&msg);
        out
    }

    const INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

    /// Sends `body` in these chunks (what Envoy would have buffered at each call); the
    /// actions the filter returned.
    fn send_grpc(h: &mut FakeHost, s: &mut Stream, body: &[u8], cuts: &[usize]) -> Vec<Action> {
        let mut actions = vec![s.request_headers(h, false)];
        h.request_headers_passed = actions[0] == Action::Continue;
        for (i, &cut) in cuts.iter().chain(std::iter::once(&body.len())).enumerate() {
            h.request_chunk = body[..cut].to_vec();
            actions.push(s.request_body(h, cut, cut == body.len()));
            if actions.last() == Some(&Action::Continue) || i > 16 {
                break;
            }
        }
        actions
    }

    #[test]
    fn a_grpc_call_is_routed_by_the_model_in_its_message_and_its_version_taken_out() {
        let mut h = FakeHost::default();
        let policy =
            two_versions(json!({"override": {"header": "x-version", "allow": ["v2"]}, "sticky": {"header": "x-user"}}));
        let w = worker(&mut h, &policy);
        // The headers wait (nothing routed yet); the model's name arrives in pieces.
        h.request(&[(":path", INFER), ("content-type", "application/grpc"), ("x-switchyard-upstream", "evil")]);
        let body = grpc_body("mlp", Some("v2"));
        let mut s = Stream::new(Some(w.clone()));
        let actions = send_grpc(&mut h, &mut s, &body, &[3, 9]);
        assert_eq!(actions, [Action::Continue, Action::Pause, Action::Pause, Action::Continue]);
        assert_eq!(h.property("switchyard_cluster"), Some("mlp-v2-grpc"), "the allowed version, over gRPC");
        assert_eq!(h.request_header("x-switchyard-upstream"), None, "the client's copy dropped");
        // As the backend receives it: the version moved out of the way, nothing else changed.
        assert_eq!(h.request_chunk.len(), body.len());
        let placed = grpc::parse_prefix(&h.request_chunk, true).unwrap();
        let grpc::Prefix::Target(t) = placed else { panic!("{placed:?}") };
        assert_eq!((t.model, t.version), ("mlp", None));
        assert!(h.grpc_replies.is_empty());
        // The outcome is the grpc-status in the trailers.
        h.response_headers = vec![(":status".into(), "200".into())];
        s.response_headers(&mut h);
        h.response_trailers = vec![("grpc-status".into(), "8".into())];
        s.response_trailers(&mut h);
        s.finish(&mut h);
        flush(&mut h, &w);
        assert_eq!(h.counter("switchyard_requests_total;model=mlp;version=v2;outcome=overloaded"), 1);
        // A version the policy does not allow is not honoured: the split decides.
        h.request(&[(":path", INFER), ("content-type", "application/grpc")]);
        let mut s = Stream::new(Some(w.clone()));
        send_grpc(&mut h, &mut s, &grpc_body("mlp", Some("v1")), &[]);
        assert_eq!(h.property("switchyard_cluster"), Some("mlp-v1-grpc"));
    }

    #[test]
    fn grpc_outcomes_come_from_grpc_status_in_trailers_or_trailers_only_headers() {
        let mut h = FakeHost::default();
        let w = worker(&mut h, &two_versions(json!({})));
        for (headers, trailers, outcome) in [
            (&[(":status", "200")][..], &[("grpc-status", "0")][..], "success"),
            (&[(":status", "200"), ("grpc-status", "14")][..], &[][..], "5xx"),
            (&[(":status", "200"), ("grpc-status", "3")][..], &[][..], "4xx"),
            (&[(":status", "200")][..], &[("grpc-status", "13")][..], "5xx"),
            (&[(":status", "200")][..], &[("grpc-status", "4")][..], "timeout"),
            (
                &[(":status", "200")][..],
                &[("grpc-status", "4"), ("x-switchyard-deadline", "client")][..],
                "client_deadline",
            ),
            (
                &[(":status", "200"), ("grpc-status", "4"), ("x-switchyard-deadline", "client")][..],
                &[][..],
                "client_deadline",
            ),
            // Headers but no status at all: the call was cut off.
            (&[(":status", "200")][..], &[][..], "upstream_reset"),
            // Envoy's own HTTP answer (no healthy upstream, say).
            (&[(":status", "503")][..], &[][..], "5xx"),
        ] {
            let name = format!("switchyard_requests_total;model=mlp;version=v1;outcome={outcome}");
            let before = h.counter(&name);
            h.request(&[(":path", INFER), ("content-type", "application/grpc")]);
            let mut s = Stream::new(Some(w.clone()));
            send_grpc(&mut h, &mut s, &grpc_body("mlp", None), &[]);
            h.response_headers = headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            s.response_headers(&mut h);
            if !trailers.is_empty() {
                h.response_trailers = trailers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
                s.response_trailers(&mut h);
            }
            s.finish(&mut h);
            flush(&mut h, &w);
            assert_eq!(h.counter(&name), before + 1, "{headers:?} {trailers:?}");
        }
    }

    #[test]
    fn a_grpc_call_the_filter_cannot_place_is_refused_with_a_grpc_status() {
        let mut h = FakeHost::default();
        let w = worker(&mut h, &two_versions(json!({})));
        let mut compressed = grpc_body("mlp", None);
        compressed[0] = 1;
        let mut smuggled = grpc_body("mlp", None);
        smuggled.splice(5..5, [0x2a, 1, 9]);
        let n = smuggled.len() as u32 - 5;
        smuggled[1..5].copy_from_slice(&n.to_be_bytes());
        for (body, status, needle) in [
            (compressed, 12, "compressed"),
            (smuggled, 3, "must start with the model name"),
            (grpc_body("ml/p", None), 3, "not a valid name"),
            (grpc_body("nope", None), 5, "unknown model"),
            (vec![0, 0, 0], 3, "ends before the model name"),
        ] {
            h.request(&[(":path", INFER), ("content-type", "application/grpc")]);
            let mut s = Stream::new(Some(w.clone()));
            let actions = send_grpc(&mut h, &mut s, &body, &[]);
            assert_eq!(actions.last(), Some(&Action::Pause), "{needle}");
            assert_eq!(h.property("switchyard_cluster"), None, "{needle}: never routed");
            let (got, message) = &h.grpc_replies[0];
            assert_eq!(*got, status, "{message}");
            assert!(message.contains(needle), "{message}");
            s.finish(&mut h);
        }
        flush(&mut h, &w);
        assert_eq!(h.counter("switchyard_unrouted_requests_total;reason=invalid_grpc_message"), 4);
        assert_eq!(h.counter("switchyard_unrouted_requests_total;reason=unknown_model"), 1);
        assert_eq!(h.counter_sum("switchyard_requests_total"), 0);
        // Headers that end the stream: no message at all.
        h.request(&[(":path", INFER)]);
        let mut s = Stream::new(Some(w.clone()));
        assert_eq!(s.request_headers(&mut h, true), Action::Pause);
        assert_eq!(h.grpc_replies[0].0, 3);
        // Server-wide calls have no model: Envoy routes them (to the default gRPC cluster).
        h.request(&[(":path", "/inference.GRPCInferenceService/ServerLive"), ("x-switchyard-upstream", "evil")]);
        let mut s = Stream::new(Some(w.clone()));
        assert_eq!(s.request_headers(&mut h, false), Action::Continue);
        assert_eq!(h.request_header("x-switchyard-upstream"), None);
    }

    #[test]
    fn a_sampled_grpc_call_ships_its_message_as_protobuf() {
        let mut h = FakeHost::default();
        let w = worker(&mut h, &two_versions(json!({"sampling": {"rate": 1.0}})));
        h.request(&[(":path", INFER), ("content-type", "application/grpc")]);
        let mut s = Stream::new(Some(w.clone()));
        send_grpc(&mut h, &mut s, &grpc_body("mlp", Some("v1")), &[]);
        h.response_headers = vec![(":status".into(), "200".into()), ("content-type".into(), "application/grpc".into())];
        s.response_headers(&mut h);
        h.response_trailers = vec![("grpc-status".into(), "0".into())];
        s.response_trailers(&mut h);
        s.finish(&mut h);
        let posted = samples_posted(&w, Some(1));
        assert_eq!(posted.len(), 1);
        let req = &posted[0]["request"];
        assert_eq!(req["encoding"], "protobuf");
        assert_eq!(req["bytes"], grpc_body("mlp", Some("v1")).len(), "what the backend received");
        assert_eq!(posted[0]["status"], 200);
        assert_eq!(posted[0]["outcome"], "success");
    }
}
