//! The commands on the state directory: `start` records a rollout, `status` reads it, `pause`,
//! `resume`, `promote` and `abort` change it ([`command`], also the console's writes), and
//! `reset-guard` clears the data-plane guard's latch. Every one takes the directory's lock,
//! acts and returns at once; those that change traffic put it in force themselves, so they
//! work with no controller running.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use switchyard_runtime::now_ms;

use switchyard_deploy::audit::{Actor, Via};

use crate::apply::{in_force_at, put_in_force, reconcile};
use crate::error::Error;
use crate::judge::{Refused, State};
use crate::observe::{OBSERVE_TIMEOUT, observe};
use crate::spec::Spec;
use crate::store::{Saved, Store, Target};

/// Takes the state directory's lock off the async thread: the controller's ticks, the
/// console's view and its writes share one thread, and whoever holds the lock may be awaiting
/// Envoy.
pub async fn open_store(dir: &Path) -> Result<Store, Error> {
    let dir = dir.to_owned();
    Ok(tokio::task::spawn_blocking(move || Store::open(&dir)).await.map_err(Error::Lock)??)
}

pub fn event(store: &Store, st: &State, what: &str) -> Result<(), Error> {
    event_with(store, st, what, serde_json::Map::new())
}

/// An event line with more fields (a write's audit: who, before, after).
pub fn event_with(
    store: &Store,
    st: &State,
    what: &str,
    extra: serde_json::Map<String, serde_json::Value>,
) -> Result<(), Error> {
    let mut line = json!({
        "ts_ms": now_ms(),
        "model": st.spec.model,
        "canary": st.spec.canary,
        "step": st.step,
        "traffic": format!("{:?}", st.traffic()),
        "state": st.phase.name(),
        "decision": st.decision,
        "reason": st.reason,
        "what": what,
    });
    if let Some(o) = line.as_object_mut() {
        o.extend(extra);
    }
    Ok(store.event(&line)?)
}

/// `STATE MODEL/CANARY: WHAT`, the line every command and decision prints.
pub fn say(st: &State, what: &str) {
    crate::say_line!("{} {}/{}: {what}", st.phase.name(), st.spec.model, st.spec.canary);
}

/// A command on the saved rollout: `f` changes the state; the traffic it wants is put in force
/// at once, then saved and logged (with `who` gave it, from the console). Returns what it did.
pub async fn command(
    dir: &Path,
    f: impl FnOnce(&mut State) -> Result<String, Refused>,
    name: &str,
    who: Option<serde_json::Value>,
) -> Result<String, Error> {
    let store = open_store(dir).await?;
    let mut saved = store.load()?.ok_or_else(|| Error::NotStarted(dir.to_owned()))?;
    let before = json!({"state": saved.state.phase.name(), "traffic": format!("{:?}", saved.state.traffic())});
    let what = f(&mut saved.state)?;
    // Saved first: traffic put in force for a state that was not saved would be undone by the
    // controller's next tick; a state saved whose traffic failed to apply is mended by it.
    store.save(&saved)?;
    // Given from the console (its write's actor), else the command line.
    let actor = match &who {
        Some(who) => Actor::new(who["actor"].as_str().unwrap_or("anonymous"), Via::Console),
        None => Actor::cli(),
    };
    let mut audit = serde_json::Map::new();
    if let Some(who) = who {
        let after = json!({"state": saved.state.phase.name(), "traffic": format!("{:?}", saved.state.traffic())});
        audit.extend([("who".to_owned(), who), ("before".to_owned(), before), ("after".to_owned(), after)]);
    }
    event_with(&store, &saved.state, name, audit)?;
    let mut said =
        format!("{} {}/{}: {what}", saved.state.phase.name(), saved.state.spec.model, saved.state.spec.canary);
    match reconcile(&saved.target, &saved.state, &actor).await {
        Ok(Some(a)) => said.push_str(&format!("\n  {a}")),
        Ok(None) => {}
        Err(e) => return Err(Error::NotInForce(Box::new(e))),
    }
    Ok(said)
}

