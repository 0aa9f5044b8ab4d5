//! What a drill leaves behind: a postmortem draft with the template's sections
//! (docs/incident-response/postmortem-template.md), a chart of the incident, the figures as
//! JSON, and the summary table of docs/drills.md.

use std::fmt::Write as _;

use serde_json::json;
use switchyard_load::plot::{Series, document};

use crate::{Outcome, Rec, Spec, TIME_SCALE};

/// Width of the chart's buckets, seconds.
const BUCKET: f64 = 0.5;

/// `YYYY-MM-DD` of a Unix time (the proleptic Gregorian calendar, days from 1970-01-01).
fn date(unix: f64) -> String {
    let days = (unix / 86_400.0).floor() as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `HH:MM:SS.s` of a Unix time.
fn utc(unix: f64) -> String {
    let day = unix.rem_euclid(86_400.0);
    let (h, min) = ((day / 3600.0) as u64, ((day % 3600.0) / 60.0) as u64);
    format!("{h:02}:{min:02}:{:04.1}", day % 60.0)
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
        "samples": {"captured": o.samples[0], "sent": o.samples[1], "failed": o.samples[2], "dropped": o.samples[3], "received": o.received},
        "lost": o.lost(),
        "p99_before_ms": o.p99_before_ms,
        "p99_during_ms": o.p99_during_ms,
    })
}

