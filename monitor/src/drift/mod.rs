//! The drift monitor: per model and version, sliding windows of the sampled inputs and
//! predictions compared with a reference by Evidently's tests (`switchyard_drift`).
//!
//! - [`table`] turns samples, V2 requests, row arrays and named objects into columns;
//! - [`config`] is the one parser of the monitor's JSON config;
//! - [`evaluate`] tests a reference against current data (batch and streaming alike);
//! - [`report`] prints an evaluation as text, JSON or a self-contained HTML page;
//! - [`watch`] follows the collector's JSONL file, keeps the windows, exports the metrics.

pub mod config;
pub mod evaluate;
pub mod metrics;
pub mod report;
pub mod table;
pub mod watch;
