//! One HTTP request through the filter.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use switchyard_policy::paths;
use switchyard_policy::sampling::{self, Envelope, Payload};
use switchyard_policy::slo::{self, Counts};
use switchyard_policy::split::{self, RequestFacts};

use crate::host;
use crate::metrics::{outcome_index, reason_index};
use crate::root::{Sample, Shared};

/// Envoy's response flags (legacy bitmask of the `response.flags` property).
const FLAG_TIMEOUT: u64 = 0x4 | 0x1_0000; // upstream request timeout, stream idle timeout
const FLAG_RESET: u64 = 0x2 | 0x8 | 0x10 | 0x20 | 0x40; // no healthy upstream, local/remote reset, connect failure, termination

const BINARY_HEADER: &str = "inference-header-content-length";

#[derive(Default)]
struct Capture {
    /// Body bytes kept per direction (`sampling.max_body_bytes`).
    cap: usize,
    request: Side,
    response: Side,
}

#[derive(Default)]
struct Side {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    bytes: u64,
    truncated: bool,
    json_len: Option<usize>,
}

impl Side {
    fn take(&mut self, chunk_size: usize, cap: usize, read: impl FnOnce(usize) -> Vec<u8>) {
        self.bytes += chunk_size as u64;
        let room = cap.saturating_sub(self.body.len());
        if chunk_size > room {
            self.truncated = true;
        }
        if room > 0 && chunk_size > 0 {
            self.body.extend(read(chunk_size.min(room)));
        }
    }

    fn payload(&mut self, redact_headers: &[String], redact_fields: &[String]) -> Payload {
        let mut headers = std::mem::take(&mut self.headers);
        sampling::redact_headers(&mut headers, redact_headers);
        let (body, binary) = sampling::body_value(&self.body, self.truncated, self.json_len, redact_fields);
        Payload { headers, body, bytes: self.bytes, truncated: self.truncated, binary_bytes_omitted: binary }
    }
}

struct Routed {
    model: usize,
    version: usize,
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

    fn route(&mut self) {
        let Some(shared) = &self.worker else { return };
        let Ok(mut guard) = shared.try_borrow_mut() else { return };
        let w = &mut *guard;
        // One host call for every header: cheaper than asking for each one.
        let headers = host::request_headers();
        let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        // Client copies of the internal headers would let a client pick a route: drop them first.
        for h in [&w.config.upstream_header, &w.config.shadow_header] {
            if header(h).is_some() {
                host::set_request_header(h, None);
            }
        }
        let Some(p) = header(":path").and_then(paths::parse) else {
            w.counters.inc(w.ids.unrouted_not_model);
            return;
        };
        let Some(mi) = w.models.iter().position(|(name, _)| name == p.model) else {
            w.counters.inc(w.ids.unrouted_unknown_model);
            return;
        };
        let (Some((_, policy)), Some(ids)) = (w.models.get(mi), w.ids.models.get(mi)) else { return };
        let cookie;
        let sticky_key = match policy.sticky.as_ref().map(|s| (&s.header, &s.cookie)) {
            Some((Some(h), _)) => header(h),
            Some((None, Some(c))) => {
                cookie = header("cookie");
                cookie.and_then(|v| split::cookie_value(v, c))
            }
            _ => None,
        };
        let facts = RequestFacts {
            requested: policy.override_.as_ref().and_then(|o| header(&o.header)).or(p.version),
            sticky_key: sticky_key.filter(|k| !k.is_empty()),
            random: w.rng.next_u64(),
            shadow_random: w.rng.next_f64(),
        };
        let d = split::decide(policy, &facts);
        let Some(version) = policy.versions.get(d.version) else { return };
        host::set_request_header(&w.config.upstream_header, Some(&version.cluster));
        if p.version.is_some() {
            host::set_request_header(":path", Some(&paths::unversioned(&p)));
        }
        if let Some(shadow) = d.shadow.and_then(|i| policy.versions.get(i)) {
            host::set_request_header(&w.config.shadow_header, Some(&shadow.cluster));
        }
        let sampling = policy.sampling.as_ref().filter(|s| w.rng.next_f64() < s.rate);
        let capture = sampling.map(|s| Capture {
            cap: s.max_body_bytes,
            request: Side {
                json_len: header(BINARY_HEADER).and_then(|v| v.trim().parse().ok()),
                headers: headers.clone(),
                ..Side::default()
            },
            response: Side::default(),
        });
        if d.override_refused {
            w.counters.inc(ids.override_refused);
        }
        if let Some(v) = ids.versions.get(d.version) {
            if let Some(c) = v.decisions.get(reason_index(d.reason)) {
                w.counters.inc(*c);
            }
            if let (Some(c), true) = (v.samples.first(), capture.is_some()) {
                w.counters.inc(*c);
            }
        }
        if let Some(v) = d.shadow.and_then(|i| ids.versions.get(i)) {
            w.counters.inc(v.shadowed);
        }
        self.routed = Some(Routed { model: mi, version: d.version, start_ms: host::now_ms(), status: None, capture });
    }

