//! One worker's state, owned here alone: the configuration, metric ids and counts not yet
//! reported, SLO events not yet merged, and samples waiting for the collector. The root context
//! and this worker's request streams share it and act on it only through these methods.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use proxy_wasm::types::LogLevel;
use switchyard_policy::config::{Collector, Sampling};
use switchyard_policy::grpc;
use switchyard_policy::guard::{self, Latch, Sli, Verdict};
use switchyard_policy::hash::Rng;
use switchyard_policy::paths::{self, PathError};
use switchyard_policy::sampling::{Capture, SampleResult};
use switchyard_policy::shadow::{Answer, CompareResult};
use switchyard_policy::slo::{self, Counts, Outcome, SetResult, SharedStore, Window, WindowSpec, burn_rate};
use switchyard_policy::split::{self, RequestFacts};
use switchyard_policy::{Config, ModelPolicy};

use crate::compare::{Comparisons, Job};
use crate::host::Host;
use crate::metrics::{
    Counters, Ids, SampleCounters, compare_counter, outcome_index, reason_index, sample_counter, sample_counters,
};

const CAS_RETRIES: usize = 8;

pub type Shared = Rc<RefCell<Worker>>;

/// A model request with `identity` in the policy but no tenant from Envoy: refused (403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoTenant {
    pub claim: String,
}

impl NoTenant {
    pub fn message(&self) -> String {
        format!("the token carries no '{}' claim: a tenant is required", self.claim)
    }
}

/// A version of a model, by its position in the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModelVersion {
    pub model: usize,
    pub version: usize,
}

/// What the split decided for a request. The header values it implies come from
/// [`Worker::route_headers`], borrowed from the configuration.
pub struct Route {
    pub at: ModelVersion,
    /// The shadow version (its index in the model's versions), when mirrored.
    pub shadow: Option<usize>,
    /// The canonical path (decoded names, no `/versions/{v}`), when it differs from the
    /// client's: the backend must see what the filter decided on.
    pub path: Option<String>,
    /// `max_body_bytes` when the request is sampled.
    pub sample_cap: Option<usize>,
    /// A gRPC call: sent to the versions' gRPC clusters.
    pub grpc: bool,
    /// When the request is compared instead of mirrored: the shadow version (its index) and
    /// `compare.max_body_bytes`.
    pub compare: Option<(usize, usize)>,
}

/// A compared request once its primary has answered.
pub struct Compared {
    pub shadow: usize,
    /// `:path` as the primary's backend saw it.
    pub path: String,
    pub request_id: String,
    pub start_unix_ms: u64,
    pub capture: Capture,
    pub status: Option<u16>,
    pub duration_ms: u64,
}

