//! The rollout's state machine, pure: what a tick does with what Envoy's counters say, and what
//! each command does. The controller (`controller.rs`, `command.rs`) only observes, applies the
//! policy this asks for, and saves; everything decided is here, tested with simulated time.

use serde::{Deserialize, Serialize};

use switchyard_deploy::held_out::HeldOut;

use crate::spec::{Spec, Stage};
use crate::stats;

/// One version's cumulative counters, as Envoy's filter exports them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Requests the availability SLI judges (those the client ended are not).
    pub total: u64,
    /// Of those, the version's failures (5xx, timeouts, resets, shedding).
    pub bad: u64,
    /// Requests per latency bucket (not cumulative), in the order of `Observation::bounds`.
    pub latency: Vec<u64>,
    /// Requests mirrored to it (its shadow responses are not seen by the filter).
    pub shadowed: u64,
}

impl Counts {
    pub fn since(&self, base: &Counts) -> Counts {
        Counts {
            total: self.total.saturating_sub(base.total),
            bad: self.bad.saturating_sub(base.bad),
            latency: self
                .latency
                .iter()
                .enumerate()
                .map(|(i, c)| c.saturating_sub(base.latency.get(i).copied().unwrap_or(0)))
                .collect(),
            shadowed: self.shadowed.saturating_sub(base.shadowed),
        }
    }
}

/// The collector's cumulative shadow comparisons of stable (primary) and canary (shadow):
/// rows compared and rows that disagree, for the canary and for the noise (stable against
/// itself).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Compared {
    pub rows: u64,
    pub disagreeing: u64,
    pub noise_rows: u64,
    pub noise_disagreeing: u64,
}

impl Compared {
    fn since(&self, base: &Compared) -> Compared {
        Compared {
            rows: self.rows.saturating_sub(base.rows),
            disagreeing: self.disagreeing.saturating_sub(base.disagreeing),
            noise_rows: self.noise_rows.saturating_sub(base.noise_rows),
            noise_disagreeing: self.noise_disagreeing.saturating_sub(base.noise_disagreeing),
        }
    }

    fn share(n: u64, of: u64) -> f64 {
        if of == 0 { 0.0 } else { n as f64 / of as f64 }
    }

    /// The canary's share of disagreeing rows, the noise's, and the first less the second.
    pub fn disagreement(&self) -> (f64, f64, f64) {
        let shadow = Compared::share(self.disagreeing, self.rows);
        let noise = Compared::share(self.noise_disagreeing, self.noise_rows);
        (shadow, noise, (shadow - noise).max(0.0))
    }
}

/// What the controller saw at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub canary: Counts,
    pub stable: Counts,
    /// The latency buckets' upper bounds, ms; `f64::MAX` stands for `+Inf` (JSON has no
    /// infinity, and the state is saved as JSON).
    pub bounds: Vec<f64>,
    /// The data-plane guard has the canary out of the split.
    pub guard_out: bool,
    /// Since when and why, as the filter shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out: Option<HeldOut>,
    /// Read from the collector when a step judges the shadow's disagreement.
    #[serde(default)]
    pub compared: Compared,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Phase {
    Running,
    Paused,
    /// Waiting for a person: a hold point (`resume` goes on), or a quiet stage.
    Holding {
        reason: String,
    },
    Promoted,
    Aborted {
        reason: String,
    },
}

impl Phase {
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Running => "running",
            Phase::Paused => "paused",
            Phase::Holding { .. } => "holding",
            Phase::Promoted => "promoted",
            Phase::Aborted { .. } => "aborted",
        }
    }

    pub fn is_active(&self) -> bool {
        matches!(self, Phase::Running | Phase::Paused | Phase::Holding { .. })
    }
}

/// The traffic a rollout wants in force.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Traffic {
    /// The canary's share of the split (the stable version has the rest).
    Weight(u32),
    /// Canary at 0, reachable through the override header.
    Ab,
    /// Canary at 0, this percentage mirrored to it.
    Shadow(f64),
}

