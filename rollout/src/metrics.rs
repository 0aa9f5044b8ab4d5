//! The controller's metrics (docs/metrics.md), registered in one place and served on the admin
//! listener's `/metrics`: where the rollout is, its canary's weight, its state, and its last
//! decision. They show the rollout last seen and only it: a new rollout, state or decision
//! replaces the series of the one before.

use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::judge::{State, Traffic};

/// Every state a rollout can be in, each a series of `switchyard_rollout_state`.
const STATES: [&str; 5] = ["running", "paused", "holding", "promoted", "aborted"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RolloutLabels {
    model: String,
    canary: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    model: String,
    canary: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    model: String,
    canary: String,
    decision: String,
    reason: Escaped,
}

/// A free-text label value (a decision's reason), escaped as the exposition format requires:
/// the encoder writes label values as they are.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Escaped(String);

impl EncodeLabelValue for Escaped {
    fn encode(&self, e: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        use std::fmt::Write as _;
        for c in self.0.chars() {
            match c {
                '\\' => e.write_str("\\\\")?,
                '"' => e.write_str("\\\"")?,
                '\n' => e.write_str("\\n")?,
                c => e.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// The controller's metric families; clones share them.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    step: Family<RolloutLabels, Gauge>,
    weight: Family<RolloutLabels, Gauge>,
    state: Family<StateLabels, Gauge>,
    last_decision: Family<DecisionLabels, Gauge>,
    policy_unrecorded: Gauge,
    /// Held while the series are replaced and while they are encoded: a scrape sees one
    /// state whole, never the families half cleared.
    consistent: Arc<Mutex<()>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("switchyard_rollout");
        let m = Metrics {
            registry: Arc::new(Registry::default()),
            step: Family::default(),
            weight: Family::default(),
            state: Family::default(),
            last_decision: Family::default(),
            policy_unrecorded: Gauge::default(),
            consistent: Arc::default(),
        };
        let r = &mut registry;
        r.register("step", "The rollout's current step, counted from 0", m.step.clone());
        r.register("weight", "The canary's weight in the current step (0 in ab and shadow steps)", m.weight.clone());
        r.register("state", "1 for the state the rollout is in, 0 for the others", m.state.clone());
        r.register(
            "last_decision_info",
            "Always 1: the last decision and its reason as labels",
            m.last_decision.clone(),
        );
        r.register(
            "policy_unrecorded",
            "1 while the policy in force is not the last change the audit trail recorded (changed outside the tools)",
            m.policy_unrecorded.clone(),
        );
        Metrics { registry: Arc::new(registry), ..m }
    }

    /// Whether the policy in force is one no recorded change put there.
    pub fn policy_unrecorded(&self, yes: bool) {
        self.policy_unrecorded.set(i64::from(yes));
    }

    /// Shows `st`, and nothing of an earlier rollout or decision.
    pub fn show(&self, st: &State) {
        let _consistent = self.consistent.lock().unwrap_or_else(PoisonError::into_inner);
        let (model, canary) = (st.spec.model.clone(), st.spec.canary.clone());
        let rollout = RolloutLabels { model: model.clone(), canary: canary.clone() };
        let weight = match st.traffic() {
            Traffic::Weight(w) => w,
            Traffic::Ab | Traffic::Shadow(_) => 0,
        };
        self.step.clear();
        self.weight.clear();
        self.state.clear();
        self.last_decision.clear();
        self.step.get_or_create(&rollout).set(i64::try_from(st.step).unwrap_or(i64::MAX));
        self.weight.get_or_create(&rollout).set(i64::from(weight));
        for state in STATES {
            let labels = StateLabels { model: model.clone(), canary: canary.clone(), state };
            self.state.get_or_create(&labels).set(i64::from(st.phase.name() == state));
        }
        let decision =
            DecisionLabels { model, canary, decision: st.decision.clone(), reason: Escaped(st.reason.clone()) };
        self.last_decision.get_or_create(&decision).set(1);
    }

    /// The OpenMetrics text of every family.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let _consistent = self.consistent.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::with_capacity(1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::judge::Phase;
    use crate::spec::Spec;

    fn state(canary: &str, steps: &str) -> State {
        let spec = Spec::parse(&format!("model: mlp\ncanary: {canary}\nsteps:\n{steps}")).unwrap();
        State::new(spec, "v1".into(), 0)
    }

    /// The sample lines, sorted (a family's series come in no fixed order).
    fn samples(m: &Metrics) -> Vec<String> {
        let text = m.encode().unwrap();
        let mut lines: Vec<String> = text.lines().filter(|l| !l.starts_with('#')).map(str::to_owned).collect();
        lines.sort();
        lines
    }

    #[test]
    fn the_series_are_the_ones_render_metrics_wrote() {
        let m = Metrics::new();
        let mut st = state("v2", " - {weight: 10}\n - {ab: true}\n");
        st.step = 0;
        st.decision = "apply".into();
        st.reason = r#"step 0: mlp Weight(10) in force (filter config "x\y")"#.into();
        m.show(&st);
        let text = m.encode().unwrap();
        for family in ["step", "weight", "state", "last_decision_info", "policy_unrecorded"] {
            assert!(text.contains(&format!("# TYPE switchyard_rollout_{family} gauge\n")), "{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        let problems =
            switchyard_contract::metrics::check_exposition(&text, switchyard_contract::metrics::Source::Rollout, true);
        assert!(problems.is_empty(), "{problems:#?}");
        let l = r#"model="mlp",canary="v2""#;
        assert_eq!(
            samples(&m),
            [
                format!(
                    r#"switchyard_rollout_last_decision_info{{{l},decision="apply",reason="step 0: mlp Weight(10) in force (filter config \"x\\y\")"}} 1"#
                ),
                "switchyard_rollout_policy_unrecorded 0".to_owned(),
                format!(r#"switchyard_rollout_state{{{l},state="aborted"}} 0"#),
                format!(r#"switchyard_rollout_state{{{l},state="holding"}} 0"#),
                format!(r#"switchyard_rollout_state{{{l},state="paused"}} 0"#),
                format!(r#"switchyard_rollout_state{{{l},state="promoted"}} 0"#),
                format!(r#"switchyard_rollout_state{{{l},state="running"}} 1"#),
                format!(r#"switchyard_rollout_step{{{l}}} 0"#),
                format!(r#"switchyard_rollout_weight{{{l}}} 10"#),
            ]
        );
    }

    #[test]
    fn a_new_state_replaces_the_series_of_the_last_and_ab_and_shadow_weigh_0() {
        let m = Metrics::new();
        let mut st = state("v2", " - {weight: 10}\n - {ab: true}\n");
        m.show(&st);
        st.step = 1;
        st.phase = Phase::Holding { reason: "quiet".into() };
        st.decision = "hold".into();
        st.reason = "quiet:\nline two".into();
        m.show(&st);
        let lines = samples(&m);
        assert!(lines.contains(&r#"switchyard_rollout_weight{model="mlp",canary="v2"} 0"#.to_owned()), "{lines:#?}");
        assert!(lines.contains(&r#"switchyard_rollout_step{model="mlp",canary="v2"} 1"#.to_owned()), "{lines:#?}");
        assert!(lines.contains(&r#"switchyard_rollout_state{model="mlp",canary="v2",state="holding"} 1"#.to_owned()));
        let decisions: Vec<&String> = lines.iter().filter(|l| l.contains("last_decision_info")).collect();
        assert_eq!(
            decisions,
            [
                r#"switchyard_rollout_last_decision_info{model="mlp",canary="v2",decision="hold",reason="quiet:\nline two"} 1"#
            ]
        );
        // Another rollout: the first one's series go.
        m.show(&state("v3", " - {shadow: 5}\n"));
        let lines: Vec<String> =
            samples(&m).into_iter().filter(|l| !l.starts_with("switchyard_rollout_policy_unrecorded")).collect();
        assert_eq!(lines.len(), 8, "{lines:#?}");
        assert!(lines.iter().all(|l| l.contains(r#"canary="v3""#)), "{lines:#?}");
        assert!(lines.contains(&r#"switchyard_rollout_weight{model="mlp",canary="v3"} 0"#.to_owned()));
    }
}
