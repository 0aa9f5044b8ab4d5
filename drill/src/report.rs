//! What a drill leaves behind: a postmortem draft with the template's sections
//! (docs/incident-response/postmortem-template.md), a chart of the incident, the figures as
//! JSON, and the summary table of docs/drills.md.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, UndefinedBehavior, Value, context};
use serde_json::json;
use switchyard_load::plot::{Series, document};

use crate::{Outcome, Rec, Spec, TIME_SCALE};

/// Width of the chart's buckets, seconds.
const BUCKET: f64 = 0.5;

/// The instant `unix_ms` milliseconds after the Unix epoch (`None` before it).
fn system_time(unix_ms: f64) -> Option<SystemTime> {
    (unix_ms >= 0.0).then(|| UNIX_EPOCH + Duration::from_millis(unix_ms as u64))
}

/// `YYYY-MM-DD` of a Unix time, in UTC.
fn date(unix: f64) -> String {
    let Some(t) = system_time(unix.floor() * 1e3) else { return String::new() };
    let text = humantime::format_rfc3339_seconds(t).to_string();
    text.get(..10).unwrap_or_default().to_owned()
}

/// `HH:MM:SS.s` of a Unix time, in UTC, to the nearest tenth of a second.
fn utc(unix: f64) -> String {
    let Some(t) = system_time((unix * 10.0).round() * 100.0) else { return String::new() };
    // 2026-12-03T17:36:42.500Z
    let text = humantime::format_rfc3339_millis(t).to_string();
    text.get(11..21).unwrap_or_default().to_owned()
}

fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_owned(), |s| format!("{s:.1} s"))
}

/// Failed share and p99 latency per half second, over the whole drill.
pub fn chart(o: &Outcome) -> String {
    let end = o.records.last().map_or(0.0, |r| r.t);
    let n = (end / BUCKET).ceil() as usize + 1;
    let mut buckets: Vec<Vec<&Rec>> = vec![Vec::new(); n];
    for r in &o.records {
        if let Some(b) = buckets.get_mut((r.t / BUCKET) as usize) {
            b.push(r);
        }
    }
    let at = |i: usize| i as f64 * BUCKET;
    let failed: Vec<(f64, f64)> = buckets
        .iter()
        .enumerate()
        .filter(|(_, b)| !b.is_empty())
        .map(|(i, b)| (at(i), 100.0 * b.iter().filter(|r| r.failed()).count() as f64 / b.len() as f64))
        .collect();
    let p99: Vec<(f64, f64)> =
        buckets.iter().enumerate().filter(|(_, b)| !b.is_empty()).map(|(i, b)| (at(i), crate::types::p99(b))).collect();
    let v2: Vec<(f64, f64)> = buckets
        .iter()
        .enumerate()
        .filter(|(_, b)| !b.is_empty())
        .map(|(i, b)| (at(i), 100.0 * b.iter().filter(|r| r.version == "v2").count() as f64 / b.len() as f64))
        .collect();
    let title = |what: &str| {
        format!(
            "{what} — fault at {:.1} s, detected {}, impact over {}",
            o.onset,
            secs(o.detected.as_ref().map(|d| d.0)),
            secs(o.impact_end)
        )
    };
    document(&[
        (
            &title("Client requests failed"),
            "drill time (s)",
            "% of requests",
            vec![Series { name: "failed %", points: failed }, Series { name: "served by v2 %", points: v2 }],
        ),
        (
            &title("Client latency"),
            "drill time (s)",
            "p99 ms (0.5 s buckets)",
            vec![Series { name: "p99 ms", points: p99 }],
        ),
    ])
}

