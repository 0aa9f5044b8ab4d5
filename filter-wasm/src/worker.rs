//! One worker's state, owned here alone: the configuration, metric ids and counts not yet
//! reported, SLO events not yet merged, and samples waiting for the collector. The root context
//! and this worker's request streams share it and act on it only through these methods.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use proxy_wasm::types::LogLevel;
use switchyard_policy::config::{Collector, Sampling};
use switchyard_policy::hash::Rng;
use switchyard_policy::paths;
use switchyard_policy::sampling::SampleResult;
use switchyard_policy::slo::{self, Counts, Outcome, Window, WindowSpec, burn_rate};
use switchyard_policy::split::{self, RequestFacts};
use switchyard_policy::{Config, ModelPolicy};

use crate::host::Host;
use crate::metrics::{Counters, Ids, outcome_index, reason_index};

const CAS_RETRIES: usize = 8;

pub type Shared = Rc<RefCell<Worker>>;

/// A version of a model, by its position in the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModelVersion {
    pub model: usize,
    pub version: usize,
}

/// What the split decided for a request: the header values to set, borrowed from the config.
pub struct Route<'a> {
    pub at: ModelVersion,
    /// The routing header and the chosen version's cluster.
    pub upstream: (&'a str, &'a str),
    /// The mirror's header and the shadow version's cluster, when mirrored.
    pub shadow: Option<(&'a str, &'a str)>,
    /// The path without `/versions/{v}`, when it named one.
    pub path: Option<String>,
    /// `max_body_bytes` when the request is sampled.
    pub sample_cap: Option<usize>,
}

struct Sample {
    at: ModelVersion,
    body: Vec<u8>,
}

pub struct Worker {
    config: Config,
    /// `config.models` in order, for lookups by index.
    models: Vec<(String, ModelPolicy)>,
    windows: Vec<WindowSpec>,
    ids: Ids,
    counters: Counters,
    rng: Rng,
    /// SLO events not yet merged into shared data: [model][version][window].
    pending: Vec<Vec<Vec<Counts>>>,
    samples: VecDeque<Sample>,
    in_flight: HashMap<u32, ModelVersion>,
}

impl Worker {
    pub fn new(config: Config, h: &mut impl Host) -> Worker {
        let windows = config.windows();
        let mut counters = Counters::default();
        let ids = Ids::define(h, &config, &windows, &mut counters);
        let models: Vec<(String, ModelPolicy)> = config.models.clone().into_iter().collect();
        let pending =
            models.iter().map(|(_, m)| vec![vec![Counts::default(); windows.len()]; m.versions.len()]).collect();
        Worker {
            config,
            models,
            windows,
            ids,
            counters,
            rng: Rng::new(h.random_seed()),
            pending,
            samples: VecDeque::new(),
            in_flight: HashMap::new(),
        }
    }

    /// The headers only this filter may set: a client's copies must go before routing.
    pub fn internal_headers(&self) -> [&str; 2] {
        [&self.config.upstream_header, &self.config.shadow_header]
    }

