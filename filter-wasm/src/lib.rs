//! Switchyard's Envoy filter: a thin proxy-wasm adapter over `switchyard-policy`.
//!
//! Per request: strip client copies of the internal headers, pick the model version (weighted,
//! sticky, override), route by setting the upstream-cluster header, maybe mirror to the shadow
//! version, and on completion account the outcome against the version's SLO and maybe ship a
//! payload sample. The request itself is never held, altered beyond routing (its path in the
//! canonical form the decision was made on), or failed here, with one exception: a model path
//! whose names cannot be decoded unambiguously is answered 400, since no decision about it can
//! be trusted.
//!
//! Modules, each depending only on those after it: this file binds proxy-wasm's callbacks to
//! `root` (configuration, timer) and `stream` (one request), which share a `worker`'s state;
//! `metrics` names and counts; `host` is every call into Envoy.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod compare;
#[cfg(feature = "failpoints")]
mod failpoints;
#[cfg(test)]
mod fake;
mod host;
mod metrics;
mod root;
mod stream;
mod worker;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::host::{Dir, Envoy, SharedData};
use crate::root::Root;
use crate::stream::Stream;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body: usize, _trailers: usize) {
        self.call_done(&mut Envoy, token, body);
    }

    fn on_done(&mut self) -> bool {
        self.finish()
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        #[cfg(feature = "failpoints")]
        failpoints::announce();
        self.configure(&mut Envoy)
    }

    fn on_tick(&mut self) {
        self.tick(&mut Envoy, &mut SharedData);
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
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        #[cfg(feature = "failpoints")]
        failpoints::request_headers();
        self.request_headers(&mut Envoy, end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.request_body(&mut Envoy, body_size, end_of_stream)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.response_headers(&mut Envoy);
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        self.body(&mut Envoy, Dir::Response, body_size);
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.response_trailers(&mut Envoy);
        Action::Continue
    }

    fn on_log(&mut self) {
        self.finish(&mut Envoy);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]

    use std::collections::HashMap;
    use std::rc::Rc;

    use serde_json::json;

    use switchyard_contract::paths::COLLECTOR_ANSWER_HEADER;
    use switchyard_policy::sampling::SampleResult;
    use switchyard_policy::slo::{Window, WindowSpec};

    use super::*;
    use crate::fake::{FakeHost, FakeStore};

    fn routing_to(cluster: &str) -> serde_json::Value {
        json!({"models": {"mlp": {"versions": [{"name": "v1", "cluster": cluster, "weight": 1}]}}})
    }

    /// The cluster a new request for the model is sent to.
    fn routes_to(root: &Root, h: &mut FakeHost) -> Option<String> {
        h.request(&[(":path", "/v2/models/mlp/infer")]);
        Stream::new(root.worker()).request_headers(h, false);
        h.request_header("x-switchyard-upstream").map(str::to_owned)
    }

    /// A policy of the swap test: `models` as (model, versions); every one sampled and with an
    /// SLO unless `collector` is 0 (no collector, no sampling), windows as given.
    fn policy(models: &[(&str, &[&str])], windows: &[&str], collector: usize) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (name, versions) in models {
            let versions: Vec<_> =
                versions.iter().map(|v| json!({"name": v, "cluster": format!("{name}-{v}"), "weight": 1})).collect();
            let mut p = json!({"versions": versions, "slo": {"availability": 0.99, "latency_ms": 100}});
            if collector > 0 {
                p["sampling"] = json!({"rate": 1.0});
            }
            m.insert((*name).to_owned(), p);
        }
        let mut c = json!({"models": m, "slo_windows": windows});
        if collector > 0 {
            c["collector"] = json!({"cluster": "collector", "max_queued": collector, "max_in_flight": 2});
        }
        c
    }

    /// Window totals over every version of every model, for windows of `label`.
    fn shared_totals(store: &FakeStore, label: &str, now_ms: u64) -> u64 {
        let spec = WindowSpec::parse(label).unwrap();
        let suffix = format!("/{}", spec.seconds);
        store
            .map
            .iter()
            .filter(|(k, _)| k.starts_with("switchyard/slo/") && k.ends_with(&suffix))
            .filter_map(|(_, (b, _))| Window::decode(&spec, b))
            .map(|w| w.totals(now_ms).total)
            .sum()
    }

    /// The attack: every ECDS policy change dropped the worker's unflushed counters, pending
    /// SLO events and queued samples, and requests in flight finished into a worker nobody
    /// flushed. Under traffic that spans swaps (requests in flight, collector calls in flight,
    /// versions, models and windows removed and re-added, the collector removed), every count
    /// still adds up.
    #[test]
    fn policy_swaps_under_traffic_lose_no_count_event_or_sample() {
        swaps_under_traffic(false);
    }

    /// The same as Envoy does it: each policy gets a new root context in the same VM, and the
    /// old one lives on (ticking, answered its collector calls) until its requests are done.
    #[test]
    fn policy_swaps_to_new_root_contexts_lose_nothing_either() {
        swaps_under_traffic(true);
    }

    /// The collector answers call `token` to the root context `by` that made it; one that was
    /// waiting for its last call to finish is deleted.
    fn answer(roots: &mut [Option<Root>], finishing: &[usize], h: &mut FakeHost, token: u32, by: usize) {
        let done_before = h.count("done");
        if let Some(r) = roots[by].as_mut() {
            r.call_done(h, token, 0);
        }
        if h.count("done") > done_before {
            assert!(finishing.contains(&by), "a root context finished that was not asked to");
            roots[by] = None;
        }
    }

    fn swaps_under_traffic(new_root_per_policy: bool) {
        let policies = [
            (policy(&[("mlp", &["v1", "v2"]), ("other", &["v1"])], &["5m", "1h"], 3), true),
            (policy(&[("mlp", &["v1"])], &["5m"], 2), false),
            (policy(&[("mlp", &["v1", "v3"]), ("other", &["v1"])], &["5m", "1h"], 4), true),
            (policy(&[("mlp", &["v1"])], &["5m", "1h"], 0), true),
        ];
        let has_model = |p: usize, model: &str| policies[p].0["models"].get(model).is_some();
        // Root contexts; `None` once Envoy deleted one. The last is the newest.
        let mut roots: Vec<Option<Root>> = vec![Some(Root::default())];
        // Root contexts asked to finish (`on_done`) that said not yet, by index.
        let mut finishing: Vec<usize> = Vec::new();
        let mut h = FakeHost::default();
        let mut store = FakeStore::default();
        let mut current = 0;
        h.set_config(&policies[current].0);
        assert!(roots[0].as_mut().unwrap().configure(&mut h));

        // (stream, step it ends at, whether its policy has the 1h window)
        let mut streams: Vec<(Stream, usize, bool)> = Vec::new();
        // Collector calls not answered yet: (token, step it is answered at, root context that
        // made it). The collector takes 3 to 12 steps, so calls are still in flight when a
        // replaced root context is asked to finish.
        let mut calls: Vec<(u32, usize, usize)> = Vec::new();
        let (mut routed, mut routed_1h, mut unknown) = (HashMap::<&str, i64>::new(), 0, 0);
        for step in 0..400 {
            h.now_ms += 37;
            if step % 45 == 44 {
                current = (current + 1) % policies.len();
                h.set_config(&policies[current].0);
                if new_root_per_policy {
                    roots.push(Some(Root::default()));
                }
                assert!(roots.last_mut().unwrap().as_mut().unwrap().configure(&mut h));
            }
            // Envoy deletes a replaced root context once its requests are done (they last
            // at most five steps here).
            if new_root_per_policy && step % 45 == 6 {
                for i in 0..roots.len() - 1 {
                    if let Some(r) = roots[i].as_mut()
                        && !finishing.contains(&i)
                    {
                        if r.finish() {
                            roots[i] = None;
                        } else {
                            finishing.push(i);
                        }
                    }
                }
            }
            let model = if step % 3 == 0 { "other" } else { "mlp" };
            h.request(&[(":path", format!("/v2/models/{model}/infer").as_str())]);
            let newest = roots.last().unwrap().as_ref().unwrap();
            let mut s = Stream::new(newest.worker());
            s.request_headers(&mut h, false);
            if has_model(current, model) {
                *routed.entry(model).or_default() += 1;
                routed_1h += i64::from(policies[current].1);
            } else {
                unknown += 1;
            }
            streams.push((s, step + 1 + step % 5, policies[current].1));
            let (ending, rest): (Vec<_>, Vec<_>) = streams.drain(..).partition(|(_, end, _)| *end <= step);
            streams = rest;
            for (mut s, _, _) in ending {
                h.response_headers = vec![(":status".into(), "200".into())];
                s.response_headers(&mut h);
                h.response_chunk = b"{}".to_vec();
                s.body(&mut h, Dir::Response, 2);
                s.finish(&mut h);
            }
            // Every seventh call cannot be made; the collector fails every fifth it answers.
            h.refuse_calls = step % 7 == 0;
            for (i, r) in roots.iter_mut().enumerate() {
                let Some(r) = r else { continue };
                let before = h.posted.len();
                r.tick(&mut h, &mut store);
                calls.extend(h.posted[before..].iter().map(|(t, _)| (*t, step + 3 + (*t as usize % 4) * 3, i)));
            }
            let (due, later): (Vec<_>, Vec<_>) = calls.drain(..).partition(|(_, at, _)| *at <= step);
            calls = later;
            for (token, _, by) in due {
                // The collector refuses every fifth; Envoy times out every eleventh.
                let (status, said) = match token {
                    t if t % 11 == 0 => (504, None),
                    t if t % 5 == 0 => (500, Some("refused")),
                    _ => (200, Some("stored")),
                };
                h.call_status = Some(status);
                h.call_headers = said.map(|s| (COLLECTOR_ANSWER_HEADER.to_owned(), s.to_owned())).into_iter().collect();
                answer(&mut roots, &finishing, &mut h, token, by);
            }
        }
        // Drain: every request ends, every queued sample is shipped and answered, and Envoy
        // deletes every root context but the newest.
        for (mut s, _, _) in streams.drain(..) {
            h.response_headers = vec![(":status".into(), "200".into())];
            s.response_headers(&mut h);
            s.finish(&mut h);
        }
        h.refuse_calls = false;
        h.call_status = Some(200);
        h.call_headers = vec![(COLLECTOR_ANSWER_HEADER.to_owned(), "stored".to_owned())];
        for _ in 0..40 {
            h.now_ms += 100;
            for i in 0..roots.len() - 1 {
                if let Some(r) = roots[i].as_mut()
                    && !finishing.contains(&i)
                {
                    if r.finish() {
                        roots[i] = None;
                    } else {
                        finishing.push(i);
                    }
                }
            }
            for (i, r) in roots.iter_mut().enumerate() {
                let Some(r) = r else { continue };
                let before = h.posted.len();
                r.tick(&mut h, &mut store);
                calls.extend(h.posted[before..].iter().map(|(t, _)| (*t, 0, i)));
            }
            for (token, _, by) in std::mem::take(&mut calls) {
                answer(&mut roots, &finishing, &mut h, token, by);
            }
        }
        let newest = roots.last().unwrap().as_ref().unwrap();
        assert_eq!(newest.retiring(), 0, "workers of old policies outlived their requests");
        assert!(roots[..roots.len() - 1].iter().all(Option::is_none), "a replaced root context never finished");

        let c = |name: String| h.counter(&name);
        let (mut captured, mut lost, mut unanswered) = (0, 0, 0);
        for (model, version) in [("mlp", "v1"), ("mlp", "v2"), ("mlp", "v3"), ("other", "v1")] {
            let r = |r: &str| c(format!("switchyard_samples_total;model={model};version={version};result={r}"));
            let [cap, sent, failed, dropped, unans] = SampleResult::ALL.map(|x| r(x.as_str()));
            assert!(cap > 0, "{model}/{version} never sampled");
            assert_eq!(
                cap,
                sent + failed + dropped + unans,
                "{model}/{version}: {cap} != {sent} + {failed} + {dropped} + {unans}"
            );
            captured += cap;
            lost += failed + dropped;
            unanswered += unans;
        }
        assert!(lost > 0 && lost < captured, "the test never lost a sample: {lost}/{captured}");
        assert!(unanswered > 0, "no call timed out");
        for model in ["mlp", "other"] {
            let counted = h.counter_sum(&format!("switchyard_requests_total;model={model};"));
            assert_eq!(counted, routed[model], "{model}");
        }
        assert_eq!(h.counter("switchyard_unrouted_requests_total;reason=unknown_model"), unknown);
        let all: i64 = routed.values().sum();
        assert_eq!(shared_totals(&store, "5m", h.now_ms), all as u64, "SLO events lost");
        assert_eq!(
            shared_totals(&store, "1h", h.now_ms),
            routed_1h as u64,
            "1h events lost while 1h was not configured"
        );
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
        in_flight.request_headers(&mut h, false);
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
