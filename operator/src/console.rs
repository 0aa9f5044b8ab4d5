//! The console in a cluster: the operator's admin listener serves the page the local controller
//! serves, read-only. Rollouts and policies come from the API server (a watch of each on every
//! replica, leader or not, so any pod answers); the model cards from Prometheus' federation of
//! the gateway pods, the collector and the drift monitor. Changes go through `kubectl`, so the
//! API server's RBAC and audit log stand behind each one: the page shows the command, and a
//! write to this API is refused with it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State as Shared};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use serde_json::{Value, json};
use switchyard_policy::Config;
use switchyard_rollout::console::{self, Sources};
use switchyard_rollout::view::Watch;

use crate::carrier::desired;
use crate::crd::{ModelRollout, TrafficPolicy};
use crate::status::{state_of, traffic_text};

/// The view is refreshed this often (the page polls as often).
const REFRESH: Duration = Duration::from_secs(1);
const ACTIVE: [&str; 3] = ["Running", "Paused", "Holding"];
/// The console's rollout commands, each a `kubectl patch` here.
const ACTIONS: [&str; 4] = ["pause", "resume", "promote", "abort"];

/// What the console reads, and where.
pub struct Console {
    pub namespace: String,
    /// The console's built files.
    pub dir: PathBuf,
    pub rollouts: Store<ModelRollout>,
    pub policies: Store<TrafficPolicy>,
    /// Prometheus, HOST:PORT, and the federation path of the gateway's job.
    pub prometheus: String,
    pub metrics_path: String,
    pub collector: Option<String>,
    pub monitor: Option<String>,
}

struct Live {
    console: Console,
    state: Mutex<Value>,
}

/// The console's routes, for the admin listener; the view is refreshed in the background.
pub fn routes(console: Console) -> Router {
    if !console::built(&console.dir) {
        tracing::warn!(dir = %console.dir.display(), "no console there (scripts/build-console.sh): its API is served without it");
    }
    let live = Arc::new(Live { console, state: Mutex::new(json!({"ts_ms": 0, "problems": ["starting"]})) });
    tokio::spawn(refresh(live.clone()));
    Router::new()
        .route("/api/state", get(state))
        .route("/api/{*write}", post(read_only))
        .fallback(get(asset))
        .layer(axum::middleware::from_fn(console::headers))
        .with_state(live)
}

async fn state(Shared(live): Shared<Arc<Live>>) -> Json<Value> {
    Json(live.state.lock().unwrap_or_else(PoisonError::into_inner).clone())
}

async fn asset(Shared(live): Shared<Arc<Live>>, uri: Uri) -> Response {
    console::asset(&live.console.dir, &uri).await
}

async fn read_only(Shared(live): Shared<Arc<Live>>, UrlPath(write): UrlPath<String>) -> Response {
    let ns = &live.console.namespace;
    let how = match write.as_str() {
        "policy" => format!("edit the TrafficPolicy: kubectl -n {ns} edit trafficpolicy NAME"),
        _ => format!("patch the ModelRollout: {}", command(ns, "NAME", write.rsplit('/').next().unwrap_or(""))),
    };
    console::refusal(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "this console is read-only in a cluster (changes go through the API server's RBAC and audit log): {how}"
        ),
    )
}

/// The `kubectl` command for a console action on rollout `name`.
fn command(ns: &str, name: &str, action: &str) -> String {
    let patch = match action {
        "pause" => r#"{"spec":{"paused":true}}"#,
        "resume" => r#"{"spec":{"paused":false}}"#,
        "promote" => r#"{"spec":{"promote":true}}"#,
        "abort" => r#"{"spec":{"abort":true}}"#,
        _ => return format!("kubectl -n {ns} edit modelrollout {name}"),
    };
    format!("kubectl -n {ns} patch modelrollout {name} --type merge -p '{patch}'")
}

async fn refresh(live: Arc<Live>) {
    let mut watch = Watch::default();
    loop {
        let started = Instant::now();
        let v = look(&live.console, &mut watch).await;
        *live.state.lock().unwrap_or_else(PoisonError::into_inner) = v;
        tokio::time::sleep(REFRESH.saturating_sub(started.elapsed())).await;
    }
}

