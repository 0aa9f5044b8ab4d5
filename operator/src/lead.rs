//! Leader election on a `coordination.k8s.io/v1` Lease, so that two replicas can run and only
//! one acts. Done by `kube-lease-manager` (server-side apply on the Lease, clock skew allowed
//! for): kube-rs has no elector of its own. The operator reconciles only while it holds the
//! Lease and exits the moment it loses it (as controller-runtime's managers do): the pod
//! restarts as a follower, and nothing it had in flight can act after another leader started.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError, LeaseParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The Lease.
#[derive(Debug, Clone)]
pub struct LeaseArgs {
    pub name: String,
    pub namespace: String,
    /// This replica (its pod name).
    pub identity: String,
    /// How long a leader that stopped renewing keeps the Lease.
    pub duration: Duration,
    /// Renewed this long before it runs out.
    pub grace: Duration,
}

/// What stops an election before it starts.
#[derive(Debug, thiserror::Error)]
pub enum LeadError {
    #[error("the lease's grace ({grace:?}) must be shorter than its duration ({duration:?}), and both at least 1 s")]
    Timing { duration: Duration, grace: Duration },
    #[error("lease {name}: {source}")]
    Lease { name: String, source: LeaseManagerError },
    /// The elector stopped (the API server refused the Lease for good).
    #[error("lease {0}: the elector stopped")]
    Stopped(String),
}

/// The Lease, held.
pub struct Leadership {
    held: watch::Receiver<bool>,
    _elector: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

/// Dropped (the operator stopping), the Lease is no longer renewed; it runs out after its
/// duration and a follower takes it.
impl Drop for Leadership {
    fn drop(&mut self) {
        self._elector.abort();
    }
}

impl Leadership {
    /// Resolves when the Lease is lost (or the elector stops).
    pub async fn lost(&mut self) {
        loop {
            if self.held.changed().await.is_err() || !*self.held.borrow_and_update() {
                return;
            }
        }
    }
}

/// Waits until this replica holds the Lease (creating it when there is none).
pub async fn acquire(client: Client, args: &LeaseArgs) -> Result<Leadership, LeadError> {
    let (duration, grace) = (args.duration.as_secs(), args.grace.as_secs());
    if grace == 0 || grace >= duration {
        return Err(LeadError::Timing { duration: args.duration, grace: args.grace });
    }
    // Its field manager stays per replica (`kube-lease-manager-IDENTITY`): server-side apply
    // then refuses a second replica's claim as a conflict.
    let params = LeaseParams::new(args.identity.clone(), duration, grace);
    let manager = LeaseManagerBuilder::new(client, &args.name)
        .with_namespace(&args.namespace)
        .with_parameters(params)
        .build()
        .await
        .map_err(|source| LeadError::Lease { name: args.name.clone(), source })?;
    let (mut held, elector) = manager.watch().await;
    while !*held.borrow_and_update() {
        if held.changed().await.is_err() {
            return Err(LeadError::Stopped(args.name.clone()));
        }
    }
    Ok(Leadership { held, _elector: elector })
}
