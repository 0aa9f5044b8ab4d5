//! Metric names and ids. Labels travel in the name as `;key=value` pairs; the bootstrap's
//! `stats_tags` turn them into Prometheus labels (see envoy/ and docs/metrics.md). Every
//! metric is defined once at configuration. Counters are counted locally and handed to Envoy
//! on the worker's timer, so the request path makes no host call for them (a host call costs
//! more than the rest of the filter's per-request work).

use switchyard_contract::metrics::{self as contract, Metric};
use switchyard_policy::Config;
use switchyard_policy::guard::Sli;
use switchyard_policy::sampling::SampleResult;
use switchyard_policy::shadow::CompareResult;
use switchyard_policy::slo::{Outcome, WindowSpec};
use switchyard_policy::split::Reason;

use crate::host::{Host, Kind};

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
    /// A gauge or histogram of the contract's (counters are [`Counters`]').
    pub fn define(h: &mut impl Host, metric: &Metric, labels: &[(&str, &str)]) -> Id {
        let kind = match metric.kind {
            contract::Kind::Histogram => Kind::Histogram,
            contract::Kind::Gauge | contract::Kind::Counter => Kind::Gauge,
        };
        Id(h.define_metric(kind, &name(metric.name, labels)))
    }
    pub fn record(self, h: &mut impl Host, v: u64) {
        if let Some(id) = self.0 {
            h.record_metric(id, v);
        }
    }
}

/// A counter's slot in the worker's `Counters`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counter(usize);

/// Counters with their pending (not yet reported) increments.
#[derive(Default)]
pub struct Counters {
    ids: Vec<Option<u32>>,
    pending: Vec<i64>,
}

impl Counters {
    pub fn define(&mut self, h: &mut impl Host, metric: &Metric, labels: &[(&str, &str)]) -> Counter {
        self.ids.push(h.define_metric(Kind::Counter, &name(metric.name, labels)));
        self.pending.push(0);
        Counter(self.ids.len() - 1)
    }

    pub fn inc(&mut self, c: Counter) {
        if let Some(p) = self.pending.get_mut(c.0) {
            *p += 1;
        }
    }

    /// Reports pending increments to Envoy.
    pub fn flush(&mut self, h: &mut impl Host) {
        for (id, p) in self.ids.iter().zip(self.pending.iter_mut()) {
            if *p != 0 {
                if let Some(id) = id {
                    h.increment_metric(*id, *p);
                }
                *p = 0;
            }
        }
    }
}

pub const REASONS: [Reason; 4] = [Reason::Weighted, Reason::Sticky, Reason::Override, Reason::Guarded];

pub struct SloIds {
    /// Per SLI (availability, latency): good and bad events in the window.
    pub good: [Id; 2],
    pub bad: [Id; 2],
    pub burn_x1000: [Id; 2],
}

pub struct VersionIds {
    pub requests: [Counter; Outcome::COUNT],
    pub duration_ms: Id,
    pub decisions: [Counter; 4],
    pub shadowed: Counter,
    /// 1 while the guard has this version out of the split (0 for unguarded models too).
    pub guard_out: Id,
    /// Per SLI (`Sli::ALL` order): when the guard took the version out on it, 0 otherwise.
    pub guard_since: [Id; 2],
    pub samples: SampleCounters,
    /// Comparisons with this version as the shadow (defined for models that compare).
    pub compares: Option<CompareCounters>,
    /// One per configured window.
    pub slo: Vec<SloIds>,
}

/// One tenant's requests of one model (with `identity` in the policy).
pub struct TenantIds {
    pub requests: [Counter; Outcome::COUNT],
    pub duration_ms: Id,
}

pub struct ModelIds {
    pub override_refused: Counter,
    pub versions: Vec<VersionIds>,
}

pub struct Ids {
    pub models: Vec<ModelIds>,
    pub unrouted_not_model: Counter,
    pub unrouted_unknown_model: Counter,
    /// Model paths refused with 400 (undecodable or impossible names).
    pub unrouted_invalid_path: Counter,
    /// gRPC calls refused because their message could not be placed (see `policy::grpc`).
    pub unrouted_invalid_grpc: Counter,
    /// Model requests refused (403) because Envoy named no tenant though `identity` is on.
    pub unrouted_no_tenant: Counter,
    /// Keys in shared data (`slo::KEY_COUNT`).
    pub shared_keys: Id,
    /// The filter's shared data started empty (`slo::CountingStore::started`).
    pub shared_data_starts: Counter,
    /// [tenant label][model], in `Identity::labels` and `config.models` order; empty without
    /// `identity`.
    pub tenants: Vec<Vec<TenantIds>>,
}

