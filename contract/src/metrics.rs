//! Every metric a Switchyard process exports, and the Envoy stats the rules and tools read:
//! name as Prometheus shows it, type, labels, and which process exports it. `docs/metrics.md`
//! says what each one means; a test keeps the two in step.
//!
//! Names are the exposed ones: a counter ends in `_total` (prometheus-client appends it to the
//! name it is registered under: [`Metric::registered`]), a histogram's series add `_bucket`,
//! `_sum` and `_count`.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Who exports a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The Wasm filter, through Envoy's admin `/stats/prometheus` (labels from `stats_tags`).
    Filter,
    /// Envoy's own stats.
    Envoy,
    /// `switchyard-backend`'s admin listener.
    Backend,
    /// `switchyard-collector`.
    Collector,
    /// `switchyard-monitor watch`.
    Monitor,
    /// `switchyard-rollout run --admin-addr`.
    Rollout,
    /// `switchyard-operator run`'s admin listener.
    Operator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub source: Source,
}

impl Metric {
    /// The name to register with prometheus-client, which appends `_total` to counters.
    pub fn registered(&self) -> &'static str {
        match self.kind {
            Kind::Counter => self.name.strip_suffix("_total").unwrap_or(self.name),
            Kind::Gauge | Kind::Histogram => self.name,
        }
    }

    /// A series of this metric: the name with `_bucket`, `_sum` or `_count` for a histogram.
    pub fn series(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.name)
    }
}

pub const INFERENCE_REQUESTS_TOTAL: Metric = Metric {
    name: "switchyard_inference_requests_total",
    kind: Kind::Counter,
    labels: &["model", "version", "outcome"],
    source: Source::Backend,
};
pub const INFERENCE_REQUEST_DURATION_SECONDS: Metric = Metric {
    name: "switchyard_inference_request_duration_seconds",
    kind: Kind::Histogram,
    labels: &["model", "version", "outcome"],
    source: Source::Backend,
};
pub const INFERENCE_ROWS_TOTAL: Metric = Metric {
    name: "switchyard_inference_rows_total",
    kind: Kind::Counter,
    labels: &["model", "version"],
    source: Source::Backend,
};
pub const QUEUE_DURATION_SECONDS: Metric = Metric {
    name: "switchyard_queue_duration_seconds",
    kind: Kind::Histogram,
    labels: &["model", "version"],
    source: Source::Backend,
};
pub const COMPUTE_DURATION_SECONDS: Metric = Metric {
    name: "switchyard_compute_duration_seconds",
    kind: Kind::Histogram,
    labels: &["model", "version"],
    source: Source::Backend,
};
pub const BATCH_SIZE: Metric = Metric {
    name: "switchyard_batch_size",
    kind: Kind::Histogram,
    labels: &["model", "version"],
    source: Source::Backend,
};
pub const QUEUE_DEPTH: Metric = Metric {
    name: "switchyard_queue_depth",
    kind: Kind::Gauge,
    labels: &["model", "version"],
    source: Source::Backend,
};
pub const IN_FLIGHT_REQUESTS: Metric = Metric {
    name: "switchyard_in_flight_requests",
    kind: Kind::Gauge,
    labels: &["model", "version"],
    source: Source::Backend,
};
pub const REQUESTS_DROPPED_TOTAL: Metric = Metric {
    name: "switchyard_requests_dropped_total",
    kind: Kind::Counter,
    labels: &["model", "version", "reason"],
    source: Source::Backend,
};
pub const MODEL_READY: Metric = Metric {
    name: "switchyard_model_ready",
    kind: Kind::Gauge,
    labels: &["model", "version"],
    source: Source::Backend,
};
pub const MAX_BATCH_SIZE: Metric = Metric {
    name: "switchyard_max_batch_size",
    kind: Kind::Gauge,
    labels: &["model", "version"],
    source: Source::Backend,
};
pub const MAX_QUEUE_SIZE: Metric = Metric {
    name: "switchyard_max_queue_size",
    kind: Kind::Gauge,
    labels: &["model", "version"],
    source: Source::Backend,
};
pub const DEVICE_SECONDS_TOTAL: Metric = Metric {
    name: "switchyard_device_seconds_total",
    kind: Kind::Counter,
    labels: &["model", "version", "device"],
    source: Source::Backend,
};
pub const GPU_UTILIZATION_RATIO: Metric =
    Metric { name: "switchyard_gpu_utilization_ratio", kind: Kind::Gauge, labels: &["gpu"], source: Source::Backend };
