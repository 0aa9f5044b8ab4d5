//! The root context: configuration, and the work done off the request path on a timer —
//! shipping queued samples and merging SLO counts into shared data.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::types::LogLevel;
use switchyard_policy::Config;

use crate::host::{self, Envoy, Host};
use crate::worker::{Shared, Worker};

const TICK: Duration = Duration::from_millis(100);
/// SLO windows are merged into shared data every this many ticks.
const SLO_EVERY_TICKS: u64 = 10;

#[derive(Default)]
pub struct Root {
    worker: Option<Shared>,
    ticks: u64,
}

impl Root {
    /// The worker new request streams share (requests in flight keep the one they started with).
    pub fn worker(&self) -> Option<Shared> {
        self.worker.clone()
    }

    /// Takes the plugin configuration: a valid one replaces the worker, a bad one is refused
    /// (Envoy then refuses the config) and the worker in place is kept.
    pub fn configure(&mut self, h: &mut impl Host) -> bool {
        let Some(bytes) = h.plugin_configuration() else {
            h.log(LogLevel::Error, "switchyard: no plugin configuration given; refusing to start");
            return false;
        };
        match Config::parse(&bytes) {
            Ok(config) => {
                let models: Vec<&str> = config.models.keys().map(String::as_str).collect();
                h.log(LogLevel::Info, &format!("switchyard: configured for models {}", models.join(", ")));
                self.worker = Some(Rc::new(RefCell::new(Worker::new(config, h))));
                h.set_tick_period(TICK);
                true
            }
            Err(e) => {
                h.log(LogLevel::Error, &format!("switchyard: {e}"));
                false
            }
        }
    }

    pub fn tick(&mut self) {
        self.ticks += 1;
        let Some(w) = &self.worker else { return };
        let Ok(mut w) = w.try_borrow_mut() else { return };
        w.dispatch_samples(|c, body| {
            host::dispatch_post(&c.cluster, &c.path, body, Duration::from_millis(c.timeout_ms))
        });
        w.flush_counters(&mut Envoy);
        if self.ticks.is_multiple_of(SLO_EVERY_TICKS) {
            w.flush_slo(&mut Envoy, &mut host::SharedData);
        }
    }

    pub fn call_done(&mut self, token: u32) {
        if let Some(w) = &self.worker
            && let Ok(mut w) = w.try_borrow_mut()
        {
            w.call_done(token, || host::call_response_status().is_some_and(|s| (200..300).contains(&s)));
        }
    }
}
