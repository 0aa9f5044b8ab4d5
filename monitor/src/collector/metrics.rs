//! Every metric the collector exports, registered in one place; docs/metrics.md lists them.
//! Label values are fixed enums.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use switchyard_runtime::label_values;

use crate::compare::{Judged, Unjudged};

/// Distinct (model, primary, shadow, pair) series the shadow metrics keep; records beyond it
/// are stored but not counted (anyone who can reach the collector can make up names).
pub const MAX_SHADOW_SERIES: usize = 512;

/// The file operation that failed.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Op {
    Write,
    Fsync,
    Truncate,
    Rotate,
    Open,
}

/// Why a sample was not stored.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Reason {
    /// Not one JSON object (400).
    Invalid,
    /// Body over `--max-body-bytes` (413).
    TooLarge,
    /// Queue at `--max-queued` or `--max-queued-bytes` (503).
    QueueFull,
    /// The disk (or a quota, or a file-size limit) is full (507).
    StorageFull,
    /// Any other write, fsync or rotation error (503).
    StorageError,
    /// The writer has stopped (503).
    ShuttingDown,
    /// The client stopped waiting before its sample was written: it is not written.
    ClientGone,
}

label_values!(Op { Write => "write", Fsync => "fsync", Truncate => "truncate", Rotate => "rotate", Open => "open" });
label_values!(Reason {
    Invalid => "invalid",
    TooLarge => "too_large",
    QueueFull => "queue_full",
    StorageFull => "storage_full",
    StorageError => "storage_error",
    ShuttingDown => "shutting_down",
    ClientGone => "client_gone",
});

/// Why a comparison record was stored but not counted.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum NotCounted {
    /// An answer without JSON outputs to judge (withheld for size, binary tensors).
    NotJudgeable,
    /// A model or version name the policy could not have (see `valid_name`).
    InvalidNames,
    /// Over [`MAX_SHADOW_SERIES`].
    TooManySeries,
}

