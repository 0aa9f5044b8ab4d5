//! The root context: configuration, and the work done off the request path on a timer —
//! the guard (every tick), shipping queued samples and merging SLO counts into shared data.
//!
//! A policy change must not lose what the running worker has not reported yet (counts, SLO
//! events, queued and in-flight samples). Envoy gives a changed configuration a new root
//! context in the same VM (the plugin key includes the configuration) and keeps the old one,
//! and its requests, until they end; proxy-wasm also allows configuring a root context again.
//! Either way the new worker takes over the previous one's state, through this VM's
//! [`Lineage`] of the filter, and goes on taking over what requests that started under an
//! earlier policy record, until the last of them ends.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::{Rc, Weak};
use std::time::Duration;

use proxy_wasm::types::LogLevel;
use switchyard_contract::paths::COLLECTOR_ANSWER_HEADER;
use switchyard_policy::Config;
use switchyard_policy::sampling::SampleResult;
use switchyard_policy::slo::{self, SharedStore};

use crate::host::Host;
use crate::worker::{Shared, Worker};

const TICK: Duration = Duration::from_millis(100);
/// SLO windows are merged into shared data this often (ms). Timed by the lineage, not by a
/// root context's ticks: a policy changed every half second gives each root context five
/// ticks, and counting ten of them never merged anything while policies churned.
const SLO_EVERY_MS: u64 = 1000;

/// One filter's workers in this VM (one VM per Envoy worker thread, so one of these each).
#[derive(Default)]
struct Lineage {
    /// The worker of the root context configured last: the only one that ships samples and
    /// flushes; every other worker's state is moved into it.
    latest: Weak<RefCell<Worker>>,
    /// Workers of earlier policies still held by requests (or root contexts) that can record
    /// into them.
    retiring: Vec<Shared>,
    /// When SLO windows were last merged (ms since the epoch).
    slo_flushed_ms: u64,
}

thread_local! {
    /// By plugin name: two differently named Switchyard filters in one VM stay apart.
    static LINEAGES: RefCell<HashMap<String, Lineage>> = RefCell::new(HashMap::new());
}

fn with_lineage<T>(plugin: &str, f: impl FnOnce(&mut Lineage) -> T) -> T {
    LINEAGES.with(|l| {
        let mut map = l.borrow_mut();
        // Every tick asks: no key allocation once the entry exists.
        if !map.contains_key(plugin) {
            map.insert(plugin.to_owned(), Lineage::default());
        }
        match map.get_mut(plugin) {
            Some(lineage) => f(lineage),
            None => f(&mut Lineage::default()),
        }
    })
}

#[derive(Default)]
pub struct Root {
    worker: Option<Shared>,
    plugin: String,
    /// Collector calls this root context made and that are not answered yet: Envoy cancels
    /// them when it deletes the context, so its deletion waits for them.
    calls: HashSet<u32>,
    done_pending: bool,
}

impl Root {
    /// The worker new request streams share (requests in flight keep the one they started with).
    pub fn worker(&self) -> Option<Shared> {
        self.worker.clone()
    }

    /// Takes the plugin configuration: a valid one replaces the worker, which takes over
    /// everything the previous one (this root context's, or the filter's newest in this VM)
    /// had not reported yet; a bad one is refused (Envoy then refuses the config) and the worker
    /// in place is kept.
    pub fn configure(&mut self, h: &mut impl Host) -> bool {
        let Some(bytes) = h.plugin_configuration() else {
            h.log(LogLevel::Error, "switchyard: no plugin configuration given; refusing to start");
            return false;
        };
        let config = match Config::parse(&bytes) {
            Ok(config) => config,
            Err(e) => {
                h.log(LogLevel::Error, &format!("switchyard: {e}"));
                return false;
            }
        };
        let models: Vec<&str> = config.models.keys().map(String::as_str).collect();
        h.log(LogLevel::Info, &format!("switchyard: configured for models {}", models.join(", ")));
        self.plugin = h.plugin_name();
        let mut worker = Worker::new(config, h);
        let previous = self.worker.take().or_else(|| with_lineage(&self.plugin, |l| l.latest.upgrade()));
        if let Some(old) = previous {
            let adopted = old.try_borrow_mut().map(|mut o| worker.adopt(h, &mut o)).is_ok();
            // `old` is one holder; another (requests in flight, the root context that ran it)
            // can still record into it.
            if !adopted || Rc::strong_count(&old) > 1 {
                with_lineage(&self.plugin, |l| l.retiring.push(old));
            }
        }
        let worker = Rc::new(RefCell::new(worker));
        with_lineage(&self.plugin, |l| l.latest = Rc::downgrade(&worker));
        self.worker = Some(worker);
        h.set_tick_period(TICK);
        true
    }

