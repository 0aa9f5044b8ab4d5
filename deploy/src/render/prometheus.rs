//! Prometheus and Alertmanager configuration for the local stack.
//!
//! - [`config_rules`]: the constant series the checked-in rules (`dashboards/prometheus/`)
//!   join with: each version's role (the policy lists the stable version first, canaries
//!   after it), the SLO objectives and latency thresholds, the hourly price per device kind.
//! - [`prometheus_config`]: scrapes Envoy's `/stats/prometheus` and every backend's `/metrics`,
//!   loads the rules.
//! - [`alertmanager_config`]: `severity=page` and `severity=ticket` to separate webhook
//!   receivers, grouped by alert, model and version; a page inhibits the ticket of the same
//!   alert; the always-firing `Watchdog` to the pager's dead man's switch every interval.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::envoy::duration_buckets;
use super::{HostPort, RenderErrors, collect};
use switchyard_contract::process::pager::{PAGE, TICKET, WATCHDOG, WATCHDOG_ALERT};
use switchyard_policy::Config;

/// File name of the rendered [`config_rules`], next to `prometheus.yml`.
pub const CONFIG_RULES: &str = "switchyard-config.rules.yml";

/// The price file (`dashboards/prices.json`): hourly cost of one device per kind.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Prices {
    #[serde(default)]
    pub description: String,
    pub hourly_cost: BTreeMap<String, f64>,
}

impl Prices {
    /// Parses and validates: kinds `cpu` and `gpu` only, non-negative prices.
    pub fn parse(json: &[u8]) -> Result<Prices, RenderErrors> {
        let p: Prices = serde_json::from_slice(json).map_err(|e| {
            RenderErrors(vec![format!("{e} (expected {{\"hourly_cost\": {{\"cpu\": PRICE, \"gpu\": PRICE}}}})")])
        })?;
        let mut problems = Vec::new();
        if p.hourly_cost.is_empty() {
            problems.push("hourly_cost names no device kind".to_owned());
        }
        for (kind, price) in &p.hourly_cost {
            if kind != "cpu" && kind != "gpu" {
                problems.push(format!("device kind '{kind}' is not cpu or gpu"));
            } else if !(price.is_finite() && *price >= 0.0) {
                problems.push(format!("hourly_cost.{kind} must be a non-negative number, got {price}"));
            }
        }
        collect(p, problems)
    }
}

/// Says so in `problems` when `s` is not a Prometheus duration (the project's one grammar,
/// which is Prometheus').
fn check_duration(what: &str, s: &str, problems: &mut Vec<String>) {
    if let Err(e) = switchyard_policy::duration::parse(s) {
        problems.push(format!("{what}: {e}"));
    }
}

fn format_ms(ms: u64) -> String {
    if ms.is_multiple_of(1000) { format!("{}s", ms / 1000) } else { format!("{ms}ms") }
}

/// Rule files with every duration divided by `factor`: the same rules on drill time, so that
/// an alert that needs 5 minutes of evidence in production needs 5 seconds in a drill
/// (`switchyard-drill`). Range selectors, subquery steps and offsets keep at least
/// `min_range_ms` (a rate needs several scrapes in its window); `for:` and group `interval:`
/// keep at least `min_for_ms` (the evaluation interval). Everything else — names, labels,
/// comments — is left as it is, so the drill rules are the production rules.
pub fn scale_rule_durations(text: &str, factor: u64, min_range_ms: u64, min_for_ms: u64) -> String {
    let factor = factor.max(1);
    let scale =
        |d: &str, floor: u64| switchyard_policy::duration::parse_ms(d).map(|ms| format_ms((ms / factor).max(floor)));
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        if body.starts_with('#') {
            out.push_str(line);
            continue;
        }
        // `for: 5m` / `interval: 30s`, a comment after it kept.
        if let Some((key, value)) = body.split_once(':')
            && matches!(key, "for" | "interval" | "- for" | "- interval")
        {
            let value = value.trim_end_matches(['\n', '\r']);
            let (dur, rest) = value.trim_start().split_once(char::is_whitespace).unwrap_or((value.trim_start(), ""));
            if let Some(scaled) = scale(dur, min_for_ms) {
                let newline = &line[line.trim_end_matches(['\n', '\r']).len()..];
                let rest = if rest.is_empty() { String::new() } else { format!(" {rest}") };
                out.push_str(&format!("{indent}{key}: {scaled}{rest}{newline}"));
                continue;
            }
        }
        out.push_str(&scale_promql(line, &|d| scale(d, min_range_ms)));
    }
    out
}

