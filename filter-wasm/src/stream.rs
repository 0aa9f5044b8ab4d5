//! One HTTP request through the filter: routing on the way in; on the way out the version
//! header, the request's accounting and, when sampled, its sample.

use switchyard_policy::sampling::{Capture, Envelope, SampleResult};

use crate::host::{self, Dir, Host};
use crate::worker::{ModelVersion, Shared};

struct Routed {
    at: ModelVersion,
    start_ms: u64,
    /// `:status` as the response headers passed (local replies included).
    status: Option<u16>,
    capture: Option<Capture>,
}

pub struct Stream {
    worker: Option<Shared>,
    routed: Option<Routed>,
}

impl Stream {
    pub fn new(worker: Option<Shared>) -> Self {
        Stream { worker, routed: None }
    }

    pub fn request_headers(&mut self, h: &mut impl Host) {
        let Some(shared) = &self.worker else { return };
        let Ok(mut w) = shared.try_borrow_mut() else { return };
        // One host call for every header: cheaper than asking for each one.
        let headers = h.headers(Dir::Request);
        let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        // Client copies of the internal headers would let a client pick a route: drop them first.
        for name in w.internal_headers() {
            if header(name).is_some() {
                h.set_header(Dir::Request, name, None);
            }
        }
        let Some(route) = w.route(header) else { return };
        let (name, cluster) = route.upstream;
        h.set_header(Dir::Request, name, Some(cluster));
        if let Some(path) = &route.path {
            h.set_header(Dir::Request, ":path", Some(path));
        }
        if let Some((name, cluster)) = route.shadow {
            h.set_header(Dir::Request, name, Some(cluster));
        }
        let capture = route.sample_cap.map(|cap| Capture::new(cap, headers));
        self.routed = Some(Routed { at: route.at, start_ms: h.now_ms(), status: None, capture });
    }

    pub fn body(&mut self, h: &mut impl Host, dir: Dir, size: usize) {
        let Some(c) = self.routed.as_mut().and_then(|r| r.capture.as_mut()) else { return };
        let side = match dir {
            Dir::Request => &mut c.request,
            Dir::Response => &mut c.response,
        };
        side.take(size, |n| h.body(dir, n));
    }

    pub fn response_headers(&mut self, h: &mut impl Host) {
        let Some(r) = self.routed.as_mut() else { return };
        r.status = h.header(Dir::Response, ":status").and_then(|s| s.parse().ok());
        if let Some(c) = r.capture.as_mut() {
            c.response.set_headers(h.headers(Dir::Response));
        }
        let Some(w) = self.worker.as_ref().and_then(|w| w.try_borrow().ok()) else { return };
        if let Some((name, version)) = w.version_header(r.at) {
            h.set_header(Dir::Response, name, Some(version));
        }
    }

    /// Accounts the finished request and queues its sample, if it has one.
    pub fn done(&mut self, h: &mut impl Host) {
        let (Some(shared), Some(r)) = (&self.worker, self.routed.as_mut()) else { return };
        let Ok(mut w) = shared.try_borrow_mut() else { return };
        let outcome = host::outcome(h, r.status);
        let latency_ms = h.now_ms().saturating_sub(r.start_ms);
        w.record_finished(h, r.at, outcome, r.status, latency_ms);
        let Some(capture) = r.capture.take() else { return };
        let Some((model, version, s)) = w.sampling(r.at) else { return };
        let (request, response) = capture.payloads(s);
        let envelope = Envelope {
            schema: 1,
            model: model.to_owned(),
            version: version.to_owned(),
            request_id: h.header(Dir::Request, "x-request-id").unwrap_or_default(),
            start_unix_ms: host::request_start_ms(h).unwrap_or(r.start_ms),
            duration_ms: latency_ms,
            status: r.status,
            outcome: outcome.as_str(),
            request,
            response,
        };
        match serde_json::to_vec(&envelope) {
            Ok(body) => w.queue_sample(r.at, body),
            // Unserialisable: dropped like a sample that finds the queue full.
            Err(_) => w.count_sample(r.at, SampleResult::Dropped),
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

    use super::*;
    use crate::fake::FakeHost;
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
    /// response came back), the bodies passing in these chunks.
    fn run(h: &mut FakeHost, w: &Shared, status: Option<u16>, request_body: &[&[u8]], response_body: &[&[u8]]) {
        let mut s = Stream::new(Some(w.clone()));
        s.request_headers(h);
        for chunk in request_body {
            h.request_chunk = chunk.to_vec();
            s.body(h, Dir::Request, chunk.len());
        }
        if let Some(status) = status {
            h.response_headers = vec![(":status".into(), status.to_string())];
            s.response_headers(h);
            for chunk in response_body {
                h.response_chunk = chunk.to_vec();
                s.body(h, Dir::Response, chunk.len());
            }
        }
        s.done(h);
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
        for (status, flags, outcome) in [
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
        w.borrow_mut().call_done(10, || true);
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
        s.request_headers(&mut h);
        h.now_ms = 1_042;
        s.body(&mut h, Dir::Request, 10);
        h.response_headers = vec![(":status".into(), "200".into())];
        s.response_headers(&mut h);
        s.body(&mut h, Dir::Response, 10);
        s.done(&mut h);
        // An unsampled request: no body is read, no flags, every counter stays in the worker.
        let expected = ["headers", "set_header", "now_ms", "header", "set_header", "now_ms", "record_metric"];
        assert_eq!(h.calls, expected);
        assert_eq!(h.recorded("switchyard_request_duration_ms;model=mlp;version=v1"), [42]);

        let w = worker(&mut h, &two_versions(json!({"sampling": {"rate": 1.0}})));
        h.request(&[(":path", "/v2/models/mlp/infer")]);
        run(&mut h, &w, Some(200), &[b"{}"], &[b"{}"]);
        let sampled = [
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
            "header",
            "property_u64",
        ];
        assert_eq!(h.calls, sampled);
    }
}