/// One look: the rollouts and policies as the watches have them now, the metrics as read now.
async fn look(c: &Console, watch: &mut Watch) -> Value {
    let rollouts: Vec<ModelRollout> = c.rollouts.state().iter().map(|r| (**r).clone()).collect();
    let policies: Vec<TrafficPolicy> = c.policies.state().iter().map(|p| (**p).clone()).collect();
    let (mut v, in_force) = view(&c.namespace, &rollouts, &policies);
    let mut problems: Vec<String> = Vec::new();
    let now = switchyard_runtime::now_ms();
    v["models"] = match &in_force {
        Some(cfg) => {
            let sources = Sources {
                envoy: (&c.prometheus, &c.metrics_path),
                collector: c.collector.as_deref(),
                monitor: c.monitor.as_deref(),
            };
            console::look(watch, now, cfg, &sources, &mut problems).await
        }
        None => json!([]),
    };
    v["history"] = serde_json::to_value(watch.history()).unwrap_or_default();
    v["ts_ms"] = now.into();
    v["sources"] =
        json!({"envoy": format!("{}{}", c.prometheus, c.metrics_path), "collector": c.collector, "monitor": c.monitor});
    if let Some(p) = v["problems"].as_array_mut() {
        p.extend(problems.into_iter().map(Value::String));
    }
    v
}

/// Which rollout the page's rollout card shows: the oldest of those that run, else the newest.
fn featured(rollouts: &[ModelRollout]) -> Option<&ModelRollout> {
    let phase = |r: &ModelRollout| r.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    let created = |r: &&ModelRollout| (r.metadata.creation_timestamp.as_ref().map(|t| t.0), r.name_any());
    let mut active: Vec<&ModelRollout> = rollouts.iter().filter(|r| ACTIVE.contains(&phase(r).as_str())).collect();
    active.sort_by_key(created);
    active.first().copied().or_else(|| rollouts.iter().max_by_key(created))
}

