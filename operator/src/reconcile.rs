//! The two reconcilers. A `ModelRollout` is judged and moved on (the rollout controller's own
//! judge), its traffic written into its TrafficPolicy's carrier, its state saved in its status
//! and every decision told as an Event. A `TrafficPolicy` is checked by the filter's parser and
//! written into its carrier with the traffic of the rollouts that name it.
//!
//! Order within one reconcile: decide, act (the carrier; idempotent), persist (the status),
//! tell (Events). A crash between acting and persisting repeats the act, which then finds the
//! carrier already as wanted; nothing is acted on twice.
//!
//! A carrier holds the traffic of every rollout on its policy, and three paths write it (a
//! rollout's step, a deletion, the policy's own reconcile), concurrently. Each holds its
//! policy's lock from reading the rollouts to writing the rollout's status, and reads them from
//! the API server, not the watch's cache: a write computed from a cache that has not seen
//! another rollout's last status would put that rollout's old traffic back (an aborted canary
//! served again until the next reconcile).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizing, finalizer};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use switchyard_deploy::Policy;
use switchyard_rollout::judge::{Observation, Phase, State, Tick};
use switchyard_rollout::observe::{OBSERVE_TIMEOUT, observe};
use switchyard_rollout::store::Target as Metrics;

use crate::carrier::{InForce, put_in_force};
use crate::crd::{ModelRollout, ModelRolloutSpec, ModelRolloutStatus, TrafficPolicy, TrafficPolicyStatus};
use crate::error::Error;
use crate::status::{condition, describe, not_ready, state_of, status_of, traffic_text};
use crate::{FINALIZER, MANAGER};

/// How soon a rollout that cannot run yet (no TrafficPolicy, a policy without its model) is
/// looked at again; a change to it is seen at once.
pub const RETRY: Duration = Duration::from_secs(30);

/// Where the judge's observations come from: the filter's metrics through Prometheus in a
/// cluster; recorded observations in tests.
pub trait Observe: Send + Sync + 'static {
    fn observe<'a>(&'a self, state: &'a State) -> BoxFuture<'a, Result<Observation, switchyard_rollout::Error>>;
}

/// The filter's counters as Prometheus federates them (every gateway pod's), and the
/// collector's comparisons, read as the rollout controller reads them.
pub struct FromMetrics(pub Metrics);

impl Observe for FromMetrics {
    fn observe<'a>(&'a self, state: &'a State) -> BoxFuture<'a, Result<Observation, switchyard_rollout::Error>> {
        Box::pin(async move {
            tokio::time::timeout(OBSERVE_TIMEOUT, observe(&self.0, state)).await.map_err(|_| {
                switchyard_rollout::Error::MetricsSilent { addr: self.0.envoy_admin.clone(), within: OBSERVE_TIMEOUT }
            })?
        })
    }
}

/// What both reconcilers share.
pub struct Context {
    pub client: Client,
    pub observer: Arc<dyn Observe>,
    /// Every ModelRollout, as the controller's watch keeps them.
    pub rollouts: Store<ModelRollout>,
    /// Who writes the Events (the controller and this replica).
    pub reporter: Reporter,
    /// How often a running rollout is judged.
    pub interval: Duration,
    /// Milliseconds since the epoch (tests set it).
    pub clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// One lock per TrafficPolicy (namespace, name): its carrier's writers take turns.
    pub carriers: CarrierLocks,
}

/// A TrafficPolicy by namespace and name.
type PolicyKey = (String, String);

/// See the module's comment.
#[derive(Default)]
pub struct CarrierLocks(std::sync::Mutex<std::collections::HashMap<PolicyKey, Arc<tokio::sync::Mutex<()>>>>);

impl CarrierLocks {
    async fn hold(&self, ns: &str, policy: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut all = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            all.entry((ns.to_owned(), policy.to_owned())).or_default().clone()
        };
        lock.lock_owned().await
    }
}

impl Context {
    fn now(&self) -> u64 {
        (self.clock)()
    }

