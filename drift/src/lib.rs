//! Drift statistics with Evidently's tests, defaults and thresholds, checked against scipy and
//! numpy (`tests/scipy_parity.rs`). Pure: no I/O, no threads, no allocation beyond the
//! summaries. The drift monitor, the rollout controller's canary judge ([`special`]) and the
//! benchmarks use it.
//!
//! A column is summarised once ([`Summary`]: sorted values or value counts); [`column_drift`]
//! picks Evidently's default test for the pair (or takes an override) and returns the score,
//! threshold and decision; [`dataset_drift`] is the share of drifted columns.

pub mod ks;
pub mod special;
pub mod stattest;
pub mod summary;

pub use stattest::{
    ColumnDrift, DatasetDrift, Error, TESTS, Test, binned, column_drift, dataset_drift, default_test, sturges_edges,
};
pub use summary::{Key, Kind, Summary, union_keys, union_unique};
