//! The drift monitor: per model and version, sliding windows of the sampled inputs and
//! predictions compared with a reference by Evidently's tests (`switchyard_drift`).
//!
//! - [`table`] turns samples, V2 requests, row arrays and named objects into columns;
//! - [`config`] is the one parser of the monitor's JSON config;
//! - [`evaluate`] tests a reference against current data (batch and streaming alike);
//! - [`report`] prints an evaluation as text, JSON or a self-contained HTML page;
//! - [`monitor`] keeps the windows and references, evaluates them, exports the metrics
//!   ([`metrics`]), and keeps collected references in the state directory ([`store`]);
//! - [`watch`] is the streaming command: its [`options`], the thread that follows the
//!   collector's JSONL file ([`follow`]) and the HTTP server ([`server`]).

pub mod config;
pub mod evaluate;
pub mod follow;
pub mod metrics;
pub mod monitor;
pub mod options;
pub mod report;
pub mod server;
pub mod store;
pub mod table;
pub mod watch;