/// The draft: every section of the template, filled from the drill except the action items.
pub fn postmortem(o: &Outcome, spec: &Spec) -> String {
    let mut m = String::new();
    let (mttd, mttm) = (secs(o.mttd()), secs(o.mttm()));
    let detected_by = o.detected.as_ref().map_or("nothing (no expected alert reached the pager)", |d| d.1.as_str());
    let mitigated_by = o.mitigated.as_ref().map_or("nothing acted within the drill", |m| m.1.as_str());
    let _ = writeln!(m, "# Postmortem: {} (drill `{}`)\n", o.title, o.name);
    let _ = writeln!(m, "- Status: draft, written by `switchyard-drill run {}`", o.name);
    let _ = writeln!(m, "- Severity: {} (docs/incident-response/README.md#severity-levels)", spec.severity);
    let _ = writeln!(
        m,
        "- Date: {} (a drill on the local stack; rules on drill time, every window ÷ {TIME_SCALE})",
        date(o.started_unix)
    );
    let _ = writeln!(m, "- Authors: switchyard-drill; incident commander: the drill");
    let _ = writeln!(m, "- Duration (onset to the end of client impact): {mttm}");
    let _ = writeln!(m, "- MTTD: {mttd} ({detected_by}); MTTM: {mttm} ({mitigated_by})\n");

    let _ = writeln!(m, "## Summary\n");
    let _ = writeln!(
        m,
        "{} {} reached the pager {mttd} after the onset; {}. Clients saw {} failed and {} slow requests of the {} sent after the onset; {} went unanswered.\n",
        spec.trigger,
        detected_by,
        mitigated_by,
        o.failed_during,
        o.slow_during,
        o.records.iter().filter(|r| r.t >= o.onset).count(),
        o.unanswered
    );
    let _ = writeln!(m, "## Impact\n");
    let _ = writeln!(m, "| measure | value |\n|---|---:|");
    let _ = writeln!(m, "| requests sent during the drill | {} |", o.sent);
    let _ = writeln!(m, "| failed after the onset (non-2xx or no answer) | {} |", o.failed_during);
    let _ =
        writeln!(m, "| answered after the onset, slower than the SLO ({} ms) | {} |", o.slo_latency_ms, o.slow_during);
    let _ = writeln!(m, "| unanswered (lost) | {} |", o.unanswered);
    let _ = writeln!(m, "| client p99 before the fault (5 s) | {:.1} ms |", o.p99_before_ms);
    let _ = writeln!(m, "| client p99 from the onset to 1 s past the impact | {:.1} ms |", o.p99_during_ms);
    let [captured, sent, failed, dropped] = o.samples;
    let _ = writeln!(
        m,
        "| payload samples captured = in the collector's file + failed + dropped | {captured} = {} + {failed} + {dropped} |",
        o.received
    );
    let _ = writeln!(m, "| payload samples the filter counted as sent | {sent} |");
    let _ = writeln!(m, "| lost (unanswered + samples unaccounted) | {} |\n", o.lost());
    let _ = writeln!(m, "![error rate and latency across the incident](timeline.svg)\n");
    let _ = writeln!(m, "## Root causes\n\n{}\n", spec.root_cause);
    let _ = writeln!(m, "## Trigger\n\n{}\n", spec.trigger);
    let _ = writeln!(m, "## Resolution\n");
    let _ = writeln!(
        m,
        "{}{} Client-visible impact ended {mttm} after the onset{}. Playbook: docs/incident-response/playbooks/{}.\n",
        capitalized(mitigated_by),
        o.mitigated.as_ref().map_or(String::new(), |x| format!(", {:.1} s after the onset.", x.0 - o.onset)),
        if o.recovered { "" } else { " — NOT RECOVERED by the end of the drill" },
        spec.playbook
    );
    let _ = writeln!(m, "## Detection\n");
    let _ = writeln!(
        m,
        "First expected alert at the pager: **{detected_by}**, {mttd} after the onset. Every notification after the onset:\n"
    );
    let _ = writeln!(m, "| drill time | receiver | alerts |\n|---:|---|---|");
    for (t, receiver, names) in &o.notifications {
        let _ = writeln!(m, "| {t:.1} s | {receiver} | {names} |");
    }
    let _ = writeln!(m, "\nAlerts Prometheus held at the end of the drill:\n");
    let _ = writeln!(m, "| alert | labels | state |\n|---|---|---|");
    for (name, labels, state) in &o.alerts {
        let _ = writeln!(m, "| {name} | {labels} | {state} |");
    }
    let _ = writeln!(m, "\n## Action items\n");
    let _ = writeln!(m, "| Action | Type | Owner | Tracking |\n|---|---|---|---|\n|  |  |  |  |\n");
    let _ = writeln!(m, "## Lessons learned\n");
    let _ = writeln!(m, "### What went well\n");
    if let Some(d) = o.mttd() {
        let _ = writeln!(m, "- Detected in {d:.1} s by {detected_by}.");
    }
    if let Some(x) = o.mttm() {
        let _ = writeln!(m, "- Client impact over in {x:.1} s ({mitigated_by}).");
    }
    if o.lost() == 0.0 {
        let _ = writeln!(m, "- Nothing lost: every request answered, every sample accounted for.");
    }
    let _ = writeln!(m, "\n### What went wrong\n");
    let _ = writeln!(
        m,
        "- {} requests failed and {} were slower than the SLO before the mitigation acted.",
        o.failed_during, o.slow_during
    );
    if !o.expects_detection {
        let _ = writeln!(
            m,
            "- Alerting was blind: with Prometheus down no alert could fire, and no alert watches Prometheus itself."
        );
    } else if o.detected.is_none() {
        let _ = writeln!(m, "- No expected alert reached the pager within the drill.");
    }
    if !o.recovered {
        let _ = writeln!(m, "- Traffic was still failing at the end of the drill.");
    }
    let _ = writeln!(m, "\n### Where we got lucky\n");
    let _ = writeln!(
        m,
        "- The fault hit the canary only (20 % of the traffic), with a healthy stable version to fall back to.\n"
    );
    let _ = writeln!(m, "## Timeline\n");
    let _ = writeln!(m, "The fault at +{:.1} s (seconds since the drill's traffic started).\n", o.onset);
    let _ = writeln!(m, "| Time (UTC) | Event |\n|---|---|");
    let mut rows: Vec<(f64, String)> = o.events.clone();
    rows.extend(o.notifications.iter().map(|(t, r, n)| (*t, format!("notification to {r}: {n}"))));
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (t, what) in rows {
        let _ = writeln!(m, "| {} (+{t:.1} s) | {what} |", utc(o.started_unix + t));
    }
    m
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

    /// 2026-12-03 17:36:42.5 UTC.
    const STARTED: f64 = 1_796_319_402.5;

    /// A canary drill as it ran: detected, mitigated by the guard, nothing lost.
    fn canary() -> Outcome {
        let mut o = outcome();
        o.started_unix = STARTED;
        o.detected = Some((13.34, "SwitchyardGuardTookVersionOut".into(), "ticket".into()));
        o.mitigated = Some((10.52, "the filter's guard took mlp/v2 out of the split (automatic)".into()));
        o.impact_end = Some(10.49);
        o.records = (0..100).map(|i| rec(f64::from(i) * 0.2, if i == 51 { 503 } else { 200 }, 4.0)).collect();
        o.sent = 100;
        o.failed_during = 8;
        o.samples = [79.0, 79.0, 0.0, 0.0];
        o.received = 79.0;
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
        o.sent = 3;
        o.failed_during = 2;
        o.slow_during = 1;
        o.unanswered = 1;
        o.samples = [10.0, 8.0, 1.0, 0.0];
        o.received = 8.0;
        o.events = vec![(0.0, "steady traffic".into()), (10.0, "fault: Prometheus stopped".into())];
        o
    }

    /// The drafts and the table keep their sections and format: these files are what the
    /// `writeln!` code this template replaced wrote for the same outcomes.
    #[test]
    fn drafts_and_table_keep_their_format() {
        let drafts = [
            (postmortem(&canary(), &catalog::CANARY_5XX), include_str!("../testdata/postmortem-canary-5xx.md")),
            (
                postmortem(&blind(), &catalog::PROMETHEUS_DOWN),
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
        assert_eq!(headings(&postmortem(&blind(), &catalog::PROMETHEUS_DOWN)), headings(template));
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