/// Where a rollout is, saved after every change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub spec: Spec,
    /// The stable version, resolved at start.
    pub stable: String,
    pub phase: Phase,
    pub step: usize,
    /// The step whose traffic is in force, when it came into force (ms since the epoch), and
    /// the counters then: a resumed controller judges the same step from the same start.
    pub applied: Option<usize>,
    pub step_started_ms: u64,
    pub baseline: Observation,
    /// The last decision and why, for `status` and the metrics.
    pub decision: String,
    pub reason: String,
    /// Whether the canary was on the override allow-list when the rollout started, so an
    /// abort takes off only what an A/B stage added (`None`: a state saved before this was
    /// kept; the list is then left as it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_was_allowed: Option<bool>,
}

/// A command the rollout's state does not allow (the CLI and the console say why).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the rollout is {0}, not running")]
    NotRunning(&'static str),
    #[error("the rollout is {phase}: nothing to {command}")]
    NothingTo { phase: &'static str, command: &'static str },
}

/// What a tick asks of the controller.
#[derive(Debug, Clone, PartialEq)]
pub enum Tick {
    /// Nothing to do (waiting, or not running).
    Wait,
    /// Put this traffic in force, then call [`State::started`].
    Apply(Traffic),
    /// The state changed: save it, log `event`, and apply its traffic.
    Changed,
}

impl State {
    pub fn new(spec: Spec, stable: String, now_ms: u64) -> State {
        State {
            spec,
            stable,
            phase: Phase::Running,
            step: 0,
            applied: None,
            step_started_ms: now_ms,
            baseline: Observation::default(),
            decision: "start".into(),
            reason: "rollout started".into(),
            canary_was_allowed: None,
        }
    }

    /// The traffic this state wants.
    pub fn traffic(&self) -> Traffic {
        match &self.phase {
            Phase::Promoted => return Traffic::Weight(100),
            Phase::Aborted { .. } => return Traffic::Weight(0),
            _ => {}
        }
        // A hold point keeps the traffic of the stage before it.
        let mut traffic = Traffic::Weight(0);
        for s in self.spec.steps.iter().take(self.step + 1) {
            traffic = match s.stage() {
                Stage::Weight(w) => Traffic::Weight(w),
                Stage::Ab => Traffic::Ab,
                Stage::Shadow(p) => Traffic::Shadow(p),
                Stage::Hold => traffic,
            };
        }
        traffic
    }

    /// The step's traffic is in force from `now_ms`, with these counters.
    pub fn started(&mut self, now_ms: u64, obs: Observation) {
        self.applied = Some(self.step);
        self.step_started_ms = now_ms;
        self.baseline = obs;
    }

    fn decide(&mut self, decision: &str, reason: String) {
        self.decision = decision.to_owned();
        self.reason = reason;
    }

    fn abort(&mut self, reason: String) {
        self.phase = Phase::Aborted { reason: reason.clone() };
        self.decide("abort", reason);
    }

    fn advance(&mut self, reason: &str) {
        if self.step + 1 >= self.spec.steps.len() {
            self.phase = Phase::Promoted;
            self.decide("promote", format!("{reason}; last step passed: the canary takes all traffic"));
        } else {
            self.step += 1;
            self.decide("advance", format!("{reason}; on to step {}", self.step));
        }
    }