pub const GPU_MEMORY_USED_BYTES: Metric =
    Metric { name: "switchyard_gpu_memory_used_bytes", kind: Kind::Gauge, labels: &["gpu"], source: Source::Backend };
pub const GPU_MEMORY_TOTAL_BYTES: Metric =
    Metric { name: "switchyard_gpu_memory_total_bytes", kind: Kind::Gauge, labels: &["gpu"], source: Source::Backend };
/// Refused mutual TLS handshakes on the backend's inference listeners (`inference`, `grpc`).
pub const TLS_HANDSHAKES_REFUSED_TOTAL: Metric = Metric {
    name: "switchyard_tls_handshakes_refused_total",
    kind: Kind::Counter,
    labels: &["listener"],
    source: Source::Backend,
};
pub const BUILD_INFO: Metric =
    Metric { name: "switchyard_build_info", kind: Kind::Gauge, labels: &["version"], source: Source::Backend };
pub const REQUESTS_TOTAL: Metric = Metric {
    name: "switchyard_requests_total",
    kind: Kind::Counter,
    labels: &["model", "version", "outcome"],
    source: Source::Filter,
};
pub const REQUEST_DURATION_MS: Metric = Metric {
    name: "switchyard_request_duration_ms",
    kind: Kind::Histogram,
    labels: &["model", "version"],
    source: Source::Filter,
};
/// Per tenant (named ones and `other`) when the policy has `identity`.
pub const TENANT_REQUESTS_TOTAL: Metric = Metric {
    name: "switchyard_tenant_requests_total",
    kind: Kind::Counter,
    labels: &["tenant", "model", "outcome"],
    source: Source::Filter,
};
pub const TENANT_REQUEST_DURATION_MS: Metric = Metric {
    name: "switchyard_tenant_request_duration_ms",
    kind: Kind::Histogram,
    labels: &["tenant", "model"],
    source: Source::Filter,
};
pub const ROUTE_DECISIONS_TOTAL: Metric = Metric {
    name: "switchyard_route_decisions_total",
    kind: Kind::Counter,
    labels: &["model", "version", "reason"],
    source: Source::Filter,
};
pub const GUARD_OUT: Metric =
    Metric { name: "switchyard_guard_out", kind: Kind::Gauge, labels: &["model", "version"], source: Source::Filter };
/// When the guard took the version out (Unix seconds) and on which SLI; 0 while it is in.
pub const GUARD_OUT_SINCE: Metric = Metric {
    name: "switchyard_guard_out_since_seconds",
    kind: Kind::Gauge,
    labels: &["model", "version", "sli"],
    source: Source::Filter,
};
pub const OVERRIDE_REFUSED_TOTAL: Metric = Metric {
    name: "switchyard_override_refused_total",
    kind: Kind::Counter,
    labels: &["model"],
    source: Source::Filter,
};
pub const SHADOW_REQUESTS_TOTAL: Metric = Metric {
    name: "switchyard_shadow_requests_total",
    kind: Kind::Counter,
    labels: &["model", "version"],
    source: Source::Filter,
};
pub const SHADOW_COMPARES_TOTAL: Metric = Metric {
    name: "switchyard_shadow_compares_total",
    kind: Kind::Counter,
    labels: &["model", "version", "result"],
    source: Source::Filter,
};
pub const SAMPLES_TOTAL: Metric = Metric {
    name: "switchyard_samples_total",
    kind: Kind::Counter,
    labels: &["model", "version", "result"],
    source: Source::Filter,
};
pub const UNROUTED_REQUESTS_TOTAL: Metric = Metric {
    name: "switchyard_unrouted_requests_total",
    kind: Kind::Counter,
    labels: &["reason"],
    source: Source::Filter,
};
/// Keys the filter created in this Envoy's shared data (which can be neither listed nor
/// deleted): flat under policy churn, growing only with new model and version names.
pub const SHARED_DATA_KEYS: Metric =
    Metric { name: "switchyard_shared_data_keys", kind: Kind::Gauge, labels: &[], source: Source::Filter };