/// The page's state from the resources (pure): the featured rollout in the local console's
/// shape, every rollout, the featured rollout's history from its status, and the policy the
/// operator carries for its TrafficPolicy (the first policy's when no rollout names one).
/// Also the policy in force, as a `Config`, for the model cards.
pub fn view(ns: &str, rollouts: &[ModelRollout], policies: &[TrafficPolicy]) -> (Value, Option<Config>) {
    let mut problems = Vec::new();
    let row = |r: &ModelRollout| {
        let st = r.status.clone().unwrap_or_default();
        let state = r.spec.to_spec().ok().and_then(|spec| state_of(r, spec));
        let name = r.name_any();
        let commands: serde_json::Map<String, Value> =
            ACTIONS.iter().map(|a| ((*a).to_owned(), Value::String(command(ns, &name, a)))).collect();
        json!({
            "name": name,
            "model": r.spec.model,
            "canary": r.spec.canary,
            "stable": state.as_ref().map(|s| s.stable.clone()).or_else(|| r.spec.stable.clone()).unwrap_or_default(),
            "state": st.phase.clone().unwrap_or_else(|| "Pending".into()),
            "active": st.phase.as_deref().is_some_and(|p| ACTIVE.contains(&p)),
            "step": st.step.unwrap_or(0),
            "steps": r.spec.steps.len(),
            "traffic": state.as_ref().map(traffic_text).unwrap_or_else(|| "as the TrafficPolicy has it".into()),
            "decision": st.last_decision.as_ref().map(|d| d.decision.clone()),
            "reason": st.last_decision.as_ref().map(|d| d.reason.clone())
                .or_else(|| st.conditions.iter().find(|c| c.status == "False").map(|c| c.message.clone())),
            "commands": commands,
        })
    };
    let top = featured(rollouts);
    // The featured rollout's history, from its status: each condition's last transition and
    // the last decision (every decision is an Event too: `kubectl get events`).
    let mut events: Vec<Value> = Vec::new();
    if let Some(st) = top.and_then(|r| r.status.as_ref()) {
        for c in &st.conditions {
            events.push(json!({"ts_ms": c.last_transition_time.0.as_millisecond(), "what": c.type_,
                "state": c.status, "decision": c.reason, "reason": c.message}));
        }
        if let Some(d) = &st.last_decision {
            let ms = d.time.parse::<k8s_openapi::jiff::Timestamp>().map_or(0, |t| t.as_millisecond());
            events.push(json!({"ts_ms": ms, "what": "decision", "state": st.phase, "decision": d.decision,
                "reason": d.reason}));
        }
    }
    events.sort_by_key(|e| e["ts_ms"].as_i64());
    let mut listed: Vec<&ModelRollout> = rollouts.iter().collect();
    listed.sort_by_key(|r| (r.metadata.creation_timestamp.as_ref().map(|t| t.0), r.name_any()));
    let policy =
        top.and_then(|r| policies.iter().find(|p| p.name_any() == r.spec.traffic_policy)).or_else(|| policies.first());
    let in_force = match policy {
        Some(tp) => match desired(tp, rollouts) {
            Ok((cfg, _)) => Some(cfg),
            Err(e) => {
                problems.push(format!("TrafficPolicy {}: {e}", tp.name_any()));
                None
            }
        },
        None => {
            problems.push(format!("no TrafficPolicy in namespace {ns}"));
            None
        }
    };
    let v = json!({
        "read_only": {
            "why": "In a cluster every change goes through the API server (its RBAC, its audit log): run the command shown.",
            "namespace": ns,
            "policy": policy.map(|p| format!("kubectl -n {ns} edit trafficpolicy {}", p.name_any())),
        },
        "rollout": top.map(row),
        "rollouts": listed.into_iter().map(row).collect::<Vec<_>>(),
        "events": events,
        "policy": in_force.as_ref().and_then(|cfg| serde_json::to_string_pretty(cfg).ok()),
        "problems": problems,
        "sticky_points": {},
    });
    (v, in_force)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn rollout(name: &str, created: &str, phase: Option<&str>) -> ModelRollout {
        let mut r: ModelRollout = serde_json::from_value(json!({
            "apiVersion": "switchyard.dev/v1alpha1", "kind": "ModelRollout",
            "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created},
            "spec": {"trafficPolicy": "gateway", "model": "mlp", "canary": "v2", "steps": [{"weight": 10}]},
        }))
        .unwrap();
        r.status = phase.map(|p| crate::crd::ModelRolloutStatus { phase: Some(p.into()), ..Default::default() });
        r
    }

    fn policy() -> TrafficPolicy {
        serde_json::from_value(json!({
            "apiVersion": "switchyard.dev/v1alpha1", "kind": "TrafficPolicy",
            "metadata": {"name": "gateway", "namespace": "ns"},
            "spec": {"carrier": {"configMap": {"name": "cm"}}, "policy": {"models": {"mlp": {"versions": [
                {"name": "v1", "cluster": "mlp-v1", "weight": 100}, {"name": "v2", "cluster": "mlp-v2", "weight": 0}]}}}},
        }))
        .unwrap()
    }

    #[test]
    fn the_card_features_the_oldest_running_rollout_else_the_newest() {
        let done = rollout("a", "2026-12-01T00:00:00Z", Some("Promoted"));
        let running = rollout("b", "2026-12-02T00:00:00Z", Some("Running"));
        let newer = rollout("c", "2026-12-03T00:00:00Z", Some("Aborted"));
        let (v, _) = view("ns", &[newer.clone(), running, done.clone()], &[policy()]);
        assert_eq!(v["rollout"]["name"], "b");
        let names: Vec<&str> = v["rollouts"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["a", "b", "c"], "oldest first");
        let (v, _) = view("ns", &[done, newer], &[policy()]);
        assert_eq!(v["rollout"]["name"], "c");
        assert_eq!(v["rollout"]["active"], false);
    }

    #[test]
    fn every_change_is_a_kubectl_command_and_a_missing_policy_is_a_problem() {
        let (v, _) = view("ns", &[rollout("b", "2026-12-02T00:00:00Z", None)], &[policy()]);
        assert_eq!(v["rollout"]["state"], "Pending");
        assert_eq!(
            v["rollout"]["commands"]["abort"],
            r#"kubectl -n ns patch modelrollout b --type merge -p '{"spec":{"abort":true}}'"#
        );
        assert_eq!(v["read_only"]["policy"], "kubectl -n ns edit trafficpolicy gateway");
        assert!(v["policy"].as_str().unwrap().contains("\"mlp-v2\""));
        let (v, _) = view("ns", &[], &[]);
        assert_eq!(v["problems"][0], "no TrafficPolicy in namespace ns");
        assert!(v["rollout"].is_null() && v["policy"].is_null());
    }
}
