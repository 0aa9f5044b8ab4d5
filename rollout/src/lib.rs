//! Switchyard's rollout controller as a library: the spec, the tests the canary is judged by,
//! the state machine, and the durable store. The binary (`switchyard-rollout`) observes Envoy,
//! applies the policy the state asks for, and serves the commands.

pub mod judge;
pub mod kube;
pub mod spec;
pub mod stats;
pub mod store;
pub mod view;