/// Times this Envoy's shared data held no key of the filter's when it created one: 1 after
/// Envoy starts; one more after each filter upgrade whose new VMs did not keep it (their SLO
/// and guard windows started empty).
pub const SHARED_DATA_STARTS_TOTAL: Metric =
    Metric { name: "switchyard_shared_data_starts_total", kind: Kind::Counter, labels: &[], source: Source::Filter };
pub const SLO_GOOD_EVENTS: Metric = Metric {
    name: "switchyard_slo_good_events",
    kind: Kind::Gauge,
    labels: &["model", "version", "window", "sli"],
    source: Source::Filter,
};
pub const SLO_BAD_EVENTS: Metric = Metric {
    name: "switchyard_slo_bad_events",
    kind: Kind::Gauge,
    labels: &["model", "version", "window", "sli"],
    source: Source::Filter,
};
pub const SLO_BURN_RATE_X1000: Metric = Metric {
    name: "switchyard_slo_burn_rate_x1000",
    kind: Kind::Gauge,
    labels: &["model", "version", "window", "sli"],
    source: Source::Filter,
};
pub const ENVOY_HTTP_DOWNSTREAM_RQ_TOTAL: Metric = Metric {
    name: "envoy_http_downstream_rq_total",
    kind: Kind::Counter,
    labels: &["envoy_http_conn_manager_prefix"],
    source: Source::Envoy,
};
/// Requests Envoy's JWT filter refused (401) before the Switchyard filter saw them.
pub const ENVOY_HTTP_JWT_AUTHN_DENIED: Metric = Metric {
    name: "envoy_http_jwt_authn_denied",
    kind: Kind::Counter,
    labels: &["envoy_http_conn_manager_prefix"],
    source: Source::Envoy,
};
pub const ENVOY_EXTENSION_CONFIG_DISCOVERY_HTTP_FILTER_SWITCHYARD_UPDATE_SUCCESS: Metric = Metric {
    name: "envoy_extension_config_discovery_http_filter_switchyard_update_success",
    kind: Kind::Counter,
    labels: &[],
    source: Source::Envoy,
};
pub const ENVOY_EXTENSION_CONFIG_DISCOVERY_HTTP_FILTER_SWITCHYARD_UPDATE_REJECTED: Metric = Metric {
    name: "envoy_extension_config_discovery_http_filter_switchyard_update_rejected",
    kind: Kind::Counter,
    labels: &[],
    source: Source::Envoy,
};
pub const ENVOY_WASM_SWITCHYARD_VM_RELOAD_FAILURE: Metric =
    Metric { name: "envoy_wasm_switchyard_vm_reload_failure", kind: Kind::Counter, labels: &[], source: Source::Envoy };
pub const ENVOY_WASM_ENVOY_WASM_RUNTIME_V8_ACTIVE: Metric =
    Metric { name: "envoy_wasm_envoy_wasm_runtime_v8_active", kind: Kind::Gauge, labels: &[], source: Source::Envoy };
pub const COLLECTOR_RECORDS_WRITTEN_TOTAL: Metric = Metric {
    name: "switchyard_collector_records_written_total",
    kind: Kind::Counter,
    labels: &[],
    source: Source::Collector,
};
pub const COLLECTOR_WRITTEN_BYTES_TOTAL: Metric = Metric {
    name: "switchyard_collector_written_bytes_total",
    kind: Kind::Counter,
    labels: &[],
    source: Source::Collector,
};
pub const COLLECTOR_FSYNCS_TOTAL: Metric =
    Metric { name: "switchyard_collector_fsyncs_total", kind: Kind::Counter, labels: &[], source: Source::Collector };
