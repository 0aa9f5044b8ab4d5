//! Leader election against the stand-in API server, with the Lease's timing shortened (3 s,
//! renewed 2 s before it runs out): a follower waits while the leader renews, takes over once a
//! leader that stopped (killed: no release) lets the Lease run out, and a leader whose Lease was
//! taken learns it on its next renewal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fixtures;

use std::time::{Duration, Instant};

use fixtures::*;
use serde_json::json;
use switchyard_operator::lead::{LeaseArgs, acquire};

const LEASE: Duration = Duration::from_secs(3);

fn args(identity: &str) -> LeaseArgs {
    LeaseArgs {
        name: "switchyard-operator".into(),
        namespace: NS.into(),
        identity: identity.into(),
        duration: LEASE,
        // Renewed every second, two before it runs out: a loaded test machine keeps it.
        grace: Duration::from_secs(2),
    }
}

fn lease_path() -> String {
    format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/switchyard-operator")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_takes_over_once_a_stopped_leader_lets_the_lease_run_out() {
    let server = ApiServer::new();
    let a = acquire(server.client(), &args("operator-a")).await.unwrap();
    let b_client = server.client();
    let b = tokio::spawn(async move { acquire(b_client, &args("operator-b")).await.map(|_| Instant::now()) });
    // Two lease durations: A renews, B waits.
    tokio::time::sleep(2 * LEASE).await;
    assert!(!b.is_finished(), "the follower took a Lease its leader was renewing");
    assert_eq!(server.get(&lease_path()).unwrap()["spec"]["holderIdentity"], "operator-a");
    let stopped = Instant::now();
    drop(a);
    let took_over = tokio::time::timeout(4 * LEASE, b).await.expect("no takeover").unwrap().unwrap();
    let after = took_over - stopped;
    println!("failover: the follower led {after:?} after the leader stopped (lease {LEASE:?})");
    assert!(after <= LEASE + Duration::from_secs(3), "took over after {after:?}");
    assert_eq!(server.get(&lease_path()).unwrap()["spec"]["holderIdentity"], "operator-b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_was_taken_learns_it_at_its_next_renewal() {
    let server = ApiServer::new();
    let mut a = acquire(server.client(), &args("operator-a")).await.unwrap();
    // Someone else holds it now, freshly renewed (a partition healed the other way).
    let mut lease = server.get(&lease_path()).unwrap();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    lease["spec"]["holderIdentity"] = json!("operator-c");
    lease["spec"]["renewTime"] = json!(now);
    lease["spec"]["acquireTime"] = json!(now);
    server.put(lease);
    let taken = Instant::now();
    tokio::time::timeout(2 * LEASE, a.lost()).await.expect("the leader did not notice");
    println!("the leader learned it lost the Lease after {:?}", taken.elapsed());
}