/// `[range]`, `[range:step]` and `offset d` in a line of PromQL, through `f`.
fn scale_promql(line: &str, f: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    loop {
        let bracket = rest.find('[');
        let offset = rest.find("offset ");
        match (bracket, offset) {
            (Some(b), o) if o.is_none_or(|o| b < o) => {
                let Some(end) = rest[b..].find(']').map(|e| b + e) else { break };
                let inner = &rest[b + 1..end];
                let scaled: Option<Vec<String>> =
                    inner.split(':').map(|p| if p.is_empty() { Some(String::new()) } else { f(p) }).collect();
                out.push_str(&rest[..=b]);
                out.push_str(&scaled.map_or_else(|| inner.to_owned(), |v| v.join(":")));
                out.push(']');
                rest = &rest[end + 1..];
            }
            (_, Some(o)) => {
                let start = o + "offset ".len();
                let len = rest[start..].find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len() - start);
                let d = &rest[start..start + len];
                out.push_str(&rest[..start]);
                out.push_str(&f(d).unwrap_or_else(|| d.to_owned()));
                rest = &rest[start + len..];
            }
            _ => break,
        }
    }
    out.push_str(rest);
    out
}

fn static_rule(record: &str, value: f64, labels: &[(&str, &str)]) -> Value {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    json!({"record": record, "expr": format!("vector({value:?})"), "labels": labels})
}

fn yaml(header: &str, doc: &Value) -> String {
    // A JSON value always serialises as YAML.
    let body = serde_norway::to_string(doc).unwrap_or_default();
    format!("{header}{body}")
}

const GENERATED: &str = "# Generated by switchyard-policy render: do not edit, re-render.\n";

/// The constant series the rules join with, from the policy and the price file.
pub fn config_rules(cfg: &Config, prices: &Prices) -> String {
    let buckets = duration_buckets(cfg);
    let mut rules = Vec::new();
    for (model, m) in &cfg.models {
        for (i, v) in m.versions.iter().enumerate() {
            let role = if i == 0 { "stable" } else { "canary" };
            rules.push(static_rule(
                "switchyard:version_role:info",
                1.0,
                &[("model", model), ("version", &v.name), ("role", role)],
            ));
        }
        let Some(slo) = &m.slo else { continue };
        rules.push(static_rule("slo:objective:ratio", slo.availability, &[("model", model), ("sli", "availability")]));
        rules.push(static_rule("slo:objective:ratio", slo.latency_objective, &[("model", model), ("sli", "latency")]));
        // The bootstrap makes every threshold a histogram bound (envoy::duration_buckets), so
        // the latency SLI can select that bucket exactly.
        debug_assert!(buckets.contains(&slo.latency_ms));
        rules.push(static_rule("slo:latency_threshold:seconds", slo.latency_ms as f64 / 1000.0, &[("model", model)]));
        let le = slo.latency_ms.to_string();
        rules.push(static_rule("slo:latency_threshold_bucket:info", 1.0, &[("model", model), ("le", &le)]));
    }
    for (kind, price) in &prices.hourly_cost {
        rules.push(static_rule("switchyard:device_hourly_cost:dollars", *price, &[("device_kind", kind)]));
    }
    yaml(
        &format!("{GENERATED}# Constant series the rules of dashboards/prometheus/ join with.\n"),
        &json!({"groups": [{"name": "switchyard-config", "rules": rules}]}),
    )
}

/// What `prometheus.yml` needs besides the policy.
#[derive(Debug, Clone)]
pub struct PrometheusOptions {
    /// Absolute paths of every rule file to load ([`CONFIG_RULES`] included).
    pub rule_files: Vec<String>,
    /// Envoy's admin address.
    pub envoy: HostPort,
    /// Every backend's admin address.
    pub backends: Vec<HostPort>,
    /// Every drift monitor's address (none: no `switchyard-monitor` job).
    pub monitors: Vec<HostPort>,
    pub alertmanager: Option<HostPort>,
    pub scrape_interval: String,
    pub evaluation_interval: String,
}