/// A version's `switchyard_samples_total` counters, by result (`SampleResult::ALL` order).
pub type SampleCounters = [Counter; SampleResult::ALL.len()];

/// Defines a version's sample counters (again: Envoy keeps one stat per name, so counts made
/// through a second definition add up with the first's).
pub fn sample_counters(h: &mut impl Host, c: &mut Counters, model: &str, version: &str) -> SampleCounters {
    SampleResult::ALL.map(|r| {
        c.define(h, &contract::SAMPLES_TOTAL, &[("model", model), ("version", version), ("result", r.as_str())])
    })
}

/// A shadow version's `switchyard_shadow_compares_total` counters, by result
/// (`CompareResult::ALL` order).
pub type CompareCounters = [Counter; 5];

pub fn compare_counters(h: &mut impl Host, c: &mut Counters, model: &str, version: &str) -> CompareCounters {
    CompareResult::ALL.map(|r| {
        c.define(h, &contract::SHADOW_COMPARES_TOTAL, &[("model", model), ("version", version), ("result", r.as_str())])
    })
}

pub fn compare_counter(c: &CompareCounters, r: CompareResult) -> Option<Counter> {
    c.get(CompareResult::ALL.iter().position(|x| *x == r)?).copied()
}

pub const SLIS: [&str; 2] = ["availability", "latency"];