    /// One look at the canary.
    pub fn tick(&mut self, now_ms: u64, obs: &Observation) -> Tick {
        // Paused or holding, a rollout still ends when the guard takes the canary out.
        if self.phase.is_active() && self.applied.is_some() && obs.guard_out {
            let why = obs.held_out.as_ref().and_then(HeldOut::why).map_or(String::new(), |w| format!(": {w}"));
            self.abort(format!("the data-plane guard took the canary out of the split{why}"));
            return Tick::Changed;
        }
        if self.phase != Phase::Running {
            return Tick::Wait;
        }
        if self.applied != Some(self.step) {
            if let Some(Stage::Hold) = self.spec.steps.get(self.step).map(|s| s.stage()) {
                self.phase = Phase::Holding { reason: format!("hold point at step {}: `resume` goes on", self.step) };
                self.decide("hold", format!("hold point at step {}", self.step));
                self.applied = Some(self.step);
                return Tick::Changed;
            }
            return Tick::Apply(self.traffic());
        }
        let Some(step) = self.spec.steps.get(self.step) else {
            self.phase = Phase::Promoted;
            return Tick::Changed;
        };
        let b = &self.baseline;
        if obs.canary.total < b.canary.total
            || obs.stable.total < b.stable.total
            || obs.canary.shadowed < b.canary.shadowed
            || obs.compared.rows < b.compared.rows
        {
            // Envoy (or the collector) restarted and its counters began again at 0: the step's
            // evidence so far is gone, its clock is not.
            self.baseline = obs.clone();
            self.decide(
                "rebaseline",
                "counters went backwards (Envoy or the collector restarted): the step counts again from now".into(),
            );
            return Tick::Changed;
        }
        let canary = obs.canary.since(&self.baseline.canary);
        let stable = obs.stable.since(&self.baseline.stable);
        let a = &self.spec.analysis;
        let alpha = 1.0 - a.confidence;
        if canary.total > 0 && stable.total > 0 {
            let ratio = |c: &Counts| c.bad as f64 / c.total as f64;
            let (rc, rs) = (ratio(&canary), ratio(&stable));
            let p = stats::fisher_worse(canary.bad, canary.total, stable.bad, stable.total);
            if rc - rs >= a.max_error_increase && p < alpha {
                self.abort(format!(
                    "error ratio {:.2}% ({}/{}) against the stable version's {:.2}% ({}/{}), Fisher p = {p:.1e}",
                    100.0 * rc,
                    canary.bad,
                    canary.total,
                    100.0 * rs,
                    stable.bad,
                    stable.total
                ));
                return Tick::Changed;
            }
            let medians = stats::median(&canary.latency, &obs.bounds).zip(stats::median(&stable.latency, &obs.bounds));
            if let (Some((mc, ms)), Some(p)) = (medians, stats::mann_whitney_worse(&canary.latency, &stable.latency))
                && ms > 0.0
                && mc / ms > a.max_latency_ratio
                && mc - ms >= a.min_latency_increase_ms
                && p < alpha
            {
                self.abort(format!(
                    "median latency {mc:.1} ms against the stable version's {ms:.1} ms ({:.2}×), Mann-Whitney p = {p:.1e}",
                    mc / ms
                ));
                return Tick::Changed;
            }
        }
        let elapsed_ms = now_ms.saturating_sub(self.step_started_ms);
        let served = match step.stage() {
            Stage::Shadow(_) => canary.shadowed,
            _ => canary.total,
        };
        let long_enough = elapsed_ms >= u64::try_from(step.min_duration().as_millis()).unwrap_or(u64::MAX);
        let compared = obs.compared.since(&self.baseline.compared);
        let rows_short = step.max_disagreement.is_some() && compared.rows < a.min_compared_rows;
        if long_enough && served >= step.min_requests && !rows_short {
            if let Some(max) = step.max_disagreement {
                let (shadow, noise, excess) = compared.disagreement();
                let said = format!(
                    "{:.2}% of {} compared rows disagree with the stable version's answers, {:.2}% between the stable version's own (noise)",
                    100.0 * shadow,
                    compared.rows,
                    100.0 * noise
                );
                if excess > max {
                    self.abort(format!(
                        "shadow disagreement: {said}; {:.2}% above the noise > {:.2}%",
                        100.0 * excess,
                        100.0 * max
                    ));
                    return Tick::Changed;
                }
                self.advance(&format!("step {} passed: {said}", self.step));
                return Tick::Changed;
            }
            self.advance(&format!(
                "step {} passed: {served} canary requests in {:.0} s, {} failed",
                self.step,
                elapsed_ms as f64 / 1e3,
                canary.bad
            ));
            return Tick::Changed;
        }
        let deadline = u64::try_from(self.spec.quiet_deadline().as_millis()).unwrap_or(u64::MAX);
        if elapsed_ms >= deadline && (served < step.min_requests || rows_short) {
            let reason = format!(
                "quiet: {served} of the {} canary requests step {} needs ({} of {} compared rows) after {:.0} s; `resume` waits longer, `promote` or `abort` decide",
                step.min_requests,
                self.step,
                compared.rows,
                if step.max_disagreement.is_some() { a.min_compared_rows } else { 0 },
                elapsed_ms as f64 / 1e3
            );
            self.phase = Phase::Holding { reason: reason.clone() };
            self.decide("hold", reason);
            return Tick::Changed;
        }
        Tick::Wait
    }