pub fn prometheus_config(o: &PrometheusOptions) -> Result<String, RenderErrors> {
    let mut p = Vec::new();
    for (what, d) in [("scrape interval", &o.scrape_interval), ("evaluation interval", &o.evaluation_interval)] {
        check_duration(what, d, &mut p);
    }
    if o.backends.is_empty() {
        p.push("give at least one backend admin address".into());
    }
    let targets = |hps: &[&HostPort]| hps.iter().map(ToString::to_string).collect::<Vec<_>>();
    let mut doc = json!({
        "global": {"scrape_interval": o.scrape_interval, "evaluation_interval": o.evaluation_interval},
        "rule_files": o.rule_files,
        "scrape_configs": [
            // Envoy: the filter's switchyard_* metrics (labels from the bootstrap's stats_tags)
            // and Envoy's own stats.
            {"job_name": "switchyard-envoy", "metrics_path": "/stats/prometheus", "static_configs": [{"targets": targets(&[&o.envoy])}]},
            {"job_name": "switchyard-backend", "metrics_path": switchyard_contract::paths::METRICS, "static_configs": [{"targets": targets(&o.backends.iter().collect::<Vec<_>>())}]},
        ],
    });
    if !o.monitors.is_empty()
        && let Some(jobs) = doc.get_mut("scrape_configs").and_then(|j| j.as_array_mut())
    {
        let monitors = targets(&o.monitors.iter().collect::<Vec<_>>());
        jobs.push(json!({"job_name": "switchyard-monitor", "metrics_path": switchyard_contract::paths::METRICS, "static_configs": [{"targets": monitors}]}));
    }
    if let (Some(am), Some(map)) = (&o.alertmanager, doc.as_object_mut()) {
        map.insert("alerting".into(), json!({"alertmanagers": [{"static_configs": [{"targets": targets(&[am])}]}]}));
    }
    collect(yaml(GENERATED, &doc), p)
}

/// What `alertmanager.yml` needs.
#[derive(Debug, Clone)]
pub struct AlertmanagerOptions {
    /// Receivers get `WEBHOOK/page`, `WEBHOOK/ticket` and `WEBHOOK/watchdog`.
    pub webhook: String,
    pub group_wait: String,
    pub group_interval: String,
    /// How often the always-firing Watchdog is sent to the pager's dead man's switch (which
    /// pages after a few of these without one).
    pub watchdog_interval: String,
}

