//! What the console shows, from the metrics the controller reads: per model and version the
//! weight in force, the guard, requests, rate, error ratio, latency percentiles and burn rates
//! (Envoy's filter), the shadow's disagreement (the collector), drift per column (the drift
//! monitor); the last minutes of each version for the charts; and the hash points of recent
//! sticky keys, for previewing a weight change. Pure: the controller does the I/O.

use std::collections::{BTreeMap, HashSet, VecDeque};

use serde::Serialize;
use serde_json::Value;
use switchyard_contract::metrics;
use switchyard_deploy::held_out::{HeldOut, held_out};
use switchyard_load::metrics::{Sample, sum};
use switchyard_policy::Config;
use switchyard_policy::hash::stable_hash;
use switchyard_policy::slo::Outcome;

use crate::judge::Counts;
use crate::stats::quantile;

// The metric names matched on (patterns need constants of their own).
const SHADOW_ROWS: &str = metrics::SHADOW_COMPARED_ROWS_TOTAL.name;
const SHADOW_DISAGREEING: &str = metrics::SHADOW_DISAGREEING_ROWS_TOTAL.name;
const DRIFT_THRESHOLD: &str = metrics::DRIFT_THRESHOLD.name;
const DRIFT_COLUMN_DRIFTED: &str = metrics::DRIFT_COLUMN_DRIFTED.name;
const DRIFT_COLUMN_TEST: &str = metrics::DRIFT_COLUMN_TEST.name;
const DRIFT_WINDOW_ROWS: &str = metrics::DRIFT_WINDOW_ROWS.name;
const DRIFT_WINDOW_MIN_ROWS: &str = metrics::DRIFT_WINDOW_MIN_ROWS.name;
const DRIFT_DATASET_DRIFT_SHARE: &str = metrics::DRIFT_DATASET_DRIFT_SHARE.name;
const DRIFT_DATASET_DRIFTED: &str = metrics::DRIFT_DATASET_DRIFTED.name;

/// Rates, error ratios and percentiles are over this much of the latest counters.
pub const WINDOW_MS: u64 = 30_000;
/// Points kept per version for the charts: five minutes at one a second.
pub const HISTORY: usize = 300;
/// Distinct recent sticky keys kept per model (as hash points, never the keys).
pub const KEYS: usize = 1000;
/// Drift columns shown per model, the most drifted first.
pub const COLUMNS: usize = 20;

/// A bucket's `le` label as a bound; `+Inf` as `f64::MAX` (see `Observation::bounds`).
pub fn le_bound(le: &str) -> Option<f64> {
    let b: f64 = le.parse().ok()?;
    Some(if b.is_finite() { b } else { f64::MAX })
}

fn is_bucket_of(s: &Sample, model: &str) -> bool {
    s.name == metrics::REQUEST_DURATION_MS.series("_bucket") && s.labels.get("model").map(String::as_str) == Some(model)
}

/// The upper bounds of the model's latency buckets, ascending.
pub fn bounds(samples: &[Sample], model: &str) -> Vec<f64> {
    let mut bounds: Vec<f64> = samples
        .iter()
        .filter(|s| is_bucket_of(s, model))
        .filter_map(|s| s.labels.get("le").and_then(|le| le_bound(le)))
        .collect();
    bounds.sort_by(f64::total_cmp);
    bounds.dedup();
    bounds
}