pub const COLLECTOR_ROTATIONS_TOTAL: Metric = Metric {
    name: "switchyard_collector_rotations_total",
    kind: Kind::Counter,
    labels: &[],
    source: Source::Collector,
};
pub const COLLECTOR_EXPIRED_FILES_TOTAL: Metric = Metric {
    name: "switchyard_collector_expired_files_total",
    kind: Kind::Counter,
    labels: &[],
    source: Source::Collector,
};
pub const COLLECTOR_TLS_HANDSHAKES_REFUSED_TOTAL: Metric = Metric {
    name: "switchyard_collector_tls_handshakes_refused_total",
    kind: Kind::Counter,
    labels: &[],
    source: Source::Collector,
};
pub const COLLECTOR_WRITE_ERRORS_TOTAL: Metric = Metric {
    name: "switchyard_collector_write_errors_total",
    kind: Kind::Counter,
    labels: &["op"],
    source: Source::Collector,
};
pub const COLLECTOR_REQUESTS_REJECTED_TOTAL: Metric = Metric {
    name: "switchyard_collector_requests_rejected_total",
    kind: Kind::Counter,
    labels: &["reason"],
    source: Source::Collector,
};
pub const COLLECTOR_QUEUE_DEPTH: Metric =
    Metric { name: "switchyard_collector_queue_depth", kind: Kind::Gauge, labels: &[], source: Source::Collector };
pub const COLLECTOR_QUEUED_BYTES: Metric =
    Metric { name: "switchyard_collector_queued_bytes", kind: Kind::Gauge, labels: &[], source: Source::Collector };