pub fn json(o: &Outcome) -> serde_json::Value {
    json!({
        "drill": o.name,
        "onset_s": o.onset,
        "detected_by": o.detected.as_ref().map(|d| &d.1),
        "alerts_fired": o.fired(),
        "mttd_s": o.mttd(),
        "mitigated_by": o.mitigated.as_ref().map(|m| &m.1),
        "mitigation_s": o.mitigated.as_ref().map(|m| m.0 - o.onset),
        "mttm_s": o.mttm(),
        "recovered": o.recovered,
        "requests": o.sent,
        "failed_after_onset": o.failed_during,
        "slow_after_onset": o.slow_during,
        "unanswered": o.unanswered,
        "samples": {
            "captured": o.samples.captured,
            "sent": o.samples.sent,
            "failed": o.samples.failed,
            "dropped": o.samples.dropped,
            "unanswered": o.samples.unanswered,
            "received": o.samples.received,
        },
        "lost": o.lost(),
        "blast": o.blast,
        "p99_before_ms": o.p99_before_ms,
        "p99_during_ms": o.p99_during_ms,
    })
}

/// The postmortem draft's template: the sections of
/// docs/incident-response/postmortem-template.md, to be filled from a drill.
const POSTMORTEM: &str = include_str!("../templates/postmortem.md");