    /// `pause`: stops judging and advancing; traffic stays as it is.
    pub fn pause(&mut self) -> Result<String, Refused> {
        match self.phase {
            Phase::Running => {
                self.phase = Phase::Paused;
                self.decide("pause", "paused by hand".into());
                Ok(format!("paused at step {} (traffic unchanged)", self.step))
            }
            ref p => Err(Refused::NotRunning(p.name())),
        }
    }

    /// `resume`: a paused or holding rollout runs again; past a hold point, on to the next step.
    /// The step's clock restarts (a quiet step gets a new deadline).
    pub fn resume(&mut self, now_ms: u64) -> Result<String, Refused> {
        match &self.phase {
            Phase::Paused => {}
            Phase::Holding { .. } => {
                if let Some(Stage::Hold) = self.spec.steps.get(self.step).map(|s| s.stage()) {
                    self.advance("resumed past the hold point");
                    if self.phase == Phase::Promoted {
                        return Ok("resumed: the hold point was the last step, the canary takes all traffic".into());
                    }
                }
            }
            p => return Err(Refused::NothingTo { phase: p.name(), command: "resume" }),
        }
        self.phase = Phase::Running;
        self.step_started_ms = now_ms;
        self.decide("resume", "resumed by hand".into());
        Ok(format!("running again at step {}", self.step))
    }

    /// `promote`: the canary takes all traffic now.
    pub fn promote(&mut self) -> Result<String, Refused> {
        if !self.phase.is_active() {
            return Err(Refused::NothingTo { phase: self.phase.name(), command: "promote" });
        }
        self.phase = Phase::Promoted;
        self.decide("promote", "promoted by hand".into());
        Ok("promoted: the canary takes all traffic".into())
    }