pub fn alertmanager_config(o: &AlertmanagerOptions) -> Result<String, RenderErrors> {
    let mut p = Vec::new();
    let url = o.webhook.trim_end_matches('/');
    let host = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    if host.is_none_or(|h| h.is_empty() || h.starts_with('/')) {
        p.push(format!("webhook '{}' is not an http(s) URL", o.webhook));
    }
    for (what, d) in [
        ("group wait", &o.group_wait),
        ("group interval", &o.group_interval),
        ("watchdog interval", &o.watchdog_interval),
    ] {
        check_duration(what, d, &mut p);
    }
    let receiver = |name: &str| json!({"name": name, "webhook_configs": [{"url": format!("{url}/{name}"), "send_resolved": true}]});
    let doc = json!({
        "route": {
            // Unknown severities land with the tickets rather than nowhere.
            "receiver": TICKET,
            "group_by": ["alertname", "model", "version"],
            "group_wait": o.group_wait,
            "group_interval": o.group_interval,
            "repeat_interval": "12h",
            "routes": [
                // The dead man's switch first: the Watchdog, at once and then every interval, to
                // the pager's heartbeat (resolved too: that is Prometheus gone).
                {
                    "matchers": [format!("alertname=\"{WATCHDOG_ALERT}\"")],
                    "receiver": WATCHDOG,
                    "group_by": ["alertname"],
                    "group_wait": "0s",
                    "group_interval": o.watchdog_interval,
                    "repeat_interval": o.watchdog_interval,
                },
                {"matchers": ["severity=\"page\""], "receiver": PAGE, "repeat_interval": "1h"},
                {"matchers": ["severity=\"ticket\""], "receiver": TICKET, "repeat_interval": "24h"},
            ],
        },
        "receivers": [receiver(PAGE), receiver(TICKET), receiver(WATCHDOG)],
        // A page inhibits the ticket of the same alert for the same thing (e.g. the 1d/2h
        // burn-rate ticket while the 1h/5m page fires). Labels absent on both sides count as
        // equal.
        "inhibit_rules": [{
            "source_matchers": ["severity=\"page\""],
            "target_matchers": ["severity=\"ticket\""],
            "equal": ["alertname", "model", "version", "sli", "instance"],
        }],
    });
    collect(yaml(GENERATED, &doc), p)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn drill_rules_are_the_production_rules_on_a_faster_clock() {
        let text = "groups:\n  - name: g\n    interval: 30s\n    rules:\n      # over [5m], say\n      - alert: A\n        expr: |\n          sum(rate(x[5m])) / sum(rate(x[1h])) > 2 and y offset 30m and z[1h:1m]\n        for: 2m  # a gap\n        labels: {window: 5m}\n";
        let scaled = scale_rule_durations(text, 60, 4_000, 1_000);
        let want = "groups:\n  - name: g\n    interval: 1s\n    rules:\n      # over [5m], say\n      - alert: A\n        expr: |\n          sum(rate(x[5s])) / sum(rate(x[60s])) > 2 and y offset 30s and z[60s:4s]\n        for: 2s  # a gap\n        labels: {window: 5m}\n";
        assert_eq!(scaled, want);
        assert_eq!(scale_rule_durations("x[5m] offset 1h\n", 1, 0, 0), "x[300s] offset 3600s\n");
    }

    fn parse(text: &str) -> Value {
        serde_norway::from_str(text).unwrap()
    }

    #[test]
    fn config_rules_carry_roles_objectives_thresholds_and_prices() {
        let cfg = Config::parse(
            br#"{"models": {"mlp": {"versions": [{"name": "v1", "cluster": "a", "weight": 1}, {"name": "v2", "cluster": "b", "weight": 1}],
                 "slo": {"availability": 0.995, "latency_ms": 120}}}}"#,
        )
        .unwrap();
        let prices = Prices::parse(br#"{"hourly_cost": {"cpu": 0.5, "gpu": 3}}"#).unwrap();
        let doc = parse(&config_rules(&cfg, &prices));
        let rules = doc["groups"][0]["rules"].as_array().unwrap();
        let find = |record: &str, label: (&str, &str)| {
            rules.iter().find(|r| r["record"] == record && r["labels"][label.0] == label.1).map(|r| r["expr"].clone())
        };
        assert_eq!(find("switchyard:version_role:info", ("version", "v2")).unwrap(), "vector(1.0)");
        assert_eq!(rules.iter().filter(|r| r["labels"]["role"] == "canary").count(), 1);
        assert_eq!(find("slo:objective:ratio", ("sli", "availability")).unwrap(), "vector(0.995)");
        assert_eq!(find("slo:latency_threshold:seconds", ("model", "mlp")).unwrap(), "vector(0.12)");
        assert!(find("slo:latency_threshold_bucket:info", ("le", "120")).is_some());
        assert_eq!(find("switchyard:device_hourly_cost:dollars", ("device_kind", "gpu")).unwrap(), "vector(3.0)");
    }

    #[test]
    fn bad_prices_and_durations_are_all_reported() {
        let e = Prices::parse(br#"{"hourly_cost": {"tpu": 1, "gpu": -2}}"#).unwrap_err().to_string();
        assert!(e.contains("'tpu' is not cpu or gpu") && e.contains("hourly_cost.gpu"), "{e}");
        assert!(Prices::parse(b"{}").is_err());
        let o = PrometheusOptions {
            rule_files: vec![],
            envoy: "127.0.0.1:9901".parse().unwrap(),
            backends: vec![],
            monitors: vec![],
            alertmanager: None,
            scrape_interval: "5".into(),
            evaluation_interval: "1x".into(),
        };
        let e = prometheus_config(&o).unwrap_err().to_string();
        assert!(
            e.contains("scrape interval: '5'") && e.contains("evaluation interval: '1x'") && e.contains("backend"),
            "{e}"
        );
        for ok in ["5s", "500ms", "1m", "2h", "1m30s"] {
            let mut problems = Vec::new();
            check_duration("d", ok, &mut problems);
            assert!(problems.is_empty(), "{ok}: {problems:?}");
        }
    }

    #[test]
    fn alertmanager_routes_pages_and_tickets_to_their_receivers() {
        let o = AlertmanagerOptions {
            webhook: "http://127.0.0.1:9095/".into(),
            group_wait: "1s".into(),
            group_interval: "5m".into(),
            watchdog_interval: "1m".into(),
        };
        let doc = parse(&alertmanager_config(&o).unwrap());
        let watchdog = &doc["route"]["routes"][0];
        assert_eq!((&watchdog["receiver"], &watchdog["repeat_interval"]), (&json!("watchdog"), &json!("1m")));
        assert_eq!(watchdog["matchers"][0], "alertname=\"Watchdog\"");
        assert_eq!(doc["receivers"][2]["webhook_configs"][0]["url"], "http://127.0.0.1:9095/watchdog");
        assert_eq!(doc["route"]["routes"][1]["receiver"], "page");
        assert_eq!(doc["receivers"][1]["webhook_configs"][0]["url"], "http://127.0.0.1:9095/ticket");
        let bad = AlertmanagerOptions { webhook: "ftp://x".into(), ..o };
        assert!(alertmanager_config(&bad).is_err());
    }
}
