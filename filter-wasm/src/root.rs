//! The root context: configuration, and the work done off the request path on a timer —
//! shipping queued samples and merging SLO counts into shared data.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use switchyard_policy::hash::Rng;
use switchyard_policy::slo::{self, Counts, Window, WindowSpec, burn_rate};
use switchyard_policy::{Config, ModelPolicy};

use crate::host;
use crate::metrics::{Counters, Ids};
use crate::stream::Stream;

const TICK: Duration = Duration::from_millis(100);
/// SLO windows are merged into shared data every this many ticks.
const SLO_EVERY_TICKS: u64 = 10;
const CAS_RETRIES: usize = 8;

/// A sample waiting to be shipped.
pub struct Sample {
    pub model: usize,
    pub version: usize,
    pub body: Vec<u8>,
}

/// Per-worker state shared by the root context and this worker's request streams.
pub struct Worker {
    pub config: Config,
    /// `config.models` in order, for lookups by index.
    pub models: Vec<(String, ModelPolicy)>,
    pub windows: Vec<WindowSpec>,
    pub ids: Ids,
    pub counters: Counters,
    pub rng: Rng,
    /// SLO events not yet merged into shared data: [model][version][window].
    pub pending: Vec<Vec<Vec<Counts>>>,
    pub samples: VecDeque<Sample>,
    in_flight: HashMap<u32, (usize, usize)>,
}

pub type Shared = Rc<RefCell<Worker>>;

impl Worker {
    fn new(config: Config) -> Worker {
        let windows = config.windows();
        let mut counters = Counters::default();
        let ids = Ids::define(&config, &windows, &mut counters);
        let models: Vec<(String, ModelPolicy)> = config.models.clone().into_iter().collect();
        let pending =
            models.iter().map(|(_, m)| vec![vec![Counts::default(); windows.len()]; m.versions.len()]).collect();
        Worker {
            config,
            models,
            windows,
            ids,
            counters,
            rng: Rng::new(host::random_seed()),
            pending,
            samples: VecDeque::new(),
            in_flight: HashMap::new(),
        }
    }

    pub fn sample_metric(&mut self, model: usize, version: usize, result: usize) {
        let c = self.ids.models.get(model).and_then(|m| m.versions.get(version)).and_then(|v| v.samples.get(result));
        if let Some(c) = c.copied() {
            self.counters.inc(c);
        }
    }

    /// Ships queued samples while the collector has room.
    fn dispatch_samples(&mut self) {
        let Some(c) = self.config.collector.clone() else {
            self.samples.clear();
            return;
        };
        while self.in_flight.len() < c.max_in_flight {
            let Some(s) = self.samples.pop_front() else {
                break;
            };
            match host::dispatch_post(&c.cluster, &c.path, &s.body, Duration::from_millis(c.timeout_ms)) {
                Some(token) => {
                    self.in_flight.insert(token, (s.model, s.version));
                }
                None => self.sample_metric(s.model, s.version, 2),
            }
        }
    }

    fn call_done(&mut self, token: u32) {
        if let Some((m, v)) = self.in_flight.remove(&token) {
            let ok = host::call_response_status().is_some_and(|s| (200..300).contains(&s));
            self.sample_metric(m, v, if ok { 1 } else { 2 });
        }
    }

    /// Merges this worker's SLO events into shared data (compare-and-swap, so all workers'
    /// events add up) and publishes window totals and burn rates.
    fn flush_slo(&mut self) {
        let now_s = host::now_ms() / 1000;
        for (mi, (model, policy)) in self.models.iter().enumerate() {
            let Some(slo) = &policy.slo else { continue };
            for (vi, version) in policy.versions.iter().enumerate() {
                for (wi, spec) in self.windows.iter().enumerate() {
                    let key = format!("switchyard/slo/{model}/{}/{}", version.name, spec.seconds);
                    let Some(delta) = self.pending.get_mut(mi).and_then(|v| v.get_mut(vi)).and_then(|w| w.get_mut(wi))
                    else {
                        continue;
                    };
                    let window = merge(&key, spec, delta, now_s);
                    let t = window.totals(now_s);
                    let Some(ids) =
                        self.ids.models.get(mi).and_then(|m| m.versions.get(vi)).and_then(|v| v.slo.get(wi))
                    else {
                        continue;
                    };
                    let sli =
                        [(t.total, t.bad, slo.availability), (t.latency_total, t.latency_bad, slo.latency_objective)];
                    for (i, (total, bad, objective)) in sli.into_iter().enumerate() {
                        if let (Some(g), Some(b), Some(r)) = (ids.good.get(i), ids.bad.get(i), ids.burn_x1000.get(i)) {
                            g.record(total - bad);
                            b.record(bad);
                            r.record((burn_rate(bad, total, objective) * 1000.0).round() as u64);
                        }
                    }
                }
            }
        }
    }
}

/// Adds `delta` to the shared window under `key` (see [`slo::merge`]); a lost race keeps
/// `delta` for the next flush. Returns the window as merged, or as last seen.
fn merge(key: &str, spec: &WindowSpec, delta: &mut Counts, now_s: u64) -> Window {
    slo::merge(&mut host::SharedData, key, spec, delta, now_s, CAS_RETRIES).unwrap_or_else(|seen| {
        host::log(LogLevel::Warn, &format!("switchyard: could not update shared data {key}; retrying next tick"));
        seen
    })
}

#[derive(Default)]
pub struct Root {
    worker: Option<Shared>,
    ticks: u64,
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, _body: usize, _trailers: usize) {
        if let Some(w) = &self.worker
            && let Ok(mut w) = w.try_borrow_mut()
        {
            w.call_done(token);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(bytes) = host::plugin_configuration() else {
            host::log(LogLevel::Error, "switchyard: no plugin configuration given; refusing to start");
            return false;
        };
        match Config::parse(&bytes) {
            Ok(config) => {
                let models: Vec<&str> = config.models.keys().map(String::as_str).collect();
                host::log(LogLevel::Info, &format!("switchyard: configured for models {}", models.join(", ")));
                self.worker = Some(Rc::new(RefCell::new(Worker::new(config))));
                host::set_tick_period(TICK);
                true
            }
            Err(e) => {
                host::log(LogLevel::Error, &format!("switchyard: {e}"));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        self.ticks += 1;
        let Some(w) = &self.worker else { return };
        let Ok(mut w) = w.try_borrow_mut() else {
            return;
        };
        w.dispatch_samples();
        w.counters.flush();
        if self.ticks.is_multiple_of(SLO_EVERY_TICKS) {
            w.flush_slo();
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream::new(self.worker.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
