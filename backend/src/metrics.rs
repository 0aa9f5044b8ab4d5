//! Every metric the backend exports, registered in one place. `docs/metrics.md` lists them.
//!
//! Per-version handles are resolved once when a model version is created, so the request
//! path touches atomics only; label values come from the validated repository (bounded).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use switchyard_runtime::label_values;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub model: String,
    pub version: String,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    Success,
    BadRequest,
    QueueFull,
    Expired,
    NotReady,
    ShuttingDown,
    Error,
    ClientGone,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub model: String,
    pub version: String,
    pub outcome: Outcome,
}

/// Why a request was dropped instead of answered by the engine.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum DropReason {
    /// Admission control: the queue was full (429).
    QueueFull,
    /// Its deadline passed while it waited in the queue (504).
    Expired,
    /// The client disconnected before its answer; if still queued it never reaches the engine.
    ClientGone,
    /// Its engine instance died while serving it, or none was left to serve it (503).
    EngineLost,
}

label_values!(Outcome {
    Success => "success",
    BadRequest => "bad_request",
    QueueFull => "queue_full",
    Expired => "expired",
    NotReady => "not_ready",
    ShuttingDown => "shutting_down",
    Error => "error",
    ClientGone => "client_gone",
});

label_values!(DropReason {
    QueueFull => "queue_full",
    Expired => "expired",
    ClientGone => "client_gone",
    EngineLost => "engine_lost",
});

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub model: String,
    pub version: String,
    pub reason: DropReason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeviceLabels {
    pub model: String,
    pub version: String,
    pub device: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GpuLabels {
    pub gpu: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs .. ~105 s, doubling: covers an MLP on GPU and a large batch on CPU.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 22))
}

fn batch_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 13))
}

