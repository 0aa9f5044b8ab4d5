//! A host in memory, so the filter's flow runs natively: the test sets what Envoy would answer
//! and reads back what the filter did, host call by host call.
#![allow(clippy::indexing_slicing)]

use std::collections::HashMap;
use std::time::Duration;

use proxy_wasm::types::LogLevel;

use crate::host::{Dir, Host, Kind, RESPONSE_FLAGS};

/// A reply the filter sent itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A request the filter sent to a cluster: (token, cluster, path, headers, body).
pub type Dispatched = (u32, String, String, Vec<(String, String)>, Vec<u8>);

#[derive(Default)]
pub struct FakeHost {
    pub plugin_config: Option<Vec<u8>>,
    pub request_headers: Vec<(String, String)>,
    pub response_headers: Vec<(String, String)>,
    /// The body chunk now passing through, per direction.
    pub request_chunk: Vec<u8>,
    pub response_chunk: Vec<u8>,
    pub response_flags: Option<u64>,
    pub now_ms: u64,
    pub logs: Vec<(LogLevel, String)>,
    pub local_replies: Vec<LocalReply>,
    /// gRPC replies the filter sent itself: (grpc-status, message).
    pub grpc_replies: Vec<(u32, String)>,
    pub response_trailers: Vec<(String, String)>,
    /// Stream properties the filter set.
    pub properties: Vec<(String, String)>,
    /// The request headers have passed the filter: as in Envoy, asking for them now fails
    /// (the SDK panics, which would crash the VM).
    pub request_headers_passed: bool,
    /// Collector calls made: (token, body), in order.
    pub posted: Vec<(u32, Vec<u8>)>,
    /// When set, collector calls cannot be made.
    pub refuse_calls: bool,
    /// `:status` of the collector response being answered.
    pub call_status: Option<u16>,
    /// Headers and body of the call response being answered.
    pub call_headers: Vec<(String, String)>,
    pub call_body: Vec<u8>,
    /// Requests sent to clusters (shadow comparisons).
    pub dispatched: Vec<Dispatched>,
    next_token: u32,
    /// Every call made, by name, in order.
    pub calls: Vec<&'static str>,
    /// Metric names by id: like Envoy, a name defined again keeps its id.
    pub metrics: Vec<String>,
    counters: HashMap<u32, i64>,
    records: Vec<(u32, u64)>,
}

impl FakeHost {
    pub fn set_config(&mut self, config: &serde_json::Value) {
        self.plugin_config = Some(config.to_string().into_bytes());
    }

    /// Starts a new request: its headers, and no response yet.
    pub fn request(&mut self, headers: &[(&str, &str)]) {
        self.request_headers = headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        self.response_headers.clear();
        self.response_flags = None;
        self.local_replies.clear();
        self.grpc_replies.clear();
        self.response_trailers.clear();
        self.properties.clear();
        self.request_headers_passed = false;
    }

    /// Every counter whose name starts with `prefix`, summed.
    pub fn counter_sum(&self, prefix: &str) -> i64 {
        self.metrics
            .iter()
            .enumerate()
            .filter(|(_, m)| m.starts_with(prefix))
            .filter_map(|(i, _)| self.counters.get(&(i as u32)))
            .sum()
    }

    pub fn request_header(&self, name: &str) -> Option<&str> {
        find(&self.request_headers, name)
    }

    pub fn property(&self, name: &str) -> Option<&str> {
        find(&self.properties, name)
    }

    pub fn response_header(&self, name: &str) -> Option<&str> {
        find(&self.response_headers, name)
    }

    /// A metric's value as Envoy would report it: for counters, the increments flushed so far.
    pub fn counter(&self, name: &str) -> i64 {
        self.id(name).and_then(|id| self.counters.get(&id)).copied().unwrap_or(0)
    }

    /// Values recorded to a histogram or gauge.
    pub fn recorded(&self, name: &str) -> Vec<u64> {
        let id = self.id(name);
        self.records.iter().filter(|(i, _)| Some(*i) == id).map(|(_, v)| *v).collect()
    }

    pub fn count(&self, call: &str) -> usize {
        self.calls.iter().filter(|c| **c == call).count()
    }

    fn id(&self, name: &str) -> Option<u32> {
        self.metrics.iter().position(|m| m == name).map(|i| i as u32)
    }

    fn map(&mut self, dir: Dir) -> &mut Vec<(String, String)> {
        match dir {
            Dir::Request => &mut self.request_headers,
            Dir::Response => &mut self.response_headers,
        }
    }
}

fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

impl Host for FakeHost {
    fn log(&mut self, level: LogLevel, msg: &str) {
        self.calls.push("log");
        self.logs.push((level, msg.to_owned()));
    }

    fn now_ms(&mut self) -> u64 {
        self.calls.push("now_ms");
        self.now_ms
    }

    fn random_seed(&mut self) -> u64 {
        self.calls.push("random_seed");
        7
    }