/// Validates the spec at `spec_path` (`-`: standard input) against the policy in force at
/// `target` and records the rollout; `run` carries it out.
pub async fn start(dir: &Path, spec_path: &Path, target: Target) -> Result<(), Error> {
    // `-`: from standard input (`kubectl exec -i … start - < spec.yaml` in a cluster).
    let text = if spec_path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).map_err(Error::SpecStdin)?
    } else {
        std::fs::read_to_string(spec_path)
            .map_err(|source| Error::SpecUnreadable { path: spec_path.to_owned(), source })?
    };
    let spec = Spec::parse(&text).map_err(|source| Error::Spec { path: spec_path.to_owned(), source })?;
    let now = in_force_at(&target).await?;
    let mut problems = Vec::new();
    if spec.compares() && target.collector.is_none() {
        problems.push(
            "a step with max_disagreement needs `--collector HOST:PORT` (where the comparisons are counted)".into(),
        );
    }
    let plan = match spec.plan(now.config()) {
        Ok(plan) if problems.is_empty() => plan,
        Ok(_) => return Err(Error::Impossible { path: spec_path.to_owned(), problems }),
        Err(more) => {
            problems.extend(more);
            return Err(Error::Impossible { path: spec_path.to_owned(), problems });
        }
    };
    let store = open_store(dir).await?;
    if let Some(old) = store.load()?
        && old.state.phase.is_active()
    {
        return Err(Error::Busy {
            model: old.state.spec.model,
            canary: old.state.spec.canary,
            phase: old.state.phase.name(),
            dir: dir.to_owned(),
        });
    }
    let mut state = State::new(spec, plan.stable, now_ms());
    state.canary_was_allowed = Some(plan.canary_was_allowed);
    let saved = Saved { target, state };
    store.save(&saved)?;
    event(&store, &saved.state, "start")?;
    say(
        &saved.state,
        &format!("started ({} steps); `switchyard-rollout run` carries it out", saved.state.spec.steps.len()),
    );
    Ok(())
}

/// Prints where the rollout is (`as_json`: one JSON object).
pub fn status(dir: &Path, as_json: bool) -> Result<(), Error> {
    let store = Store::open(dir)?;
    let saved = store.load()?.ok_or_else(|| Error::NoRollout(dir.to_owned()))?;
    let st = &saved.state;
    if as_json {
        crate::say_line!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "model": st.spec.model, "canary": st.spec.canary, "stable": st.stable, "state": st.phase.name(),
                "step": st.step, "steps": st.spec.steps.len(), "traffic": format!("{:?}", st.traffic()),
                "decision": st.decision, "reason": st.reason,
            }))?
        );
    } else {
        say(st, &format!("step {} of {}, traffic {:?}", st.step + 1, st.spec.steps.len(), st.traffic()));
        crate::say_line!("  last decision: {}: {}", st.decision, st.reason);
    }
    Ok(())
}

/// Clears the data-plane guard's latch for the rollout's model: a new `guard.epoch`.
pub async fn reset_guard(dir: &Path) -> Result<(), Error> {
    let store = open_store(dir).await?;
    let saved = store.load()?.ok_or_else(|| Error::NoRollout(dir.to_owned()))?;
    let current = in_force_at(&saved.target).await?;
    let mut cfg = current.config().clone();
    let model = &saved.state.spec.model;
    let g = cfg.models.get_mut(model).and_then(|m| m.guard.as_mut()).ok_or_else(|| Error::NoGuard(model.clone()))?;
    g.epoch += 1;
    let epoch = g.epoch;
    let version = put_in_force(&saved.target, &cfg, &Actor::cli()).await?;
    event(&store, &saved.state, &format!("reset-guard: epoch {epoch}"))?;
    crate::say_line!(
        "guard of {model} reset: epoch {epoch} in force (filter config {version}); a version it had taken out is back at its weight"
    );
    // Envoy takes the new policy and the filter shows it within a tick or two: wait for that,
    // so a controller started next does not read the old latch as a new trip.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        if let Ok(Ok(obs)) = tokio::time::timeout(OBSERVE_TIMEOUT, observe(&saved.target, &saved.state)).await
            && !obs.guard_out
        {
            crate::say_line!("  Envoy shows {model}/{} back in the split", saved.state.spec.canary);
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    crate::say_line!(
        "  Envoy still shows {model}/{} out of the split after 2 s: is it failing again?",
        saved.state.spec.canary
    );
    Ok(())
}
