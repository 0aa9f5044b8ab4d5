//! The policy crate's rendering and deployment as the rollout uses them, named in this one
//! place: they are moving to a crate of their own, and only these lines will change.

pub use switchyard_policy::deploy::{
    apply_filter, in_force, json_text, policy_of_filter_config, wasm_of_filter_config,
};
pub use switchyard_policy::render::Policy;
pub use switchyard_policy::render::envoy::filter_config;
