//! Every metric the drift monitor exports, registered in one place; docs/metrics.md lists
//! them. Model names come from the config, versions are capped per model (`max_versions`),
//! columns per model (`max_columns`), windows come from the config: every label is bounded.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

pub type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ColumnLabels {
    pub model: String,
    pub version: String,
    pub window: String,
    pub column: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TestLabels {
    pub model: String,
    pub version: String,
    pub window: String,
    pub column: String,
    pub test: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WindowLabels {
    pub model: String,
    pub version: String,
    pub window: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub model: String,
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Default)]
pub struct Metrics {
    pub score: Family<ColumnLabels, FloatGauge>,
    pub threshold: Family<ColumnLabels, FloatGauge>,
    pub drifted: Family<ColumnLabels, Gauge>,
    pub test: Family<TestLabels, Gauge>,
    pub window_rows: Family<WindowLabels, Gauge>,
    pub dataset_share: Family<WindowLabels, FloatGauge>,
    pub dataset_drifted: Family<WindowLabels, Gauge>,
    pub columns_drifted: Family<WindowLabels, Gauge>,
    pub sample_age: Family<VersionLabels, FloatGauge>,
    pub samples: Family<VersionLabels, Counter>,
    pub rows: Family<VersionLabels, Counter>,
    pub skipped: Family<ReasonLabels, Counter>,
    pub reference_rows: Family<ModelLabels, Gauge>,
    pub reference_ready: Family<ModelLabels, Gauge>,
    pub memory: Family<ModelLabels, Gauge>,
    pub evaluation_seconds: FloatGauge,
}

impl Metrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "score",
            "Drift score of a column in a window: a p-value (ks, chisquare, z) or a distance",
            self.score.clone(),
        );
        r.register("threshold", "The score's drift threshold", self.threshold.clone());
        r.register(
            "column_drifted",
            "1 when the column drifted in the window (Evidently's rule for its test)",
            self.drifted.clone(),
        );
        r.register("column_test", "1 for the test the column is judged by (label test)", self.test.clone());
        r.register("window_rows", "Rows in the window at its last evaluation", self.window_rows.clone());
        r.register(
            "dataset_drift_share",
            "Share of the window's tested columns that drifted",
            self.dataset_share.clone(),
        );
        r.register(
            "dataset_drifted",
            "1 when the share of drifted columns is at least drift_share (0.5)",
            self.dataset_drifted.clone(),
        );
        r.register("columns_drifted", "Columns that drifted in the window", self.columns_drifted.clone());
        r.register_with_unit(
            "last_sample_age",
            "Seconds since the newest sample of the version started",
            Unit::Seconds,
            self.sample_age.clone(),
        );
        r.register("samples_ingested", "Samples whose rows entered the windows", self.samples.clone());
        r.register("rows_ingested", "Rows that entered the windows", self.rows.clone());
        r.register("lines_skipped", "Lines of the samples file that gave no rows, by reason", self.skipped.clone());
        r.register(
            "reference_rows",
            "Rows of the model's reference (collected so far, for a version reference)",
            self.reference_rows.clone(),
        );
        r.register(
            "reference_ready",
            "1 once the model's reference is complete and summarised",
            self.reference_ready.clone(),
        );
        r.register_with_unit(
            "memory",
            "Bytes the model's windows and reference summaries hold (estimate)",
            Unit::Bytes,
            self.memory.clone(),
        );
        r.register_with_unit(
            "evaluation_duration",
            "Wall time of the last evaluation of every window",
            Unit::Seconds,
            self.evaluation_seconds.clone(),
        );
    }

    pub fn skip(&self, reason: &str) {
        self.skipped.get_or_create(&ReasonLabels { reason: reason.to_owned() }).inc();
    }
}