    fn is_latest(&self) -> bool {
        let Some(w) = &self.worker else { return false };
        with_lineage(&self.plugin, |l| l.latest.upgrade().is_some_and(|latest| Rc::ptr_eq(&latest, w)))
    }

    pub fn tick(&mut self, h: &mut impl Host, store: &mut impl SharedStore) {
        // Every key the filter creates is counted: Envoy can neither list nor delete them.
        let store = &mut slo::CountingStore::new(store);
        // A root context whose policy was replaced does nothing: the newest one takes over what
        // its worker records.
        if !self.is_latest() {
            return;
        }
        let Some(w) = &self.worker else { return };
        let Ok(mut w) = w.try_borrow_mut() else { return };
        with_lineage(&self.plugin, |l| {
            for old in &l.retiring {
                if let Ok(mut old) = old.try_borrow_mut() {
                    w.adopt(h, &mut old);
                }
            }
            // Adopted just now, and nothing can record into them any more: empty, let go.
            l.retiring.retain(|old| Rc::strong_count(old) > 1 || old.try_borrow_mut().is_err());
        });
        let calls = &mut self.calls;
        w.dispatch_samples(|c, body| {
            let token = h.dispatch_post(&c.cluster, &c.path, body, Duration::from_millis(c.timeout_ms));
            calls.extend(token);
            token
        });
        w.dispatch_compares(h, &mut self.calls);
        w.flush_guard(h, store);
        w.flush_counters(h);
        let now_ms = h.now_ms();
        if with_lineage(&self.plugin, |l| {
            let due = now_ms >= l.slo_flushed_ms.saturating_add(SLO_EVERY_MS);
            if due {
                l.slo_flushed_ms = now_ms;
            }
            due
        }) {
            w.flush_slo(h, store);
        }
        // Counted at the next tick's flush.
        if store.started {
            w.shared_data_started();
        }
    }

    /// Call `token` (made by this root context) was answered, its body `body_size` bytes: a
    /// collector call or a comparison's, settled by whichever worker now holds it.
    pub fn call_done(&mut self, h: &mut impl Host, token: u32, body_size: usize) {
        self.calls.remove(&token);
        let mut holders: Vec<Shared> = self.worker.iter().cloned().collect();
        with_lineage(&self.plugin, |l| {
            holders.extend(l.latest.upgrade());
            holders.extend(l.retiring.iter().cloned());
        });
        let mut made = Vec::new();
        for w in &holders {
            if let Ok(mut w) = w.try_borrow_mut()
                && (w.call_done(token, || {
                    let said = h.call_response_header(COLLECTOR_ANSWER_HEADER);
                    SampleResult::of_answer(h.call_response_status(), said.as_deref())
                }) || w.compare_answered(h, token, body_size, &mut made))
            {
                break;
            }
        }
        self.calls.extend(made);
        if self.done_pending && self.calls.is_empty() {
            h.done();
        }
    }

    /// Envoy is about to delete this root context: not before its collector calls are
    /// answered (or time out), or their samples would never be counted.
    pub fn finish(&mut self) -> bool {
        self.done_pending = !self.calls.is_empty();
        !self.done_pending
    }

    /// Workers of earlier policies still held by requests.
    #[cfg(test)]
    pub fn retiring(&self) -> usize {
        with_lineage(&self.plugin, |l| l.retiring.len())
    }
}