    /// Every rollout of namespace `ns` as the API server has it now (under the carrier's lock),
    /// with `r` as given (its status just decided) in place of its stored self.
    async fn rollouts_with(&self, ns: &str, r: Option<&ModelRollout>) -> Result<Vec<ModelRollout>, Error> {
        let api: Api<ModelRollout> = Api::namespaced(self.client.clone(), ns);
        let mut all: Vec<ModelRollout> = api
            .list(&kube::api::ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|o| r.is_none_or(|r| o.namespace() != r.namespace() || o.name_any() != r.name_any()))
            .collect();
        all.extend(r.cloned());
        Ok(all)
    }

    /// Another rollout that has started and not ended on `r`'s TrafficPolicy and model.
    fn running_on(&self, r: &ModelRollout) -> Option<String> {
        let active = ["Running", "Paused", "Holding"];
        self.rollouts
            .state()
            .iter()
            .filter(|o| o.namespace() == r.namespace() && o.name_any() != r.name_any())
            .filter(|o| o.spec.traffic_policy == r.spec.traffic_policy && o.spec.model == r.spec.model)
            .filter(|o| o.metadata.deletion_timestamp.is_none())
            .find(|o| o.status.as_ref().and_then(|s| s.phase.as_deref()).is_some_and(|p| active.contains(&p)))
            .map(|o| o.name_any())
    }

    async fn tell(&self, what: &impl Resource<DynamicType = ()>, events: Vec<Event>) {
        let reference = what.object_ref(&());
        // A recorder per Event: kube's recorder folds Events with the same reason into one
        // series (a patch keeping the first note), and every decision here has its own note.
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        for e in events {
            // An Event that cannot be written is logged, and the reconcile goes on: the
            // status, already written, is the record.
            if let Err(err) = recorder.publish(&e, &reference).await {
                tracing::warn!(reason = %e.reason, error = %err, "event not recorded");
            }
        }
    }
}

fn event(type_: EventType, reason: &str, action: &str, note: String) -> Event {
    Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: None }
}

/// The Event for the decision `state` just made.
fn decision_event(state: &State) -> Event {
    let (type_, reason) = match (state.decision.as_str(), &state.phase) {
        ("abort", Phase::Aborted { reason }) if reason.starts_with("the data-plane guard") => {
            (EventType::Warning, "GuardTripped")
        }
        ("abort", _) => (EventType::Warning, "Aborted"),
        ("promote", _) => (EventType::Normal, "Promoted"),
        ("advance", _) => (EventType::Normal, "Advanced"),
        ("hold", _) => (EventType::Normal, "Holding"),
        ("pause", _) => (EventType::Normal, "Paused"),
        ("resume", _) => (EventType::Normal, "Resumed"),
        ("apply", _) => (EventType::Normal, "StepApplied"),
        _ => (EventType::Normal, "Decided"),
    };
    event(type_, reason, &state.decision, state.reason.clone())
}

/// The commands a person gives through the spec: abort, promote, pause, and approving hold
/// points. Each acts once: the state remembers it.
fn commands(state: &mut State, spec: &ModelRolloutSpec, now: u64, events: &mut Vec<Event>) {
    if !state.phase.is_active() {
        return;
    }
    let done = if spec.abort {
        state.abort_by_hand("spec.abort is set").is_ok()
    } else if spec.promote {
        state.promote().is_ok()
    } else if spec.paused && state.phase == Phase::Running {
        state.pause().is_ok()
    } else if (!spec.paused && state.phase == Phase::Paused)
        || (matches!(state.phase, Phase::Holding { .. })
            && spec.approved_step.is_some_and(|a| a as usize >= state.step))
    {
        state.resume(now).is_ok()
    } else {
        false
    };
    if done {
        events.push(decision_event(state));
    }
}

async fn write_status(api: &Api<ModelRollout>, name: &str, status: &ModelRolloutStatus) -> Result<(), Error> {
    let body = json!({"apiVersion": ModelRollout::api_version(&()), "kind": ModelRollout::kind(&()), "status": status});
    api.patch_status(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&body)).await?;
    Ok(())
}

