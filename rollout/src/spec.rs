//! The rollout spec (YAML or JSON), validated once with every problem named.
//!
//! ```yaml
//! model: mlp
//! canary: v2
//! steps:
//!   - {weight: 5, min_duration: 30s, min_requests: 200}
//!   - {weight: 25, min_duration: 1m}
//!   - {hold: true}                 # waits for `switchyard-rollout promote`
//!   - {weight: 100}
//! analysis: {max_error_increase: 0.01, confidence: 0.99, max_latency_ratio: 1.25, min_latency_increase_ms: 10, quiet_deadline: 10m}
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_policy::Config;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub model: String,
    /// The version rolled out.
    pub canary: String,
    /// The version it replaces and is judged against (default: the model's `guard.stable`,
    /// else its first version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<String>,
    pub steps: Vec<Step>,
    #[serde(default)]
    pub analysis: Analysis,
}

/// One stage. Exactly one of `weight`, `ab`, `shadow`, `hold`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The canary's share of the split, 0-100 (the stable version gets the rest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// A header-matched A/B stage: only requests whose override header names the canary reach
    /// it (the canary's weight stays 0).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ab: bool,
    /// A shadow-only stage: this percentage of requests is mirrored to the canary, which
    /// serves no client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<f64>,
    /// A hold point: waits for `promote`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hold: bool,
    /// How long the stage runs before it may promote (`30s`, `5m`, `1h`).
    #[serde(default = "default_min_duration")]
    pub min_duration: String,
    /// Requests the canary must have served in the stage before it may promote.
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    /// A shadow stage only: compare the canary's answers with the stable version's (the
    /// policy's `shadow.compare`, or its defaults) and promote only when the share of rows that
    /// disagree, less the noise, is at most this (0-1); more aborts. Needs `start --collector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_disagreement: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Analysis {
    /// Abort when the canary's error ratio exceeds the stable one's by this much (absolute)...
    #[serde(default = "default_max_error_increase")]
    pub max_error_increase: f64,
    /// ...with this confidence by a one-sided Fisher exact test (exact at any count), and
    /// likewise for latency by a one-sided Mann-Whitney U test on the latency histograms.
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// Abort when the canary's median latency exceeds the stable one's by this factor, and by
    /// `min_latency_increase_ms` at least (sub-millisecond medians differ by large factors that
    /// no user notices), and the rank test is significant.
    #[serde(default = "default_max_latency_ratio")]
    pub max_latency_ratio: f64,
    #[serde(default = "default_min_latency_increase_ms")]
    pub min_latency_increase_ms: f64,
    /// A stage that has not seen `min_requests` by then holds (waits for a person) instead of
    /// failing: low traffic is no evidence against the canary.
    #[serde(default = "default_quiet_deadline")]
    pub quiet_deadline: String,
    /// Compared rows a stage with `max_disagreement` needs before it is judged.
    #[serde(default = "default_min_compared_rows")]
    pub min_compared_rows: u64,
}

impl Default for Analysis {
    fn default() -> Self {
        Analysis {
            max_error_increase: default_max_error_increase(),
            confidence: default_confidence(),
            max_latency_ratio: default_max_latency_ratio(),
            min_latency_increase_ms: default_min_latency_increase_ms(),
            quiet_deadline: default_quiet_deadline(),
            min_compared_rows: default_min_compared_rows(),
        }
    }
}

fn default_min_duration() -> String {
    "30s".into()
}
fn default_min_requests() -> u64 {
    100
}
fn default_max_error_increase() -> f64 {
    0.01
}
fn default_confidence() -> f64 {
    0.99
}
fn default_max_latency_ratio() -> f64 {
    1.25
}
fn default_min_latency_increase_ms() -> f64 {
    10.0
}
fn default_min_compared_rows() -> u64 {
    100
}
fn default_quiet_deadline() -> String {
    "10m".into()
}

/// What [`Spec::plan`] found in the policy: the version the canary is judged against, and
/// whether the override allow-list had the canary before (an abort restores it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub stable: String,
    pub canary_was_allowed: bool,
}

/// Text that is not a duration `duration` reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a duration like 30s, 5m or 1h")]
pub struct BadDuration(pub String);

/// Why a spec was refused.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Not YAML, or not a spec's shape (an unknown field, a missing one).
    #[error("invalid rollout spec: {0}")]
    Syntax(serde_norway::Error),
    /// A spec's shape with values no rollout can run: every problem found.
    #[error("invalid rollout spec: {}", .0.join("; "))]
    Problems(Vec<String>),
}

/// `30s`, `5m`, `1h`, `250ms`: the project's one duration grammar (`switchyard_policy::duration`).
pub fn duration(s: &str) -> Result<Duration, BadDuration> {
    switchyard_policy::duration::parse(s).map_err(|_| BadDuration(s.to_owned()))
}