/// The metric families of the backend.
pub struct Metrics {
    registry: Registry,
    requests: Family<OutcomeLabels, Counter>,
    request_duration: HistogramFamily<OutcomeLabels>,
    rows: Family<VersionLabels, Counter>,
    queue_duration: HistogramFamily<VersionLabels>,
    compute_duration: HistogramFamily<VersionLabels>,
    batch_size: HistogramFamily<VersionLabels>,
    queue_depth: Family<VersionLabels, Gauge>,
    in_flight: Family<VersionLabels, Gauge>,
    dropped: Family<DropLabels, Counter>,
    ready: Family<VersionLabels, Gauge>,
    max_batch_size: Family<VersionLabels, Gauge>,
    max_queue_size: Family<VersionLabels, Gauge>,
    device_seconds: Family<DeviceLabels, Counter<f64, AtomicU64>>,
    pub gpu_utilization: Family<GpuLabels, Gauge<f64, AtomicU64>>,
    pub gpu_memory_used: Family<GpuLabels, Gauge>,
    pub gpu_memory_total: Family<GpuLabels, Gauge>,
    tls_refused: Family<ListenerLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchyard");
        let m = Metrics {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            rows: Family::default(),
            queue_duration: Family::new_with_constructor(latency_histogram),
            compute_duration: Family::new_with_constructor(latency_histogram),
            batch_size: Family::new_with_constructor(batch_histogram),
            queue_depth: Family::default(),
            in_flight: Family::default(),
            dropped: Family::default(),
            ready: Family::default(),
            max_batch_size: Family::default(),
            max_queue_size: Family::default(),
            device_seconds: Family::default(),
            gpu_utilization: Family::default(),
            gpu_memory_used: Family::default(),
            gpu_memory_total: Family::default(),
            tls_refused: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register("inference_requests", "Inference requests by outcome", m.requests.clone());
        r.register_with_unit(
            "inference_request_duration",
            "Time from receiving an inference request to its response, by outcome",
            Unit::Seconds,
            m.request_duration.clone(),
        );
        r.register("inference_rows", "Rows (batch-dimension entries) inferred", m.rows.clone());
        r.register_with_unit(
            "queue_duration",
            "Time a request waited in the batching queue before compute",
            Unit::Seconds,
            m.queue_duration.clone(),
        );
        r.register_with_unit("compute_duration", "Engine time per batch", Unit::Seconds, m.compute_duration.clone());
        r.register("batch_size", "Rows per executed batch", m.batch_size.clone());
        r.register("queue_depth", "Requests waiting in the batching queue", m.queue_depth.clone());
        r.register("in_flight_requests", "Inference requests accepted and not yet answered", m.in_flight.clone());
        r.register(
            "requests_dropped",
            "Requests dropped instead of answered by the engine, by reason",
            m.dropped.clone(),
        );
        r.register("model_ready", "1 when the model version serves requests", m.ready.clone());
        // The batching limits as series, so that rules can divide by them (batch fill
        // efficiency, queue near capacity) without a copy of every model's config.
        r.register("max_batch_size", "Configured batching.max_batch_size (rows per batch)", m.max_batch_size.clone());
        r.register(
            "max_queue_size",
            "Configured batching.max_queue_size (requests allowed to wait)",
            m.max_queue_size.clone(),
        );
        r.register_with_unit(
            "device",
            "Engine busy time, for cost accounting (device-seconds)",
            Unit::Seconds,
            m.device_seconds.clone(),
        );
        r.register(
            "gpu_utilization_ratio",
            "GPU utilisation (0-1) as reported by nvidia-smi",
            m.gpu_utilization.clone(),
        );
        r.register_with_unit("gpu_memory_used", "GPU memory in use", Unit::Bytes, m.gpu_memory_used.clone());
        r.register_with_unit("gpu_memory_total", "GPU memory in total", Unit::Bytes, m.gpu_memory_total.clone());
        r.register(
            "tls_handshakes_refused",
            "Connections to an inference listener refused in the mutual TLS handshake (no certificate, or not Envoy's)",
            m.tls_refused.clone(),
        );
        let info: Family<Vec<(String, String)>, Gauge> = Family::default();
        info.get_or_create(&vec![("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())]).set(1);
        r.register("build_info", "Build information", info);
        // Both listeners' series from the start: an alert's increase() needs the 0 before.
        for listener in ["inference", "grpc"] {
            let _ = m.tls_refused.get_or_create(&ListenerLabels { listener });
        }
        Metrics { registry, ..m }
    }

    /// What a listener's refused handshakes count into (`inference`, `grpc`).
    pub fn tls_refused(&self, listener: &'static str) -> switchyard_tls::OnRefused {
        let c = self.tls_refused.get_or_create_owned(&ListenerLabels { listener });
        std::sync::Arc::new(move || {
            c.inc();
        })
    }

    /// Prometheus text exposition of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// Resolves the per-version handles once.
    pub fn version(&self, model: &str, version: &str) -> VersionMetrics {
        let labels = VersionLabels { model: model.to_owned(), version: version.to_owned() };
        let drop = |reason| {
            self.dropped.get_or_create_owned(&DropLabels {
                model: model.to_owned(),
                version: version.to_owned(),
                reason,
            })
        };
        VersionMetrics {
            rows: self.rows.get_or_create_owned(&labels),
            queue_duration: self.queue_duration.get_or_create_owned(&labels),
            compute_duration: self.compute_duration.get_or_create_owned(&labels),
            batch_size: self.batch_size.get_or_create_owned(&labels),
            queue_depth: self.queue_depth.get_or_create_owned(&labels),
            in_flight: self.in_flight.get_or_create_owned(&labels),
            ready: self.ready.get_or_create_owned(&labels),
            max_batch_size: self.max_batch_size.get_or_create_owned(&labels),
            max_queue_size: self.max_queue_size.get_or_create_owned(&labels),
            dropped_queue_full: drop(DropReason::QueueFull),
            dropped_expired: drop(DropReason::Expired),
            dropped_client_gone: drop(DropReason::ClientGone),
            dropped_engine_lost: drop(DropReason::EngineLost),
            requests: self.requests.clone(),
            request_duration: self.request_duration.clone(),
            device_seconds: self.device_seconds.clone(),
            labels,
        }
    }
}

/// Handles for one model version.
#[derive(Clone)]
pub struct VersionMetrics {
    labels: VersionLabels,
    pub rows: Counter,
    pub queue_duration: Histogram,
    pub compute_duration: Histogram,
    pub batch_size: Histogram,
    pub queue_depth: Gauge,
    pub in_flight: Gauge,
    pub ready: Gauge,
    pub max_batch_size: Gauge,
    pub max_queue_size: Gauge,
    pub dropped_queue_full: Counter,
    pub dropped_expired: Counter,
    pub dropped_client_gone: Counter,
    pub dropped_engine_lost: Counter,
    requests: Family<OutcomeLabels, Counter>,
    request_duration: HistogramFamily<OutcomeLabels>,
    device_seconds: Family<DeviceLabels, Counter<f64, AtomicU64>>,
}

impl VersionMetrics {
    /// A registry-less set, for unit tests of the batcher.
    pub fn detached() -> Self {
        Metrics::new().version("test", "v1")
    }

    pub fn record_request(&self, outcome: Outcome, seconds: f64) {
        let labels = OutcomeLabels { model: self.labels.model.clone(), version: self.labels.version.clone(), outcome };
        self.requests.get_or_create(&labels).inc();
        self.request_duration.get_or_create(&labels).observe(seconds);
    }

    /// Device label is known only once the engine has loaded.
    pub fn device_seconds(&self, device: &str) -> Counter<f64, AtomicU64> {
        self.device_seconds.get_or_create_owned(&DeviceLabels {
            model: self.labels.model.clone(),
            version: self.labels.version.clone(),
            device: device.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_every_family_with_units_and_labels() {
        let m = Metrics::new();
        let v = m.version("mlp", "v1");
        v.record_request(Outcome::Success, 0.01);
        v.dropped_expired.inc();
        v.dropped_engine_lost.inc();
        v.device_seconds("cpu").inc_by(0.5);
        v.max_batch_size.set(64);
        let text = m.encode().unwrap();
        for needle in [
            "switchyard_inference_requests_total{model=\"mlp\",version=\"v1\",outcome=\"success\"} 1",
            "switchyard_inference_request_duration_seconds_bucket",
            "switchyard_queue_duration_seconds_bucket",
            "switchyard_compute_duration_seconds_bucket",
            "switchyard_batch_size_bucket",
            "switchyard_requests_dropped_total{model=\"mlp\",version=\"v1\",reason=\"expired\"} 1",
            "switchyard_requests_dropped_total{model=\"mlp\",version=\"v1\",reason=\"engine_lost\"} 1",
            "switchyard_device_seconds_total{model=\"mlp\",version=\"v1\",device=\"cpu\"} 0.5",
            "switchyard_model_ready{model=\"mlp\",version=\"v1\"} 0",
            "switchyard_max_batch_size{model=\"mlp\",version=\"v1\"} 64",
            "switchyard_max_queue_size{model=\"mlp\",version=\"v1\"} 0",
            "switchyard_build_info{version=",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        m.gpu_utilization.get_or_create(&GpuLabels { gpu: "0".into() }).set(0.5);
        m.gpu_memory_used.get_or_create(&GpuLabels { gpu: "0".into() }).set(1);
        m.gpu_memory_total.get_or_create(&GpuLabels { gpu: "0".into() }).set(2);
        let text = m.encode().unwrap();
        let problems =
            switchyard_contract::metrics::check_exposition(&text, switchyard_contract::metrics::Source::Backend, true);
        assert!(problems.is_empty(), "{problems:#?}");
    }
}