/// The postmortem template failed to render (a mistake in the template).
#[derive(Debug, thiserror::Error)]
#[error("the postmortem template (drill/templates/postmortem.md): {0}")]
pub struct TemplateError(#[from] minijinja::Error);

/// The draft: every section of the template, filled from the drill except the action items.
pub fn postmortem(o: &Outcome, spec: &Spec) -> Result<String, TemplateError> {
    let mut env = Environment::new();
    env.set_syntax(SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build()?);
    // A name the template uses but the context lacks is an error, not an empty string.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_template("postmortem.md", POSTMORTEM)?;
    let detected_by = o.detected.as_ref().map_or("nothing (no expected alert reached the pager)", |d| d.1.as_str());
    let mitigated_by = o.mitigated.as_ref().map_or("nothing acted within the drill", |m| m.1.as_str());
    let s = o.samples;
    let notifications: Vec<Value> = o
        .notifications
        .iter()
        .map(|(t, receiver, alerts)| context! { t => format!("{t:.1}"), receiver, alerts })
        .collect();
    let alerts: Vec<Value> = o.alerts.iter().map(|(name, labels, state)| context! { name, labels, state }).collect();
    let mut rows: Vec<(f64, String)> = o.events.clone();
    rows.extend(o.notifications.iter().map(|(t, r, n)| (*t, format!("notification to {r}: {n}"))));
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let timeline: Vec<Value> = rows
        .iter()
        .map(|(t, what)| context! { utc => utc(o.started_unix + t), t => format!("{t:.1}"), what })
        .collect();
    let ctx = context! {
        name => o.name.as_str(),
        title => o.title.as_str(),
        severity => spec.severity,
        date => date(o.started_unix),
        time_scale => TIME_SCALE,
        mttd => secs(o.mttd()),
        mttm => secs(o.mttm()),
        detected_in => o.mttd().map(|d| format!("{d:.1} s")),
        over_in => o.mttm().map(|d| format!("{d:.1} s")),
        detected_by,
        mitigated_by,
        resolved_by => capitalized(mitigated_by),
        mitigation => o.mitigated.as_ref().map(|m| format!("{:.1} s", m.0 - o.onset)),
        trigger => spec.trigger,
        root_cause => spec.root_cause,
        playbook => spec.playbook,
        failed => o.failed_during,
        slow => o.slow_during,
        after_onset => o.records.iter().filter(|r| r.t >= o.onset).count(),
        unanswered => o.unanswered,
        sent => o.sent,
        slo_ms => o.slo_latency_ms,
        p99_before => format!("{:.1}", o.p99_before_ms),
        p99_during => format!("{:.1}", o.p99_during_ms),
        captured => s.captured.to_string(),
        received => s.received.to_string(),
        samples_failed => s.failed.to_string(),
        dropped => s.dropped.to_string(),
        samples_sent => s.sent.to_string(),
        samples_unanswered => s.unanswered.to_string(),
        unanswered_stored => s.unanswered_stored().to_string(),
        lost => o.lost().to_string(),
        nothing_lost => o.lost() == 0.0,
        lucky => o.blast.lucky(),
        recovered => o.recovered,
        expects_detection => o.expects_detection,
        notifications,
        alerts,
        onset => format!("{:.1}", o.onset),
        timeline,
    };
    Ok(env.get_template("postmortem.md")?.render(ctx)?)
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// docs/drills.md's table.
pub fn summary(outcomes: &[Outcome]) -> String {
    let mut m = String::new();
    let _ = writeln!(
        m,
        "| drill | detected by | MTTD | mitigated by | MTTM | failed requests | slow requests | lost | alerts that fired |"
    );
    let _ = writeln!(m, "|---|---|---:|---|---:|---:|---:|---:|---|");
    for o in outcomes {
        let detected = o
            .detected
            .as_ref()
            .map_or(if o.expects_detection { "not detected" } else { "nothing can alert (as drilled)" }, |d| {
                d.1.as_str()
            });
        let _ = writeln!(
            m,
            "| [{}](drills/{}/postmortem.md) | {} | {} | {} | {} | {} | {} | {} | {} |",
            o.name,
            o.name,
            detected,
            secs(o.mttd()),
            o.mitigated.as_ref().map_or("—", |x| x.1.as_str()),
            secs(o.mttm()),
            o.failed_during,
            o.slow_during,
            o.lost(),
            o.fired().join(", ")
        );
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;
    use crate::types::tests::{outcome, rec};
    use crate::types::{Blast, Samples};

    /// 2026-12-03 17:36:42.5 UTC.
    const STARTED: f64 = 1_796_319_402.5;

    /// A canary drill as it ran: detected, mitigated by the guard, nothing lost.
    fn canary() -> Outcome {
        let mut o = outcome();
        o.started_unix = STARTED;
        o.detected = Some((13.34, "SwitchyardGuardTookVersionOut".into(), "ticket".into()));
        o.mitigated = Some((10.52, "the filter's guard took mlp/v2 out of the split (automatic)".into()));
        o.impact_end = Some(10.49);
        // Every fifth request goes to the canary, v2; the one that failed after the onset too.
        o.records = (0..100)
            .map(|i| {
                let r = rec(f64::from(i) * 0.2, if i == 50 { 503 } else { 200 }, 4.0);
                if i % 5 == 0 { Rec { version: "v2".into(), ..r } } else { r }
            })
            .collect();
        o.blast = Blast::of(&o.records, o.onset, o.slo_latency_ms);
        o.sent = 100;
        o.failed_during = 8;
        o.samples = Samples { captured: 79.0, sent: 79.0, received: 79.0, ..Samples::default() };
        o.p99_before_ms = 18.26;
        o.p99_during_ms = 18.14;
        o.events = vec![
            (0.0, "steady traffic: 60 req/s to mlp (v1 80 %, v2 20 %) through Envoy".into()),
            (10.0, "fault: Envoy's fault filter answers 503 to every request routed to mlp-v2".into()),
            (10.52, "mitigated: the filter's guard took mlp/v2 out of the split (automatic)".into()),
            (13.36, "detected: SwitchyardGuardTookVersionOut at the pager (ticket)".into()),
            (16.6, "traffic stopped".into()),
        ];
        o.notifications = vec![
            (13.34, "ticket".into(), "firing: SwitchyardGuardTookVersionOut".into()),
            (15.0, "ticket".into(), "firing: SwitchyardCanaryWorseThanStable".into()),
            (16.0, "ticket".into(), "resolved: SwitchyardCanaryWorseThanStable".into()),
        ];
        o.alerts = vec![(
            "SwitchyardGuardTookVersionOut".into(),
            "model=mlp, severity=ticket, version=v2".into(),
            "firing".into(),
        )];
        o
    }

    /// Alerting blind, traffic still failing at the end, a sample and a request lost.
    fn blind() -> Outcome {
        let mut o = outcome();
        o.name = "prometheus-down".into();
        o.title = "Prometheus is down, then the canary fails".into();
        o.started_unix = 951_782_400.0 - 5.04;
        o.expects_detection = false;
        o.recovered = false;
        o.impact_end = Some(40.0);
        o.records = vec![rec(9.0, 200, 3.0), rec(12.0, 0, 120_000.0), rec(40.0, 503, 1.0)];
        o.blast = Blast::of(&o.records, o.onset, o.slo_latency_ms);
        o.sent = 3;
        o.failed_during = 2;
        o.slow_during = 1;
        o.unanswered = 1;
        o.samples = Samples { captured: 10.0, sent: 8.0, failed: 1.0, received: 8.0, ..Samples::default() };
        o.events = vec![(0.0, "steady traffic".into()), (10.0, "fault: Prometheus stopped".into())];
        o
    }

    /// The drafts and the table keep their sections and format: these files are what the
    /// `writeln!` code this template replaced wrote for the same outcomes.
    #[test]
    fn drafts_and_table_keep_their_format() {
        let drafts = [
            (
                postmortem(&canary(), &catalog::CANARY_5XX).unwrap(),
                include_str!("../testdata/postmortem-canary-5xx.md"),
            ),
            (
                postmortem(&blind(), &catalog::PROMETHEUS_DOWN).unwrap(),
                include_str!("../testdata/postmortem-prometheus-down.md"),
            ),
        ];
        for (got, want) in drafts {
            for (n, (g, w)) in got.lines().zip(want.lines()).enumerate() {
                assert_eq!(g, w, "line {}", n + 1);
            }
            assert_eq!(got, want);
        }
        assert_eq!(summary(&[canary(), blind()]), include_str!("../testdata/summary.md"));
    }

    #[test]
    fn the_draft_has_the_templates_sections_in_order() {
        let headings = |text: &str| -> Vec<String> {
            text.lines().filter(|l| l.starts_with("## ") || l.starts_with("### ")).map(str::to_owned).collect()
        };
        let template = include_str!("../../docs/incident-response/postmortem-template.md");
        assert_eq!(headings(&postmortem(&blind(), &catalog::PROMETHEUS_DOWN).unwrap()), headings(template));
    }

    #[test]
    fn dates_and_times_in_utc() {
        assert_eq!(date(0.0), "1970-01-01");
        assert_eq!(date(STARTED), "2026-12-03");
        assert_eq!(date(1_709_251_199.0), "2024-02-29");
        assert_eq!(date(1_709_251_200.0), "2024-03-01");
        assert_eq!(date(4_107_585_600.0), "2100-03-01", "2100 is no leap year");
        assert_eq!(utc(STARTED), "17:36:42.5");
        assert_eq!(utc(STARTED + 0.04), "17:36:42.5");
        assert_eq!(utc(STARTED + 0.06), "17:36:42.6");
        assert_eq!(utc(1_709_251_199.0), "23:59:59.0");
    }

    #[test]
    fn a_table_row_per_drill_with_its_figures() {
        let table = summary(&[canary()]);
        let row = table.lines().nth(2).unwrap();
        let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
        assert_eq!(cells[0], "[canary-5xx](drills/canary-5xx/postmortem.md)");
        assert_eq!(
            cells[2..],
            [
                "3.3 s",
                "the filter's guard took mlp/v2 out of the split (automatic)",
                "0.5 s",
                "8",
                "0",
                "0",
                "SwitchyardCanaryWorseThanStable, SwitchyardGuardTookVersionOut"
            ]
        );
        let mut o = blind();
        o.expects_detection = true;
        assert!(summary(&[o]).contains("| not detected | — |"));
    }
}
