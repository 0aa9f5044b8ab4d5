//! A rollout's state lives in its status: the judge's [`State`] is rebuilt from the spec and
//! `status.progress` at every reconcile, and written back with what `kubectl get` shows.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use switchyard_rollout::judge::{Observation, Phase, State, Traffic};
use switchyard_rollout::spec::Spec;

use crate::crd::{Decision, ModelRollout, ModelRolloutStatus, Progress, TrafficStatus, VersionCounts};

/// The phase as the status shows it (Kubernetes' CamelCase).
pub fn phase_name(phase: &Phase) -> &'static str {
    match phase {
        Phase::Running => "Running",
        Phase::Paused => "Paused",
        Phase::Holding { .. } => "Holding",
        Phase::Promoted => "Promoted",
        Phase::Aborted { .. } => "Aborted",
    }
}

/// The judge's state of a rollout that has started (`None`: not yet, or its status was not
/// written by this operator).
pub fn state_of(r: &ModelRollout, spec: Spec) -> Option<State> {
    let st = r.status.as_ref()?;
    let p = st.progress.as_ref()?;
    let reason = || p.phase_reason.clone().unwrap_or_default();
    let phase = match st.phase.as_deref()? {
        "Running" => Phase::Running,
        "Paused" => Phase::Paused,
        "Holding" => Phase::Holding { reason: reason() },
        "Promoted" => Phase::Promoted,
        "Aborted" => Phase::Aborted { reason: reason() },
        _ => return None,
    };
    let last = st.last_decision.clone().unwrap_or_default();
    Some(State {
        spec,
        stable: p.stable.clone(),
        phase,
        step: st.step.unwrap_or(0) as usize,
        applied: p.applied.map(|a| a as usize),
        step_started_ms: p.step_started_ms,
        // A baseline that does not read (written by another version) restarts the step's
        // counting from zero: the judge then sees more requests, never fewer.
        baseline: serde_json::from_value(p.baseline.clone()).unwrap_or_default(),
        decision: last.decision,
        reason: last.reason,
        canary_was_allowed: p.canary_was_allowed,
    })
}

fn traffic_status(t: Traffic) -> TrafficStatus {
    match t {
        Traffic::Weight(w) => TrafficStatus { weight: w, ab: false, shadow_percent: None },
        Traffic::Ab => TrafficStatus { weight: 0, ab: true, shadow_percent: None },
        Traffic::Shadow(p) => TrafficStatus { weight: 0, ab: false, shadow_percent: Some(p) },
    }
}

/// The traffic a state asks for, in words: `v2 at 20%, v1 at 80%`.
pub fn traffic_text(state: &State) -> String {
    let (canary, stable) = (&state.spec.canary, &state.stable);
    match state.traffic() {
        Traffic::Weight(w) => format!("{canary} at {w}%, {stable} at {}%", 100 - w.min(100)),
        Traffic::Ab => format!("{canary} only by the override header, {stable} at 100%"),
        Traffic::Shadow(p) => format!("{canary} shadowing {p}% of requests, {stable} at 100%"),
    }
}

/// RFC 3339, as Kubernetes writes times.
pub fn rfc3339(ms: u64) -> String {
    Timestamp::from_millisecond(i64::try_from(ms).unwrap_or(i64::MAX)).map(|t| t.to_string()).unwrap_or_default()
}

/// One condition, keeping the transition time of `old` when its status did not change.
pub fn condition(
    old: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now_ms: u64,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let since = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| {
            Time(Timestamp::from_millisecond(i64::try_from(now_ms).unwrap_or(i64::MAX)).unwrap_or_default())
        });
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// The status of a rollout in `state`, with the counts of the step so far when the canary was
/// just observed; a decision not seen before is stamped `now_ms`.
pub fn status_of(r: &ModelRollout, state: &State, obs: Option<&Observation>, now_ms: u64) -> ModelRolloutStatus {
    let old = r.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    let generation = r.metadata.generation;
    let counts = |o: &Observation, canary: bool| {
        let (now, base) =
            if canary { (&o.canary, &state.baseline.canary) } else { (&o.stable, &state.baseline.stable) };
        let c = now.since(base);
        VersionCounts { requests: c.total, errors: c.bad }
    };
    let reason = match &state.phase {
        Phase::Holding { reason } | Phase::Aborted { reason } => Some(reason.clone()),
        _ => None,
    };
    let progressing = condition(
        old,
        "Progressing",
        state.phase == Phase::Running,
        phase_name(&state.phase),
        &state.reason,
        generation,
        now_ms,
    );
    let ready = condition(
        old,
        "Ready",
        true,
        "TrafficPolicyCarriesIt",
        "the spec is valid and its TrafficPolicy carries the rollout's traffic",
        generation,
        now_ms,
    );
    let previous = r.status.as_ref().and_then(|s| s.last_decision.as_ref());
    let time = match previous {
        Some(p) if p.decision == state.decision && p.reason == state.reason => p.time.clone(),
        _ => rfc3339(now_ms),
    };
    ModelRolloutStatus {
        observed_generation: generation,
        phase: Some(phase_name(&state.phase).into()),
        step: Some(u32::try_from(state.step).unwrap_or(u32::MAX)),
        traffic: Some(traffic_status(state.traffic())),
        last_decision: Some(Decision {
            decision: state.decision.clone(),
            reason: state.reason.clone(),
            time,
            canary: obs.map(|o| counts(o, true)).or_else(|| previous.and_then(|p| p.canary.clone())),
            stable: obs.map(|o| counts(o, false)).or_else(|| previous.and_then(|p| p.stable.clone())),
        }),
        conditions: vec![ready, progressing],
        progress: Some(Progress {
            stable: state.stable.clone(),
            applied: state.applied.map(|a| u32::try_from(a).unwrap_or(u32::MAX)),
            step_started_ms: state.step_started_ms,
            phase_reason: reason,
            canary_was_allowed: state.canary_was_allowed,
            baseline: serde_json::to_value(&state.baseline).unwrap_or_default(),
        }),
    }
}

/// The status of a rollout that cannot run: `reason` a CamelCase word, `message` every
/// problem. Progress already made is kept (a TrafficPolicy deleted mid-way comes back).
pub fn not_ready(r: &ModelRollout, reason: &str, message: &str, now_ms: u64) -> ModelRolloutStatus {
    let mut st = r.status.clone().unwrap_or_default();
    let generation = r.metadata.generation;
    let ready = condition(&st.conditions, "Ready", false, reason, message, generation, now_ms);
    let progressing = condition(&st.conditions, "Progressing", false, reason, message, generation, now_ms);
    if st.progress.is_none() {
        st.phase = Some(if reason == "InvalidSpec" { "Invalid" } else { "Pending" }.into());
    }
    st.observed_generation = generation;
    st.conditions = vec![ready, progressing];
    st
}

/// The name a rollout's events and logs use.
pub fn describe(r: &ModelRollout) -> String {
    format!("{}/{}", r.namespace().unwrap_or_default(), r.name_any())
}
