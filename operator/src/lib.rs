//! Switchyard's Kubernetes operator as a library: the custom resources (`crd`), the object that
//! carries a policy to the gateway (`carrier`), a rollout's state in its status (`status`), the
//! reconcilers (`reconcile`), what the operator may ask of the API (`rbac`), leader election
//! (`lead`), and its metrics and probes (`metrics`). The judge is the rollout controller's own
//! (`switchyard_rollout::judge`): a rollout started from a file and one declared in the
//! cluster decide alike.
//!
//! The binary (`switchyard-operator`) wires the client, the Lease and the two controllers.

pub mod carrier;
pub mod console;
pub mod crd;
pub mod error;
pub mod lead;
pub mod metrics;
pub mod rbac;
pub mod reconcile;
pub mod status;

pub use error::Error;

/// The field manager of every write (server-side apply and the status), and the reporting
/// controller of every Event.
pub const MANAGER: &str = "switchyard-operator";
/// Keeps a ModelRollout until the traffic it changed is given back to its TrafficPolicy.
pub const FINALIZER: &str = "switchyard.dev/traffic";
