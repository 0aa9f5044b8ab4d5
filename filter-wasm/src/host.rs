//! Every call into Envoy, and what the filter knows of Envoy, lives here. Failures are logged
//! or turned into `None`/`false`: nothing the host answers may take a request down.
//!
//! The calls the request flow, configuration and timer make go through [`Host`] (and shared
//! data through `slo::SharedStore`), so that all of them run natively against a fake.

use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, Status};
use switchyard_policy::slo::{self, Ending, Outcome, SetResult, SharedStore};

// Envoy's response flags: the `response.flags` property is `StreamInfo::legacyResponseFlags()`,
// bit n set for `CoreResponseFlag` n (envoy/stream_info/stream_info.h; the values are pinned by
// `LegacyResponseFlagTest` in test/common/stream_info/stream_info_impl_test.cc).
const NO_HEALTHY_UPSTREAM: u64 = 0x2; // UH
const UPSTREAM_REQUEST_TIMEOUT: u64 = 0x4; // UT
const LOCAL_RESET: u64 = 0x8; // LR
const UPSTREAM_REMOTE_RESET: u64 = 0x10; // UR
const UPSTREAM_CONNECTION_FAILURE: u64 = 0x20; // UF
const UPSTREAM_CONNECTION_TERMINATION: u64 = 0x40; // UC
/// The client's connection went away with the stream unfinished (`DC`).
pub const DOWNSTREAM_CONNECTION_TERMINATION: u64 = 0x4000; // DC
const STREAM_IDLE_TIMEOUT: u64 = 0x1_0000; // SI
/// The client reset its stream (an HTTP/2 or HTTP/3 RST_STREAM, `DR`, in recent Envoys): a
/// hang-up as well.
pub const DOWNSTREAM_REMOTE_RESET: u64 = 0x1000_0000; // DR
const TIMED_OUT: u64 = UPSTREAM_REQUEST_TIMEOUT | STREAM_IDLE_TIMEOUT;
const RESET: u64 = NO_HEALTHY_UPSTREAM
    | LOCAL_RESET
    | UPSTREAM_REMOTE_RESET
    | UPSTREAM_CONNECTION_FAILURE
    | UPSTREAM_CONNECTION_TERMINATION;
const CLIENT_GONE: u64 = DOWNSTREAM_CONNECTION_TERMINATION | DOWNSTREAM_REMOTE_RESET;

pub const RESPONSE_FLAGS: &[&str] = &["response", "flags"];

/// How a request ended, from `:status` and, for failures only, Envoy's response flags: they tell
/// a timeout, a reset or a client that left from a plain 5xx, and reading them is a host call
/// the common path skips. `client_deadline`: a 504 carried the backend's mark that the client's
/// own deadline passed (read only on 504s, for the same reason).
pub fn outcome(h: &mut impl Host, status: Option<u16>, client_deadline: bool, quota_exceeded: bool) -> Outcome {
    let flags = match status {
        Some(s) if s < 500 => 0,
        _ => h.property_u64(RESPONSE_FLAGS).unwrap_or(0),
    };
    let ending = Ending {
        timed_out: flags & TIMED_OUT != 0,
        reset: flags & RESET != 0,
        client_gone: flags & CLIENT_GONE != 0,
        client_deadline,
        quota_exceeded,
    };
    slo::classify(status, ending)
}

