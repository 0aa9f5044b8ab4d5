//! The filter's configuration (the Envoy plugin configuration, JSON), validated once: unknown
//! fields are rejected and every problem is reported together.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::capture;
use crate::identity::Identity;
use crate::names::{valid_cluster, valid_name};
use crate::slo::WindowSpec;

/// All problems found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid switchyard filter configuration: {}", .0.join("; "))]
pub struct ConfigErrors(pub Vec<String>);

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Request header the router reads the upstream cluster from (`cluster_header`).
    #[serde(default = "default_upstream_header")]
    pub upstream_header: String,
    /// Request header the mirror policy reads the shadow cluster from.
    #[serde(default = "default_shadow_header")]
    pub shadow_header: String,
    /// Response header telling the client which version answered.
    #[serde(default = "default_version_header")]
    pub version_header: String,
    pub models: BTreeMap<String, ModelPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collector: Option<Collector>,
    /// Sliding windows for SLO accounting, e.g. `["5m", "1h"]`.
    #[serde(default = "default_windows")]
    pub slo_windows: Vec<String>,
    /// Clients must present a token; tenants and their quotas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelPolicy {
    /// In order: a canary placed last only ever takes keys from the version before it as its
    /// weight grows (see `split`).
    pub versions: Vec<Version>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<Sticky>,
    #[serde(default, rename = "override", skip_serializing_if = "Option::is_none")]
    pub override_: Option<Override>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Shadow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<Sampling>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<Slo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<Guard>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Version {
    pub name: String,
    /// The Envoy cluster that serves this version.
    pub cluster: String,
    /// Relative weight; 0 takes no split traffic (override and shadow still reach it).
    pub weight: u32,
}

/// Where the stickiness key comes from; requests without it are split at random.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sticky {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Override {
    pub header: String,
    /// Versions a client may pick explicitly; others are refused (and counted).
    pub allow: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Shadow {
    pub version: String,
    /// Share of requests also mirrored to `version`, 0–100.
    pub percent: f64,
    /// Compare a share of the shadowed requests' responses with the primary's (Envoy's mirror
    /// discards them): see docs/shadow-compare.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<Compare>,
}

/// Shadow-response comparison. A compared request is not mirrored by Envoy: once the primary
/// has answered, the filter sends the same body to the shadow version itself (and, with
/// `noise`, to the primary a second time) and ships the answers together to the collector,
/// which judges how often they disagree.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Compare {
    /// Share of the shadowed requests compared, 0–100.
    #[serde(default = "default_compare_percent")]
    pub percent: f64,
    /// Numeric outputs agree where |shadow - primary| <= atol + rtol * |primary| (numpy's
    /// `isclose`; the defaults allow float32 reordering across batch sizes and hardware).
    #[serde(default = "default_compare_atol")]
    pub atol: f64,
    #[serde(default = "default_compare_rtol")]
    pub rtol: f64,
    /// How an output is judged: `classification` (a row agrees when its arg-max does),
    /// `numeric` (within the tolerance), or `auto` (classification for outputs of shape
    /// `[rows, classes]` with 2 or more classes).
    #[serde(default)]
    pub output: OutputKind,
    /// Also send each compared request to the primary a second time: the disagreement between
    /// two answers of the same version is the noise subtracted (Diffy's idea).
    #[serde(default = "yes")]
    pub noise: bool,
    /// Requests or responses larger than this are not compared (counted as skipped).
    #[serde(default = "default_compare_max_body")]
    pub max_body_bytes: usize,
    /// Comparisons a worker holds at once (waiting for answers or for the collector); beyond
    /// it new ones are dropped, and counted.
    #[serde(default = "default_compare_max_pending")]
    pub max_pending: usize,
    /// How long the shadow (and noise) call may take; one that takes longer counts as no answer.
    #[serde(default = "default_compare_timeout")]
    pub timeout_ms: u64,
}

