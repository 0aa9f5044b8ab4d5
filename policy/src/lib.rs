//! Switchyard's data-plane policy, free of any proxy and of I/O: the policy's one parser and
//! validator ([`config`]), names ([`names`]), clients and tenants ([`identity`]), durations ([`duration`]), the version split and sticky hashing ([`split`],
//! [`hash`]), the guard's decision rule ([`guard`]), SLO windows and burn rates ([`slo`]),
//! request paths and gRPC placement ([`paths`], [`grpc`]), payload samples ([`sampling`]),
//! shadow-answer comparison ([`shadow`]) and the captured bodies both ship ([`capture`]). The
//! Envoy filter (`filter-wasm`) and the rollout console (`console`) are thin adapters over this
//! crate; rendering and deploying live in `switchyard-deploy`. Everything here is tested
//! natively.
//!
//! This code runs inside Envoy's Wasm VM, where a panic kills the VM: the lints below are the
//! filter's.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod capture;
pub mod config;
pub mod duration;
pub mod grpc;
pub mod guard;
pub mod hash;
pub mod identity;
pub mod names;
pub mod paths;
pub mod sampling;
pub mod shadow;
pub mod slo;
pub mod split;

pub use config::{Config, ConfigErrors, ModelPolicy};
