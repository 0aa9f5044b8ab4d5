//! Every call into Envoy lives here. Failures are logged or turned into `None`/`false`:
//! nothing the host answers may take a request down.

use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, Status};
use switchyard_policy::slo::{SetResult, SharedStore};

pub fn log(level: LogLevel, msg: &str) {
    let _ = hostcalls::log(level, msg);
}

pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

/// 64 bits from the host's entropy: std seeds `RandomState` with WASI `random_get`, which
/// Envoy serves from BoringSSL.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_ms());
    h.finish()
}

pub fn set_tick_period(d: Duration) {
    let _ = hostcalls::set_tick_period(d);
}

pub fn plugin_configuration() -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX).ok().flatten()
}

pub fn request_header(name: &str) -> Option<String> {
    hostcalls::get_map_value(MapType::HttpRequestHeaders, name).ok().flatten()
}

pub fn response_header(name: &str) -> Option<String> {
    hostcalls::get_map_value(MapType::HttpResponseHeaders, name).ok().flatten()
}

pub fn request_headers() -> Vec<(String, String)> {
    hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default()
}

pub fn response_headers() -> Vec<(String, String)> {
    hostcalls::get_map(MapType::HttpResponseHeaders).unwrap_or_default()
}

pub fn set_request_header(name: &str, value: Option<&str>) {
    let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value);
}

pub fn set_response_header(name: &str, value: &str) {
    let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value));
}

/// Up to `max` bytes of the body chunk now passing through.
pub fn request_body(max: usize) -> Vec<u8> {
    hostcalls::get_buffer(BufferType::HttpRequestBody, 0, max).ok().flatten().unwrap_or_default()
}

pub fn response_body(max: usize) -> Vec<u8> {
    hostcalls::get_buffer(BufferType::HttpResponseBody, 0, max).ok().flatten().unwrap_or_default()
}

/// An integer property (Envoy encodes them as 8 little-endian bytes).
pub fn property_u64(path: &[&str]) -> Option<u64> {
    let bytes = hostcalls::get_property(path.to_vec()).ok().flatten()?;
    let arr: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(arr))
}

/// Envoy's shared data for this VM id, shared by every worker.
pub struct SharedData;

impl SharedStore for SharedData {
    fn get(&mut self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            // A present but empty value still has a token to swap against.
            Ok((value, Some(cas))) => Some((value.unwrap_or_default(), cas)),
            _ => None,
        }
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> SetResult {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => SetResult::Ok,
            Err(Status::CasMismatch) => SetResult::CasMismatch,
            Err(_) => SetResult::Failed,
        }
    }
}

pub fn dispatch_post(cluster: &str, path: &str, body: &[u8], timeout: Duration) -> Option<u32> {
    let headers =
        vec![(":method", "POST"), (":path", path), (":authority", cluster), ("content-type", "application/json")];
    hostcalls::dispatch_http_call(cluster, headers, Some(body), vec![], timeout).ok()
}

/// `:status` of the response to a dispatched call (Envoy answers 504 on a timeout).
pub fn call_response_status() -> Option<u16> {
    hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status").ok().flatten()?.parse().ok()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

pub fn define_metric(kind: Kind, name: &str) -> Option<u32> {
    let t = match kind {
        Kind::Counter => MetricType::Counter,
        Kind::Gauge => MetricType::Gauge,
        Kind::Histogram => MetricType::Histogram,
    };
    hostcalls::define_metric(t, name).ok()
}

pub fn increment_metric(id: u32, by: i64) {
    let _ = hostcalls::increment_metric(id, by);
}

/// Sets a gauge, or records a histogram sample.
pub fn record_metric(id: u32, value: u64) {
    let _ = hostcalls::record_metric(id, value);
}