impl Default for Compare {
    fn default() -> Self {
        Compare {
            percent: default_compare_percent(),
            atol: default_compare_atol(),
            rtol: default_compare_rtol(),
            output: OutputKind::default(),
            noise: true,
            max_body_bytes: default_compare_max_body(),
            max_pending: default_compare_max_pending(),
            timeout_ms: default_compare_timeout(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    #[default]
    Auto,
    Classification,
    Numeric,
}

impl OutputKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputKind::Auto => "auto",
            OutputKind::Classification => "classification",
            OutputKind::Numeric => "numeric",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    /// Share of requests whose payloads are shipped to the collector, 0–1.
    pub rate: f64,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Header names whose values are replaced by `[REDACTED]` (case-insensitive).
    #[serde(default)]
    pub redact_headers: Vec<String>,
    /// JSON fields (dotted paths, e.g. `parameters.user`) whose values are replaced; a V2
    /// input's name (e.g. `inputs.ssn`) redacts that input's `data`.
    #[serde(default)]
    pub redact_fields: Vec<String>,
    /// When present, only these headers are captured (an allow-list; pseudo-headers such as
    /// `:path` must be listed too). Credential headers are redacted even when listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_headers: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// Availability objective, e.g. 0.999: non-5xx, not timed out, not reset.
    pub availability: f64,
    /// Latency objective: share of requests answered within `latency_ms`.
    #[serde(default = "default_latency_objective")]
    pub latency_objective: f64,
    pub latency_ms: u64,
}

/// The data-plane guard (see `crate::guard`): a version clearly worse than the stable one over
/// a short window is taken out of the split on every Envoy worker, and stays out until the
/// `epoch` changes.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Guard {
    /// The version the others are judged against and fall back to (default: the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<String>,
    /// The sliding window judged, `3s` to `60s` in steps of 3 s.
    #[serde(default = "default_guard_window")]
    pub window: String,
    /// Requests a version (and the stable one) needs in the window before it is judged: below
    /// it the guard waits, it never trips on too little traffic.
    #[serde(default = "default_guard_min_requests")]
    pub min_requests: u64,
    /// How much worse than the stable version's error ratio a version must be (absolute, 0-1).
    #[serde(default = "default_guard_error_margin")]
    pub error_margin: f64,
    /// How much worse than the stable version's share of requests slower than `slo.latency_ms`
    /// (absolute, 0-1); judged only with an `slo`.
    #[serde(default = "default_guard_slow_margin")]
    pub slow_margin: f64,
    /// The one-sided two-proportion z score the difference must also reach, so that noise at
    /// low counts does not trip it (5: a chance of about 3e-7 per look under equal ratios).
    #[serde(default = "default_guard_z")]
    pub z: f64,
    /// Bumping it clears every latch of this model (and only that does).
    #[serde(default)]
    pub epoch: u64,
    /// The override header may still pick a version that was taken out.
    #[serde(default)]
    pub allow_override: bool,
    /// The shadow may still mirror to a version that was taken out.
    #[serde(default)]
    pub keep_shadow: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Collector {
    pub cluster: String,
    #[serde(default = "default_collector_path")]
    pub path: String,
    #[serde(default = "default_collector_timeout")]
    pub timeout_ms: u64,
    /// Calls to the collector in flight per worker before new samples are dropped.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Samples waiting per worker before new ones are dropped.
    #[serde(default = "default_max_queued")]
    pub max_queued: usize,
    /// Bytes of samples waiting per worker before new ones are dropped: with `max_queued`
    /// alone, a queue of large bodies could take the VM's memory.
    #[serde(default = "default_max_queued_bytes")]
    pub max_queued_bytes: usize,
}

fn default_upstream_header() -> String {
    "x-switchyard-upstream".into()
}
fn default_shadow_header() -> String {
    "x-switchyard-shadow".into()
}
fn default_version_header() -> String {
    "x-switchyard-version".into()
}
fn default_windows() -> Vec<String> {
    vec!["5m".into(), "1h".into()]
}
fn default_guard_window() -> String {
    "6s".into()
}
fn default_guard_min_requests() -> u64 {
    20
}
fn default_guard_error_margin() -> f64 {
    0.05
}
fn default_guard_slow_margin() -> f64 {
    0.1
}
fn default_guard_z() -> f64 {
    5.0
}
fn default_compare_percent() -> f64 {
    10.0
}
fn default_compare_atol() -> f64 {
    1e-5
}
fn default_compare_rtol() -> f64 {
    1e-3
}
fn yes() -> bool {
    true
}
fn default_compare_max_body() -> usize {
    64 * 1024
}
fn default_compare_max_pending() -> usize {
    8
}
fn default_compare_timeout() -> u64 {
    5000
}
const MAX_COMPARE_PENDING: usize = 256;
fn default_max_body() -> usize {
    64 * 1024
}
fn default_latency_objective() -> f64 {
    0.99
}
fn default_collector_path() -> String {
    "/v1/samples".into()
}
fn default_collector_timeout() -> u64 {
    2000
}
fn default_max_in_flight() -> usize {
    32
}
fn default_max_queued() -> usize {
    256
}
fn default_max_queued_bytes() -> usize {
    4 * 1024 * 1024
}

const MAX_BODY_CAP: usize = 1024 * 1024;
/// Per worker: every Envoy worker has its own VM and its own queue, so the memory a policy may
/// ask for is this times the workers.
pub const MAX_QUEUED_CAP: usize = 10_000;
pub const MAX_QUEUED_BYTES_CAP: usize = 32 * 1024 * 1024;

fn valid_header(h: &str) -> bool {
    !h.is_empty() && h.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Config {
    /// Parses and validates; the error lists every problem.
    pub fn parse(json: &[u8]) -> Result<Config, ConfigErrors> {
        let cfg: Config = serde_json::from_slice(json).map_err(|e| ConfigErrors(vec![e.to_string()]))?;
        let problems = cfg.problems();
        if problems.is_empty() { Ok(cfg) } else { Err(ConfigErrors(problems)) }
    }

    /// The windows, parsed (valid after `parse`).
    pub fn windows(&self) -> Vec<WindowSpec> {
        self.slo_windows.iter().filter_map(|w| WindowSpec::parse(w).ok()).collect()
    }

    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let headers = [
            ("upstream_header", &self.upstream_header),
            ("shadow_header", &self.shadow_header),
            ("version_header", &self.version_header),
        ];
        for (field, h) in headers {
            if !valid_header(h) {
                p.push(format!("{field} '{h}' must be a lowercase header name"));
            }
        }
        if self.models.is_empty() {
            p.push("models must name at least one model".into());
        }
        for (model, m) in &self.models {
            m.check(model, self.collector.is_some(), &mut p);
        }
        if let Some(c) = &self.collector {
            if c.cluster.is_empty() {
                p.push("collector.cluster must not be empty".into());
            }
            if !c.path.starts_with('/') {
                p.push(format!("collector.path '{}' must start with '/'", c.path));
            }
            if c.timeout_ms == 0 || c.max_in_flight == 0 || c.max_queued == 0 {
                p.push("collector.timeout_ms, max_in_flight and max_queued must be positive".into());
            }
            if c.max_queued > MAX_QUEUED_CAP {
                p.push(format!(
                    "collector.max_queued must be at most {MAX_QUEUED_CAP} samples per worker, got {}",
                    c.max_queued
                ));
            }
            if !(1..=MAX_QUEUED_BYTES_CAP).contains(&c.max_queued_bytes) {
                p.push(format!(
                    "collector.max_queued_bytes must be 1-{MAX_QUEUED_BYTES_CAP} (32 MiB per worker), got {}",
                    c.max_queued_bytes
                ));
            }
            // A queue that cannot hold one sample drops them all: refuse it rather than
            // discover it in `switchyard_samples_total{result="dropped"}`.
            for (model, m) in &self.models {
                let Some(s) = m.sampling.as_ref().filter(|s| s.rate > 0.0) else { continue };
                let need = capture::envelope_bound(s.max_body_bytes);
                if c.max_queued_bytes < need && c.max_queued_bytes > 0 {
                    p.push(format!(
                        "collector.max_queued_bytes ({}) must hold one sample of models.{model}: up to {need} bytes with sampling.max_body_bytes {}",
                        c.max_queued_bytes, s.max_body_bytes
                    ));
                }
            }
        }
        if let Some(id) = &self.identity {
            id.check(&mut p);
        }
        let mut seen = HashSet::new();
        for w in &self.slo_windows {
            match WindowSpec::parse(w) {
                Ok(spec) if !seen.insert(spec.seconds) => {
                    p.push(format!("slo_windows: '{w}' is listed twice"));
                }
                Ok(_) => {}
                Err(e) => p.push(format!("slo_windows: {e}")),
            }
        }
        p
    }
}

impl ModelPolicy {
    fn check(&self, model: &str, has_collector: bool, p: &mut Vec<String>) {
        let at = |s: &str| format!("models.{model}: {s}");
        if !valid_name(model) {
            p.push(at("model name must be 1-128 of [A-Za-z0-9_.-]"));
        }
        if self.versions.is_empty() {
            p.push(at("versions must list at least one version"));
        }
        let mut names = HashSet::new();
        for v in &self.versions {
            if !valid_name(&v.name) {
                p.push(at(&format!("version name '{}' must be 1-128 of [A-Za-z0-9_.-]", v.name)));
            }
            if !names.insert(v.name.as_str()) {
                p.push(at(&format!("version '{}' is listed twice", v.name)));
            }
            if !valid_cluster(&v.cluster) {
                p.push(at(&format!("version '{}': cluster '{}' is not a valid cluster name", v.name, v.cluster)));
            }
        }
        if !self.versions.is_empty() && self.versions.iter().all(|v| v.weight == 0) {
            p.push(at("at least one version needs a positive weight"));
        }
        if self.versions.iter().map(|v| u64::from(v.weight)).sum::<u64>() > u64::from(u32::MAX) {
            p.push(at("weights must add up to at most 4294967295"));
        }
        if let Some(s) = &self.sticky {
            match (&s.header, &s.cookie) {
                (Some(h), None) if valid_header(h) => {}
                (None, Some(c)) if !c.is_empty() => {}
                _ => p.push(at("sticky needs exactly one of header (lowercase) or cookie")),
            }
        }
        if let Some(o) = &self.override_ {
            if !valid_header(&o.header) {
                p.push(at(&format!("override.header '{}' must be a lowercase header name", o.header)));
            }
            for a in &o.allow {
                if !names.contains(a.as_str()) {
                    p.push(at(&format!("override.allow names unknown version '{a}'")));
                }
            }
        }
        if let Some(s) = &self.shadow {
            if !names.contains(s.version.as_str()) {
                p.push(at(&format!("shadow.version '{}' is not one of the versions", s.version)));
            }
            if !(0.0..=100.0).contains(&s.percent) {
                p.push(at(&format!("shadow.percent must be 0-100, got {}", s.percent)));
            }
            if let Some(c) = &s.compare {
                if !(0.0..=100.0).contains(&c.percent) {
                    p.push(at(&format!("shadow.compare.percent must be 0-100, got {}", c.percent)));
                }
                for (field, v) in [("atol", c.atol), ("rtol", c.rtol)] {
                    if !(v.is_finite() && v >= 0.0) {
                        p.push(at(&format!("shadow.compare.{field} must be a finite number >= 0, got {v}")));
                    }
                }
                if !(1..=MAX_BODY_CAP).contains(&c.max_body_bytes) {
                    p.push(at(&format!("shadow.compare.max_body_bytes must be 1-{MAX_BODY_CAP}")));
                }
                if !(1..=MAX_COMPARE_PENDING).contains(&c.max_pending) {
                    p.push(at(&format!("shadow.compare.max_pending must be 1-{MAX_COMPARE_PENDING}")));
                }
                if c.timeout_ms == 0 {
                    p.push(at("shadow.compare.timeout_ms must be positive"));
                }
                if !has_collector {
                    p.push(at("shadow.compare needs a collector"));
                }
            }
        }
        if let Some(s) = &self.sampling {
            if !(0.0..=1.0).contains(&s.rate) {
                p.push(at(&format!("sampling.rate must be 0-1, got {}", s.rate)));
            }
            if s.max_body_bytes > MAX_BODY_CAP {
                p.push(at(&format!("sampling.max_body_bytes must be at most {MAX_BODY_CAP}")));
            }
            if s.rate > 0.0 && !has_collector {
                p.push(at("sampling.rate > 0 needs a collector"));
            }
            for h in s.capture_headers.iter().flatten() {
                if !valid_header(h.strip_prefix(':').unwrap_or(h)) {
                    p.push(at(&format!("sampling.capture_headers: '{h}' must be a lowercase header name")));
                }
            }
        }
        if let Some(s) = &self.slo {
            for (field, v) in [("availability", s.availability), ("latency_objective", s.latency_objective)] {
                if !(v > 0.0 && v < 1.0) {
                    p.push(at(&format!("slo.{field} must be strictly between 0 and 1, got {v}")));
                }
            }
            if s.latency_ms == 0 {
                p.push(at("slo.latency_ms must be positive"));
            }
        }
        if let Some(g) = &self.guard {
            if let Some(stable) = &g.stable
                && !names.contains(stable.as_str())
            {
                p.push(at(&format!("guard.stable '{stable}' is not one of the versions")));
            }
            if let Err(e) = WindowSpec::parse_short(&g.window) {
                p.push(at(&format!("guard.window: {e}")));
            }
            if g.min_requests == 0 {
                p.push(at("guard.min_requests must be positive: with none, one failed request would trip it"));
            }
            for (field, v) in [("error_margin", g.error_margin), ("slow_margin", g.slow_margin)] {
                if !(v > 0.0 && v <= 1.0) {
                    p.push(at(&format!("guard.{field} must be in (0, 1], got {v}")));
                }
            }
            if !(1.0..=10.0).contains(&g.z) {
                p.push(at(&format!("guard.z must be 1-10, got {}", g.z)));
            }
            if self.versions.len() < 2 {
                p.push(at("guard needs at least two versions: it judges the others against the stable one"));
            }
        }
    }

    /// The version the guard judges the others against and falls back to.
    pub fn stable(&self) -> usize {
        self.guard.as_ref().and_then(|g| g.stable.as_deref()).and_then(|s| self.version(s)).unwrap_or(0)
    }

    pub fn version(&self, name: &str) -> Option<usize> {
        self.versions.iter().position(|v| v.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const EXAMPLE: &str = r#"{
        "models": {
            "mlp": {
                "versions": [{"name": "v1", "cluster": "mlp-v1", "weight": 90}, {"name": "v2", "cluster": "mlp-v2", "weight": 10}],
                "sticky": {"header": "x-user-id"},
                "override": {"header": "x-switchyard-override", "allow": ["v2"]},
                "shadow": {"version": "v2", "percent": 5},
                "sampling": {"rate": 0.01, "redact_headers": ["authorization"], "redact_fields": ["id"]},
                "slo": {"availability": 0.999, "latency_ms": 250}
            }
        },
        "collector": {"cluster": "collector"}
    }"#;

    #[test]
    fn parses_the_example_with_defaults() {
        let c = Config::parse(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(c.upstream_header, "x-switchyard-upstream");
        assert_eq!(c.windows().len(), 2);
        let m = &c.models["mlp"];
        assert_eq!(m.version("v2"), Some(1));
        assert_eq!(m.sampling.as_ref().unwrap().max_body_bytes, 64 * 1024);
        assert_eq!(m.slo.as_ref().unwrap().latency_objective, 0.99);
    }

    #[test]
    fn reports_every_problem() {
        let bad = r#"{
            "upstream_header": "X-Bad Header",
            "models": {
                "m m": {
                    "versions": [{"name": "v1", "cluster": "c", "weight": 0}, {"name": "v1", "cluster": "bad cluster", "weight": 0}],
                    "sticky": {"header": "x-a", "cookie": "b"},
                    "override": {"header": "x-o", "allow": ["v9"]},
                    "shadow": {"version": "v7", "percent": 150},
                    "sampling": {"rate": 2, "max_body_bytes": 99999999, "capture_headers": ["content-type", ":path", "Bad Header"]},
                    "slo": {"availability": 1.0, "latency_ms": 0}
                },
                "empty": {"versions": []}
            },
            "slo_windows": ["5m", "300s", "forever", "45s"]
        }"#;
        let e = Config::parse(bad.as_bytes()).unwrap_err();
        let text = e.to_string();
        for needle in [
            "upstream_header 'X-Bad Header'",
            "model name must be",
            "listed twice",
            "not a valid cluster name",
            "needs a positive weight",
            "exactly one of header",
            "unknown version 'v9'",
            "shadow.version 'v7'",
            "shadow.percent must be 0-100",
            "sampling.rate must be 0-1",
            "max_body_bytes must be at most",
            "needs a collector",
            "slo.availability must be strictly between",
            "slo.latency_ms must be positive",
            "models.empty: versions must list at least one",
            "'300s' is listed twice",
            "slo_windows: 'forever'",
            "slo_windows: '45s' (45s) must be a multiple of 30s",
            "sampling.capture_headers: 'Bad Header' must be a lowercase header name",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in {text}");
        }
        assert!(!text.contains("'content-type'") && !text.contains("':path'"), "{text}");
    }

    #[test]
    fn collector_queues_are_capped_and_must_hold_one_sample() {
        let with = |collector: &str, max_body: usize| {
            format!(
                r#"{{"models": {{"m": {{"versions": [{{"name": "v1", "cluster": "c", "weight": 1}}],
                    "sampling": {{"rate": 0.5, "max_body_bytes": {max_body}}}}}}},
                    "collector": {{"cluster": "collector", {collector}}}}}"#
            )
        };
        let c = Config::parse(with(r#""path": "/s""#, 1024 * 1024).as_bytes()).unwrap();
        let collector = c.collector.unwrap();
        assert_eq!((collector.max_queued, collector.max_queued_bytes), (256, 4 * 1024 * 1024));
        for (collector, max_body, needle) in [
            (
                r#""max_queued": 10001"#,
                1024,
                "collector.max_queued must be at most 10000 samples per worker, got 10001",
            ),
            (
                r#""max_queued_bytes": 0"#,
                1024,
                "collector.max_queued_bytes must be 1-33554432 (32 MiB per worker), got 0",
            ),
            (r#""max_queued_bytes": 33554433"#, 1024, "collector.max_queued_bytes must be 1-33554432"),
            (
                r#""max_queued_bytes": 100000"#,
                65536,
                "collector.max_queued_bytes (100000) must hold one sample of models.m: up to 196608 bytes with sampling.max_body_bytes 65536",
            ),
        ] {
            let e = Config::parse(with(collector, max_body).as_bytes()).unwrap_err().to_string();
            assert!(e.contains(needle), "{collector}: missing {needle:?} in {e}");
        }
        let e = Config::parse(with(r#""max_queued_byts": 1"#, 1024).as_bytes()).unwrap_err();
        assert!(e.to_string().contains("unknown field `max_queued_byts`"), "{e}");
    }

    #[test]
    fn an_accepted_policy_re_serialises_to_itself() {
        let c = Config::parse(EXAMPLE.as_bytes()).unwrap();
        let again = Config::parse(&serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let e = Config::parse(br#"{"models": {}, "modles": {}}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `modles`"), "{e}");
        let e = Config::parse(
            br#"{"models": {"m": {"versions": [{"name": "v1", "cluster": "c", "weight": 1, "wieght": 2}]}}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `wieght`"), "{e}");
    }
}
