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
    pub window_min_rows: Family<WindowLabels, Gauge>,
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
            "window_min_rows",
            "Rows the window needs before its columns are judged; below, no drift series are exported",
            self.window_min_rows.clone(),
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every family served, with a series each, is the contract's: name, type and labels.
    #[test]
    fn the_served_metrics_are_the_contracts() {
        let m = Metrics::default();
        let mut registry = Registry::with_prefix("switchyard");
        m.register(registry.sub_registry_with_prefix("drift"));
        let s = |x: &str| x.to_owned();
        let column = ColumnLabels { model: s("m"), version: s("v"), window: s("w"), column: s("c") };
        let window = WindowLabels { model: s("m"), version: s("v"), window: s("w") };
        let version = VersionLabels { model: s("m"), version: s("v") };
        let model = ModelLabels { model: s("m") };
        m.score.get_or_create(&column).set(0.5);
        m.threshold.get_or_create(&column).set(0.1);
        m.drifted.get_or_create(&column).set(1);
        m.test
            .get_or_create(&TestLabels {
                model: s("m"),
                version: s("v"),
                window: s("w"),
                column: s("c"),
                test: s("ks"),
            })
            .set(1);
        m.window_rows.get_or_create(&window).set(1);
        m.window_min_rows.get_or_create(&window).set(1);
        m.dataset_share.get_or_create(&window).set(0.5);
        m.dataset_drifted.get_or_create(&window).set(0);
        m.columns_drifted.get_or_create(&window).set(1);
        m.sample_age.get_or_create(&version).set(1.0);
        m.samples.get_or_create(&version).inc();
        m.rows.get_or_create(&version).inc();
        m.skip("malformed");
        m.reference_rows.get_or_create(&model).set(1);
        m.reference_ready.get_or_create(&model).set(1);
        m.memory.get_or_create(&model).set(1);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let problems =
            switchyard_contract::metrics::check_exposition(&text, switchyard_contract::metrics::Source::Monitor, true);
        assert!(problems.is_empty(), "{problems:#?}\n{text}");
    }
}