/// What a step asks of the policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stage {
    Weight(u32),
    Ab,
    Shadow(f64),
    Hold,
}

impl Step {
    /// A step with the defaults a spec file's step gets (`min_duration` 30s, `min_requests` 100).
    pub fn with_defaults() -> Step {
        Step { min_duration: default_min_duration(), min_requests: default_min_requests(), ..Step::default() }
    }

    pub fn stage(&self) -> Stage {
        match (self.weight, self.ab, self.shadow, self.hold) {
            (_, _, _, true) => Stage::Hold,
            (_, true, _, _) => Stage::Ab,
            (_, _, Some(p), _) => Stage::Shadow(p),
            (w, _, _, _) => Stage::Weight(w.unwrap_or(0)),
        }
    }

    pub fn min_duration(&self) -> Duration {
        duration(&self.min_duration).unwrap_or_default()
    }
}

impl Spec {
    /// Parses YAML (JSON is YAML) and validates; the error lists every problem.
    pub fn parse(text: &str) -> Result<Spec, SpecError> {
        serde_norway::from_str::<Spec>(text).map_err(SpecError::Syntax)?.validated()
    }

    /// The spec when it is one a rollout can run (built from another shape, as the operator's
    /// custom resource); the error lists every problem.
    pub fn validated(self) -> Result<Spec, SpecError> {
        let problems = self.problems();
        if problems.is_empty() { Ok(self) } else { Err(SpecError::Problems(problems)) }
    }