label_values!(NotCounted {
    NotJudgeable => "not_judgeable",
    InvalidNames => "invalid_names",
    TooManySeries => "too_many_series",
});

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PairLabels {
    model: String,
    primary: String,
    shadow: String,
    pair: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotCountedLabels {
    reason: NotCounted,
}

/// The shadow comparison's families (`switchyard_shadow_*`, see docs/shadow-compare.md).
#[derive(Clone, Default)]
pub struct ShadowMetrics {
    compared: Family<PairLabels, Counter>,
    status_mismatches: Family<PairLabels, Counter>,
    rows: Family<PairLabels, Counter>,
    rows_disagreeing: Family<PairLabels, Counter>,
    rows_argmax_differ: Family<PairLabels, Counter>,
    rows_beyond_tolerance: Family<PairLabels, Counter>,
    not_counted: Family<NotCountedLabels, Counter>,
    series: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<PairLabels>>>,
}

impl ShadowMetrics {
    /// Registers every family in `r` (the caller gives it the `shadow` prefix).
    pub fn register(&self, r: &mut Registry) {
        let families = [
            (
                "compared_requests",
                "Compared requests, per pair (shadow: primary against shadow; noise: against itself)",
                &self.compared,
            ),
            ("status_mismatches", "Compared requests answered with different statuses", &self.status_mismatches),
            ("compared_rows", "Rows (first dimension of the outputs) compared", &self.rows),
            (
                "disagreeing_rows",
                "Compared rows that disagree (arg-max for classification outputs, tolerance for numeric ones; all rows of a status mismatch)",
                &self.rows_disagreeing,
            ),
            ("argmax_differing_rows", "Rows of classification outputs whose arg-max differs", &self.rows_argmax_differ),
            (
                "rows_beyond_tolerance",
                "Rows with an element beyond atol + rtol * |primary|",
                &self.rows_beyond_tolerance,
            ),
        ];
        for (name, help, family) in families {
            r.register(name, help, family.clone());
        }
        r.register(
            "records_not_counted",
            "Comparison records stored but not counted, by reason",
            self.not_counted.clone(),
        );
    }

    /// Counts a stored comparison record.
    pub fn count(&self, j: &Judged) {
        use switchyard_policy::names::valid_name;
        if ![&j.model, &j.primary, &j.shadow].iter().all(|n| valid_name(n)) {
            self.not_counted.get_or_create(&NotCountedLabels { reason: NotCounted::InvalidNames }).inc();
            return;
        }
        for (pair, verdict) in &j.pairs {
            let v = match verdict {
                Ok(v) => v,
                Err(Unjudged::NotJudgeable) => {
                    self.not_counted.get_or_create(&NotCountedLabels { reason: NotCounted::NotJudgeable }).inc();
                    continue;
                }
            };
            let l = PairLabels {
                model: j.model.clone(),
                primary: j.primary.clone(),
                shadow: j.shadow.clone(),
                pair: pair.as_str(),
            };
            {
                let mut series = self.series.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if !series.contains(&l) {
                    if series.len() >= MAX_SHADOW_SERIES {
                        self.not_counted.get_or_create(&NotCountedLabels { reason: NotCounted::TooManySeries }).inc();
                        continue;
                    }
                    series.insert(l.clone());
                }
            }
            self.compared.get_or_create(&l).inc();
            self.status_mismatches.get_or_create(&l).inc_by(u64::from(v.status_mismatch));
            self.rows.get_or_create(&l).inc_by(v.rows);
            self.rows_disagreeing.get_or_create(&l).inc_by(v.rows_disagreeing);
            self.rows_argmax_differ.get_or_create(&l).inc_by(v.rows_argmax_differ);
            self.rows_beyond_tolerance.get_or_create(&l).inc_by(v.rows_beyond_tolerance);
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: Op,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: Reason,
}

/// The collector's metric families; clones share them.
#[derive(Clone, Default)]
pub struct Metrics {
    pub records_written: Counter,
    pub written_bytes: Counter,
    pub fsyncs: Counter,
    pub rotations: Counter,
    pub expired_files: Counter,
    pub tls_refused: Counter,
    write_errors: Family<OpLabels, Counter>,
    rejected: Family<ReasonLabels, Counter>,
    pub queue_depth: Gauge,
    pub queued_bytes: Gauge,
    pub shadow: ShadowMetrics,
}

impl Metrics {
    /// Registers every family in `r` (the caller gives it the `collector` prefix).
    pub fn register(&self, r: &mut Registry) {
        r.register("records_written", "Samples stored (and synced, with --fsync always)", self.records_written.clone());
        r.register_with_unit("written", "Bytes of samples stored", Unit::Bytes, self.written_bytes.clone());
        r.register("fsyncs", "fdatasync calls on the samples file (one per group commit)", self.fsyncs.clone());
        r.register(
            "rotations",
            "Rotations of the samples file (by size, or by age with --max-age)",
            self.rotations.clone(),
        );
        r.register("expired_files", "Rotated samples files deleted for --max-age", self.expired_files.clone());
        r.register(
            "tls_handshakes_refused",
            "Connections to the samples listener refused in the mutual TLS handshake (no certificate, or not Envoy's)",
            self.tls_refused.clone(),
        );
        r.register("write_errors", "Failed file operations, by operation", self.write_errors.clone());
        r.register("requests_rejected", "Samples not stored, by reason", self.rejected.clone());
        r.register("queue_depth", "Samples waiting for the writer", self.queue_depth.clone());
        r.register_with_unit(
            "queued",
            "Bytes of samples waiting for or being written by the writer",
            Unit::Bytes,
            self.queued_bytes.clone(),
        );
    }

    pub fn write_error(&self, op: Op) {
        self.write_errors.get_or_create(&OpLabels { op }).inc();
    }

    pub fn reject(&self, reason: Reason) {
        self.rejected.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn write_errors(&self, op: Op) -> u64 {
        self.write_errors.get_or_create(&OpLabels { op }).get()
    }

    pub fn rejected(&self, reason: Reason) -> u64 {
        self.rejected.get_or_create(&ReasonLabels { reason }).get()
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::{Metrics, Op, Reason};

    #[test]
    fn names_follow_the_documented_scheme() {
        let m = Metrics::default();
        let mut registry = Registry::with_prefix("switchyard");
        m.register(registry.sub_registry_with_prefix("collector"));
        m.shadow.register(registry.sub_registry_with_prefix("shadow"));
        m.write_error(Op::Fsync);
        m.reject(Reason::QueueFull);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let problems = switchyard_contract::metrics::check_exposition(
            &text,
            switchyard_contract::metrics::Source::Collector,
            false,
        );
        assert!(problems.is_empty(), "{problems:#?}");
        for name in [
            "switchyard_collector_records_written_total 0",
            "switchyard_collector_written_bytes_total 0",
            "switchyard_collector_fsyncs_total 0",
            "switchyard_collector_rotations_total 0",
            "switchyard_collector_expired_files_total 0",
            "switchyard_collector_tls_handshakes_refused_total 0",
            "switchyard_collector_write_errors_total{op=\"fsync\"} 1",
            "switchyard_collector_requests_rejected_total{reason=\"queue_full\"} 1",
            "switchyard_collector_queue_depth 0",
            "switchyard_collector_queued_bytes 0",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
