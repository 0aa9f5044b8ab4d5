//! Switchyard's Envoy filter: a thin proxy-wasm adapter over `switchyard-policy`.
//!
//! Per request: strip client copies of the internal headers, pick the model version (weighted,
//! sticky, override), route by setting the upstream-cluster header, maybe mirror to the shadow
//! version, and on completion account the outcome against the version's SLO and maybe ship a
//! payload sample. The request itself is never held, altered beyond routing, or failed here.
//!
//! Modules, each depending only on those after it: this file binds proxy-wasm's callbacks to
//! `root` (configuration, timer) and `stream` (one request), which share a `worker`'s state;
//! `metrics` names and counts; `host` is every call into Envoy.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[cfg(test)]
mod fake;
mod host;
mod metrics;
mod root;
mod stream;
mod worker;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::host::{Dir, Envoy};
use crate::root::Root;
use crate::stream::Stream;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, _body: usize, _trailers: usize) {
        self.call_done(token);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        self.configure(&mut Envoy)
    }

    fn on_tick(&mut self) {
        self.tick();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream::new(self.worker())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.request_headers(&mut Envoy);
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        self.body(&mut Envoy, Dir::Request, body_size);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.response_headers(&mut Envoy);
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        self.body(&mut Envoy, Dir::Response, body_size);
        Action::Continue
    }

    fn on_log(&mut self) {
        self.done(&mut Envoy);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]

    use std::rc::Rc;

    use serde_json::json;

    use super::*;
    use crate::fake::FakeHost;

    fn routing_to(cluster: &str) -> serde_json::Value {
        json!({"models": {"mlp": {"versions": [{"name": "v1", "cluster": cluster, "weight": 1}]}}})
    }

    /// The cluster a new request for the model is sent to.
    fn routes_to(root: &Root, h: &mut FakeHost) -> Option<String> {
        h.request(&[(":path", "/v2/models/mlp/infer")]);
        Stream::new(root.worker()).request_headers(h);
        h.request_header("x-switchyard-upstream").map(str::to_owned)
    }

    #[test]
    fn a_valid_config_replaces_the_running_one_and_an_invalid_one_is_refused() {
        let mut root = Root::default();
        let mut h = FakeHost::default();
        assert!(!root.configure(&mut h), "no configuration at all");
        assert_eq!(routes_to(&root, &mut h), None);

        h.set_config(&routing_to("first"));
        assert!(root.configure(&mut h));
        assert_eq!(routes_to(&root, &mut h).as_deref(), Some("first"));
        h.set_config(&routing_to("second"));
        assert!(root.configure(&mut h));
        assert_eq!(routes_to(&root, &mut h).as_deref(), Some("second"));

        let running = root.worker();
        for bad in [&b"{not json"[..], br#"{"models": {}}"#, routing_to("bad cluster").to_string().as_bytes()] {
            h.plugin_config = Some(bad.to_vec());
            h.logs.clear();
            assert!(!root.configure(&mut h), "{}", String::from_utf8_lossy(bad));
            assert!(h.logs.iter().any(|(level, _)| *level == LogLevel::Error), "refusal not logged: {:?}", h.logs);
            assert!(matches!((&running, &root.worker()), (Some(a), Some(b)) if Rc::ptr_eq(a, b)));
            assert_eq!(routes_to(&root, &mut h).as_deref(), Some("second"));
        }
    }

    #[test]
    fn requests_in_flight_finish_under_the_configuration_they_started_with() {
        let mut root = Root::default();
        let mut h = FakeHost::default();
        h.set_config(&routing_to("first"));
        assert!(root.configure(&mut h));
        h.request(&[(":path", "/v2/models/mlp/infer")]);
        let mut in_flight = Stream::new(root.worker());
        in_flight.request_headers(&mut h);
        let mut renamed = routing_to("third");
        renamed["version_header"] = json!("x-new");
        h.set_config(&renamed);
        assert!(root.configure(&mut h));
        h.response_headers = vec![(":status".into(), "200".into())];
        in_flight.response_headers(&mut h);
        assert_eq!(h.response_header("x-switchyard-version"), Some("v1"));
        assert_eq!(h.response_header("x-new"), None);
        assert_eq!(routes_to(&root, &mut h).as_deref(), Some("third"));
    }
}
