//! One drill from start to end: the stack, steady traffic, the fault, the wait for the pager
//! and the mitigation, the figures, and what the drill leaves behind.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use switchyard_contract::process::pager::WATCHDOG_ALERT;

use anyhow::Context;
use switchyard_testkit::metric_sum;
use switchyard_testkit::prom::Prometheus;

use crate::env::Spec;
use crate::types::{Blast, Impact, Outcome, Samples, Timing};
use crate::{alerts, env, report};

/// Runs one drill and writes its postmortem draft and chart under `out/<name>/`.
pub fn run(spec: &Spec, out: &Path, timing: &Timing) -> anyhow::Result<Outcome> {
    println!("drill {}: {}", spec.name, spec.title);
    let mut env = env::start_env(spec)?;
    env.start_clock();
    // On the slow models: half of v1's capacity (v1 takes 80 % of the traffic).
    let rate = env.capacity.map_or(60.0, |c| 0.5 * c / 0.8);
    env.start_traffic(rate)?;
    let measured = env.capacity.map_or(String::new(), |c| format!("; one backend's measured capacity {c:.0} req/s"));
    env.event(format!("steady traffic: {rate:.0} req/s to mlp (v1 80 %, v2 20 %) through Envoy{measured}"));
    std::thread::sleep(timing.warmup);
    // The Watchdog fires always (the dead man's switch): anything else is noise before the fault.
    let quiet: Vec<String> = env
        .prometheus
        .iter()
        .flat_map(Prometheus::alerts)
        .map(|a| a.name().to_owned())
        .filter(|a| a != WATCHDOG_ALERT)
        .collect();
    if !quiet.is_empty() {
        env.event(format!("before the fault, alerts already pending or firing: {}", quiet.join(", ")));
    }
    env.mark_onset();
    let what = (spec.inject)(&mut env)?;
    let onset = env.onset;
    env.event(format!("fault: {what}"));

    let (mut detected, mut mitigated) = (None, None);
    let deadline = Instant::now() + timing.deadline;
    let onset_unix = env.unix(onset);
    while Instant::now() < deadline {
        if detected.is_none()
            && let Some((at, name, receiver)) = alerts::first_page(&env.webhook.received(), spec.expect, onset_unix)
        {
            let t = onset + (at - onset_unix);
            env.event(format!("detected: {name} at the pager ({receiver})"));
            detected = Some((t, name, receiver));
        }
        if mitigated.is_none()
            && let Some(how) = (spec.mitigated)(&mut env)
        {
            env.event(format!("mitigated: {how}"));
            mitigated = Some((env.now(), how));
        }
        if (detected.is_some() || spec.expect.is_empty())
            // A second past the tail: requests already in flight when the mitigation acted
            // (a surge's last ones) are not judged as the traffic after it.
            && mitigated.as_ref().is_some_and(|(t, _)| env.now() - t > timing.healthy_tail.as_secs_f64() + 1.0)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let records = env.finish_traffic()?;
    env.ended.store(true, Ordering::Relaxed);
    env.event("traffic stopped");
    // The samples in the filter's queue go out within a tick or two.
    std::thread::sleep(Duration::from_secs(2));
    let text = env.stack.prometheus();
    let s = |result: &str| metric_sum(&text, switchyard_contract::metrics::SAMPLES_TOTAL.name, &[("result", result)]);
    // Lines a second writer appended broken (samples-corrupted) are no samples.
    let received = std::fs::read_to_string(&env.stack.samples)
        .unwrap_or_default()
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        .count() as f64;
    let samples = Samples {
        captured: s("captured"),
        sent: s("sent"),
        failed: s("failed"),
        dropped: s("dropped"),
        unanswered: s("unanswered"),
        received,
    };
    let alerts = env
        .prometheus
        .iter()
        .flat_map(Prometheus::alerts)
        .map(|a| {
            let labels: Vec<String> =
                a.labels.iter().filter(|(k, _)| *k != "alertname").map(|(k, v)| format!("{k}={v}")).collect();
            (a.name().to_owned(), labels.join(", "), a.state.clone())
        })
        .collect();
    let notifications = alerts::since(&env.webhook.received(), onset_unix, onset);

    let slo = spec.slo_latency_ms();
    let impact = Impact::of(&records, onset, slo, timing.healthy_tail);
    let outcome = Outcome {
        name: spec.name.to_owned(),
        title: spec.title.to_owned(),
        onset,
        expects_detection: !spec.expect.is_empty(),
        detected,
        mitigated,
        impact_end: impact.end,
        recovered: impact.recovered,
        failed_during: impact.failed,
        slow_during: impact.slow,
        slo_latency_ms: slo,
        sent: records.len(),
        unanswered: impact.unanswered,
        samples,
        blast: Blast::of(&records, onset, slo),
        events: env.events.clone(),
        alerts,
        notifications,
        p99_before_ms: impact.p99_before_ms,
        p99_during_ms: impact.p99_during_ms,
        started_unix: env.started_unix,
        records,
    };
    let dir = out.join(spec.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(dir.join("timeline.svg"), report::chart(&outcome))?;
    std::fs::write(dir.join("postmortem.md"), report::postmortem(&outcome, spec)?)?;
    std::fs::write(dir.join("outcome.json"), serde_json::to_vec_pretty(&report::json(&outcome))?)?;
    println!("  -> {}", dir.join("postmortem.md").display());
    Ok(outcome)
}

/// Where drills write by default.
pub fn default_out() -> PathBuf {
    switchyard_testkit::root().join("target/drills")
}