/// When Envoy received the request's first byte (ms since the epoch; Envoy's is in ns).
pub fn request_start_ms(h: &mut impl Host) -> Option<u64> {
    h.property_u64(&["request", "time"]).map(|ns| ns / 1_000_000)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    Request,
    Response,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// The host as the request flow and configuration see it.
pub trait Host {
    fn log(&mut self, level: LogLevel, msg: &str);
    fn now_ms(&mut self) -> u64;
    fn random_seed(&mut self) -> u64;
    fn plugin_configuration(&mut self) -> Option<Vec<u8>>;
    /// The filter's name in Envoy's configuration (the same across its policy changes).
    fn plugin_name(&mut self) -> String;
    /// Tells Envoy a root context that asked to finish later (`on_done` said no) is done.
    fn done(&mut self);
    fn set_tick_period(&mut self, period: Duration);
    fn headers(&mut self, dir: Dir) -> Vec<(String, String)>;
    fn header(&mut self, dir: Dir, name: &str) -> Option<String>;
    fn set_header(&mut self, dir: Dir, name: &str, value: Option<&str>);
    /// Answers the request from the filter (the request goes no further).
    fn send_local_reply(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]);
    /// Answers a gRPC call from the filter: a trailers-only response with this status.
    fn send_grpc_reply(&mut self, grpc_status: u32, message: &str);
    /// Up to `max` bytes of the body chunk now passing through.
    fn body(&mut self, dir: Dir, max: usize) -> Vec<u8>;
    /// Replaces the first `size` bytes of the request body passing through with `value`.
    fn replace_request_body_prefix(&mut self, size: usize, value: &[u8]) -> bool;
    /// A response trailer (a value that is not UTF-8 counts as absent).
    fn response_trailer(&mut self, name: &str) -> Option<String>;
    /// Makes Envoy pick the route again, for routing facts set after the headers passed.
    fn clear_route_cache(&mut self) -> bool;
    /// Sets a property of the stream (Envoy: filter state `wasm.<name>`).
    fn set_property(&mut self, name: &str, value: &[u8]) -> bool;
    fn property_u64(&mut self, path: &[&str]) -> Option<u64>;
    fn define_metric(&mut self, kind: Kind, name: &str) -> Option<u32>;
    fn increment_metric(&mut self, id: u32, by: i64);
    /// Sets a gauge, or records a histogram sample.
    fn record_metric(&mut self, id: u32, value: u64);
    /// POSTs `body` to `cluster` (a collector call); the call's token, `None` if not made.
    fn dispatch_post(&mut self, cluster: &str, path: &str, body: &[u8], timeout: Duration) -> Option<u32>;
    /// Sends a request to `cluster` (a shadow comparison's call); the call's token.
    fn dispatch_call(
        &mut self,
        cluster: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout: Duration,
    ) -> Option<u32>;
    /// `:status` of the response to the dispatched call being answered (Envoy answers 504 on a
    /// timeout).
    fn call_response_status(&mut self) -> Option<u16>;
    fn call_response_header(&mut self, name: &str) -> Option<String>;
    /// Up to `max` bytes of the answered call's body.
    fn call_response_body(&mut self, max: usize) -> Vec<u8>;
}

/// The real host.
pub struct Envoy;

impl Host for Envoy {
    fn log(&mut self, level: LogLevel, msg: &str) {
        let _ = hostcalls::log(level, msg);
    }

