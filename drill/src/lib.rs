//! `switchyard-drill`: chaos drills on the local stack (real Envoy with the filter, real
//! backends, collector, Prometheus with the production rules on drill time, Alertmanager and
//! the demo's webhook pager), all started by the test kit.
//!
//! A drill runs steady background traffic, injects one fault, and measures what an incident
//! review asks: when the first alert reached the pager after the onset (time to detect), what
//! mitigated it and when the client-visible impact ended (time to mitigate), the failed
//! requests and latency during the incident, and that nothing was lost (every request
//! answered; every sampled payload sent, failed, dropped or unanswered, never unaccounted). Each drill
//! writes a postmortem draft from docs/incident-response/postmortem-template.md with the
//! timeline, the alerts, the figures and a chart; only the action items are left to people.
//!
//! Modules, by job: `types` (drills, records, outcomes, and the figures from the records),
//! `env` (the stack and its traffic), `load` (the traffic: `switchyard_load`'s open-loop
//! generator, latency from each request's intended send time), `alerts` (the pager's webhook
//! payloads), `drill` (one drill from start to end), `catalog` (the drills), `report` (what a
//! drill leaves behind).

pub mod alerts;
pub mod catalog;
mod drill;
pub mod env;
pub mod load;
pub mod report;
pub mod types;

pub use drill::{default_out, run};
pub use env::{Env, Spec, policy};
pub use types::{Blast, Impact, Outcome, Rec, SLO_LATENCY_MS, Samples, SlowModels, TIME_SCALE, Timing};