pub const SHADOW_COMPARED_REQUESTS_TOTAL: Metric = Metric {
    name: "switchyard_shadow_compared_requests_total",
    kind: Kind::Counter,
    labels: &["model", "primary", "shadow", "pair"],
    source: Source::Collector,
};
pub const SHADOW_STATUS_MISMATCHES_TOTAL: Metric = Metric {
    name: "switchyard_shadow_status_mismatches_total",
    kind: Kind::Counter,
    labels: &["model", "primary", "shadow", "pair"],
    source: Source::Collector,
};
pub const SHADOW_COMPARED_ROWS_TOTAL: Metric = Metric {
    name: "switchyard_shadow_compared_rows_total",
    kind: Kind::Counter,
    labels: &["model", "primary", "shadow", "pair"],
    source: Source::Collector,
};
pub const SHADOW_DISAGREEING_ROWS_TOTAL: Metric = Metric {
    name: "switchyard_shadow_disagreeing_rows_total",
    kind: Kind::Counter,
    labels: &["model", "primary", "shadow", "pair"],
    source: Source::Collector,
};
pub const SHADOW_ARGMAX_DIFFERING_ROWS_TOTAL: Metric = Metric {
    name: "switchyard_shadow_argmax_differing_rows_total",
    kind: Kind::Counter,
    labels: &["model", "primary", "shadow", "pair"],
    source: Source::Collector,
};
pub const SHADOW_ROWS_BEYOND_TOLERANCE_TOTAL: Metric = Metric {
    name: "switchyard_shadow_rows_beyond_tolerance_total",
    kind: Kind::Counter,
    labels: &["model", "primary", "shadow", "pair"],
    source: Source::Collector,
};
pub const SHADOW_RECORDS_NOT_COUNTED_TOTAL: Metric = Metric {
    name: "switchyard_shadow_records_not_counted_total",
    kind: Kind::Counter,
    labels: &["reason"],
    source: Source::Collector,
};
pub const DRIFT_SCORE: Metric = Metric {
    name: "switchyard_drift_score",
    kind: Kind::Gauge,
    labels: &["model", "version", "window", "column"],
    source: Source::Monitor,
};
pub const DRIFT_THRESHOLD: Metric = Metric {
    name: "switchyard_drift_threshold",
    kind: Kind::Gauge,
    labels: &["model", "version", "window", "column"],
    source: Source::Monitor,
};
pub const DRIFT_COLUMN_DRIFTED: Metric = Metric {
    name: "switchyard_drift_column_drifted",
    kind: Kind::Gauge,
    labels: &["model", "version", "window", "column"],
    source: Source::Monitor,
};
pub const DRIFT_COLUMN_TEST: Metric = Metric {
    name: "switchyard_drift_column_test",
    kind: Kind::Gauge,
    labels: &["model", "version", "window", "column", "test"],
    source: Source::Monitor,
};
pub const DRIFT_WINDOW_ROWS: Metric = Metric {
    name: "switchyard_drift_window_rows",
    kind: Kind::Gauge,
    labels: &["model", "version", "window"],
    source: Source::Monitor,
};
/// Rows the window needs before its columns are judged (its `min_rows`): below it, the
/// monitor exports no drift series for it.
pub const DRIFT_WINDOW_MIN_ROWS: Metric = Metric {
    name: "switchyard_drift_window_min_rows",
    kind: Kind::Gauge,
    labels: &["model", "version", "window"],
    source: Source::Monitor,
};
pub const DRIFT_DATASET_DRIFT_SHARE: Metric = Metric {
    name: "switchyard_drift_dataset_drift_share",
    kind: Kind::Gauge,
    labels: &["model", "version", "window"],
    source: Source::Monitor,
};
pub const DRIFT_DATASET_DRIFTED: Metric = Metric {
    name: "switchyard_drift_dataset_drifted",
    kind: Kind::Gauge,
    labels: &["model", "version", "window"],
    source: Source::Monitor,
};
pub const DRIFT_COLUMNS_DRIFTED: Metric = Metric {
    name: "switchyard_drift_columns_drifted",
    kind: Kind::Gauge,
    labels: &["model", "version", "window"],
    source: Source::Monitor,
};
pub const DRIFT_LAST_SAMPLE_AGE_SECONDS: Metric = Metric {
    name: "switchyard_drift_last_sample_age_seconds",
    kind: Kind::Gauge,
    labels: &["model", "version"],
    source: Source::Monitor,
};
pub const DRIFT_SAMPLES_INGESTED_TOTAL: Metric = Metric {
    name: "switchyard_drift_samples_ingested_total",
    kind: Kind::Counter,
    labels: &["model", "version"],
    source: Source::Monitor,
};
pub const DRIFT_ROWS_INGESTED_TOTAL: Metric = Metric {
    name: "switchyard_drift_rows_ingested_total",
    kind: Kind::Counter,
    labels: &["model", "version"],
    source: Source::Monitor,
};
pub const DRIFT_LINES_SKIPPED_TOTAL: Metric = Metric {
    name: "switchyard_drift_lines_skipped_total",
    kind: Kind::Counter,
    labels: &["reason"],
    source: Source::Monitor,
};
pub const DRIFT_REFERENCE_ROWS: Metric =
    Metric { name: "switchyard_drift_reference_rows", kind: Kind::Gauge, labels: &["model"], source: Source::Monitor };
pub const DRIFT_REFERENCE_READY: Metric =
    Metric { name: "switchyard_drift_reference_ready", kind: Kind::Gauge, labels: &["model"], source: Source::Monitor };
pub const DRIFT_MEMORY_BYTES: Metric =
    Metric { name: "switchyard_drift_memory_bytes", kind: Kind::Gauge, labels: &["model"], source: Source::Monitor };
