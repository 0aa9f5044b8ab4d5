//! HTTP paths the services answer for orchestration and scraping.

/// The Open Inference Protocol's liveness: the process is up (a backend still loading its
/// models answers 200 here).
pub const HEALTH_LIVE: &str = "/v2/health/live";
/// The Open Inference Protocol's readiness: every served model version is ready.
pub const HEALTH_READY: &str = "/v2/health/ready";
/// The backend's admin listener's liveness and readiness (the same answers as the OIP paths,
/// on a listener that stays plain when the inference listeners require mutual TLS).
pub const ADMIN_HEALTH_LIVE: &str = "/health/live";
pub const ADMIN_HEALTH_READY: &str = "/health/ready";
/// Prometheus text on every service's admin listener.
pub const METRICS: &str = "/metrics";
/// The collector's and monitor's health.
pub const HEALTH: &str = "/health";
/// Envoy's admin endpoint with its stats (the filter's metrics among them) as Prometheus text.
pub const ENVOY_STATS: &str = "/stats/prometheus";
/// The samples endpoint's path on the collector.
pub const SAMPLES: &str = "/v1/samples";
/// Set by the collector on every answer to a sample, `stored` or `refused`. An answer without
/// it is the proxy's own (a timeout, a reset, no connection): the collector may or may not have
/// stored that sample, so the filter counts it `unanswered` rather than `failed`.
pub const COLLECTOR_ANSWER_HEADER: &str = "x-switchyard-collector";
