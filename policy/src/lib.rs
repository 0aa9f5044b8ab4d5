//! Switchyard's data-plane policy, free of any proxy or I/O: filter configuration and its
//! validation, the version split, the guard, sampling and redaction, SLO windows and burn rates, and
//! (feature `render`) the configuration rendered from a policy. The Envoy filter
//! (`filter-wasm`) is a thin adapter over this crate; everything here is tested natively.
//!
//! This code runs inside Envoy's Wasm VM, where a panic kills the VM: the lints below are the
//! filter's.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod config;
#[cfg(feature = "render")]
pub mod deploy;
pub mod grpc;
pub mod guard;
pub mod hash;
pub mod paths;
#[cfg(feature = "render")]
pub mod render;
pub mod sampling;
pub mod shadow;
pub mod slo;
pub mod split;

pub use config::{Config, ConfigErrors, ModelPolicy};