pub const DRIFT_EVALUATION_DURATION_SECONDS: Metric = Metric {
    name: "switchyard_drift_evaluation_duration_seconds",
    kind: Kind::Gauge,
    labels: &[],
    source: Source::Monitor,
};
pub const ROLLOUT_STEP: Metric = Metric {
    name: "switchyard_rollout_step",
    kind: Kind::Gauge,
    labels: &["model", "canary"],
    source: Source::Rollout,
};
pub const ROLLOUT_WEIGHT: Metric = Metric {
    name: "switchyard_rollout_weight",
    kind: Kind::Gauge,
    labels: &["model", "canary"],
    source: Source::Rollout,
};
pub const ROLLOUT_STATE: Metric = Metric {
    name: "switchyard_rollout_state",
    kind: Kind::Gauge,
    labels: &["model", "canary", "state"],
    source: Source::Rollout,
};
pub const ROLLOUT_LAST_DECISION_INFO: Metric = Metric {
    name: "switchyard_rollout_last_decision_info",
    kind: Kind::Gauge,
    labels: &["model", "canary", "decision", "reason"],
    source: Source::Rollout,
};
pub const OPERATOR_LEADER: Metric =
    Metric { name: "switchyard_operator_leader", kind: Kind::Gauge, labels: &[], source: Source::Operator };
pub const OPERATOR_RECONCILES_TOTAL: Metric = Metric {
    name: "switchyard_operator_reconciles_total",
    kind: Kind::Counter,
    labels: &["kind", "result"],
    source: Source::Operator,
};
pub const ROLLOUT_POLICY_UNRECORDED: Metric =
    Metric { name: "switchyard_rollout_policy_unrecorded", kind: Kind::Gauge, labels: &[], source: Source::Rollout };
pub const OPERATOR_ROLLOUTS: Metric =
    Metric { name: "switchyard_operator_rollouts", kind: Kind::Gauge, labels: &["phase"], source: Source::Operator };