/// A rollout that cannot run as it stands: said in its status (and once as an Event).
async fn refuse(
    r: &ModelRollout,
    ctx: &Context,
    api: &Api<ModelRollout>,
    reason: &str,
    message: &str,
    retry: Option<Duration>,
) -> Result<Action, Error> {
    let status = not_ready(r, reason, message, ctx.now());
    if r.status.as_ref() != Some(&status) {
        let before = r.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready")).cloned();
        write_status(api, &r.name_any(), &status).await?;
        if before.is_none_or(|c| c.reason != reason || c.message != message) {
            ctx.tell(r, vec![event(EventType::Warning, reason, "Check", message.to_owned())]).await;
        }
    }
    Ok(retry.map_or_else(Action::await_change, Action::requeue))
}

/// The canary could not be observed (Prometheus or the collector unreachable): the status's
/// `Progressing` says so (once as a Warning Event), nothing else changes, and the reconcile
/// fails so that it is retried and counted.
async fn blind(
    r: &ModelRollout,
    ctx: &Context,
    api: &Api<ModelRollout>,
    e: switchyard_rollout::Error,
) -> Result<Action, Error> {
    let message = format!("the rollout holds where it is: {e}");
    if let Some(st) = r.status.as_ref().filter(|s| s.progress.is_some()) {
        let was = st.conditions.iter().find(|c| c.type_ == "Progressing").cloned();
        if was.as_ref().is_none_or(|c| c.reason != "MetricsUnavailable") {
            let mut next = st.clone();
            let progressing = condition(
                &st.conditions,
                "Progressing",
                false,
                "MetricsUnavailable",
                &message,
                r.metadata.generation,
                ctx.now(),
            );
            next.conditions.retain(|c| c.type_ != "Progressing");
            next.conditions.push(progressing);
            write_status(api, &r.name_any(), &next).await?;
            ctx.tell(r, vec![event(EventType::Warning, "MetricsUnavailable", "observe", message)]).await;
        }
    }
    Err(Error::Observe(e))
}

