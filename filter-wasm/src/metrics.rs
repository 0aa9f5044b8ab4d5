//! Metric names and ids. Labels travel in the name as `;key=value` pairs; the bootstrap's
//! `stats_tags` turn them into Prometheus labels (see envoy/ and docs/metrics.md). Every
//! per-version id is defined once at configuration, so the request path only increments.

use switchyard_policy::Config;
use switchyard_policy::slo::{Outcome, WindowSpec};
use switchyard_policy::split::Reason;

use crate::host::{self, Kind};

pub fn name(base: &str, labels: &[(&str, &str)]) -> String {
    let mut s = base.to_owned();
    for (k, v) in labels {
        s.push(';');
        s.push_str(k);
        s.push('=');
        s.push_str(v);
    }
    s
}

/// A metric that may be missing (the host refused it): then it is silently not recorded.
#[derive(Clone, Copy, Debug, Default)]
pub struct Id(Option<u32>);

impl Id {
    pub fn define(kind: Kind, base: &str, labels: &[(&str, &str)]) -> Id {
        Id(host::define_metric(kind, &name(base, labels)))
    }
    pub fn inc(self) {
        if let Some(id) = self.0 {
            host::increment_metric(id, 1);
        }
    }
    pub fn record(self, v: u64) {
        if let Some(id) = self.0 {
            host::record_metric(id, v);
        }
    }
}

pub const REASONS: [Reason; 3] = [Reason::Weighted, Reason::Sticky, Reason::Override];
pub const SAMPLE_RESULTS: [&str; 4] = ["captured", "sent", "failed", "dropped"];

pub struct SloIds {
    /// Per SLI (availability, latency): good and bad events in the window.
    pub good: [Id; 2],
    pub bad: [Id; 2],
    pub burn_x1000: [Id; 2],
}

pub struct VersionIds {
    pub requests: [Id; 5],
    pub duration_ms: Id,
    pub decisions: [Id; 3],
    pub shadowed: Id,
    pub samples: [Id; 4],
    /// One per configured window.
    pub slo: Vec<SloIds>,
}

pub struct ModelIds {
    pub override_refused: Id,
    pub versions: Vec<VersionIds>,
}

pub struct Ids {
    pub models: Vec<ModelIds>,
    pub unrouted_not_model: Id,
    pub unrouted_unknown_model: Id,
}

pub const SLIS: [&str; 2] = ["availability", "latency"];

impl Ids {
    pub fn define(config: &Config, windows: &[WindowSpec]) -> Ids {
        let models = config
            .models
            .iter()
            .map(|(model, policy)| ModelIds {
                override_refused: Id::define(Kind::Counter, "switchyard_override_refused_total", &[("model", model)]),
                versions: policy
                    .versions
                    .iter()
                    .map(|v| {
                        let l = [("model", model.as_str()), ("version", v.name.as_str())];
                        let with = |k: &'static str, val: &'static str| [l[0], l[1], (k, val)];
                        VersionIds {
                            requests: Outcome::ALL.map(|o| {
                                Id::define(Kind::Counter, "switchyard_requests_total", &with("outcome", o.as_str()))
                            }),
                            duration_ms: Id::define(Kind::Histogram, "switchyard_request_duration_ms", &l),
                            decisions: REASONS.map(|r| {
                                Id::define(
                                    Kind::Counter,
                                    "switchyard_route_decisions_total",
                                    &with("reason", r.as_str()),
                                )
                            }),
                            shadowed: Id::define(Kind::Counter, "switchyard_shadow_requests_total", &l),
                            samples: SAMPLE_RESULTS
                                .map(|r| Id::define(Kind::Counter, "switchyard_samples_total", &with("result", r))),
                            slo: if policy.slo.is_some() {
                                windows
                                    .iter()
                                    .map(|w| {
                                        let per = |base: &str, sli: &str| {
                                            Id::define(
                                                Kind::Gauge,
                                                base,
                                                &[l[0], l[1], ("window", w.label.as_str()), ("sli", sli)],
                                            )
                                        };
                                        SloIds {
                                            good: SLIS.map(|s| per("switchyard_slo_good_events", s)),
                                            bad: SLIS.map(|s| per("switchyard_slo_bad_events", s)),
                                            burn_x1000: SLIS.map(|s| per("switchyard_slo_burn_rate_x1000", s)),
                                        }
                                    })
                                    .collect()
                            } else {
                                Vec::new()
                            },
                        }
                    })
                    .collect(),
            })
            .collect();
        Ids {
            models,
            unrouted_not_model: Id::define(
                Kind::Counter,
                "switchyard_unrouted_requests_total",
                &[("reason", "not_a_model_path")],
            ),
            unrouted_unknown_model: Id::define(
                Kind::Counter,
                "switchyard_unrouted_requests_total",
                &[("reason", "unknown_model")],
            ),
        }
    }
}

pub fn outcome_index(o: Outcome) -> usize {
    Outcome::ALL.iter().position(|x| *x == o).unwrap_or(0)
}

pub fn reason_index(r: Reason) -> usize {
    REASONS.iter().position(|x| *x == r).unwrap_or(0)
}
