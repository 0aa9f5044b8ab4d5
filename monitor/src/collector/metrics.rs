//! Every metric the collector exports, registered in one place; docs/metrics.md lists them.
//! Label values are fixed enums.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

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

macro_rules! label_values {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),* }
            }
        }
        impl EncodeLabelValue for $t {
            fn encode(&self, e: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                std::fmt::Write::write_str(e, self.as_str())
            }
        }
    };
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
    write_errors: Family<OpLabels, Counter>,
    rejected: Family<ReasonLabels, Counter>,
    pub queue_depth: Gauge,
    pub queued_bytes: Gauge,
}

impl Metrics {
    /// Registers every family in `r` (the caller gives it the `collector` prefix).
    pub fn register(&self, r: &mut Registry) {
        r.register("records_written", "Samples stored (and synced, with --fsync always)", self.records_written.clone());
        r.register_with_unit("written", "Bytes of samples stored", Unit::Bytes, self.written_bytes.clone());
        r.register("fsyncs", "fdatasync calls on the samples file (one per group commit)", self.fsyncs.clone());
        r.register("rotations", "Size-based rotations of the samples file", self.rotations.clone());
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
        m.write_error(Op::Fsync);
        m.reject(Reason::QueueFull);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for name in [
            "switchyard_collector_records_written_total 0",
            "switchyard_collector_written_bytes_total 0",
            "switchyard_collector_fsyncs_total 0",
            "switchyard_collector_rotations_total 0",
            "switchyard_collector_write_errors_total{op=\"fsync\"} 1",
            "switchyard_collector_requests_rejected_total{reason=\"queue_full\"} 1",
            "switchyard_collector_queue_depth 0",
            "switchyard_collector_queued_bytes 0",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