    fn finish(&mut self) {
        let (Some(shared), Some(r)) = (&self.worker, self.routed.as_mut()) else {
            return;
        };
        let Ok(mut guard) = shared.try_borrow_mut() else {
            return;
        };
        let w = &mut *guard;
        let status = r.status;
        // Response flags only matter for failures: skip the property read on the common path.
        let flags = match status {
            Some(s) if s < 500 => 0,
            _ => host::property_u64(&["response", "flags"]).unwrap_or(0),
        };
        let outcome = slo::classify(status, flags & FLAG_TIMEOUT != 0, flags & FLAG_RESET != 0);
        let latency_ms = host::now_ms().saturating_sub(r.start_ms);
        let Some((model, policy)) = w.models.get(r.model) else {
            return;
        };
        let Some(version) = policy.versions.get(r.version) else {
            return;
        };
        if let Some(v) = w.ids.models.get(r.model).and_then(|m| m.versions.get(r.version)) {
            v.duration_ms.record(latency_ms);
            if let Some(c) = v.requests.get(outcome_index(outcome)) {
                w.counters.inc(*c);
            }
        }
        if let Some(slo) = &policy.slo {
            let event = Counts::event(outcome, status, latency_ms, slo.latency_ms);
            if let Some(windows) = w.pending.get_mut(r.model).and_then(|m| m.get_mut(r.version)) {
                for c in windows.iter_mut() {
                    c.add(&event);
                }
            }
        }
        let (Some(mut cap), Some(s)) = (r.capture.take(), &policy.sampling) else {
            return;
        };
        let envelope = Envelope {
            schema: 1,
            model: model.clone(),
            version: version.name.clone(),
            request_id: host::request_header("x-request-id").unwrap_or_default(),
            start_unix_ms: host::property_u64(&["request", "time"]).map_or(r.start_ms, |ns| ns / 1_000_000),
            duration_ms: latency_ms,
            status,
            outcome: outcome.as_str(),
            request: cap.request.payload(&s.redact_headers, &s.redact_fields),
            response: cap.response.payload(&s.redact_headers, &s.redact_fields),
        };
        let max_queued = w.config.collector.as_ref().map_or(0, |c| c.max_queued);
        match serde_json::to_vec(&envelope) {
            Ok(body) if w.samples.len() < max_queued => {
                w.samples.push_back(Sample { model: r.model, version: r.version, body });
            }
            // Queue full (collector slow or down) or unserialisable: dropped, counted.
            _ => w.sample_metric(r.model, r.version, 3),
        }
    }
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.route();
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        if let Some(c) = self.routed.as_mut().and_then(|r| r.capture.as_mut()) {
            c.request.take(body_size, c.cap, host::request_body);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(r) = self.routed.as_mut() else {
            return Action::Continue;
        };
        r.status = host::response_header(":status").and_then(|s| s.parse().ok());
        if let Some(c) = r.capture.as_mut() {
            c.response.headers = host::response_headers();
            c.response.json_len = host::response_header(BINARY_HEADER).and_then(|v| v.trim().parse().ok());
        }
        let name = self.worker.as_ref().and_then(|w| w.try_borrow().ok()).and_then(|w| {
            let (_, p) = w.models.get(r.model)?;
            Some((w.config.version_header.clone(), p.versions.get(r.version)?.name.clone()))
        });
        if let Some((header, version)) = name {
            host::set_response_header(&header, &version);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        if let Some(c) = self.routed.as_mut().and_then(|r| r.capture.as_mut()) {
            c.response.take(body_size, c.cap, host::response_body);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        self.finish();
    }
}
