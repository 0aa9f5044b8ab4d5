//! Faults the chaos drills inject into the filter itself, compiled only with `--features
//! failpoints` (`scripts/build-filter.sh --failpoints`, into its own target directory), in
//! the manner of TiKV's fail points: the product build has none of this code.
//!
//! `x-switchyard-failpoint: panic` on a request makes the filter panic in its request-header
//! callback, which traps the Wasm VM as a bug in a filter build would (the `filter-crash`
//! drill).
#![allow(clippy::panic)]

use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;

const HEADER: &str = "x-switchyard-failpoint";

pub fn request_headers() {
    if let Ok(Some(v)) = hostcalls::get_map_value(MapType::HttpRequestHeaders, HEADER)
        && v == "panic"
    {
        panic!("failpoint: {HEADER}: panic");
    }
}

/// Logged at every configuration of a VM, so that no one mistakes a failpoint build for the
/// product.
pub fn announce() {
    let _ = hostcalls::log(
        proxy_wasm::types::LogLevel::Warn,
        "switchyard: this filter was built with failpoints (chaos drills only, never for production)",
    );
}