impl Ids {
    pub fn define(h: &mut impl Host, config: &Config, windows: &[WindowSpec], c: &mut Counters) -> Ids {
        let models = config
            .models
            .iter()
            .map(|(model, policy)| ModelIds {
                override_refused: c.define(h, &contract::OVERRIDE_REFUSED_TOTAL, &[("model", model)]),
                versions: policy
                    .versions
                    .iter()
                    .map(|v| {
                        let l = [("model", model.as_str()), ("version", v.name.as_str())];
                        let with = |k: &'static str, val: &'static str| [l[0], l[1], (k, val)];
                        VersionIds {
                            requests: Outcome::ALL
                                .map(|o| c.define(h, &contract::REQUESTS_TOTAL, &with("outcome", o.as_str()))),
                            duration_ms: Id::define(h, &contract::REQUEST_DURATION_MS, &l),
                            decisions: REASONS
                                .map(|r| c.define(h, &contract::ROUTE_DECISIONS_TOTAL, &with("reason", r.as_str()))),
                            shadowed: c.define(h, &contract::SHADOW_REQUESTS_TOTAL, &l),
                            guard_out: Id::define(h, &contract::GUARD_OUT, &l),
                            guard_since: Sli::ALL
                                .map(|s| Id::define(h, &contract::GUARD_OUT_SINCE, &with("sli", s.as_str()))),
                            samples: sample_counters(h, c, model, &v.name),
                            compares: policy
                                .shadow
                                .as_ref()
                                .filter(|s| s.compare.is_some())
                                .map(|_| compare_counters(h, c, model, &v.name)),
                            slo: if policy.slo.is_some() {
                                windows
                                    .iter()
                                    .map(|w| {
                                        let mut per = |metric: &Metric, sli: &str| {
                                            Id::define(
                                                h,
                                                metric,
                                                &[l[0], l[1], ("window", w.label.as_str()), ("sli", sli)],
                                            )
                                        };
                                        SloIds {
                                            good: SLIS.map(|s| per(&contract::SLO_GOOD_EVENTS, s)),
                                            bad: SLIS.map(|s| per(&contract::SLO_BAD_EVENTS, s)),
                                            burn_x1000: SLIS.map(|s| per(&contract::SLO_BURN_RATE_X1000, s)),
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
            unrouted_not_model: c.define(h, &contract::UNROUTED_REQUESTS_TOTAL, &[("reason", "not_a_model_path")]),
            unrouted_unknown_model: c.define(h, &contract::UNROUTED_REQUESTS_TOTAL, &[("reason", "unknown_model")]),
            unrouted_invalid_path: c.define(h, &contract::UNROUTED_REQUESTS_TOTAL, &[("reason", "invalid_path")]),
            unrouted_invalid_grpc: c.define(
                h,
                &contract::UNROUTED_REQUESTS_TOTAL,
                &[("reason", "invalid_grpc_message")],
            ),
            unrouted_no_tenant: c.define(h, &contract::UNROUTED_REQUESTS_TOTAL, &[("reason", "no_tenant")]),
            shared_keys: Id::define(h, &contract::SHARED_DATA_KEYS, &[]),
            shared_data_starts: c.define(h, &contract::SHARED_DATA_STARTS_TOTAL, &[]),
            tenants: Self::tenants(h, config, c),
        }
    }

    fn tenants(h: &mut impl Host, config: &Config, c: &mut Counters) -> Vec<Vec<TenantIds>> {
        let Some(identity) = &config.identity else { return Vec::new() };
        identity
            .labels()
            .map(|tenant| {
                config
                    .models
                    .keys()
                    .map(|model| {
                        let l = [("tenant", tenant), ("model", model.as_str())];
                        TenantIds {
                            requests: Outcome::ALL.map(|o| {
                                c.define(h, &contract::TENANT_REQUESTS_TOTAL, &[l[0], l[1], ("outcome", o.as_str())])
                            }),
                            duration_ms: Id::define(h, &contract::TENANT_REQUEST_DURATION_MS, &l),
                        }
                    })
                    .collect()
            })
            .collect()
    }

    pub fn version(&self, model: usize, version: usize) -> Option<&VersionIds> {
        self.models.get(model)?.versions.get(version)
    }

    pub fn sample(&self, model: usize, version: usize, r: SampleResult) -> Option<Counter> {
        sample_counter(&self.version(model, version)?.samples, r)
    }
}

pub fn outcome_index(o: Outcome) -> usize {
    Outcome::ALL.iter().position(|x| *x == o).unwrap_or(0)
}

pub fn reason_index(r: Reason) -> usize {
    REASONS.iter().position(|x| *x == r).unwrap_or(0)
}

pub fn sample_index(r: SampleResult) -> usize {
    SampleResult::ALL.iter().position(|x| *x == r).unwrap_or(0)
}

pub fn sample_counter(c: &SampleCounters, r: SampleResult) -> Option<Counter> {
    c.get(sample_index(r)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeHost;

    /// Every stat the filter defines is a filter metric of the contract, with its labels in the
    /// contract's order: the rules, dashboards and readers rely on exactly those.
    #[test]
    fn every_metric_defined_is_the_contracts() {
        let config = Config::parse(
            br#"{"collector": {"cluster": "c", "max_queued": 8, "max_queued_bytes": 400000},
                 "models": {"mlp": {"versions": [{"name": "v1", "cluster": "a", "weight": 1},
                                                 {"name": "v2", "cluster": "b", "weight": 1}],
                                    "shadow": {"version": "v2", "percent": 1, "compare": {"percent": 1}},
                                    "sampling": {"rate": 0.5},
                                    "slo": {"availability": 0.99, "latency_ms": 100}}},
                 "identity": {"issuer": "i", "tenants": {"team-a": {}}}}"#,
        )
        .unwrap();
        let windows = [switchyard_policy::slo::WindowSpec::parse("5m").unwrap()];
        let mut h = FakeHost::default();
        let _ids = Ids::define(&mut h, &config, &windows, &mut Counters::default());
        let mut bases = std::collections::BTreeSet::new();
        for stat in &h.metrics {
            let mut parts = stat.split(';');
            let base = parts.next().unwrap();
            let keys: Vec<&str> = parts.map(|kv| kv.split('=').next().unwrap()).collect();
            let m = contract::ALL.iter().find(|m| m.name == base);
            assert!(m.is_some(), "{base} not in the contract");
            let Some(m) = m else { continue };
            assert_eq!(m.source, contract::Source::Filter, "{base}");
            assert_eq!(keys, m.labels, "{stat}");
            bases.insert(base);
        }
        let filter: std::collections::BTreeSet<&str> =
            contract::ALL.iter().filter(|m| m.source == contract::Source::Filter).map(|m| m.name).collect();
        assert_eq!(bases, filter, "the filter defines every filter metric of the contract");
    }
}