pub const ALL: &[Metric] = &[
    INFERENCE_REQUESTS_TOTAL,
    INFERENCE_REQUEST_DURATION_SECONDS,
    INFERENCE_ROWS_TOTAL,
    QUEUE_DURATION_SECONDS,
    COMPUTE_DURATION_SECONDS,
    BATCH_SIZE,
    QUEUE_DEPTH,
    IN_FLIGHT_REQUESTS,
    REQUESTS_DROPPED_TOTAL,
    MODEL_READY,
    MAX_BATCH_SIZE,
    MAX_QUEUE_SIZE,
    DEVICE_SECONDS_TOTAL,
    GPU_UTILIZATION_RATIO,
    GPU_MEMORY_USED_BYTES,
    GPU_MEMORY_TOTAL_BYTES,
    TLS_HANDSHAKES_REFUSED_TOTAL,
    BUILD_INFO,
    REQUESTS_TOTAL,
    REQUEST_DURATION_MS,
    TENANT_REQUESTS_TOTAL,
    TENANT_REQUEST_DURATION_MS,
    ROUTE_DECISIONS_TOTAL,
    GUARD_OUT,
    GUARD_OUT_SINCE,
    OVERRIDE_REFUSED_TOTAL,
    SHADOW_REQUESTS_TOTAL,
    SHADOW_COMPARES_TOTAL,
    SAMPLES_TOTAL,
    UNROUTED_REQUESTS_TOTAL,
    SHARED_DATA_KEYS,
    SHARED_DATA_STARTS_TOTAL,
    SLO_GOOD_EVENTS,
    SLO_BAD_EVENTS,
    SLO_BURN_RATE_X1000,
    ENVOY_HTTP_DOWNSTREAM_RQ_TOTAL,
    ENVOY_HTTP_JWT_AUTHN_DENIED,
    ENVOY_EXTENSION_CONFIG_DISCOVERY_HTTP_FILTER_SWITCHYARD_UPDATE_SUCCESS,
    ENVOY_EXTENSION_CONFIG_DISCOVERY_HTTP_FILTER_SWITCHYARD_UPDATE_REJECTED,
    ENVOY_WASM_SWITCHYARD_VM_RELOAD_FAILURE,
    ENVOY_WASM_ENVOY_WASM_RUNTIME_V8_ACTIVE,
    COLLECTOR_RECORDS_WRITTEN_TOTAL,
    COLLECTOR_WRITTEN_BYTES_TOTAL,
    COLLECTOR_FSYNCS_TOTAL,
    COLLECTOR_ROTATIONS_TOTAL,
    COLLECTOR_EXPIRED_FILES_TOTAL,
    COLLECTOR_TLS_HANDSHAKES_REFUSED_TOTAL,
    COLLECTOR_WRITE_ERRORS_TOTAL,
    COLLECTOR_REQUESTS_REJECTED_TOTAL,
    COLLECTOR_QUEUE_DEPTH,
    COLLECTOR_QUEUED_BYTES,
    SHADOW_COMPARED_REQUESTS_TOTAL,
    SHADOW_STATUS_MISMATCHES_TOTAL,
    SHADOW_COMPARED_ROWS_TOTAL,
    SHADOW_DISAGREEING_ROWS_TOTAL,
    SHADOW_ARGMAX_DIFFERING_ROWS_TOTAL,
    SHADOW_ROWS_BEYOND_TOLERANCE_TOTAL,
    SHADOW_RECORDS_NOT_COUNTED_TOTAL,
    DRIFT_SCORE,
    DRIFT_THRESHOLD,
    DRIFT_COLUMN_DRIFTED,
    DRIFT_COLUMN_TEST,
    DRIFT_WINDOW_ROWS,
    DRIFT_WINDOW_MIN_ROWS,
    DRIFT_DATASET_DRIFT_SHARE,
    DRIFT_DATASET_DRIFTED,
    DRIFT_COLUMNS_DRIFTED,
    DRIFT_LAST_SAMPLE_AGE_SECONDS,
    DRIFT_SAMPLES_INGESTED_TOTAL,
    DRIFT_ROWS_INGESTED_TOTAL,
    DRIFT_LINES_SKIPPED_TOTAL,
    DRIFT_REFERENCE_ROWS,
    DRIFT_REFERENCE_READY,
    DRIFT_MEMORY_BYTES,
    DRIFT_EVALUATION_DURATION_SECONDS,
    OPERATOR_LEADER,
    OPERATOR_RECONCILES_TOTAL,
    OPERATOR_ROLLOUTS,
    ROLLOUT_STEP,
    ROLLOUT_WEIGHT,
    ROLLOUT_STATE,
    ROLLOUT_LAST_DECISION_INFO,
    ROLLOUT_POLICY_UNRECORDED,
];