    /// `abort`: the canary gets nothing now.
    pub fn abort_by_hand(&mut self, reason: &str) -> Result<String, Refused> {
        if !self.phase.is_active() {
            return Err(Refused::NothingTo { phase: self.phase.name(), command: "abort" });
        }
        self.abort(format!("aborted by hand: {reason}"));
        Ok("aborted: the canary gets no traffic".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Spec {
        Spec::parse(text).unwrap()
    }

    const BOUNDS: [f64; 5] = [5.0, 10.0, 25.0, 100.0, f64::MAX];

    /// Cumulative counts after `n` requests of which `bad` failed, latencies in bucket `b`.
    fn counts(n: u64, bad: u64, b: usize) -> Counts {
        let mut latency = vec![0; BOUNDS.len()];
        latency[b] = n;
        Counts { total: n, bad, latency, shadowed: 0 }
    }

    fn obs(canary: Counts, stable: Counts) -> Observation {
        Observation { canary, stable, bounds: BOUNDS.to_vec(), ..Observation::default() }
    }

    /// Runs ticks every second from `t0`, with the canary and stable serving `rate_c`/`rate_s`
    /// requests a second at these bad shares and latency buckets, applying what it asks.
    fn drive(st: &mut State, seconds: u64, rate_c: u64, bad_c: f64, bucket_c: usize, rate_s: u64) -> Vec<String> {
        drive_from(st, 0, seconds, rate_c, bad_c, bucket_c, rate_s)
    }

    fn drive_from(
        st: &mut State,
        from: u64,
        seconds: u64,
        rate_c: u64,
        bad_c: f64,
        bucket_c: usize,
        rate_s: u64,
    ) -> Vec<String> {
        let mut log = Vec::new();
        let mut seen = (from * rate_c, from * rate_s);
        for t in from..from + seconds {
            let now = 1_000_000 + t * 1000;
            seen = (seen.0 + rate_c, seen.1 + rate_s);
            let o = obs(counts(seen.0, (seen.0 as f64 * bad_c) as u64, bucket_c), counts(seen.1, 0, 1));
            match st.tick(now, &o) {
                Tick::Apply(traffic) => {
                    log.push(format!("apply {traffic:?}"));
                    st.started(now, o);
                }
                Tick::Changed => log.push(format!("{}: {}", st.decision, st.reason)),
                Tick::Wait => {}
            }
        }
        log
    }

    #[test]
    fn a_healthy_canary_goes_step_by_step_to_all_traffic() {
        let mut st = State::new(
            spec(
                "model: mlp\ncanary: v2\nsteps:\n - {weight: 10, min_duration: 5s, min_requests: 20}\n - {weight: 50, min_duration: 5s, min_requests: 20}\n",
            ),
            "v1".into(),
            0,
        );
        let log = drive(&mut st, 20, 10, 0.0, 1, 90);
        assert_eq!(st.phase, Phase::Promoted, "{log:#?}");
        assert_eq!(st.traffic(), Traffic::Weight(100));
        assert!(log[0] == "apply Weight(10)" && log.iter().any(|l| l == "apply Weight(50)"), "{log:#?}");
    }

    #[test]
    fn a_failing_canary_is_aborted_with_the_numbers() {
        let mut st =
            State::new(spec("model: mlp\ncanary: v2\nsteps:\n - {weight: 10, min_duration: 60s}\n"), "v1".into(), 0);
        let log = drive(&mut st, 10, 10, 0.2, 1, 90);
        let Phase::Aborted { reason } = &st.phase else { panic!("{log:#?}") };
        assert!(reason.starts_with("error ratio 20.00%"), "{reason}");
        assert_eq!(st.traffic(), Traffic::Weight(0));
    }

    #[test]
    fn a_slow_canary_is_aborted_on_latency() {
        let mut st =
            State::new(spec("model: mlp\ncanary: v2\nsteps:\n - {weight: 10, min_duration: 60s}\n"), "v1".into(), 0);
        drive(&mut st, 10, 10, 0.0, 3, 90);
        let Phase::Aborted { reason } = &st.phase else { panic!("{:?}", st.phase) };
        assert!(reason.starts_with("median latency"), "{reason}");
    }

    #[test]
    fn a_canary_slower_by_a_fraction_of_a_millisecond_is_not_aborted() {
        // Medians of 0.5 and 1.5 ms: three times slower, and significant, but by 1 ms.
        const FINE: [f64; 3] = [1.0, 2.0, f64::MAX];
        let mut st =
            State::new(spec("model: mlp\ncanary: v2\nsteps:\n - {weight: 10, min_duration: 60s}\n"), "v1".into(), 0);
        st.started(0, Observation { bounds: FINE.to_vec(), ..Observation::default() });
        let c = Counts { total: 1000, bad: 0, latency: vec![0, 1000, 0], shadowed: 0 };
        let s = Counts { total: 9000, bad: 0, latency: vec![9000, 0, 0], shadowed: 0 };
        let o = Observation { canary: c, stable: s, bounds: FINE.to_vec(), ..Observation::default() };
        assert_eq!(st.tick(10_000, &o), Tick::Wait, "{}", st.reason);
        st.spec.analysis.min_latency_increase_ms = 0.5;
        assert_eq!(st.tick(11_000, &o), Tick::Changed);
        assert!(st.reason.starts_with("median latency 1.5 ms"), "{}", st.reason);
    }

    #[test]
    fn the_guard_tripping_aborts_the_rollout() {
        let mut st = State::new(spec("model: mlp\ncanary: v2\nsteps:\n - {weight: 10}\n"), "v1".into(), 0);
        assert_eq!(st.tick(0, &Observation::default()), Tick::Apply(Traffic::Weight(10)));
        st.started(0, Observation::default());
        let held_out =
            HeldOut { model: "mlp".into(), version: "v2".into(), since_s: Some(1), sli: Some("latency".into()) };
        let o = Observation { guard_out: true, held_out: Some(held_out), ..Observation::default() };
        assert_eq!(st.tick(1000, &o), Tick::Changed);
        let reason = "the data-plane guard took the canary out of the split: too many of its requests were slower than the SLO threshold";
        assert_eq!(st.phase, Phase::Aborted { reason: reason.into() });
    }

    #[test]
    fn a_paused_rollout_still_ends_when_the_guard_trips_and_a_counter_reset_rebaselines() {
        let mut st =
            State::new(spec("model: mlp\ncanary: v2\nsteps:\n - {weight: 10, min_duration: 60s}\n"), "v1".into(), 0);
        assert_eq!(st.tick(0, &Observation::default()), Tick::Apply(Traffic::Weight(10)));
        st.started(0, obs(counts(100, 0, 1), counts(900, 0, 1)));
        // Envoy restarted: fewer requests than at the step's start.
        let after = obs(counts(5, 0, 1), counts(40, 0, 1));
        assert_eq!(st.tick(1000, &after), Tick::Changed);
        assert_eq!((st.decision.as_str(), &st.baseline), ("rebaseline", &after));
        assert_eq!(st.phase, Phase::Running);
        st.pause().unwrap();
        let out = Observation { guard_out: true, ..after };
        assert_eq!(st.tick(2000, &out), Tick::Changed);
        assert!(matches!(st.phase, Phase::Aborted { .. }), "{:?}", st.phase);
    }

    #[test]
    fn a_quiet_canary_holds_at_the_deadline_and_never_fails() {
        let mut st = State::new(
            spec(
                "model: mlp\ncanary: v2\nsteps:\n - {weight: 1, min_duration: 5s, min_requests: 500}\nanalysis: {quiet_deadline: 30s}\n",
            ),
            "v1".into(),
            0,
        );
        let log = drive(&mut st, 29, 1, 0.0, 1, 99);
        assert_eq!(st.phase, Phase::Running, "{log:#?}");
        drive_from(&mut st, 29, 5, 1, 0.0, 1, 99);
        let Phase::Holding { reason } = &st.phase else { panic!("{:?}", st.phase) };
        assert!(reason.starts_with("quiet: "), "{reason}");
        assert_eq!(st.traffic(), Traffic::Weight(1), "traffic stays while it holds");
        assert!(st.resume(2_000_000).is_ok());
        assert_eq!(st.phase, Phase::Running);
    }

    #[test]
    fn stages_hold_points_and_commands() {
        let mut st = State::new(
            spec(
                "model: mlp\ncanary: v2\nsteps:\n - {ab: true, min_duration: 1s, min_requests: 1}\n - {weight: 20, min_duration: 1s, min_requests: 1}\n - {hold: true}\n - {shadow: 10}\n",
            ),
            "v1".into(),
            0,
        );
        assert_eq!(st.traffic(), Traffic::Ab);
        drive(&mut st, 6, 10, 0.0, 1, 90);
        let Phase::Holding { reason } = &st.phase else { panic!("{:?}", st.phase) };
        assert!(reason.contains("hold point at step 2"), "{reason}");
        assert_eq!(st.traffic(), Traffic::Weight(20), "a hold point keeps the traffic before it");
        assert!(st.pause().is_err(), "holding, not running");
        assert_eq!(st.resume(0).unwrap(), "running again at step 3");
        assert_eq!(st.traffic(), Traffic::Shadow(10.0));
        assert!(st.pause().is_ok());
        assert_eq!(st.tick(5_000_000, &Observation::default()), Tick::Wait, "paused: no judging");
        assert!(st.promote().is_ok());
        assert_eq!((st.phase.name(), st.traffic()), ("promoted", Traffic::Weight(100)));
        assert!(st.abort_by_hand("late").is_err(), "nothing to abort once promoted");
    }

    #[test]
    fn a_command_the_state_does_not_allow_is_refused_saying_why() {
        let mut st = State::new(spec("model: mlp\ncanary: v2\nsteps:\n - {weight: 10}\n"), "v1".into(), 0);
        st.pause().unwrap();
        assert_eq!(st.pause().unwrap_err().to_string(), "the rollout is paused, not running");
        st.promote().unwrap();
        assert_eq!(st.resume(0), Err(Refused::NothingTo { phase: "promoted", command: "resume" }));
        assert_eq!(st.promote().unwrap_err().to_string(), "the rollout is promoted: nothing to promote");
        assert_eq!(st.abort_by_hand("late").unwrap_err().to_string(), "the rollout is promoted: nothing to abort");
    }

    #[test]
    fn a_shadow_stage_promotes_on_agreement_less_the_noise_and_aborts_beyond_it() {
        let text = "model: mlp\ncanary: v2\nsteps:\n - {shadow: 50, min_duration: 1s, min_requests: 1, max_disagreement: 0.05}\n - {weight: 100}\nanalysis: {min_compared_rows: 100}\n";
        let shadowed = |n| Counts { shadowed: n, ..Counts::default() };
        let run = |compared: Compared| {
            let mut st = State::new(spec(text), "v1".into(), 0);
            assert_eq!(st.tick(0, &Observation::default()), Tick::Apply(Traffic::Shadow(50.0)));
            st.started(0, Observation::default());
            let o = Observation { canary: shadowed(500), compared, ..Observation::default() };
            (st.tick(5_000, &o), st)
        };
        // Too few rows compared: it waits.
        let (tick, _) = run(Compared { rows: 99, ..Compared::default() });
        assert_eq!(tick, Tick::Wait);
        // 8% disagree, 4% of it noise: 4% above the noise passes 5%.
        let (tick, st) = run(Compared { rows: 200, disagreeing: 16, noise_rows: 200, noise_disagreeing: 8 });
        assert_eq!((tick, st.step), (Tick::Changed, 1), "{}", st.reason);
        assert!(st.reason.contains("8.00% of 200 compared rows"), "{}", st.reason);
        // 8% against no noise aborts.
        let (_, st) = run(Compared { rows: 200, disagreeing: 16, noise_rows: 200, noise_disagreeing: 0 });
        let Phase::Aborted { reason } = &st.phase else { panic!("{:?}", st.phase) };
        assert!(reason.starts_with("shadow disagreement: 8.00%"), "{reason}");
        assert_eq!(st.traffic(), Traffic::Weight(0));
    }

    #[test]
    fn the_state_survives_a_restart_byte_for_byte() {
        let mut st =
            State::new(spec("model: mlp\ncanary: v2\nsteps:\n - {weight: 10, min_duration: 60s}\n"), "v1".into(), 0);
        drive(&mut st, 3, 10, 0.0, 1, 90);
        let text = serde_json::to_string(&st).unwrap();
        let back: State = serde_json::from_str(&text).unwrap();
        assert_eq!(back, st);
        // Resumed, the applied step is not applied again.
        let mut back = back;
        assert_ne!(back.tick(1_010_000, &st.baseline), Tick::Apply(Traffic::Weight(10)));
        // Every phase, reasons and all, round-trips too.
        back.abort_by_hand("test").unwrap();
        assert_eq!(serde_json::from_str::<State>(&serde_json::to_string(&back).unwrap()).unwrap(), back);
    }
}
