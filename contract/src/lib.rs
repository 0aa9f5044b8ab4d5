//! The contracts between Switchyard's processes, written once: what each process listens on
//! and how it is told so ([`process`]), the paths it serves for health and metrics
//! ([`paths`]), and every metric any of them exports, with its type and labels ([`metrics`]).
//! Outcome classes are the policy's (`switchyard_policy::slo::Outcome`), which the filter
//! computes.
//!
//! Rust code names these constants instead of restating them; everything else (the
//! dashboards' generator, the Kubernetes validation, scripts) reads the JSON export,
//! `contract/contract.json`, which `switchyard-policy contract` writes and a test keeps in
//! step. No dependencies but serde, so that even the Envoy filter can use it.

pub mod metrics;
pub mod paths;
pub mod process;