/// What in a Prometheus text exposition (text format or OpenMetrics) of `source` differs from
/// the contract: a `switchyard_` family it does not name, of another type or with other labels,
/// and (with `complete`) a metric of `source` the exposition lacks. Each service's tests run
/// this over what its real registry serves, so no name or label drifts from the contract.
pub fn check_exposition(text: &str, source: Source, complete: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let find = |name: &str| ALL.iter().find(|m| m.source == source && m.name == name);
    let family_of = |series: &str| -> Option<&'static Metric> {
        find(series).or_else(|| find(&format!("{series}_total"))).or_else(|| {
            ["_total", "_bucket", "_sum", "_count", "_created"].iter().find_map(|s| find(series.strip_suffix(s)?))
        })
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else { continue };
            if !name.starts_with("switchyard_") {
                continue;
            }
            match family_of(name) {
                None => problems.push(format!("{name}: not a metric of {source:?} in the contract")),
                Some(m) => {
                    let want = match m.kind {
                        Kind::Counter => "counter",
                        Kind::Gauge => "gauge",
                        Kind::Histogram => "histogram",
                    };
                    if kind != want {
                        problems.push(format!("{name}: a {kind}, the contract says {want}"));
                    }
                }
            }
            continue;
        }
        if line.starts_with('#') || !line.starts_with("switchyard_") {
            continue;
        }
        let series = line.split(['{', ' ']).next().unwrap_or_default();
        let Some(m) = family_of(series) else {
            problems.push(format!("{series}: not a metric of {source:?} in the contract"));
            continue;
        };
        seen.insert(m.name);
        let labels = line.split_once('{').and_then(|(_, rest)| rest.rsplit_once('}')).map_or("", |(l, _)| l);
        let mut keys: Vec<&str> = Vec::new();
        let mut rest = labels;
        while let Some((key, after)) = rest.split_once("=\"") {
            keys.push(key.trim_start_matches(',').trim());
            // Skip the quoted value, escapes included.
            let mut escaped = false;
            let end = after.char_indices().find(|&(_, c)| {
                let closes = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                closes
            });
            rest = end.map_or("", |(i, _)| &after[i + 1..]);
        }
        keys.retain(|k| *k != "le");
        if keys != m.labels {
            problems.push(format!("{series}: labels {keys:?}, the contract says {:?}", m.labels));
        }
    }
    if complete {
        for m in ALL.iter().filter(|m| m.source == source && !seen.contains(m.name)) {
            problems.push(format!("{}: in the contract but not served", m.name));
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_follow_prometheus_conventions() {
        let mut seen = std::collections::BTreeSet::new();
        for m in ALL {
            assert!(seen.insert(m.name), "{} twice", m.name);
            assert!(m.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{}", m.name);
            // Envoy names its own counters without the suffix.
            if m.source != Source::Envoy {
                assert_eq!(
                    m.kind == Kind::Counter,
                    m.name.ends_with("_total"),
                    "{}: counters, and only counters, end in _total",
                    m.name
                );
            }
            assert_eq!(m.source == Source::Envoy, m.name.starts_with("envoy_"), "{}", m.name);
        }
        assert_eq!(REQUESTS_TOTAL.registered(), "switchyard_requests");
        assert_eq!(GUARD_OUT.registered(), "switchyard_guard_out");
    }

    /// docs/metrics.md explains every metric: its tables list exactly these, with the same type
    /// and labels.
    #[test]
    fn the_metrics_page_documents_exactly_these() {
        let page = include_str!("../../docs/metrics.md");
        let mut documented = std::collections::BTreeMap::new();
        for line in page.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let [_, name, kind, labels, ..] = cells.as_slice() else { continue };
            let Some(name) = name.strip_prefix('`').and_then(|n| n.strip_suffix('`')) else { continue };
            if !matches!(*kind, "counter" | "gauge" | "histogram") {
                continue;
            }
            documented.insert(name.to_owned(), format!("{kind} [{labels}]"));
        }
        let contract: std::collections::BTreeMap<String, String> = ALL
            .iter()
            .map(|m| {
                let kind = kind_word(m.kind);
                (m.name.to_owned(), format!("{kind} [{}]", m.labels.join(", ")))
            })
            .collect();
        assert_eq!(documented, contract);
    }

    #[test]
    fn an_exposition_is_held_to_the_contract() {
        let good = "# TYPE switchyard_rollout_step gauge\nswitchyard_rollout_step{model=\"m\",canary=\"v2\"} 1\n\
                    # TYPE switchyard_rollout_weight gauge\nswitchyard_rollout_weight{model=\"a,b=\\\"c\",canary=\"v\"} 5\n";
        assert_eq!(check_exposition(good, Source::Rollout, false), Vec::<String>::new());
        let missing = check_exposition(good, Source::Rollout, true);
        assert_eq!(missing.len(), 3, "{missing:?}");
        let bad = "# TYPE switchyard_rollout_step counter\nswitchyard_rollout_step{canary=\"v2\"} 1\nswitchyard_rollout_nope 1\n";
        let problems = check_exposition(bad, Source::Rollout, false);
        assert_eq!(problems.len(), 3, "{problems:?}");
        let counters = "# TYPE switchyard_collector_fsyncs counter\nswitchyard_collector_fsyncs_total 3\n";
        assert_eq!(check_exposition(counters, Source::Collector, false), Vec::<String>::new());
        assert_eq!(check_exposition(counters, Source::Backend, false).len(), 2);
    }

    fn kind_word(k: Kind) -> &'static str {
        match k {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}