/// One version's cumulative counters in Envoy's filter metrics.
pub fn version_counts(samples: &[Sample], model: &str, version: &str, bounds: &[f64]) -> Counts {
    let at = [("model", model), ("version", version)];
    let outcome = |o: &Outcome| sum(samples, metrics::REQUESTS_TOTAL.name, &[at[0], at[1], ("outcome", o.as_str())]);
    let all = sum(samples, metrics::REQUESTS_TOTAL.name, &at);
    // The filter's own classification: what counts against availability, and what is no event
    // at all (the client ended it, or the gateway's quota refused it: neither good nor bad).
    let bad: f64 = Outcome::ALL.iter().filter(|o| o.is_bad()).map(outcome).sum();
    let not_events: f64 = Outcome::ALL.iter().filter(|o| !o.is_event()).map(outcome).sum();
    let total = all - not_events;
    let mut below = 0.0;
    let latency = bounds
        .iter()
        .map(|b| {
            let cumulative = samples
                .iter()
                .filter(|s| {
                    is_bucket_of(s, model)
                        && s.labels.get("version").map(String::as_str) == Some(version)
                        && s.labels.get("le").and_then(|l| le_bound(l)) == Some(*b)
                })
                .map(|s| s.value)
                .sum::<f64>();
            let n = (cumulative - below).max(0.0);
            below = cumulative.max(below);
            n as u64
        })
        .collect();
    let shadowed = sum(samples, metrics::SHADOW_REQUESTS_TOTAL.name, &at) as u64;
    Counts { total: total.max(0.0) as u64, bad: bad as u64, latency, shadowed }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Burn {
    pub window: String,
    pub sli: String,
    /// The filter's `switchyard_slo_burn_rate_x1000` / 1000: 1 spends the budget exactly.
    pub rate: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VersionView {
    pub name: String,
    pub weight: u32,
    pub guard_out: bool,
    /// Since when and why, while the guard holds it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_out: Option<HeldOut>,
    /// Every request the filter routed to it (`switchyard_requests_total`, all outcomes).
    pub requests: u64,
    pub shadowed: u64,
    /// Over the last [`WINDOW_MS`]; `None` before two looks.
    pub rate: Option<f64>,
    pub error_ratio: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub burn: Vec<Burn>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChartPoint {
    pub ts_ms: u64,
    pub rate: Option<f64>,
    pub error_ratio: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShadowView {
    pub primary: String,
    pub shadow: String,
    /// `shadow`: the canary's answers; `noise`: the stable version against itself.
    pub pair: String,
    pub rows: u64,
    pub disagreeing: u64,
    pub ratio: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ColumnDrift {
    pub version: String,
    pub window: String,
    pub column: String,
    pub test: String,
    /// A p-value (`ks`, `chisquare`, `z`: small is drift) or a distance (large is drift).
    pub score: f64,
    pub threshold: f64,
    pub drifted: bool,
    /// How far past (> 1) or short of (< 1) its threshold the score is, either way round.
    pub severity: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WindowDrift {
    pub version: String,
    pub window: String,
    pub rows: u64,
    /// Rows the monitor needs before it judges the window (0: a monitor that does not say).
    pub min_rows: u64,
    /// `rows >= min_rows`: below, the window is "not enough data", never drift.
    pub enough_data: bool,
    pub drift_share: f64,
    pub drifted: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelView {
    pub name: String,
    pub sticky: Option<String>,
    pub versions: Vec<VersionView>,
    pub shadow: Vec<ShadowView>,
    pub windows: Vec<WindowDrift>,
    /// The most drifted first, at most [`COLUMNS`].
    pub drift: Vec<ColumnDrift>,
    pub columns_tested: usize,
}

struct Seen {
    ts_ms: u64,
    requests: u64,
    counts: Counts,
}

/// The controller's memory between looks: each version's recent counters and chart points.
#[derive(Default)]
pub struct Watch {
    seen: BTreeMap<(String, String), VecDeque<Seen>>,
    history: BTreeMap<String, VecDeque<ChartPoint>>,
}

fn label<'a>(s: &'a Sample, name: &str) -> &'a str {
    s.labels.get(name).map_or("", String::as_str)
}

impl Watch {
    /// The view at `now_ms` of the policy in force, with Envoy's metrics and, when they could
    /// be read, the collector's and the monitor's. Remembers this look for the rates.
    pub fn look(
        &mut self,
        now_ms: u64,
        policy: &Config,
        envoy: &[Sample],
        collector: Option<&[Sample]>,
        monitor: Option<&[Sample]>,
    ) -> Vec<ModelView> {
        let mut out = Vec::new();
        for (model, m) in &policy.models {
            let bounds = bounds(envoy, model);
            let versions =
                m.versions.iter().map(|v| self.version(now_ms, model, &v.name, v.weight, envoy, &bounds)).collect();
            let (windows, drift, columns_tested) = monitor.map(|s| drift(s, model)).unwrap_or_default();
            out.push(ModelView {
                name: model.clone(),
                sticky: m.sticky.as_ref().map(|s| match (&s.header, &s.cookie) {
                    (Some(h), _) => format!("header {h}"),
                    (None, Some(c)) => format!("cookie {c}"),
                    (None, None) => String::new(),
                }),
                versions,
                shadow: collector.map(|s| shadow(s, model)).unwrap_or_default(),
                windows,
                drift,
                columns_tested,
            });
        }
        let live: HashSet<String> =
            out.iter().flat_map(|m| m.versions.iter().map(move |v| format!("{}/{}", m.name, v.name))).collect();
        self.history.retain(|k, _| live.contains(k));
        self.seen.retain(|(m, v), _| live.contains(&format!("{m}/{v}")));
        out
    }

    fn version(
        &mut self,
        now_ms: u64,
        model: &str,
        version: &str,
        weight: u32,
        envoy: &[Sample],
        bounds: &[f64],
    ) -> VersionView {
        let at = [("model", model), ("version", version)];
        let requests = sum(envoy, metrics::REQUESTS_TOTAL.name, &at) as u64;
        let counts = version_counts(envoy, model, version, bounds);
        let seen = self.seen.entry((model.to_owned(), version.to_owned())).or_default();
        // The oldest look within the window is the base; one older than that is no longer needed.
        while seen.len() > 1 && seen.get(1).is_some_and(|s| s.ts_ms + WINDOW_MS <= now_ms) {
            seen.pop_front();
        }
        let (mut rate, mut error_ratio, mut p50_ms, mut p99_ms) = (None, None, None, None);
        if let Some(base) = seen.front().filter(|b| b.ts_ms < now_ms) {
            let d = counts.since(&base.counts);
            let dt = (now_ms - base.ts_ms) as f64 / 1000.0;
            rate = Some(requests.saturating_sub(base.requests) as f64 / dt);
            error_ratio = (d.total > 0).then(|| d.bad as f64 / d.total as f64);
            if d.latency.len() == bounds.len() {
                p50_ms = quantile(&d.latency, bounds, 0.5);
                p99_ms = quantile(&d.latency, bounds, 0.99);
            }
        }
        let shadowed = counts.shadowed;
        seen.push_back(Seen { ts_ms: now_ms, requests, counts });
        let chart = self.history.entry(format!("{model}/{version}")).or_default();
        chart.push_back(ChartPoint { ts_ms: now_ms, rate, error_ratio, p99_ms });
        while chart.len() > HISTORY {
            chart.pop_front();
        }
        let mut burn: Vec<Burn> = envoy
            .iter()
            .filter(|s| {
                s.name == metrics::SLO_BURN_RATE_X1000.name
                    && label(s, "model") == model
                    && label(s, "version") == version
            })
            .map(|s| Burn { window: label(s, "window").into(), sli: label(s, "sli").into(), rate: s.value / 1000.0 })
            .collect();
        burn.sort_by(|a, b| (&a.sli, &a.window).cmp(&(&b.sli, &b.window)));
        VersionView {
            name: version.to_owned(),
            weight,
            guard_out: sum(envoy, metrics::GUARD_OUT.name, &at) > 0.0,
            held_out: held_out(envoy).into_iter().find(|h| h.model == model && h.version == version),
            requests,
            shadowed,
            rate,
            error_ratio,
            p50_ms,
            p99_ms,
            burn,
        }
    }

    /// Each version's chart points, keyed `model/version`.
    pub fn history(&self) -> &BTreeMap<String, VecDeque<ChartPoint>> {
        &self.history
    }
}

fn shadow(collector: &[Sample], model: &str) -> Vec<ShadowView> {
    let mut pairs: BTreeMap<(String, String, String), (u64, u64)> = BTreeMap::new();
    for s in collector.iter().filter(|s| label(s, "model") == model) {
        let key = (label(s, "primary").to_owned(), label(s, "shadow").to_owned(), label(s, "pair").to_owned());
        match s.name.as_str() {
            SHADOW_ROWS => pairs.entry(key).or_default().0 += s.value as u64,
            SHADOW_DISAGREEING => pairs.entry(key).or_default().1 += s.value as u64,
            _ => {}
        }
    }
    pairs
        .into_iter()
        .map(|((primary, shadow, pair), (rows, disagreeing))| ShadowView {
            primary,
            shadow,
            pair,
            rows,
            disagreeing,
            ratio: (rows > 0).then(|| disagreeing as f64 / rows as f64),
        })
        .collect()
}

/// Tests whose score is a p-value (drift below the threshold); the others are distances.
const P_VALUE_TESTS: [&str; 3] = ["ks", "chisquare", "z"];

fn drift(monitor: &[Sample], model: &str) -> (Vec<WindowDrift>, Vec<ColumnDrift>, usize) {
    type Key = (String, String, String);
    let of_model = || monitor.iter().filter(|s| label(s, "model") == model);
    let key =
        |s: &Sample| -> Key { (label(s, "version").into(), label(s, "window").into(), label(s, "column").into()) };
    let mut columns: BTreeMap<Key, ColumnDrift> = BTreeMap::new();
    for s in of_model().filter(|s| s.name == metrics::DRIFT_SCORE.name) {
        let (version, window, column) = key(s);
        columns.insert(
            key(s),
            ColumnDrift {
                version,
                window,
                column,
                test: String::new(),
                score: s.value,
                threshold: f64::NAN,
                drifted: false,
                severity: 0.0,
            },
        );
    }
    for s in of_model() {
        let Some(c) = columns.get_mut(&key(s)) else { continue };
        match s.name.as_str() {
            DRIFT_THRESHOLD => c.threshold = s.value,
            DRIFT_COLUMN_DRIFTED => c.drifted = s.value > 0.0,
            DRIFT_COLUMN_TEST if s.value > 0.0 => c.test = label(s, "test").into(),
            _ => {}
        }
    }
    let mut columns: Vec<ColumnDrift> = columns.into_values().filter(|c| c.score.is_finite()).collect();
    for c in &mut columns {
        c.severity = if P_VALUE_TESTS.contains(&c.test.as_str()) {
            c.threshold / c.score.max(f64::MIN_POSITIVE)
        } else {
            c.score / c.threshold.max(f64::MIN_POSITIVE)
        };
        if !c.severity.is_finite() {
            c.severity = f64::MAX;
        }
    }
    let tested = columns.len();
    columns.sort_by(|a, b| b.drifted.cmp(&a.drifted).then(b.severity.total_cmp(&a.severity)));
    columns.truncate(COLUMNS);
    let mut windows: BTreeMap<(String, String), WindowDrift> = BTreeMap::new();
    for s in of_model() {
        let k = (label(s, "version").to_owned(), label(s, "window").to_owned());
        let w = || WindowDrift {
            version: k.0.clone(),
            window: k.1.clone(),
            rows: 0,
            min_rows: 0,
            enough_data: true,
            drift_share: 0.0,
            drifted: false,
        };
        match s.name.as_str() {
            DRIFT_WINDOW_ROWS => windows.entry(k.clone()).or_insert_with(w).rows = s.value as u64,
            DRIFT_WINDOW_MIN_ROWS => windows.entry(k.clone()).or_insert_with(w).min_rows = s.value as u64,
            DRIFT_DATASET_DRIFT_SHARE => {
                windows.entry(k.clone()).or_insert_with(w).drift_share = s.value;
            }
            DRIFT_DATASET_DRIFTED => windows.entry(k.clone()).or_insert_with(w).drifted = s.value > 0.0,
            _ => {}
        }
    }
    let windows = windows
        .into_values()
        .map(|w| WindowDrift { enough_data: w.rows >= w.min_rows, drifted: w.drifted && w.rows >= w.min_rows, ..w })
        .collect();
    (windows, columns, tested)
}

/// Recent sticky users per model, kept as the filter's hash points of their keys (the preview
/// needs no more, and the console's API then holds no user ids): read from the samples the
/// collector stores, whose request headers carry the sticky header unless it is redacted.
#[derive(Default)]
pub struct Keys {
    models: BTreeMap<String, (VecDeque<u64>, HashSet<u64>)>,
}

impl Keys {
    /// Takes the sticky keys from stored sample lines (anything else in them is ignored).
    pub fn add_lines(&mut self, policy: &Config, text: &str) {
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
            let Some(model) = v.get("model").and_then(Value::as_str) else { continue };
            let Some(header) = policy.models.get(model).and_then(|m| m.sticky.as_ref()).and_then(|s| s.header.as_ref())
            else {
                continue;
            };
            let key = v
                .pointer("/request/headers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|h| Some((h.get(0)?.as_str()?, h.get(1)?.as_str()?)))
                .find(|(n, _)| n.eq_ignore_ascii_case(header))
                .map(|(_, value)| value)
                .filter(|k| !k.is_empty() && !k.starts_with("[REDACTED]") && !k.starts_with("[WITHHELD]"));
            if let Some(key) = key {
                self.add(model, stable_hash(key.as_bytes()));
            }
        }
    }

    fn add(&mut self, model: &str, point: u64) {
        let (order, set) = self.models.entry(model.to_owned()).or_default();
        if set.insert(point) {
            order.push_back(point);
            if order.len() > KEYS
                && let Some(old) = order.pop_front()
            {
                set.remove(&old);
            }
        }
    }

    /// `{"model": ["point", ...]}`, the points as decimal strings (JS numbers hold 53 bits).
    pub fn points(&self) -> Value {
        self.models
            .iter()
            .map(|(m, (order, _))| (m.clone(), order.iter().map(|p| Value::String(p.to_string())).collect()))
            .collect::<serde_json::Map<String, Value>>()
            .into()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;
    use switchyard_load::metrics::parse;

    use super::*;

    fn policy() -> Config {
        Config::parse(
            json!({"models": {"mlp": {
                "versions": [{"name": "v1", "cluster": "mlp-v1", "weight": 90}, {"name": "v2", "cluster": "mlp-v2", "weight": 10}],
                "sticky": {"header": "x-user"}
            }}})
            .to_string()
            .as_bytes(),
        )
        .unwrap()
    }

    fn envoy(v1: u64, v1_bad: u64, fast: u64) -> Vec<Sample> {
        parse(&format!(
            "switchyard_requests_total{{model=\"mlp\",version=\"v1\",outcome=\"success\"}} {}\n\
             switchyard_requests_total{{model=\"mlp\",version=\"v1\",outcome=\"5xx\"}} {v1_bad}\n\
             switchyard_request_duration_ms_bucket{{model=\"mlp\",version=\"v1\",le=\"10\"}} {fast}\n\
             switchyard_request_duration_ms_bucket{{model=\"mlp\",version=\"v1\",le=\"100\"}} {v1}\n\
             switchyard_request_duration_ms_bucket{{model=\"mlp\",version=\"v1\",le=\"+Inf\"}} {v1}\n\
             switchyard_slo_burn_rate_x1000{{model=\"mlp\",version=\"v1\",window=\"1m\",sli=\"availability\"}} 2500\n\
             switchyard_guard_out{{model=\"mlp\",version=\"v2\"}} 1\n\
             switchyard_guard_out_since_seconds{{model=\"mlp\",version=\"v2\",sli=\"latency\"}} 1765000000\n",
            v1 - v1_bad
        ))
    }

    #[test]
    fn rates_ratios_and_percentiles_are_over_the_window() {
        let mut w = Watch::default();
        let first = w.look(1_000, &policy(), &envoy(100, 0, 100), None, None);
        let v1 = &first[0].versions[0];
        assert_eq!((v1.requests, v1.rate, v1.weight), (100, None, 90), "one look has no rate");
        assert_eq!(v1.burn, vec![Burn { window: "1m".into(), sli: "availability".into(), rate: 2.5 }]);
        assert!(first[0].versions[1].guard_out);
        let held = first[0].versions[1].held_out.as_ref().expect("since when and why");
        assert_eq!((held.since_s, held.sli.as_deref()), (Some(1_765_000_000), Some("latency")));
        assert_eq!(v1.held_out, None);
        // 10 s later: 200 more requests, 20 of them failed, 100 of them slower than 10 ms.
        let later = w.look(11_000, &policy(), &envoy(300, 20, 200), None, None);
        let v1 = &later[0].versions[0];
        assert_eq!(v1.rate, Some(20.0));
        assert_eq!(v1.error_ratio, Some(0.1));
        assert_eq!(v1.p50_ms, Some(10.0));
        assert!((v1.p99_ms.unwrap() - (10.0 + 90.0 * 98.0 / 100.0)).abs() < 1e-9, "{:?}", v1.p99_ms);
        // Past the window the oldest look is forgotten: the rate is over the last two.
        let much_later = w.look(41_500, &policy(), &envoy(300, 20, 200), None, None);
        assert_eq!(much_later[0].versions[0].rate, Some(0.0));
        assert_eq!(w.history()["mlp/v1"].len(), 3);
    }

    #[test]
    fn the_filters_outcomes_decide_what_is_bad_and_what_the_client_ended() {
        let line = |o: &str, n: u64| {
            format!("switchyard_requests_total{{model=\"mlp\",version=\"v1\",outcome=\"{o}\"}} {n}\n")
        };
        let text: String = [
            ("success", 100),
            ("4xx", 7),
            ("5xx", 1),
            ("timeout", 2),
            ("upstream_reset", 4),
            ("overloaded", 8),
            ("client_gone", 16),
            ("client_deadline", 32),
        ]
        .iter()
        .map(|(o, n)| line(o, *n))
        .collect();
        let c = version_counts(&parse(&text), "mlp", "v1", &[]);
        assert_eq!(
            (c.total, c.bad),
            (122, 15),
            "4xx is the client's fault but still judged; gone and deadline are not"
        );
    }

    #[test]
    fn drift_lists_the_most_drifted_columns_first() {
        let monitor = parse(
            "switchyard_drift_score{model=\"mlp\",version=\"v1\",window=\"w\",column=\"a\"} 0.5\n\
             switchyard_drift_threshold{model=\"mlp\",version=\"v1\",window=\"w\",column=\"a\"} 0.05\n\
             switchyard_drift_column_test{model=\"mlp\",version=\"v1\",window=\"w\",column=\"a\",test=\"ks\"} 1\n\
             switchyard_drift_score{model=\"mlp\",version=\"v1\",window=\"w\",column=\"b\"} 0.001\n\
             switchyard_drift_threshold{model=\"mlp\",version=\"v1\",window=\"w\",column=\"b\"} 0.05\n\
             switchyard_drift_column_drifted{model=\"mlp\",version=\"v1\",window=\"w\",column=\"b\"} 1\n\
             switchyard_drift_column_test{model=\"mlp\",version=\"v1\",window=\"w\",column=\"b\",test=\"ks\"} 1\n\
             switchyard_drift_score{model=\"mlp\",version=\"v1\",window=\"w\",column=\"c\"} 0.2\n\
             switchyard_drift_threshold{model=\"mlp\",version=\"v1\",window=\"w\",column=\"c\"} 0.1\n\
             switchyard_drift_column_drifted{model=\"mlp\",version=\"v1\",window=\"w\",column=\"c\"} 1\n\
             switchyard_drift_column_test{model=\"mlp\",version=\"v1\",window=\"w\",column=\"c\",test=\"wasserstein\"} 1\n\
             switchyard_drift_window_rows{model=\"mlp\",version=\"v1\",window=\"w\"} 500\n\
             switchyard_drift_window_min_rows{model=\"mlp\",version=\"v1\",window=\"w\"} 500\n\
             switchyard_drift_dataset_drift_share{model=\"mlp\",version=\"v1\",window=\"w\"} 0.66\n\
             switchyard_drift_window_rows{model=\"mlp\",version=\"v2\",window=\"w\"} 40\n\
             switchyard_drift_window_min_rows{model=\"mlp\",version=\"v2\",window=\"w\"} 500\n",
        );
        let (windows, cols, tested) = drift(&monitor, "mlp");
        let order: Vec<&str> = cols.iter().map(|c| c.column.as_str()).collect();
        assert_eq!((order, tested), (vec!["b", "c", "a"], 3), "p 0.001 is 50x past 0.05; distance 0.2 is 2x 0.1");
        assert_eq!((windows[0].rows, windows[0].drift_share, windows[0].drifted), (500, 0.66, false));
        assert!(windows[0].enough_data);
        // 40 rows of the 500 needed: not enough data, never drift.
        assert_eq!((windows[1].rows, windows[1].min_rows, windows[1].enough_data), (40, 500, false));
    }

    #[test]
    fn keys_are_kept_as_hash_points_distinct_and_bounded() {
        let mut k = Keys::default();
        let line = |user: &str| {
            json!({"model": "mlp", "request": {"headers": [[":path", "/v2/models/mlp/infer"], ["X-User", user]]}})
                .to_string()
        };
        let text = [line("alice"), line("bob"), line("alice"), line("[REDACTED]"), "not json".into()].join("\n");
        k.add_lines(&policy(), &text);
        let want = [stable_hash(b"alice"), stable_hash(b"bob")].map(|p| p.to_string());
        assert_eq!(k.points(), json!({"mlp": want}));
        let many: Vec<String> = (0..KEYS + 5).map(|i| line(&format!("u{i}"))).collect();
        k.add_lines(&policy(), &many.join("\n"));
        let points = k.points();
        assert_eq!(points["mlp"].as_array().unwrap().len(), KEYS);
        assert_eq!(points["mlp"][KEYS - 1], stable_hash(format!("u{}", KEYS + 4).as_bytes()).to_string());
    }
}