    /// Picks the version for a request with these headers and counts the decision; `None` when
    /// the request is not for a configured model (counted too).
    pub fn route<'h>(&mut self, header: impl Fn(&str) -> Option<&'h str>) -> Option<Route<'_>> {
        let Some(p) = header(":path").and_then(paths::parse) else {
            self.counters.inc(self.ids.unrouted_not_model);
            return None;
        };
        let Some(mi) = self.models.iter().position(|(name, _)| name == p.model) else {
            self.counters.inc(self.ids.unrouted_unknown_model);
            return None;
        };
        let ((_, policy), ids) = (self.models.get(mi)?, self.ids.models.get(mi)?);
        let sticky_key = match policy.sticky.as_ref().map(|s| (&s.header, &s.cookie)) {
            Some((Some(h), _)) => header(h),
            Some((None, Some(c))) => header("cookie").and_then(|v| split::cookie_value(v, c)),
            _ => None,
        };
        let facts = RequestFacts {
            requested: policy.override_.as_ref().and_then(|o| header(&o.header)).or(p.version),
            sticky_key: sticky_key.filter(|k| !k.is_empty()),
            random: self.rng.next_u64(),
            shadow_random: self.rng.next_f64(),
        };
        let d = split::decide(policy, &facts);
        let version = policy.versions.get(d.version)?;
        let shadow = d.shadow.and_then(|i| policy.versions.get(i));
        let sampling = policy.sampling.as_ref().filter(|s| self.rng.next_f64() < s.rate);
        let at = ModelVersion { model: mi, version: d.version };
        if d.override_refused {
            self.counters.inc(ids.override_refused);
        }
        if let Some(c) = ids.versions.get(d.version).and_then(|v| v.decisions.get(reason_index(d.reason))) {
            self.counters.inc(*c);
        }
        if sampling.is_some()
            && let Some(c) = self.ids.sample(at.model, at.version, SampleResult::Captured)
        {
            self.counters.inc(c);
        }
        if let Some(v) = d.shadow.and_then(|i| ids.versions.get(i)) {
            self.counters.inc(v.shadowed);
        }
        Some(Route {
            at,
            upstream: (&self.config.upstream_header, &version.cluster),
            shadow: shadow.map(|s| (self.config.shadow_header.as_str(), s.cluster.as_str())),
            path: p.version.is_some().then(|| paths::unversioned(&p)),
            sample_cap: sampling.map(|s| s.max_body_bytes),
        })
    }

    /// The response header naming the version that answered, and its value.
    pub fn version_header(&self, at: ModelVersion) -> Option<(&str, &str)> {
        let (_, policy) = self.models.get(at.model)?;
        Some((&self.config.version_header, &policy.versions.get(at.version)?.name))
    }

    /// Accounts a finished request against its version: outcome, latency and SLO events.
    pub fn record_finished(
        &mut self,
        h: &mut impl Host,
        at: ModelVersion,
        outcome: Outcome,
        status: Option<u16>,
        latency_ms: u64,
    ) {
        let Some((_, policy)) = self.models.get(at.model) else { return };
        if let Some(v) = self.ids.version(at.model, at.version) {
            v.duration_ms.record(h, latency_ms);
            if let Some(c) = v.requests.get(outcome_index(outcome)) {
                self.counters.inc(*c);
            }
        }
        if let Some(slo) = &policy.slo {
            let event = Counts::event(outcome, status, latency_ms, slo.latency_ms);
            if let Some(windows) = self.pending.get_mut(at.model).and_then(|m| m.get_mut(at.version)) {
                for c in windows.iter_mut() {
                    c.add(&event);
                }
            }
        }
    }

    /// The model and version names and the sampling rules a sample of `at` is built with.
    pub fn sampling(&self, at: ModelVersion) -> Option<(&str, &str, &Sampling)> {
        let (model, policy) = self.models.get(at.model)?;
        Some((model, &policy.versions.get(at.version)?.name, policy.sampling.as_ref()?))
    }

    /// Queues a sample for the collector; with the queue full it is dropped, and counted.
    pub fn queue_sample(&mut self, at: ModelVersion, body: Vec<u8>) {
        let max_queued = self.config.collector.as_ref().map_or(0, |c| c.max_queued);
        if self.samples.len() < max_queued {
            self.samples.push_back(Sample { at, body });
        } else {
            self.count_sample(at, SampleResult::Dropped);
        }
    }

    pub fn count_sample(&mut self, at: ModelVersion, result: SampleResult) {
        if let Some(c) = self.ids.sample(at.model, at.version, result) {
            self.counters.inc(c);
        }
    }

    /// Hands queued samples to `post` while the collector has room; `post` answers the call's
    /// token, or `None` when the call could not be made.
    pub fn dispatch_samples(&mut self, mut post: impl FnMut(&Collector, &[u8]) -> Option<u32>) {
        let Some(c) = &self.config.collector else { return };
        while self.in_flight.len() < c.max_in_flight {
            let Some(s) = self.samples.pop_front() else { break };
            match post(c, &s.body) {
                Some(token) => {
                    self.in_flight.insert(token, s.at);
                }
                None => {
                    if let Some(c) = self.ids.sample(s.at.model, s.at.version, SampleResult::Failed) {
                        self.counters.inc(c);
                    }
                }
            }
        }
    }

    /// Settles the collector call `token`, if it is one of ours; `ok` tells whether it succeeded
    /// (asked only then: it is a host call).
    pub fn call_done(&mut self, token: u32, ok: impl FnOnce() -> bool) {
        if let Some(at) = self.in_flight.remove(&token) {
            self.count_sample(at, if ok() { SampleResult::Sent } else { SampleResult::Failed });
        }
    }

    /// Reports the counts made since the last flush.
    pub fn flush_counters(&mut self, h: &mut impl Host) {
        self.counters.flush(h);
    }

    /// Merges this worker's SLO events into `store` (compare-and-swap, so all workers' events
    /// add up) and publishes window totals and burn rates.
    pub fn flush_slo(&mut self, h: &mut impl Host, store: &mut impl slo::SharedStore) {
        let now_s = h.now_ms() / 1000;
        for (mi, (model, policy)) in self.models.iter().enumerate() {
            let Some(slo) = &policy.slo else { continue };
            for (vi, version) in policy.versions.iter().enumerate() {
                for (wi, spec) in self.windows.iter().enumerate() {
                    let key = format!("switchyard/slo/{model}/{}/{}", version.name, spec.seconds);
                    let Some(delta) = self.pending.get_mut(mi).and_then(|v| v.get_mut(vi)).and_then(|w| w.get_mut(wi))
                    else {
                        continue;
                    };
                    let window = merge(h, store, &key, spec, delta, now_s);
                    let t = window.totals(now_s);
                    let Some(ids) = self.ids.version(mi, vi).and_then(|v| v.slo.get(wi)) else {
                        continue;
                    };
                    let sli =
                        [(t.total, t.bad, slo.availability), (t.latency_total, t.latency_bad, slo.latency_objective)];
                    for (i, (total, bad, objective)) in sli.into_iter().enumerate() {
                        if let (Some(g), Some(b), Some(r)) = (ids.good.get(i), ids.bad.get(i), ids.burn_x1000.get(i)) {
                            g.record(h, total - bad);
                            b.record(h, bad);
                            r.record(h, (burn_rate(bad, total, objective) * 1000.0).round() as u64);
                        }
                    }
                }
            }
        }
    }
}

/// Adds `delta` to the shared window under `key` (see [`slo::merge`]); a lost race keeps
/// `delta` for the next flush. Returns the window as merged, or as last seen.
fn merge(
    h: &mut impl Host,
    store: &mut impl slo::SharedStore,
    key: &str,
    spec: &WindowSpec,
    delta: &mut Counts,
    now_s: u64,
) -> Window {
    slo::merge(store, key, spec, delta, now_s, CAS_RETRIES).unwrap_or_else(|seen| {
        h.log(LogLevel::Warn, &format!("switchyard: could not update shared data {key}; retrying next tick"));
        seen
    })
}