    fn now_ms(&mut self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64)
    }

    /// 64 bits from the host's entropy: std seeds `RandomState` with WASI `random_get`, which
    /// Envoy serves from BoringSSL.
    fn random_seed(&mut self) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(self.now_ms());
        h.finish()
    }

    fn plugin_configuration(&mut self) -> Option<Vec<u8>> {
        hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX).ok().flatten()
    }

    fn plugin_name(&mut self) -> String {
        hostcalls::get_property(vec!["plugin_name"])
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default()
    }

    fn done(&mut self) {
        if let Err(e) = hostcalls::done() {
            self.log(LogLevel::Warn, &format!("switchyard: could not finish the root context: {e:?}"));
        }
    }

    fn set_tick_period(&mut self, period: Duration) {
        let _ = hostcalls::set_tick_period(period);
    }

    /// Values are read as bytes: the SDK's `String` variants panic (and so crash the VM) on a
    /// value that is not UTF-8, which a client can send. Here such a value is kept with its
    /// bad bytes replaced.
    fn headers(&mut self, dir: Dir) -> Vec<(String, String)> {
        let headers = hostcalls::get_map_bytes(map(dir)).unwrap_or_default();
        headers.into_iter().map(|(k, v)| (k, utf8_lossy(v))).collect()
    }

    /// A value that is not UTF-8 counts as absent (see [`Envoy::headers`]).
    fn header(&mut self, dir: Dir, name: &str) -> Option<String> {
        let value = hostcalls::get_map_value_bytes(map(dir), name).ok().flatten()?;
        String::from_utf8(value).ok()
    }

    fn set_header(&mut self, dir: Dir, name: &str, value: Option<&str>) {
        let _ = hostcalls::set_map_value(map(dir), name, value);
    }

    fn send_local_reply(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        if let Err(e) = hostcalls::send_http_response(status, headers.to_vec(), Some(body)) {
            self.log(LogLevel::Warn, &format!("switchyard: could not send a local reply: {e:?}"));
        }
    }

    fn send_grpc_reply(&mut self, grpc_status: u32, message: &str) {
        use proxy_wasm::types::GrpcStatusCode as C;
        let code = match grpc_status {
            3 => C::InvalidArgument,
            5 => C::NotFound,
            7 => C::PermissionDenied,
            12 => C::Unimplemented,
            14 => C::Unavailable,
            _ => C::Internal,
        };
        if let Err(e) = hostcalls::send_grpc_response(code, Some(message), vec![]) {
            self.log(LogLevel::Warn, &format!("switchyard: could not send a gRPC reply: {e:?}"));
        }
    }

    fn replace_request_body_prefix(&mut self, size: usize, value: &[u8]) -> bool {
        // Envoy drains `size` bytes from the start of the buffered body and prepends `value`.
        hostcalls::set_buffer(BufferType::HttpRequestBody, 0, size, value).is_ok()
    }

    fn response_trailer(&mut self, name: &str) -> Option<String> {
        let value = hostcalls::get_map_value_bytes(MapType::HttpResponseTrailers, name).ok().flatten()?;
        String::from_utf8(value).ok()
    }

    fn set_property(&mut self, name: &str, value: &[u8]) -> bool {
        hostcalls::set_property(vec![name], Some(value)).is_ok()
    }

    /// Envoy's foreign function `clear_route_cache` (source/extensions/common/wasm/foreign.cc).
    fn clear_route_cache(&mut self) -> bool {
        hostcalls::call_foreign_function("clear_route_cache", None).is_ok()
    }

    fn body(&mut self, dir: Dir, max: usize) -> Vec<u8> {
        let buffer = match dir {
            Dir::Request => BufferType::HttpRequestBody,
            Dir::Response => BufferType::HttpResponseBody,
        };
        hostcalls::get_buffer(buffer, 0, max).ok().flatten().unwrap_or_default()
    }

    /// Envoy encodes integer properties as 8 little-endian bytes.
    fn property_u64(&mut self, path: &[&str]) -> Option<u64> {
        let bytes = hostcalls::get_property(path.to_vec()).ok().flatten()?;
        let arr: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
        Some(u64::from_le_bytes(arr))
    }

    /// Once per name and kind in this VM: Envoy gives every `define_metric` call a new id and
    /// keeps it for the VM's life, and every policy change defines the filter's metrics again,
    /// so Envoy's memory grew by some 11 KB a policy change (measured at 40 changes a second).
    fn define_metric(&mut self, kind: Kind, name: &str) -> Option<u32> {
        thread_local! {
            static IDS: std::cell::RefCell<std::collections::HashMap<(Kind, String), u32>> =
                std::cell::RefCell::default();
        }
        if let Some(id) = IDS.with(|ids| ids.borrow().get(&(kind, name.to_owned())).copied()) {
            return Some(id);
        }
        let t = match kind {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
            Kind::Histogram => MetricType::Histogram,
        };
        let id = hostcalls::define_metric(t, name).ok()?;
        IDS.with(|ids| ids.borrow_mut().insert((kind, name.to_owned()), id));
        Some(id)
    }

    fn increment_metric(&mut self, id: u32, by: i64) {
        let _ = hostcalls::increment_metric(id, by);
    }

    fn record_metric(&mut self, id: u32, value: u64) {
        let _ = hostcalls::record_metric(id, value);
    }

    fn dispatch_post(&mut self, cluster: &str, path: &str, body: &[u8], timeout: Duration) -> Option<u32> {
        self.dispatch_call(cluster, path, &[("content-type", "application/json")], body, timeout)
    }

    fn dispatch_call(
        &mut self,
        cluster: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout: Duration,
    ) -> Option<u32> {
        let mut all = vec![(":method", "POST"), (":path", path), (":authority", cluster)];
        all.extend_from_slice(headers);
        hostcalls::dispatch_http_call(cluster, all, Some(body), vec![], timeout).ok()
    }

    fn call_response_status(&mut self) -> Option<u16> {
        hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status").ok().flatten()?.parse().ok()
    }

    /// A value that is not UTF-8 counts as absent (see [`Envoy::headers`]).
    fn call_response_header(&mut self, name: &str) -> Option<String> {
        let value = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name).ok().flatten()?;
        String::from_utf8(value).ok()
    }

    fn call_response_body(&mut self, max: usize) -> Vec<u8> {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, max).ok().flatten().unwrap_or_default()
    }
}

fn utf8_lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn map(dir: Dir) -> MapType {
    match dir {
        Dir::Request => MapType::HttpRequestHeaders,
        Dir::Response => MapType::HttpResponseHeaders,
    }
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