/// The request headers a [`Route`] sets.
pub struct RouteHeaders<'a> {
    /// The routing header and the chosen version's cluster.
    pub upstream: (&'a str, String),
    /// The mirror's header, and the shadow version's cluster when mirrored.
    pub shadow: (&'a str, Option<String>),
}

/// How a request names its model, and what its routing may change.
enum Call {
    /// A REST request; `path`: the canonical path to forward, when it differs.
    Rest {
        infer: bool,
        path: Option<String>,
    },
    Grpc,
}

/// What becomes of a request (each outcome is counted).
pub enum Routing {
    Routed(Route),
    /// Not for a configured model: Envoy's routes deal with it.
    Unrouted,
    /// A model path whose names cannot be trusted: answered 400 by the filter.
    Refused(PathError),
}

/// Where a sample's fate is counted: by name, so that it survives a policy change.
struct Origin {
    model: String,
    version: String,
    counters: SampleCounters,
}

struct Sample {
    /// Index into `Worker::origins`.
    origin: usize,
    body: Vec<u8>,
}

/// SLO events for a version or window the policy no longer has: merged into shared data under
/// the key they were counted for.
struct Orphan {
    model: String,
    version: String,
    spec: WindowSpec,
    delta: Counts,
}

/// A guarded model's state in this worker: events not yet merged into the shared windows, and
/// which versions are out of the split (latched in shared data; see `switchyard_policy::guard`).
struct GuardState {
    window: WindowSpec,
    stable: usize,
    epoch: u64,
    pending: Vec<Counts>,
    out: Vec<bool>,
    /// Per version out: since when (Unix seconds) and on which SLI, as the latch says.
    since: Vec<Option<(u64, Option<Sli>)>>,
    /// What this worker last recorded in `switchyard_guard_out` and
    /// `switchyard_guard_out_since_seconds`, per version: recorded again when it differs, so a
    /// new epoch (or a new policy) sets the gauges back to 0.
    shown: Vec<Option<(bool, [u64; 2])>>,
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
    orphans: Vec<Orphan>,
    /// The configured versions first (model by model, see `origin_base`), then versions of
    /// earlier policies whose samples were carried over.
    origins: Vec<Origin>,
    /// Each model's first entry in `origins`.
    origin_base: Vec<usize>,
    samples: VecDeque<Sample>,
    /// Bytes of `samples` (bounded by `collector.max_queued_bytes`).
    queued_bytes: usize,
    /// Collector calls not yet answered, by token.
    in_flight: HashMap<u32, usize>,
    /// Per model, in `models` order: `Some` for a guarded one.
    guards: Vec<Option<GuardState>>,
    compares: Comparisons,
}

impl Worker {
    pub fn new(config: Config, h: &mut impl Host) -> Worker {
        let windows = config.windows();
        let mut counters = Counters::default();
        let ids = Ids::define(h, &config, &windows, &mut counters);
        let models: Vec<(String, ModelPolicy)> = config.models.clone().into_iter().collect();
        let pending =
            models.iter().map(|(_, m)| vec![vec![Counts::default(); windows.len()]; m.versions.len()]).collect();
        let mut origins = Vec::new();
        let mut origin_base = Vec::with_capacity(models.len());
        for ((model, policy), model_ids) in models.iter().zip(&ids.models) {
            origin_base.push(origins.len());
            for (v, v_ids) in policy.versions.iter().zip(&model_ids.versions) {
                origins.push(Origin { model: model.clone(), version: v.name.clone(), counters: v_ids.samples });
            }
        }
        let guards = models
            .iter()
            .map(|(_, m)| {
                let g = m.guard.as_ref()?;
                Some(GuardState {
                    window: WindowSpec::parse_short(&g.window).ok()?,
                    stable: m.stable(),
                    epoch: g.epoch,
                    pending: vec![Counts::default(); m.versions.len()],
                    out: vec![false; m.versions.len()],
                    since: vec![None; m.versions.len()],
                    shown: vec![None; m.versions.len()],
                })
            })
            .collect();
        Worker {
            guards,
            config,
            models,
            windows,
            ids,
            counters,
            rng: Rng::new(h.random_seed()),
            pending,
            orphans: Vec::new(),
            origins,
            origin_base,
            samples: VecDeque::new(),
            queued_bytes: 0,
            in_flight: HashMap::new(),
            compares: Comparisons::default(),
        }
    }

    /// Takes over everything `old` (the worker of an earlier policy) has not yet reported, so a
    /// policy change loses no count, SLO event or sample: its counters are flushed under their
    /// names; its SLO events join this worker's for the same model, version and window, or are
    /// merged later under their old keys; its queued and in-flight samples continue here and are
    /// counted under the names they were captured for. Run again for as long as requests that
    /// started under `old` still finish into it.
    pub fn adopt(&mut self, h: &mut impl Host, old: &mut Worker) {
        // Envoy keeps one stat per name and the old ids stay valid in this VM: flushed through
        // them, counts land under their old names whether or not this policy has them.
        old.counters.flush(h);

        let mut events = std::mem::take(&mut old.orphans);
        for (mi, (model, policy)) in old.models.iter().enumerate() {
            for (vi, version) in policy.versions.iter().enumerate() {
                for (wi, spec) in old.windows.iter().enumerate() {
                    let Some(delta) = old.pending.get_mut(mi).and_then(|v| v.get_mut(vi)).and_then(|w| w.get_mut(wi))
                    else {
                        continue;
                    };
                    if !delta.is_empty() {
                        let delta = std::mem::take(delta);
                        events.push(Orphan {
                            model: model.clone(),
                            version: version.name.clone(),
                            spec: spec.clone(),
                            delta,
                        });
                    }
                }
            }
        }
        for e in events {
            match self.pending_for(&e.model, &e.version, &e.spec) {
                Some(p) => p.add(&e.delta),
                None => self.orphans.push(e),
            }
        }

        // The guard: versions out stay out (the latch is in shared data, but this worker would
        // read it only at its next tick), and events not yet merged join this worker's. A
        // version this policy no longer guards shows as in: its gauges cannot be removed from
        // Envoy, and a last value of 1 would keep `SwitchyardGuardTookVersionOut` firing.
        for (omi, ((model, policy), g)) in old.models.iter().zip(&mut old.guards).enumerate() {
            let Some(g) = g else { continue };
            let mi = self.models.iter().position(|(m, _)| m == model);
            let mine_guards = mi.and_then(|mi| self.guards.get(mi)).is_some_and(Option::is_some);
            for (vi, v) in policy.versions.iter().enumerate() {
                let kept = mine_guards
                    && mi.and_then(|mi| self.models.get(mi)).is_some_and(|(_, p)| p.version(&v.name).is_some());
                if !kept
                    && g.shown.get(vi).is_some_and(|s| s.is_some_and(|(out, at)| out || at != [0, 0]))
                    && let Some(ids) = old.ids.version(omi, vi)
                {
                    ids.guard_out.record(h, 0);
                    for id in &ids.guard_since {
                        id.record(h, 0);
                    }
                }
            }
            let Some(mi) = mi else { continue };
            let Some(Some(mine)) = self.guards.get_mut(mi) else { continue };
            let Some((_, now)) = self.models.get(mi) else { continue };
            for (vi, v) in policy.versions.iter().enumerate() {
                let Some(to) = now.version(&v.name) else { continue };
                if let (Some(pending), Some(delta)) = (mine.pending.get_mut(to), g.pending.get_mut(vi)) {
                    pending.add(&std::mem::take(delta));
                }
                if mine.epoch == g.epoch
                    && to != mine.stable
                    && let (Some(out), Some(was)) = (mine.out.get_mut(to), g.out.get(vi))
                {
                    *out |= *was;
                    if let (Some(since), Some(Some(was))) = (mine.since.get_mut(to), g.since.get(vi)) {
                        *since = Some(*was);
                    }
                }
            }
        }

        self.compares.adopt(&mut old.compares);

        let mut moved = HashMap::new();
        for (token, from) in std::mem::take(&mut old.in_flight) {
            if let Some(to) = self.remap(h, &old.origins, &mut moved, from) {
                self.in_flight.insert(token, to);
            }
        }
        old.queued_bytes = 0;
        // Oldest first, within this worker's bounds (beyond them dropped, and counted).
        for s in std::mem::take(&mut old.samples) {
            if let Some(to) = self.remap(h, &old.origins, &mut moved, s.origin) {
                self.enqueue(to, s.body);
            }
        }
    }

    /// This worker's origin for `old`'s origin `from` (memoised in `moved`).
    fn remap(
        &mut self,
        h: &mut impl Host,
        old: &[Origin],
        moved: &mut HashMap<usize, usize>,
        from: usize,
    ) -> Option<usize> {
        if let Some(to) = moved.get(&from) {
            return Some(*to);
        }
        let o = old.get(from)?;
        let to = self.origin_named(h, &o.model, &o.version);
        moved.insert(from, to);
        Some(to)
    }

    /// This worker's pending SLO events for a model's version and window, if it accounts them.
    fn pending_for(&mut self, model: &str, version: &str, spec: &WindowSpec) -> Option<&mut Counts> {
        let mi = self.models.iter().position(|(m, p)| m == model && p.slo.is_some())?;
        let vi = self.models.get(mi)?.1.version(version)?;
        let wi = self.windows.iter().position(|w| w.seconds == spec.seconds)?;
        self.pending.get_mut(mi)?.get_mut(vi)?.get_mut(wi)
    }

    /// The origin for samples of `model`/`version`: the configured one, or one defined now for
    /// a version this policy no longer has (its counters keep their names).
    fn origin_named(&mut self, h: &mut impl Host, model: &str, version: &str) -> usize {
        if let Some(i) = self.origins.iter().position(|o| o.model == model && o.version == version) {
            return i;
        }
        let counters = sample_counters(h, &mut self.counters, model, version);
        self.origins.push(Origin { model: model.to_owned(), version: version.to_owned(), counters });
        self.origins.len() - 1
    }

    fn origin_of(&self, at: ModelVersion) -> Option<usize> {
        let base = *self.origin_base.get(at.model)?;
        let (_, policy) = self.models.get(at.model)?;
        (at.version < policy.versions.len()).then_some(base + at.version)
    }

    /// The headers only this filter may set: a client's copies must go before routing.
    pub fn internal_headers(&self) -> [&str; 2] {
        [&self.config.upstream_header, &self.config.shadow_header]
    }

    /// Picks the version for a request and counts the decision; requests not for a configured
    /// model, and model paths that cannot be trusted, are counted too. `header` answers a
    /// request header: only those the decision needs are asked for (each can be a host call).
    pub fn route(&mut self, mut header: impl FnMut(&str) -> Option<String>) -> Routing {
        let path = header(":path");
        let p = match path.as_deref().map(paths::parse) {
            Some(Ok(Some(p))) => p,
            None | Some(Ok(None)) => {
                self.counters.inc(self.ids.unrouted_not_model);
                return Routing::Unrouted;
            }
            Some(Err(e)) => {
                self.counters.inc(self.ids.unrouted_invalid_path);
                return Routing::Refused(e);
            }
        };
        // Only inference answers can be judged: metadata and readiness calls are mirrored as
        // ever (asked only of shadowed requests of a model that compares).
        let infer = path.as_deref().and_then(|p| p.split('?').next()).is_some_and(|p| p.ends_with("/infer"));
        let canonical = (p.version.is_some() || p.encoded).then(|| paths::canonical(&p));
        self.decide(&p.model, p.version.as_deref(), header, Call::Rest { infer, path: canonical })
    }

    /// Counts a gRPC call the filter did not route: one with no model to route by, or
    /// (`refused`) one whose message could not be placed.
    pub fn count_grpc_unrouted(&mut self, refused: bool) {
        let id = if refused { self.ids.unrouted_invalid_grpc } else { self.ids.unrouted_not_model };
        self.counters.inc(id);
    }

    /// Routes a gRPC call of the protocol's service for `model` (and the `version` its
    /// message names), as [`Worker::route`] routes a REST request.
    pub fn route_grpc(
        &mut self,
        model: &str,
        version: Option<&str>,
        header: impl FnMut(&str) -> Option<String>,
    ) -> Routing {
        self.decide(model, version, header, Call::Grpc)
    }

    fn decide(
        &mut self,
        model: &str,
        version: Option<&str>,
        mut header: impl FnMut(&str) -> Option<String>,
        call: Call,
    ) -> Routing {
        let Some(mi) = self.models.iter().position(|(name, _)| *name == *model) else {
            self.counters.inc(self.ids.unrouted_unknown_model);
            return Routing::Unrouted;
        };
        let (Some((_, policy)), Some(ids)) = (self.models.get(mi), self.ids.models.get(mi)) else {
            return Routing::Unrouted;
        };
        let sticky_key = match policy.sticky.as_ref().map(|s| (&s.header, &s.cookie)) {
            Some((Some(h), _)) => header(h),
            Some((None, Some(c))) => header("cookie").and_then(|v| split::cookie_value(&v, c).map(str::to_owned)),
            _ => None,
        };
        let requested = policy.override_.as_ref().and_then(|o| header(&o.header));
        let facts = RequestFacts {
            requested: requested.as_deref().or(version),
            sticky_key: sticky_key.as_deref().filter(|k| !k.is_empty()),
            random: self.rng.next_u64(),
            shadow_random: self.rng.next_f64(),
        };
        let mut d = split::decide(policy, &facts);
        if let Some(Some(g)) = self.guards.get(mi) {
            d = guard::reroute(policy, d, &g.out);
        }
        if policy.versions.get(d.version).is_none() {
            return Routing::Unrouted;
        }
        let mut shadow = d.shadow.filter(|i| policy.versions.get(*i).is_some());
        // A compared request is sent to the shadow by the filter, after the primary answered:
        // Envoy's mirror (which discards the answer) would send it a second time. gRPC calls
        // are mirrored (the filter's comparison speaks REST).
        let infer = matches!(call, Call::Rest { infer: true, .. });
        let compare = match (shadow, policy.shadow.as_ref().and_then(|s| s.compare.as_ref())) {
            (Some(i), Some(c)) if infer && self.rng.next_f64() * 100.0 < c.percent => Some((i, c.max_body_bytes)),
            _ => None,
        };
        if let Some((i, _)) = compare {
            shadow = None;
            if let Some(c) =
                ids.versions.get(i).and_then(|v| v.compares).and_then(|c| compare_counter(&c, CompareResult::Started))
            {
                self.counters.inc(c);
            }
        }
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
        let (path, grpc) = match call {
            Call::Rest { path, .. } => (path, false),
            Call::Grpc => (None, true),
        };
        Routing::Routed(Route { at, shadow, path, sample_cap: sampling.map(|s| s.max_body_bytes), compare, grpc })
    }

    /// The request headers `route` sets: the routing header with the chosen version's cluster,
    /// and the mirror's header with the shadow's cluster, if any.
    pub fn route_headers(&self, route: &Route) -> Option<RouteHeaders<'_>> {
        let (_, policy) = self.models.get(route.at.model)?;
        let cluster = |i: usize| {
            let c = &policy.versions.get(i)?.cluster;
            Some(if route.grpc { grpc::cluster(c) } else { c.clone() })
        };
        Some(RouteHeaders {
            upstream: (&self.config.upstream_header, cluster(route.at.version)?),
            shadow: (&self.config.shadow_header, route.shadow.and_then(cluster)),
        })
    }

    /// The response header naming the version that answered, and its value.
    pub fn version_header(&self, at: ModelVersion) -> Option<(&str, &str)> {
        let (_, policy) = self.models.get(at.model)?;
        Some((&self.config.version_header, &policy.versions.get(at.version)?.name))
    }

    /// With `identity` in the policy, the tenant's label index (named, or `other`) for the
    /// value Envoy set from the client's token; `Err` when Envoy set none (a token without the
    /// tenant claim, or a gateway that does not authenticate); `Ok(None)` without `identity`.
    pub fn tenant(&self, value: Option<&str>) -> Result<Option<usize>, NoTenant> {
        let Some(identity) = &self.config.identity else { return Ok(None) };
        match value {
            Some(v) if !v.is_empty() => Ok(Some(identity.tenant_index(v))),
            _ => Err(NoTenant { claim: identity.tenant_claim.clone() }),
        }
    }

    pub fn has_identity(&self) -> bool {
        self.config.identity.is_some()
    }

    /// A model request refused for want of a tenant.
    pub fn count_no_tenant(&mut self) {
        self.counters.inc(self.ids.unrouted_no_tenant);
    }

    /// Accounts a finished request against its version (outcome, latency and SLO events) and
    /// its tenant.
    pub fn record_finished(
        &mut self,
        h: &mut impl Host,
        at: ModelVersion,
        tenant: Option<usize>,
        outcome: Outcome,
        latency_ms: u64,
    ) {
        let Some((_, policy)) = self.models.get(at.model) else { return };
        // A quota refusal is counted, not timed: its few microseconds at the gateway would
        // pull the version's (and the tenant's) latency down.
        let timed = outcome != Outcome::QuotaExceeded;
        if let Some(t) = tenant.and_then(|t| self.ids.tenants.get(t)).and_then(|m| m.get(at.model)) {
            if timed {
                t.duration_ms.record(h, latency_ms);
            }
            if let Some(c) = t.requests.get(outcome_index(outcome)) {
                self.counters.inc(*c);
            }
        }
        if let Some(v) = self.ids.version(at.model, at.version) {
            if timed {
                v.duration_ms.record(h, latency_ms);
            }
            if let Some(c) = v.requests.get(outcome_index(outcome)) {
                self.counters.inc(*c);
            }
        }
        // Without an SLO there is no latency threshold: only availability counts.
        let event = Counts::event(outcome, latency_ms, policy.slo.as_ref().map_or(u64::MAX, |s| s.latency_ms));
        if policy.slo.is_some()
            && let Some(windows) = self.pending.get_mut(at.model).and_then(|m| m.get_mut(at.version))
        {
            for c in windows.iter_mut() {
                c.add(&event);
            }
        }
        if let Some(Some(g)) = self.guards.get_mut(at.model)
            && let Some(p) = g.pending.get_mut(at.version)
        {
            p.add(&event);
        }
    }

    /// The model and version names and the sampling rules a sample of `at` is built with.
    pub fn sampling(&self, at: ModelVersion) -> Option<(&str, &str, &Sampling)> {
        let (model, policy) = self.models.get(at.model)?;
        Some((model, &policy.versions.get(at.version)?.name, policy.sampling.as_ref()?))
    }

    /// Queues a sample for the collector; with the queue full it is dropped, and counted.
    pub fn queue_sample(&mut self, at: ModelVersion, body: Vec<u8>) {
        if let Some(origin) = self.origin_of(at) {
            self.enqueue(origin, body);
        }
    }

    /// Queues within both bounds (`max_queued` samples, `max_queued_bytes`), else drops.
    fn enqueue(&mut self, origin: usize, body: Vec<u8>) {
        let room = self.config.collector.as_ref().is_some_and(|c| {
            self.samples.len() < c.max_queued && self.queued_bytes.saturating_add(body.len()) <= c.max_queued_bytes
        });
        if room {
            self.queued_bytes += body.len();
            self.samples.push_back(Sample { origin, body });
        } else {
            self.count_origin(origin, SampleResult::Dropped);
        }
    }

    /// A compared request that will not be compared (the gateway's quota refused it): skipped.
    pub fn skip_compare(&mut self, at: ModelVersion, shadow: usize) {
        let c = self.ids.version(at.model, shadow).and_then(|v| v.compares);
        if let Some(s) = c.and_then(|c| compare_counter(&c, CompareResult::Skipped)) {
            self.counters.inc(s);
        }
    }

    /// Takes a compared request whose primary has answered; one whose request or response
    /// was cut at the cap, or that got no response, is skipped (and counted).
    pub fn queue_compare(&mut self, at: ModelVersion, c: Compared) {
        let Some((model, policy)) = self.models.get(at.model) else { return };
        let Some(counters) = self.ids.version(at.model, c.shadow).and_then(|v| v.compares) else { return };
        let settings = policy.shadow.as_ref().and_then(|s| s.compare.clone());
        let (Some(settings), Some(primary), Some(shadow)) =
            (settings, policy.versions.get(at.version), policy.versions.get(c.shadow))
        else {
            return;
        };
        let Capture { request, response } = c.capture;
        if c.status.is_none() || request.is_truncated() || response.is_truncated() {
            if let Some(s) = compare_counter(&counters, CompareResult::Skipped) {
                self.counters.inc(s);
            }
            return;
        }
        let job = Job {
            model: model.clone(),
            primary: primary.name.clone(),
            shadow: shadow.name.clone(),
            primary_cluster: primary.cluster.clone(),
            shadow_cluster: shadow.cluster.clone(),
            settings,
            redact: policy.sampling.as_ref().map(|s| s.redact_fields.clone()).unwrap_or_default(),
            path: c.path,
            content_type: request.header("content-type").map(str::to_owned),
            request_id: c.request_id,
            start_unix_ms: c.start_unix_ms,
            request: request.into_body(),
            answer: Answer { status: c.status, duration_ms: c.duration_ms, body: response.into_body() },
            counters,
        };
        self.compares.offer(&mut self.counters, job);
    }

    /// Sends the calls of comparisons waiting for them; `made` learns their tokens.
    pub fn dispatch_compares(&mut self, h: &mut impl Host, made: &mut impl Extend<u32>) {
        self.compares.dispatch(h, &mut self.counters, made);
    }

    /// Settles call `token` if it is a comparison's (then `true`); see [`Comparisons::answered`].
    pub fn compare_answered(
        &mut self,
        h: &mut impl Host,
        token: u32,
        body_size: usize,
        made: &mut impl Extend<u32>,
    ) -> bool {
        self.compares.answered(h, &mut self.counters, self.config.collector.as_ref(), token, body_size, made)
    }

    pub fn count_sample(&mut self, at: ModelVersion, result: SampleResult) {
        if let Some(origin) = self.origin_of(at) {
            self.count_origin(origin, result);
        }
    }

    fn count_origin(&mut self, origin: usize, result: SampleResult) {
        if let Some(c) = self.origins.get(origin).and_then(|o| sample_counter(&o.counters, result)) {
            self.counters.inc(c);
        }
    }

    /// Hands queued samples to `post` while the collector has room; `post` answers the call's
    /// token, or `None` when the call could not be made.
    pub fn dispatch_samples(&mut self, mut post: impl FnMut(&Collector, &[u8]) -> Option<u32>) {
        let Some(c) = &self.config.collector else { return };
        while self.in_flight.len() < c.max_in_flight {
            let Some(s) = self.samples.pop_front() else { break };
            self.queued_bytes = self.queued_bytes.saturating_sub(s.body.len());
            match post(c, &s.body) {
                Some(token) => {
                    self.in_flight.insert(token, s.origin);
                }
                None => {
                    if let Some(c) =
                        self.origins.get(s.origin).and_then(|o| sample_counter(&o.counters, SampleResult::Failed))
                    {
                        self.counters.inc(c);
                    }
                }
            }
        }
    }

    /// Settles the collector call `token`, if it is one of ours (the answer is `true` then);
    /// `result` reads what became of it (asked only then: it reads the answer from the host).
    pub fn call_done(&mut self, token: u32, result: impl FnOnce() -> SampleResult) -> bool {
        let Some(origin) = self.in_flight.remove(&token) else { return false };
        self.count_origin(origin, result());
        true
    }

    /// Reports the counts made since the last flush.
    pub fn flush_counters(&mut self, h: &mut impl Host) {
        self.counters.flush(h);
    }

    /// Merges this worker's SLO events into `store` (compare-and-swap, so all workers' events
    /// add up) and publishes window totals and burn rates.
    /// This worker's VM found the shared data without a key of the filter's.
    pub fn shared_data_started(&mut self) {
        self.counters.inc(self.ids.shared_data_starts);
    }

    pub fn flush_slo(&mut self, h: &mut impl Host, store: &mut impl slo::SharedStore) {
        let now_ms = h.now_ms();
        if let Some((count, _)) = store.get(slo::KEY_COUNT) {
            self.ids.shared_keys.record(h, slo::key_count(&count));
        }
        self.orphans.retain_mut(|o| {
            let key = slo::window_key(&o.model, &o.version, &o.spec);
            merge(h, store, &key, &o.spec, &mut o.delta, now_ms);
            !o.delta.is_empty()
        });
        for (mi, (model, policy)) in self.models.iter().enumerate() {
            let Some(slo) = &policy.slo else { continue };
            for (vi, version) in policy.versions.iter().enumerate() {
                for (wi, spec) in self.windows.iter().enumerate() {
                    let key = slo::window_key(model, &version.name, spec);
                    let Some(delta) = self.pending.get_mut(mi).and_then(|v| v.get_mut(vi)).and_then(|w| w.get_mut(wi))
                    else {
                        continue;
                    };
                    let window = merge(h, store, &key, spec, delta, now_ms);
                    let t = window.totals(now_ms);
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

impl Worker {
    /// The guard's tick: merges this worker's events into each guarded version's shared window,
    /// learns of latches other workers set, and judges every version still in the split against
    /// the stable one; a trip is latched in shared data (so every worker takes the version out
    /// at its next tick), logged and shown by `switchyard_guard_out`.
    pub fn flush_guard(&mut self, h: &mut impl Host, store: &mut impl slo::SharedStore) {
        let now_ms = h.now_ms();
        for (mi, ((model, policy), g)) in self.models.iter().zip(&mut self.guards).enumerate() {
            let (Some(g), Some(rule)) = (g, &policy.guard) else { continue };
            // One key per version whatever the epoch: the value carries it.
            let store = &mut guard::EpochStore::new(&mut *store, g.epoch);
            let mut totals = Vec::with_capacity(policy.versions.len());
            for (v, pending) in policy.versions.iter().zip(&mut g.pending) {
                let key = guard::window_key(model, &v.name);
                totals.push(merge(h, store, &key, &g.window, pending, now_ms).totals(now_ms));
            }
            let Some(stable) = totals.get(g.stable).copied() else { continue };
            for (vi, v) in policy.versions.iter().enumerate() {
                if vi == g.stable || g.out.get(vi).copied().unwrap_or(true) {
                    continue;
                }
                let latch = guard::latch_key(model, &v.name);
                let at = format!("{model}/{}", v.name);
                let (held, line) = match store.get(&latch) {
                    Some((value, _)) => latched(&at, &value),
                    None => {
                        let Some(Verdict::Trip(t)) =
                            totals.get(vi).map(|t| guard::judge(rule, policy.slo.is_some(), t, &stable))
                        else {
                            continue;
                        };
                        let held = Latch::of_trip(&t, &g.window.label, now_ms);
                        match store.set(&latch, held.encode().as_bytes(), Some(slo::CREATE_CAS)) {
                            SetResult::Ok => {
                                let line = format!(
                                    "switchyard: guard took {at} out of the split: {}; it stays out until models.{model}.guard.epoch changes",
                                    held.why
                                );
                                (held, (LogLevel::Warn, line))
                            }
                            // Another worker latched it between our read and our write.
                            SetResult::CasMismatch => match store.get(&latch) {
                                Some((value, _)) => latched(&at, &value),
                                None => continue,
                            },
                            SetResult::Failed => {
                                let line = format!(
                                    "switchyard: guard: could not latch {latch}; {at} is out of the split in this worker only: {}",
                                    held.why
                                );
                                (held, (LogLevel::Error, line))
                            }
                        }
                    }
                };
                h.log(line.0, &line.1);
                if let (Some(out), Some(since)) = (g.out.get_mut(vi), g.since.get_mut(vi)) {
                    *out = true;
                    *since = Some((held.since_ms / 1000, held.sli));
                }
            }
            for (vi, ((out, since), shown)) in g.out.iter().zip(&g.since).zip(&mut g.shown).enumerate() {
                let mut at = [0; 2];
                if let (true, Some((secs, sli))) = (*out, since) {
                    // A latch of an earlier release says no SLI: shown under the first.
                    let i = sli.and_then(|s| Sli::ALL.iter().position(|x| *x == s)).unwrap_or(0);
                    if let Some(slot) = at.get_mut(i) {
                        *slot = *secs;
                    }
                }
                let now = (*out, at);
                if *shown != Some(now)
                    && let Some(v) = self.ids.version(mi, vi)
                {
                    v.guard_out.record(h, u64::from(*out));
                    for (id, value) in v.guard_since.iter().zip(at) {
                        id.record(h, value);
                    }
                    *shown = Some(now);
                }
            }
        }
    }
}

/// The latch a worker finds set by another, and its log line.
fn latched(at: &str, value: &[u8]) -> (Latch, (LogLevel, String)) {
    let held = Latch::decode(value);
    let line = format!("switchyard: guard: {at} is out of the split (latched: {})", held.why);
    (held, (LogLevel::Warn, line))
}

/// Adds `delta` to the shared window under `key` (see [`slo::merge`]); a lost race keeps
/// `delta` for the next flush. Returns the window as merged, or as last seen.
fn merge(
    h: &mut impl Host,
    store: &mut impl slo::SharedStore,
    key: &str,
    spec: &WindowSpec,
    delta: &mut Counts,
    now_ms: u64,
) -> Window {
    slo::merge(store, key, spec, delta, now_ms, CAS_RETRIES).unwrap_or_else(|seen| {
        h.log(LogLevel::Warn, &format!("switchyard: could not update shared data {key}; retrying next tick"));
        seen
    })
}
