//! What the controller judges by: the filter's counters for the rollout's versions (Envoy's
//! admin endpoint, or Prometheus in a cluster) and the collector's shadow comparisons.

use std::time::Duration;

use switchyard_contract::metrics;
use switchyard_deploy::held_out::held_out;
use switchyard_load::metrics::{parse, sum};

use crate::error::Error;
use crate::judge::{Compared, Observation, State};
use crate::store::Target;
use crate::view::{bounds, version_counts};

/// How long one look at Envoy (and the collector) may take.
pub const OBSERVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The filter's counters for the rollout's versions, from Envoy's admin endpoint.
pub async fn observe(target: &Target, st: &State) -> Result<Observation, Error> {
    let (status, body) = switchyard_load::http::get(&target.envoy_admin, &target.metrics_path)
        .await
        .map_err(|source| Error::MetricsUnreachable { addr: target.envoy_admin.clone(), source })?;
    if status != 200 {
        return Err(Error::MetricsStatus {
            addr: target.envoy_admin.clone(),
            path: target.metrics_path.clone(),
            status,
        });
    }
    let samples = parse(&String::from_utf8_lossy(&body));
    let model = st.spec.model.as_str();
    let bounds = bounds(&samples, model);
    let counts = |version: &str| version_counts(&samples, model, version, &bounds);
    let guard_out = sum(&samples, metrics::GUARD_OUT.name, &[("model", model), ("version", &st.spec.canary)]) > 0.0;
    let compared = match (&target.collector, st.spec.compares()) {
        (Some(collector), true) => compared(collector, st).await?,
        _ => Compared::default(),
    };
    let held_out = held_out(&samples).into_iter().find(|h| h.model == model && h.version == st.spec.canary);
    Ok(Observation {
        canary: counts(&st.spec.canary),
        stable: counts(&st.stable),
        bounds,
        guard_out,
        held_out,
        compared,
    })
}

/// The collector's comparisons of the stable version's answers with the canary's.
async fn compared(collector: &str, st: &State) -> Result<Compared, Error> {
    let (status, body) = switchyard_load::http::get(collector, "/metrics")
        .await
        .map_err(|source| Error::CollectorUnreachable { addr: collector.to_owned(), source })?;
    if status != 200 {
        return Err(Error::CollectorStatus { addr: collector.to_owned(), status });
    }
    let samples = parse(&String::from_utf8_lossy(&body));
    let at = |name: &str, pair: &str| {
        let labels = [
            ("model", st.spec.model.as_str()),
            ("primary", st.stable.as_str()),
            ("shadow", &st.spec.canary),
            ("pair", pair),
        ];
        sum(&samples, name, &labels) as u64
    };
    Ok(Compared {
        rows: at(metrics::SHADOW_COMPARED_ROWS_TOTAL.name, "shadow"),
        disagreeing: at(metrics::SHADOW_DISAGREEING_ROWS_TOTAL.name, "shadow"),
        noise_rows: at(metrics::SHADOW_COMPARED_ROWS_TOTAL.name, "noise"),
        noise_disagreeing: at(metrics::SHADOW_DISAGREEING_ROWS_TOTAL.name, "noise"),
    })
}
