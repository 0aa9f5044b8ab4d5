//! The operator's metrics (docs/metrics.md; names from `switchyard_contract::metrics`),
//! registered in one place, and its admin listener: `/metrics` and the probes' `/healthz`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use switchyard_contract::metrics::{OPERATOR_LEADER, OPERATOR_RECONCILES_TOTAL, OPERATOR_ROLLOUTS};
use switchyard_contract::process::operator::HEALTH_PATH;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    kind: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

/// Every phase a rollout's status shows, each a series of `switchyard_operator_rollouts`.
pub const PHASES: [&str; 7] = ["Pending", "Invalid", "Running", "Paused", "Holding", "Promoted", "Aborted"];

/// The families; clones share them.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    leader: Gauge,
    reconciles: Family<ReconcileLabels, Counter>,
    rollouts: Family<PhaseLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let leader = Gauge::default();
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let rollouts = Family::<PhaseLabels, Gauge>::default();
        registry.register(OPERATOR_LEADER.registered(), "1 while this replica holds the Lease", leader.clone());
        registry.register(
            OPERATOR_RECONCILES_TOTAL.registered(),
            "Reconciles by kind and outcome (ok, or the error's kind)",
            reconciles.clone(),
        );
        registry.register(OPERATOR_ROLLOUTS.registered(), "ModelRollouts per phase", rollouts.clone());
        for phase in PHASES {
            rollouts.get_or_create(&PhaseLabels { phase: phase.into() }).set(0);
        }
        Metrics { registry: Arc::new(registry), leader, reconciles, rollouts }
    }

    pub fn leading(&self, yes: bool) {
        self.leader.set(i64::from(yes));
    }

    /// One reconcile of `kind` (`modelrollout`, `trafficpolicy`) ended with `result`.
    pub fn reconciled(&self, kind: &'static str, result: &'static str) {
        self.reconciles.get_or_create(&ReconcileLabels { kind, result }).inc();
    }

    /// The rollouts per phase, as counted now.
    pub fn rollouts<'a>(&self, phases: impl IntoIterator<Item = &'a str>) {
        let mut counts = std::collections::BTreeMap::new();
        for p in phases {
            *counts.entry(p.to_owned()).or_insert(0i64) += 1;
        }
        for phase in PHASES {
            self.rollouts
                .get_or_create(&PhaseLabels { phase: phase.into() })
                .set(counts.get(phase).copied().unwrap_or(0));
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Serves `/metrics`, `/healthz` and `more` (the console) on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, metrics: Metrics, more: Router) -> std::io::Result<()> {
    let app = more.merge(
        Router::new()
            .route(
                "/metrics",
                get(move || {
                    let m = metrics.clone();
                    async move {
                        ([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], m.encode())
                    }
                }),
            )
            .route(HEALTH_PATH, get(|| async { "ok\n".into_response() })),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "admin listener: /metrics, {HEALTH_PATH}, the console at /");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin listener stopped");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use switchyard_contract::metrics::{Source, check_exposition};

    #[test]
    fn the_exposition_is_the_contracts() {
        let m = Metrics::new();
        m.leading(true);
        m.reconciled("modelrollout", "ok");
        m.reconciled("trafficpolicy", "carrier_missing");
        m.rollouts(["Running", "Running", "Aborted"]);
        let text = m.encode();
        assert_eq!(check_exposition(&text, Source::Operator, true), Vec::<String>::new(), "{text}");
        assert!(text.contains("switchyard_operator_leader 1"), "{text}");
        assert!(text.contains("switchyard_operator_rollouts{phase=\"Running\"} 2"), "{text}");
        assert!(text.contains("switchyard_operator_rollouts{phase=\"Paused\"} 0"), "{text}");
        assert!(
            text.contains("switchyard_operator_reconciles_total{kind=\"trafficpolicy\",result=\"carrier_missing\"} 1"),
            "{text}"
        );
    }
}
