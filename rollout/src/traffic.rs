//! The policy a rollout's state asks for, pure: the policy in force with the rollout's weights,
//! override, guard and shadow for its model. `apply` reads and writes it; this decides it.

use switchyard_policy::Config;
use switchyard_policy::config::Shadow;

use crate::error::Error;
use crate::judge::{Phase, State, Traffic};
use crate::spec::Stage;

/// The policy in force with the rollout's traffic for its model; `None` when it already holds.
pub fn with_traffic(current: &Config, st: &State, traffic: Traffic) -> Result<Option<Config>, Error> {
    let mut cfg = current.clone();
    let model = &st.spec.model;
    let m = cfg.models.get_mut(model).ok_or_else(|| Error::NoModel(model.clone()))?;
    let canary = st.spec.canary.clone();
    let (weight, shadow) = match traffic {
        Traffic::Weight(w) => (w, None),
        Traffic::Ab => (0, None),
        Traffic::Shadow(p) => (0, Some(p)),
    };
    for v in &mut m.versions {
        if v.name == canary {
            v.weight = weight;
        } else if v.name == st.stable {
            v.weight = 100 - weight.min(100);
        }
    }
    if traffic == Traffic::Ab
        && let Some(o) = m.override_.as_mut()
        && !o.allow.contains(&canary)
    {
        o.allow.push(canary.clone());
    }
    if st.phase == Phase::Promoted
        && let Some(g) = m.guard.as_mut()
        && g.stable.as_deref().unwrap_or_else(|| m.versions.first().map_or("", |v| v.name.as_str())) == st.stable
    {
        // The canary is the stable version now: the guard judges (and falls back to) it, and a
        // new epoch starts its windows afresh.
        g.stable = Some(canary.clone());
        g.epoch += 1;
    }
    let aborted = matches!(st.phase, Phase::Aborted { .. });
    // An abort leaves the override allow-list as the rollout found it: the canary off it
    // unless it was there before.
    if aborted
        && st.canary_was_allowed == Some(false)
        && let Some(o) = m.override_.as_mut()
    {
        o.allow.retain(|v| *v != canary);
    }
    match shadow {
        Some(percent) => {
            // The policy's comparison settings stay; a stage that judges disagreement needs one.
            let compare =
                m.shadow.as_ref().and_then(|s| s.compare.clone()).or_else(|| compares_now(st).then(Default::default));
            m.shadow = Some(Shadow { version: canary, percent, compare });
        }
        // The rollout's mirror ends with its stage; a mirror the policy had to another version stays.
        None if m.shadow.as_ref().is_some_and(|s| s.version == canary)
            && !matches!(traffic, Traffic::Weight(w) if w < 100) =>
        {
            m.shadow = None;
        }
        // An aborted canary is mirrored no more; the policy's shadow settings are kept.
        None if aborted => {
            if let Some(s) = m.shadow.as_mut().filter(|s| s.version == canary) {
                s.percent = 0.0;
            }
        }
        None => {}
    }
    Ok((cfg != *current).then_some(cfg))
}