    fn plugin_configuration(&mut self) -> Option<Vec<u8>> {
        self.calls.push("plugin_configuration");
        self.plugin_config.clone()
    }

    fn plugin_name(&mut self) -> String {
        self.calls.push("plugin_name");
        "switchyard".to_owned()
    }

    fn done(&mut self) {
        self.calls.push("done");
    }

    fn set_tick_period(&mut self, _period: Duration) {
        self.calls.push("set_tick_period");
    }

    fn headers(&mut self, dir: Dir) -> Vec<(String, String)> {
        self.calls.push("headers");
        assert!(!(dir == Dir::Request && self.request_headers_passed), "request headers read after they passed");
        self.map(dir).clone()
    }

    fn header(&mut self, dir: Dir, name: &str) -> Option<String> {
        self.calls.push("header");
        assert!(!(dir == Dir::Request && self.request_headers_passed), "request header {name} read after it passed");
        find(self.map(dir), name).map(str::to_owned)
    }

    fn send_local_reply(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        self.calls.push("send_local_reply");
        let headers = headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        self.local_replies.push(LocalReply { status, headers, body: body.to_vec() });
    }

    fn set_header(&mut self, dir: Dir, name: &str, value: Option<&str>) {
        self.calls.push("set_header");
        let map = self.map(dir);
        map.retain(|(k, _)| k != name);
        if let Some(v) = value {
            map.push((name.to_owned(), v.to_owned()));
        }
    }

    fn send_grpc_reply(&mut self, grpc_status: u32, message: &str) {
        self.calls.push("send_grpc_reply");
        self.grpc_replies.push((grpc_status, message.to_owned()));
    }

    fn replace_request_body_prefix(&mut self, size: usize, value: &[u8]) -> bool {
        self.calls.push("replace_request_body_prefix");
        if size > self.request_chunk.len() {
            return false;
        }
        self.request_chunk.splice(..size, value.iter().copied());
        true
    }

    fn set_property(&mut self, name: &str, value: &[u8]) -> bool {
        self.calls.push("set_property");
        self.properties.retain(|(k, _)| k != name);
        self.properties.push((name.to_owned(), String::from_utf8_lossy(value).into_owned()));
        true
    }

    fn clear_route_cache(&mut self) -> bool {
        self.calls.push("clear_route_cache");
        true
    }

    fn response_trailer(&mut self, name: &str) -> Option<String> {
        self.calls.push("response_trailer");
        find(&self.response_trailers, name).map(str::to_owned)
    }

    fn body(&mut self, dir: Dir, max: usize) -> Vec<u8> {
        self.calls.push("body");
        let chunk = match dir {
            Dir::Request => &self.request_chunk,
            Dir::Response => &self.response_chunk,
        };
        chunk[..max.min(chunk.len())].to_vec()
    }

    fn property_u64(&mut self, path: &[&str]) -> Option<u64> {
        self.calls.push("property_u64");
        if path == RESPONSE_FLAGS { self.response_flags } else { None }
    }

    fn define_metric(&mut self, _kind: Kind, name: &str) -> Option<u32> {
        self.calls.push("define_metric");
        let id = self.id(name).unwrap_or_else(|| {
            self.metrics.push(name.to_owned());
            self.metrics.len() as u32 - 1
        });
        Some(id)
    }

    fn increment_metric(&mut self, id: u32, by: i64) {
        self.calls.push("increment_metric");
        *self.counters.entry(id).or_default() += by;
    }

    fn record_metric(&mut self, id: u32, value: u64) {
        self.calls.push("record_metric");
        self.records.push((id, value));
    }

    fn dispatch_post(&mut self, _cluster: &str, _path: &str, body: &[u8], _timeout: Duration) -> Option<u32> {
        self.calls.push("dispatch_post");
        if self.refuse_calls {
            return None;
        }
        self.next_token += 1;
        self.posted.push((self.next_token, body.to_vec()));
        Some(self.next_token)
    }

    fn dispatch_call(
        &mut self,
        cluster: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        _timeout: Duration,
    ) -> Option<u32> {
        self.calls.push("dispatch_call");
        if self.refuse_calls {
            return None;
        }
        self.next_token += 1;
        let headers = headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        self.dispatched.push((self.next_token, cluster.to_owned(), path.to_owned(), headers, body.to_vec()));
        Some(self.next_token)
    }

    fn call_response_status(&mut self) -> Option<u16> {
        self.calls.push("call_response_status");
        self.call_status
    }

    fn call_response_header(&mut self, name: &str) -> Option<String> {
        self.calls.push("call_response_header");
        find(&self.call_headers, name).map(str::to_owned)
    }

    fn call_response_body(&mut self, max: usize) -> Vec<u8> {
        self.calls.push("call_response_body");
        self.call_body[..max.min(self.call_body.len())].to_vec()
    }
}

/// Envoy's shared data, as the policy crate models it.
pub type FakeStore = switchyard_policy::slo::ModelStore;
