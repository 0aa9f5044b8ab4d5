//! Switchyard's Envoy filter: a thin proxy-wasm adapter over `switchyard-policy`.
//!
//! Per request: strip client copies of the internal headers, pick the model version (weighted,
//! sticky, override), route by setting the upstream-cluster header, maybe mirror to the shadow
//! version, and on completion account the outcome against the version's SLO and maybe ship a
//! payload sample. The request itself is never held, altered beyond routing, or failed here.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod host;
mod metrics;
mod root;
mod stream;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(root::Root::default()) });
}}