/// The stage whose traffic is in force judges the shadow's disagreement.
pub fn compares_now(st: &State) -> bool {
    st.spec
        .steps
        .iter()
        .take(st.step + 1)
        .rev()
        .find(|s| s.stage() != Stage::Hold)
        .is_some_and(|s| s.max_disagreement.is_some())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use serde_json::{Value, json};
    use switchyard_policy::config::Compare;

    use super::*;
    use crate::spec::Spec;

    /// A policy of model `mlp` with v1 (stable) at 90, v2 (the canary) at 10 and v3 at 0, and
    /// whatever `extra` adds to the model (a collector too, which comparisons need).
    fn policy(extra: &Value) -> Config {
        let mut m = json!({"versions": [
            {"name": "v1", "cluster": "mlp-v1", "weight": 90},
            {"name": "v2", "cluster": "mlp-v2", "weight": 10},
            {"name": "v3", "cluster": "mlp-v3", "weight": 0}
        ]});
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        let policy = json!({"models": {"mlp": m}, "collector": {"cluster": "collector"}});
        Config::parse(policy.to_string().as_bytes()).unwrap()
    }

    fn state(steps: &str, step: usize, phase: Phase) -> State {
        let spec = Spec::parse(&format!("model: mlp\ncanary: v2\nsteps:\n{steps}")).unwrap();
        let mut st = State::new(spec, "v1".into(), 0);
        st.step = step;
        st.phase = phase;
        st
    }

    const WEIGHTS: &str = " - {weight: 20}\n - {weight: 60}\n";

    fn weights(cfg: &Config) -> Vec<u32> {
        cfg.models["mlp"].versions.iter().map(|v| v.weight).collect()
    }

    #[test]
    fn a_weight_splits_between_stable_and_canary_only_and_nothing_changes_twice() {
        let st = state(WEIGHTS, 0, Phase::Running);
        let cfg = with_traffic(&policy(&json!({})), &st, Traffic::Weight(20)).unwrap().unwrap();
        assert_eq!(weights(&cfg), [80, 20, 0]);
        assert_eq!(with_traffic(&cfg, &st, Traffic::Weight(20)).unwrap(), None, "already in force");
        let all = with_traffic(&cfg, &st, Traffic::Weight(100)).unwrap().unwrap();
        assert_eq!(weights(&all), [0, 100, 0]);
        // More than 100 gives the stable version nothing, never an underflow.
        assert_eq!(weights(&with_traffic(&cfg, &st, Traffic::Weight(150)).unwrap().unwrap()), [0, 150, 0]);
        // Only the weights moved: the rest of the policy is as it was.
        let mut back = all;
        back.models.get_mut("mlp").unwrap().versions[0].weight = 80;
        back.models.get_mut("mlp").unwrap().versions[1].weight = 20;
        assert_eq!(back, cfg);
    }

    #[test]
    fn a_model_the_policy_lacks_is_named() {
        let mut st = state(WEIGHTS, 0, Phase::Running);
        st.spec.model = "resnet".into();
        let e = with_traffic(&policy(&json!({})), &st, Traffic::Weight(20)).unwrap_err();
        assert_eq!(e.to_string(), "the policy in force has no model 'resnet'");
    }

    #[test]
    fn an_ab_stage_zeroes_the_canary_and_adds_it_to_the_override_allow_list_once() {
        let st = state(" - {ab: true}\n", 0, Phase::Running);
        let with_override = policy(&json!({"override": {"header": "x-version", "allow": ["v1"]}}));
        let cfg = with_traffic(&with_override, &st, Traffic::Ab).unwrap().unwrap();
        assert_eq!(weights(&cfg), [100, 0, 0]);
        let o = cfg.models["mlp"].override_.as_ref().unwrap();
        assert_eq!((o.header.as_str(), o.allow.clone()), ("x-version", vec!["v1".to_owned(), "v2".to_owned()]));
        assert_eq!(with_traffic(&cfg, &st, Traffic::Ab).unwrap(), None, "the canary is listed once");
        // Allowed already: kept as it is.
        let listed = policy(&json!({"override": {"header": "x-version", "allow": ["v2", "v3"]}}));
        let cfg = with_traffic(&listed, &st, Traffic::Ab).unwrap().unwrap();
        assert_eq!(cfg.models["mlp"].override_.as_ref().unwrap().allow, ["v2", "v3"]);
        // A weight stage does not touch the allow-list; without an override none is made.
        let st = state(WEIGHTS, 0, Phase::Running);
        let cfg = with_traffic(&with_override, &st, Traffic::Weight(20)).unwrap().unwrap();
        assert_eq!(cfg.models["mlp"].override_.as_ref().unwrap().allow, ["v1"]);
        let cfg = with_traffic(&policy(&json!({})), &state(" - {ab: true}\n", 0, Phase::Running), Traffic::Ab);
        assert!(cfg.unwrap().unwrap().models["mlp"].override_.is_none());
    }

    #[test]
    fn an_abort_leaves_the_override_allow_list_as_the_rollout_found_it() {
        let with_override = policy(&json!({"override": {"header": "x-version", "allow": ["v1"]}}));
        let mut st = state(" - {ab: true}\n", 0, Phase::Running);
        st.canary_was_allowed = Some(false);
        let during = with_traffic(&with_override, &st, Traffic::Ab).unwrap().unwrap();
        assert_eq!(during.models["mlp"].override_.as_ref().unwrap().allow, ["v1", "v2"]);
        st.phase = Phase::Aborted { reason: "the canary failed".into() };
        let after = with_traffic(&during, &st, st.traffic()).unwrap().unwrap();
        assert_eq!(after.models["mlp"].override_.as_ref().unwrap().allow, ["v1"], "the A/B stage's addition is gone");
        // Allowed before the rollout: it stays; a state that does not know: left alone.
        st.canary_was_allowed = Some(true);
        assert_eq!(with_traffic(&during, &st, st.traffic()).unwrap(), None, "nothing to change");
        st.canary_was_allowed = None;
        assert_eq!(with_traffic(&during, &st, st.traffic()).unwrap(), None, "nothing to change");
    }

    #[test]
    fn a_shadow_stage_mirrors_to_the_canary_keeping_the_policys_comparison() {
        let st = state(" - {shadow: 25}\n", 0, Phase::Running);
        let cfg = with_traffic(&policy(&json!({})), &st, Traffic::Shadow(25.0)).unwrap().unwrap();
        assert_eq!(weights(&cfg), [100, 0, 0]);
        assert_eq!(cfg.models["mlp"].shadow, Some(Shadow { version: "v2".into(), percent: 25.0, compare: None }));
        // A mirror to another version is replaced; its comparison settings stay.
        let compare = json!({"percent": 40, "atol": 0.5, "rtol": 0.0, "output": "numeric", "noise": false});
        let other = policy(&json!({"shadow": {"version": "v3", "percent": 5, "compare": compare}}));
        let cfg = with_traffic(&other, &st, Traffic::Shadow(25.0)).unwrap().unwrap();
        let s = cfg.models["mlp"].shadow.as_ref().unwrap();
        assert_eq!((s.version.as_str(), s.percent), ("v2", 25.0));
        let c = s.compare.as_ref().unwrap();
        assert_eq!((c.percent, c.atol, c.rtol, c.noise), (40.0, 0.5, 0.0, false));
    }

    #[test]
    fn a_stage_that_judges_disagreement_gets_a_comparison_when_the_policy_has_none() {
        let st = state(" - {shadow: 25, max_disagreement: 0.05}\n", 0, Phase::Running);
        let cfg = with_traffic(&policy(&json!({})), &st, Traffic::Shadow(25.0)).unwrap().unwrap();
        assert_eq!(cfg.models["mlp"].shadow.as_ref().unwrap().compare, Some(Compare::default()));
    }

    #[test]
    fn the_canarys_mirror_ends_with_its_stage_and_another_versions_stays() {
        let mirrored = policy(&json!({"shadow": {"version": "v2", "percent": 25}}));
        let steps = " - {shadow: 25}\n - {ab: true}\n - {weight: 20}\n";
        // On to an A/B stage or to all traffic: the mirror goes.
        let cfg = with_traffic(&mirrored, &state(steps, 1, Phase::Running), Traffic::Ab).unwrap().unwrap();
        assert_eq!(cfg.models["mlp"].shadow, None);
        let cfg = with_traffic(&mirrored, &state(steps, 2, Phase::Promoted), Traffic::Weight(100)).unwrap().unwrap();
        assert_eq!(cfg.models["mlp"].shadow, None);
        // A partial weight keeps it (the canary still serves only part of the traffic).
        let cfg = with_traffic(&mirrored, &state(steps, 2, Phase::Running), Traffic::Weight(20)).unwrap().unwrap();
        assert_eq!(cfg.models["mlp"].shadow.as_ref().map(|s| (s.version.as_str(), s.percent)), Some(("v2", 25.0)));
        // A mirror to another version is the policy's, not the rollout's.
        let other = policy(&json!({"shadow": {"version": "v3", "percent": 5}}));
        let cfg = with_traffic(&other, &state(steps, 2, Phase::Promoted), Traffic::Weight(100)).unwrap().unwrap();
        assert_eq!(cfg.models["mlp"].shadow.as_ref().map(|s| (s.version.as_str(), s.percent)), Some(("v3", 5.0)));
    }

    #[test]
    fn an_aborted_canary_is_mirrored_no_more_and_the_settings_stay() {
        let compare = json!({"percent": 40});
        let mirrored = policy(&json!({"shadow": {"version": "v2", "percent": 25, "compare": compare}}));
        let aborted = Phase::Aborted { reason: "test".into() };
        let cfg = with_traffic(&mirrored, &state(" - {shadow: 25}\n", 0, aborted.clone()), Traffic::Weight(0))
            .unwrap()
            .unwrap();
        assert_eq!(weights(&cfg), [100, 0, 0]);
        let s = cfg.models["mlp"].shadow.as_ref().unwrap();
        assert_eq!((s.version.as_str(), s.percent), ("v2", 0.0));
        assert_eq!(s.compare.as_ref().map(|c| c.percent), Some(40.0));
        // Another version's mirror is left alone.
        let other = policy(&json!({"shadow": {"version": "v3", "percent": 5}}));
        let cfg = with_traffic(&other, &state(WEIGHTS, 0, aborted), Traffic::Weight(0)).unwrap().unwrap();
        assert_eq!(cfg.models["mlp"].shadow.as_ref().map(|s| s.percent), Some(5.0));
    }

    #[test]
    fn a_promotion_makes_the_canary_the_guards_stable_version_in_a_new_epoch() {
        let guarded = |guard: Value| policy(&json!({"guard": guard}));
        let promoted = state(WEIGHTS, 1, Phase::Promoted);
        // The guard's stable version defaults to the first, which is the rollout's.
        let cfg = with_traffic(&guarded(json!({})), &promoted, Traffic::Weight(100)).unwrap().unwrap();
        let g = cfg.models["mlp"].guard.as_ref().unwrap();
        assert_eq!((g.stable.as_deref(), g.epoch), (Some("v2"), 1));
        assert_eq!(with_traffic(&cfg, &promoted, Traffic::Weight(100)).unwrap(), None, "one new epoch, not one a tick");
        let cfg = with_traffic(&guarded(json!({"stable": "v1", "epoch": 4})), &promoted, Traffic::Weight(100))
            .unwrap()
            .unwrap();
        let g = cfg.models["mlp"].guard.as_ref().unwrap();
        assert_eq!((g.stable.as_deref(), g.epoch), (Some("v2"), 5));
        // A guard judging against another version, or a rollout not promoted, keeps the guard.
        let cfg = with_traffic(&guarded(json!({"stable": "v3"})), &promoted, Traffic::Weight(100)).unwrap().unwrap();
        let g = cfg.models["mlp"].guard.as_ref().unwrap();
        assert_eq!((g.stable.as_deref(), g.epoch), (Some("v3"), 0));
        let cfg = with_traffic(&guarded(json!({})), &state(WEIGHTS, 1, Phase::Running), Traffic::Weight(100))
            .unwrap()
            .unwrap();
        let g = cfg.models["mlp"].guard.as_ref().unwrap();
        assert_eq!((g.stable.as_deref(), g.epoch), (None, 0));
    }

    #[test]
    fn the_stage_in_force_decides_whether_disagreement_is_judged() {
        let steps = " - {shadow: 10, max_disagreement: 0.05}\n - {hold: true}\n - {shadow: 20}\n - {weight: 50}\n";
        let judged: Vec<bool> = (0..4).map(|i| compares_now(&state(steps, i, Phase::Running))).collect();
        // A hold point keeps the stage before it, and its judging with it.
        assert_eq!(judged, [true, true, false, false]);
        assert!(!compares_now(&state(" - {hold: true}\n - {weight: 50}\n", 0, Phase::Running)));
    }
}