/// Reconciles one ModelRollout (the finalizer first: a rollout deleted mid-way gives its
/// traffic back before it goes).
pub async fn reconcile_rollout(r: Arc<ModelRollout>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = r.namespace().ok_or_else(|| Error::NoNamespace(r.name_any()))?;
    let api: Api<ModelRollout> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, r, |event| async {
        match event {
            Finalizing::Apply(r) => apply(&r, &ctx, &api).await,
            Finalizing::Cleanup(r) => cleanup(&r, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

async fn apply(r: &ModelRollout, ctx: &Context, api: &Api<ModelRollout>) -> Result<Action, Error> {
    let now = ctx.now();
    let ns = r.namespace().unwrap_or_default();
    let spec = match r.spec.to_spec() {
        Ok(spec) => spec,
        Err(e) => return refuse(r, ctx, api, "InvalidSpec", &e.to_string(), None).await,
    };
    let policies: Api<TrafficPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(tp) = policies.get_opt(&r.spec.traffic_policy).await? else {
        let why = format!("trafficpolicy/{} does not exist in {ns}", r.spec.traffic_policy);
        return refuse(r, ctx, api, "TrafficPolicyNotFound", &why, Some(RETRY)).await;
    };
    let base = match serde_json::to_string(&tp.spec.policy).map(Policy::parse) {
        Ok(Ok(policy)) => policy,
        Ok(Err(e)) => {
            let why = format!("trafficpolicy/{} is invalid: {}", tp.name_any(), e.0.join("; "));
            return refuse(r, ctx, api, "TrafficPolicyInvalid", &why, Some(RETRY)).await;
        }
        Err(e) => return Err(e.into()),
    };
    let mut events = Vec::new();
    let mut state = match state_of(r, spec.clone()) {
        Some(state) => state,
        None if let Some(other) = ctx.running_on(r) => {
            let why = format!(
                "modelrollout/{other} is rolling {} out on trafficpolicy/{}: one rollout per model at a time",
                r.spec.model,
                tp.name_any()
            );
            return refuse(r, ctx, api, "Busy", &why, Some(RETRY)).await;
        }
        None => match spec.plan(base.config()) {
            Err(problems) => return refuse(r, ctx, api, "NotRunnable", &problems.join("; "), Some(RETRY)).await,
            Ok(plan) => {
                let mut state = State::new(spec, plan.stable, now);
                state.canary_was_allowed = Some(plan.canary_was_allowed);
                let note = format!(
                    "{}/{} against {} in trafficpolicy/{}: {} steps",
                    state.spec.model,
                    state.spec.canary,
                    state.stable,
                    tp.name_any(),
                    state.spec.steps.len()
                );
                events.push(event(EventType::Normal, "Started", "start", note));
                state
            }
        },
    };
    commands(&mut state, &r.spec, now, &mut events);
    let mut seen = None;
    if state.phase.is_active() {
        let obs = match ctx.observer.observe(&state).await {
            Ok(obs) => obs,
            // No numbers is no evidence: the rollout holds where it is (the data-plane guard
            // still protects it), says why, and is tried again.
            Err(e) => return blind(r, ctx, api, e).await,
        };
        if state.tick(now, &obs) == Tick::Changed {
            events.push(decision_event(&state));
        }
        if state.phase == Phase::Running && state.applied != Some(state.step) {
            if let Tick::Apply(_) = state.tick(now, &obs) {
                state.started(now, obs.clone());
                state.decision = "apply".into();
                state.reason = format!("step {}: {} {}", state.step, state.spec.model, traffic_text(&state));
            }
            events.push(decision_event(&state));
        }
        seen = Some(obs);
    }
    let mut next = r.clone();
    next.status = Some(status_of(r, &state, seen.as_ref(), now));
    // Act: the carrier gets the traffic this state asks for; the lock until the status is saved.
    let _turn = ctx.carriers.hold(&ns, &tp.name_any()).await;
    let all = ctx.rollouts_with(&ns, Some(&next)).await?;
    let in_force = match put_in_force(&ctx.client, &tp, &all).await {
        Ok(f) => f,
        Err(e @ Error::CarrierMissing { .. }) => {
            return refuse(r, ctx, api, "CarrierMissing", &e.to_string(), Some(RETRY)).await;
        }
        Err(e) => return Err(e),
    };
    if let Some(status) = next.status.as_ref().filter(|s| r.status.as_ref() != Some(*s)) {
        write_status(api, &r.name_any(), status).await?;
    }
    if in_force.changed && events.is_empty() {
        // The carrier had drifted from what the rollout asks (edited by hand, or a restart
        // between acting and saving): mended.
        let note = format!("{} put back to {}", in_force.carrier, in_force.version);
        events.push(event(EventType::Normal, "TrafficMended", "apply", note));
    }
    ctx.tell(r, events).await;
    Ok(if state.phase.is_active() { Action::requeue(ctx.interval) } else { Action::await_change() })
}

/// A rollout deleted: its TrafficPolicy's carrier goes back to the policy without it. A policy
/// that is gone or invalid has nothing to give back to; the deletion goes on, said as a Warning.
async fn cleanup(r: &ModelRollout, ctx: &Context) -> Result<Action, Error> {
    let ns = r.namespace().unwrap_or_default();
    let policies: Api<TrafficPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(tp) = policies.get_opt(&r.spec.traffic_policy).await? else {
        return Ok(Action::await_change());
    };
    let _turn = ctx.carriers.hold(&ns, &tp.name_any()).await;
    let others: Vec<ModelRollout> = ctx
        .rollouts_with(&ns, None)
        .await?
        .into_iter()
        .filter(|o| o.namespace() != r.namespace() || o.name_any() != r.name_any())
        .collect();
    let e = match put_in_force(&ctx.client, &tp, &others).await {
        Ok(InForce { carrier, version, .. }) => event(
            EventType::Normal,
            "TrafficRestored",
            "delete",
            format!(
                "deleted: {carrier} has trafficpolicy/{}'s own traffic for {} (filter config {version})",
                tp.name_any(),
                r.spec.model
            ),
        ),
        Err(e @ (Error::InvalidPolicy(_) | Error::CarrierMissing { .. })) => event(
            EventType::Warning,
            "TrafficNotRestored",
            "delete",
            format!("deleted, but trafficpolicy/{} could not be put in force: {e}", tp.name_any()),
        ),
        Err(e) => return Err(e),
    };
    ctx.tell(r, vec![e]).await;
    tracing::info!(rollout = %describe(r), "deleted; traffic given back");
    Ok(Action::await_change())
}

/// Reconciles one TrafficPolicy: checked, written into its carrier, said in its status.
pub async fn reconcile_policy(tp: Arc<TrafficPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let now = ctx.now();
    let ns = tp.namespace().ok_or_else(|| Error::NoNamespace(tp.name_any()))?;
    let api: Api<TrafficPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    let old = tp.status.clone().unwrap_or_default();
    let generation = tp.metadata.generation;
    let turn = ctx.carriers.hold(&ns, &tp.name_any()).await;
    let result = match ctx.rollouts_with(&ns, None).await {
        Ok(all) => put_in_force(&ctx.client, &tp, &all).await,
        Err(e) => Err(e),
    };
    drop(turn);
    let mut st = TrafficPolicyStatus { observed_generation: generation, ..old.clone() };
    let c = &old.conditions;
    let mut events = Vec::new();
    let action = match &result {
        Ok(f) => {
            st.carrier = Some(f.carrier.clone());
            st.filter_config_version = Some(f.version.clone());
            st.problems = Vec::new();
            st.rollouts = f.rollouts.clone();
            let msg = format!("{} has filter config {}", f.carrier, f.version);
            st.conditions = vec![
                condition(c, "Valid", true, "Parsed", "the filter's parser accepts the policy", generation, now),
                condition(c, "Ready", true, "InForce", &msg, generation, now),
            ];
            if f.changed {
                events.push(event(EventType::Normal, "PolicyApplied", "apply", msg));
            }
            // Looked at again now and then: a carrier edited by hand is put back.
            Action::requeue(Duration::from_secs(300))
        }
        Err(Error::InvalidPolicy(problems)) => {
            st.problems = problems.clone();
            let msg = format!("{} problems; the carrier keeps the last valid policy", problems.len());
            st.conditions = vec![
                condition(c, "Valid", false, "InvalidPolicy", &problems.join("; "), generation, now),
                condition(c, "Ready", false, "InvalidPolicy", &msg, generation, now),
            ];
            if old.problems != *problems {
                events.push(event(EventType::Warning, "InvalidPolicy", "check", problems.join("; ")));
            }
            Action::await_change()
        }
        Err(e @ (Error::CarrierMissing { .. } | Error::Traffic(_))) => {
            let msg = e.to_string();
            let reason = if matches!(e, Error::Traffic(_)) { "RolloutTrafficInvalid" } else { "CarrierMissing" };
            st.conditions = vec![
                condition(c, "Valid", true, "Parsed", "the filter's parser accepts the policy", generation, now),
                condition(c, "Ready", false, reason, &msg, generation, now),
            ];
            if !old.conditions.iter().any(|c| c.type_ == "Ready" && c.reason == reason) {
                events.push(event(EventType::Warning, reason, "apply", msg));
            }
            Action::requeue(RETRY)
        }
        Err(_) => return result.map(|_| Action::await_change()),
    };
    if st != old {
        let body =
            json!({"apiVersion": TrafficPolicy::api_version(&()), "kind": TrafficPolicy::kind(&()), "status": st});
        api.patch_status(&tp.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&body)).await?;
    }
    ctx.tell(&*tp, events).await;
    Ok(action)
}

/// A failed reconcile is tried again after a pause (the controller's own queue keeps one
/// entry per object, so nothing piles up). The signature is kube's `Controller::run`'s.
#[allow(clippy::needless_pass_by_value)]
pub fn error_policy<K: Resource<DynamicType = ()>>(obj: Arc<K>, err: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(object = %obj.meta().name.clone().unwrap_or_default(), kind = err.kind(), error = %err, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}