    /// What the rollout needs of the policy it runs against: the model, both versions, no third
    /// version with traffic, an override header for A/B steps, a collector for comparisons.
    /// Every problem is named.
    pub fn plan(&self, cfg: &Config) -> Result<Plan, Vec<String>> {
        let Some(m) = cfg.models.get(&self.model) else {
            return Err(vec![format!("the policy has no model '{}'", self.model)]);
        };
        let mut problems = Vec::new();
        if m.version(&self.canary).is_none() {
            problems.push(format!("model '{}' has no version '{}'", self.model, self.canary));
        }
        let stable = self
            .stable
            .clone()
            .unwrap_or_else(|| m.versions.get(m.stable()).map(|v| v.name.clone()).unwrap_or_default());
        if stable == self.canary {
            problems.push(format!("the stable version is '{stable}', the canary itself: name `stable` in the spec"));
        }
        if m.version(&stable).is_none() {
            problems.push(format!("model '{}' has no version '{stable}'", self.model));
        }
        for v in &m.versions {
            if v.name != stable && v.name != self.canary && v.weight > 0 {
                problems.push(format!(
                    "version '{}' has weight {}: a rollout splits between stable and canary only",
                    v.name, v.weight
                ));
            }
        }
        if self.compares() && cfg.collector.is_none() {
            problems.push(
                "a step with max_disagreement needs a collector in the policy (the filter ships comparisons to it)"
                    .into(),
            );
        }
        if self.steps.iter().any(|s| s.ab) && m.override_.is_none() {
            problems.push(format!(
                "an ab step needs models.{}.override in the policy (the header that picks the canary)",
                self.model
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let canary_was_allowed = m.override_.as_ref().is_some_and(|o| o.allow.contains(&self.canary));
        Ok(Plan { stable, canary_was_allowed })
    }

    /// Whether a step judges the shadow's disagreement (then the collector must be read).
    pub fn compares(&self) -> bool {
        self.steps.iter().any(|s| s.max_disagreement.is_some())
    }

    pub fn quiet_deadline(&self) -> Duration {
        duration(&self.analysis.quiet_deadline).unwrap_or_default()
    }

    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !switchyard_policy::names::valid_name(&self.model) {
            p.push(format!("model '{}' is not a valid model name", self.model));
        }
        if !switchyard_policy::names::valid_name(&self.canary) {
            p.push(format!("canary '{}' is not a valid version name", self.canary));
        }
        if self.stable.as_deref() == Some(self.canary.as_str()) {
            p.push("stable and canary are the same version".into());
        }
        if self.steps.is_empty() {
            p.push("steps must list at least one step".into());
        }
        for (i, s) in self.steps.iter().enumerate() {
            let at = |m: &str| format!("steps[{i}]: {m}");
            let kinds = usize::from(s.weight.is_some())
                + usize::from(s.ab)
                + usize::from(s.shadow.is_some())
                + usize::from(s.hold);
            if kinds != 1 {
                p.push(at("needs exactly one of weight, ab, shadow, hold"));
            }
            if let Some(w) = s.weight
                && w > 100
            {
                p.push(at(&format!("weight must be 0-100, got {w}")));
            }
            if let Some(pct) = s.shadow
                && !(pct > 0.0 && pct <= 100.0)
            {
                p.push(at(&format!("shadow must be a percentage in (0, 100], got {pct}")));
            }
            if let Err(e) = duration(&s.min_duration) {
                p.push(at(&format!("min_duration: {e}")));
            }
            if let Some(d) = s.max_disagreement {
                if s.shadow.is_none() {
                    p.push(at("max_disagreement belongs to a shadow step (only shadowed requests are compared)"));
                }
                if !(0.0..=1.0).contains(&d) {
                    p.push(at(&format!("max_disagreement must be 0-1, got {d}")));
                }
            }
        }
        let weights: Vec<u32> = self.steps.iter().filter_map(|s| s.weight).collect();
        if weights.windows(2).any(|w| w[1] < w[0]) {
            p.push(format!(
                "step weights must not decrease (got {weights:?}): a rollout only moves traffic to the canary"
            ));
        }
        let a = &self.analysis;
        if !(a.max_error_increase > 0.0 && a.max_error_increase <= 1.0) {
            p.push(format!("analysis.max_error_increase must be in (0, 1], got {}", a.max_error_increase));
        }
        if !(a.confidence >= 0.5 && a.confidence < 1.0) {
            p.push(format!("analysis.confidence must be in [0.5, 1), got {}", a.confidence));
        }
        if a.max_latency_ratio < 1.0 || a.max_latency_ratio.is_nan() {
            p.push(format!("analysis.max_latency_ratio must be at least 1, got {}", a.max_latency_ratio));
        }
        if a.min_latency_increase_ms.is_nan() || a.min_latency_increase_ms < 0.0 {
            p.push(format!("analysis.min_latency_increase_ms must be 0 or more, got {}", a.min_latency_increase_ms));
        }
        if let Err(e) = duration(&a.quiet_deadline) {
            p.push(format!("analysis.quiet_deadline: {e}"));
        }
        if a.min_compared_rows == 0 {
            p.push("analysis.min_compared_rows must be at least 1".into());
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses_with_defaults() {
        let s = Spec::parse(
            "model: mlp\ncanary: v2\nsteps:\n  - {weight: 5, min_duration: 30s, min_requests: 200}\n  - {weight: 25, min_duration: 1m}\n  - {hold: true}\n  - {weight: 100}\n",
        )
        .unwrap();
        assert_eq!(s.steps.len(), 4);
        assert_eq!(s.steps[0].stage(), Stage::Weight(5));
        assert_eq!(s.steps[1].min_duration(), Duration::from_secs(60));
        assert_eq!(s.steps[1].min_requests, 100);
        assert_eq!(s.steps[2].stage(), Stage::Hold);
        assert_eq!(s.analysis, Analysis::default());
        assert_eq!(s.quiet_deadline(), Duration::from_secs(600));
        // JSON is YAML.
        let j =
            Spec::parse(r#"{"model": "mlp", "canary": "v2", "steps": [{"ab": true}, {"shadow": 10}, {"weight": 50}]}"#)
                .unwrap();
        assert_eq!(
            j.steps.iter().map(Step::stage).collect::<Vec<_>>(),
            [Stage::Ab, Stage::Shadow(10.0), Stage::Weight(50)]
        );
    }

    #[test]
    fn a_bad_spec_is_refused_with_every_problem_named() {
        let e = Spec::parse(
            "model: 'm m'\ncanary: v1\nstable: v1\nsteps:\n  - {weight: 50, max_disagreement: 0.1}\n  - {weight: 10, hold: true}\n  - {weight: 101, min_duration: soon}\n  - {shadow: 0, max_disagreement: 2}\n  - {}\nanalysis: {max_error_increase: 0, confidence: 1, max_latency_ratio: 0.5, min_latency_increase_ms: -1, quiet_deadline: never}\n",
        )
        .unwrap_err()
        .to_string();
        for needle in [
            "model 'm m'",
            "stable and canary are the same",
            "steps[1]: needs exactly one",
            "steps[2]: weight must be 0-100",
            "steps[2]: min_duration: 'soon'",
            "steps[3]: shadow must be",
            "steps[0]: max_disagreement belongs to a shadow step",
            "steps[3]: max_disagreement must be 0-1",
            "steps[4]: needs exactly one",
            "must not decrease",
            "max_error_increase",
            "confidence",
            "max_latency_ratio",
            "min_latency_increase_ms",
            "quiet_deadline",
        ] {
            assert!(e.contains(needle), "missing {needle:?} in {e}");
        }
        assert!(
            Spec::parse("model: mlp\ncanary: v2\nsteps: []\nextra: 1\n")
                .unwrap_err()
                .to_string()
                .contains("unknown field")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(duration("1h30m"), Ok(Duration::from_secs(5400)));
        for bad in ["", "5", "s", "1x", "-1s", "1.5s"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }
}
