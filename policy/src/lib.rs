//! Switchyard's data-plane policy, free of any proxy or I/O: filter configuration and its
//! validation, the version split, sampling and redaction, SLO windows and burn rates.
//! The Envoy filter (`filter-wasm`) is a thin adapter over this crate; everything here is
//! tested natively.

pub mod config;
pub mod hash;
pub mod paths;
pub mod sampling;
pub mod slo;
pub mod split;

pub use config::{Config, ConfigErrors, ModelPolicy};
