//! The controller (`run`): every interval it reads the filter's metrics from Envoy's admin
//! endpoint, judges the canary (`judge`), and puts the traffic the state asks for in force
//! (`apply`); with `--admin-addr` it also serves the console, its API and its metrics.

use std::path::Path;
use std::time::Duration;

use switchyard_runtime::now_ms;

use crate::admin::{self, AdminArgs};
use crate::apply::{controller, reconcile};
use crate::command::{event, open_store, say};
use crate::error::Error;
use crate::judge::{Phase, State, Tick};
use crate::metrics::Metrics;
use crate::observe::{OBSERVE_TIMEOUT, observe};

/// One controller tick: observe (without the lock, so commands never wait on Envoy), then
/// under the lock judge, act and save, unless a command changed the state meanwhile.
/// `mended`: the ended rollout whose final traffic this controller already put in force.
/// Returns whether the rollout is still active.
pub async fn tick(dir: &Path, metrics: &Metrics, mended: &mut Option<State>) -> Result<bool, Error> {
    let Some(seen) = open_store(dir).await?.load()? else { return Ok(false) };
    if !seen.state.phase.is_active() {
        // An ended rollout's final traffic is put in force once (a crash between deciding and
        // applying is mended here); later changes by hand are not undone.
        if mended.as_ref() != Some(&seen.state) {
            let store = open_store(dir).await?;
            if let Some(saved) = store.load()? {
                reconcile(&saved.target, &saved.state, &controller(&saved.state)).await?;
                *mended = Some(saved.state);
            }
        }
        metrics.show(&seen.state);
        return Ok(false);
    }
    let obs = tokio::time::timeout(OBSERVE_TIMEOUT, observe(&seen.target, &seen.state))
        .await
        .map_err(|_| Error::MetricsSilent { addr: seen.target.envoy_admin.clone(), within: OBSERVE_TIMEOUT })??;
    let store = open_store(dir).await?;
    let Some(mut saved) = store.load()? else { return Ok(false) };
    if saved != seen {
        // A command acted while we looked: judge its state at the next tick.
        return Ok(saved.state.phase.is_active());
    }
    let now = now_ms();
    if saved.state.tick(now, &obs) == Tick::Changed {
        // An abort, a promotion, a hold: its traffic at once. A step advanced to is applied
        // just below, as its own event.
        let advanced = saved.state.phase == Phase::Running;
        let what =
            if advanced { None } else { reconcile(&saved.target, &saved.state, &controller(&saved.state)).await? };
        store.save(&saved)?;
        event(&store, &saved.state, "decision")?;
        say(&saved.state, &format!("{}: {}", saved.state.decision, saved.state.reason));
        if let Some(w) = what {
            crate::say_line!("  {w}");
        }
    }
    if saved.state.phase == Phase::Running && saved.state.applied != Some(saved.state.step) {
        if let Tick::Apply(traffic) = saved.state.tick(now, &obs) {
            // Already in force after a restart: not applied twice.
            let what = reconcile(&saved.target, &saved.state, &controller(&saved.state))
                .await?
                .unwrap_or_else(|| format!("{traffic:?} was already in force"));
            saved.state.started(now, obs);
            saved.state.decision = "apply".into();
            saved.state.reason = format!("step {}: {what}", saved.state.step);
            store.save(&saved)?;
            event(&store, &saved.state, "apply")?;
            say(&saved.state, &saved.state.reason);
        } else {
            // A hold point reached: saved as a decision.
            store.save(&saved)?;
            event(&store, &saved.state, "decision")?;
            say(&saved.state, &format!("{}: {}", saved.state.decision, saved.state.reason));
        }
    }
    metrics.show(&saved.state);
    Ok(saved.state.phase.is_active())
}

/// Ticks every `interval` until the rollout ends (or, `keep_running`, for ever), serving the
/// admin listener when `admin` names one.
pub async fn run(dir: &Path, interval: &str, keep_running: bool, admin: AdminArgs) -> Result<(), Error> {
    let interval = crate::spec::duration(interval)?;
    let metrics = Metrics::new();
    admin::serve(dir, admin, metrics.clone()).await?;
    let mut failures = 0u32;
    let mut mended = None;
    loop {
        let started = std::time::Instant::now();
        let active = match tick(dir, &metrics, &mut mended).await {
            Ok(active) => {
                failures = 0;
                active
            }
            // Envoy restarting, a policy refused: said, and tried again next tick; the
            // traffic stays as it is meanwhile.
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(30) {
                    eprintln!("switchyard-rollout: {e} (retrying every {interval:?})");
                }
                true
            }
        };
        if !active && !keep_running {
            let store = open_store(dir).await?;
            if let Some(saved) = store.load()? {
                say(&saved.state, "the rollout has ended");
            }
            return Ok(());
        }
        tokio::time::sleep(interval.saturating_sub(started.elapsed()).max(Duration::from_millis(50))).await;
    }
}
