//! Everything that turns a Switchyard policy into artifacts or puts it in force: Envoy's
//! bootstrap and the filter's ECDS resource, Prometheus' and Alertmanager's configuration and
//! the Kubernetes objects ([`render`], pure functions), and the atomic replacement of a running
//! Envoy's filter configuration after checking it against what that Envoy was started with
//! ([`apply`]) with its audit trail ([`audit`]), what the guard holds out of the split ([`held_out`]), and the JSON export of
//! the contracts between processes ([`contract`]). The
//! `switchyard-policy` command line is this crate's binary.
//!
//! The policy itself is read only by `switchyard-policy` (the pure core, which the filter runs):
//! this crate never parses a policy any other way.

pub mod apply;
pub mod audit;
pub mod contract;
pub mod held_out;
pub mod render;

pub use render::{HostPort, Policy, RenderErrors};
