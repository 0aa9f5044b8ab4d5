//! What can go wrong in a reconcile, and how the status and the logs say it.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call the API server refused or did not answer (the message names the call).
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// The object is not namespaced (both resources are).
    #[error("{0} has no namespace")]
    NoNamespace(String),
    /// The policy in a TrafficPolicy, with every problem the filter's parser found.
    #[error("the policy is invalid: {}", .0.join("; "))]
    InvalidPolicy(Vec<String>),
    /// The object that should carry the policy is not there: the operator writes one field of
    /// it and creates nothing (the overlay does).
    #[error("{carrier} does not exist in {namespace}: apply the gateway's overlay first")]
    CarrierMissing { carrier: String, namespace: String },
    /// The filter's metrics or the collector's comparisons could not be read.
    #[error("observing the canary: {0}")]
    Observe(#[source] switchyard_rollout::Error),
    /// The rollout's traffic cannot be put in this policy (its model is gone).
    #[error(transparent)]
    Traffic(switchyard_rollout::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// A bounded label for logs and metrics: a reconcile's own error through the finalizer
    /// is named as itself.
    pub fn kind(&self) -> &'static str {
        use kube::runtime::finalizer::Error as Finalizing;
        match self {
            Error::Kube(_) => "api",
            Error::Finalizer(f) => match &**f {
                Finalizing::ApplyFailed(e) | Finalizing::CleanupFailed(e) => e.kind(),
                _ => "finalizer",
            },
            Error::NoNamespace(_) => "no_namespace",
            Error::InvalidPolicy(_) => "invalid_policy",
            Error::CarrierMissing { .. } => "carrier_missing",
            Error::Observe(_) => "observe",
            Error::Traffic(_) => "traffic",
            Error::Json(_) => "json",
        }
    }
}
