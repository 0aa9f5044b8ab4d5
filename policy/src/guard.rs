//! The data-plane guard: from a short window of a version's outcomes and the stable version's,
//! decide whether to take the version out of the split; and route around the versions taken
//! out. The filter keeps the windows in Envoy's shared data, so every worker judges the same
//! counts, and latches a trip there, so every worker acts on it within a tick; all of the
//! deciding is here, tested natively.
//!
//! Two rules keep it from acting on noise, the failure modes of Flagger's and Argo's analyses:
//! too little traffic (either version below `min_requests` in the window) means *wait*, never
//! *fail*; and a version trips only when it is worse than the stable one both by a margin that
//! matters (`error_margin`, `slow_margin`) and by a one-sided two-proportion z-test (`z`), so a
//! shared baseline error rate, or a handful of failures at low counts, does not trip it. Once
//! tripped it stays out: nothing but a new `epoch` clears the latch.

use std::collections::BTreeMap;
use std::fmt;

use crate::config::{Config, Guard, ModelPolicy};
use crate::slo::{CREATE_CAS, Counts, SetResult, SharedStore};
use crate::split::{Decision, Reason};

/// The shared-data key of a version's guard window (a `slo::Window` of the guard's spec), read
/// and written through an [`EpochStore`]: the value carries its epoch, so a reset starts from
/// an empty window (the failures that tripped the latch would trip the new one at once) in the
/// same key. Envoy cannot delete a key; one key per epoch grew with every reset.
pub fn window_key(model: &str, version: &str) -> String {
    format!("switchyard/guard/window/{model}/{version}")
}

/// The shared-data key that latches a trip ([`Latch`], through an [`EpochStore`]): while it
/// holds this epoch's latch, the version is out of the split. A new `epoch` makes an older
/// latch read as absent, which is how a latch is cleared.
pub fn latch_key(model: &str, version: &str) -> String {
    format!("switchyard/guard/tripped/{model}/{version}")
}

/// A [`SharedStore`] whose values belong to one guard epoch: stored with it (8 bytes, little
/// endian, first), read only when they carry it. A value of an older epoch reads as absent and
/// is overwritten by the next write (a creation's [`CREATE_CAS`] becomes its token); one of a
/// newer epoch also reads as absent but is never overwritten (this worker's policy is the
/// stale one, for the moment it takes Envoy to hand every worker the new one).
pub struct EpochStore<'a, S> {
    inner: &'a mut S,
    epoch: u64,
    /// The key last read, when it held another epoch's value: its token, and whether newer.
    other: Option<(String, u32, bool)>,
}

impl<'a, S: SharedStore> EpochStore<'a, S> {
    pub fn new(inner: &'a mut S, epoch: u64) -> EpochStore<'a, S> {
        EpochStore { inner, epoch, other: None }
    }
}

impl<S: SharedStore> SharedStore for EpochStore<'_, S> {
    fn get(&mut self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.other = None;
        let (value, cas) = self.inner.get(key)?;
        let (head, rest) = value.split_at_checked(8).unwrap_or((&[], &value));
        let stored = <[u8; 8]>::try_from(head).map(u64::from_le_bytes).ok();
        match stored {
            Some(e) if e == self.epoch => Some((rest.to_vec(), cas)),
            // An older epoch's value (or bytes too short to be one): absent. The keys are new
            // with this layout, so no value of an earlier filter release is read here.
            Some(e) if e > self.epoch => {
                self.other = Some((key.to_owned(), cas, true));
                None
            }
            _ => {
                self.other = Some((key.to_owned(), cas, false));
                None
            }
        }
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> SetResult {
        let mut cas = cas;
        if let Some((other, token, newer)) = &self.other
            && other == key
        {
            if *newer {
                return SetResult::CasMismatch;
            }
            if cas == Some(CREATE_CAS) {
                cas = Some(*token);
            }
        }
        let mut tagged = Vec::with_capacity(8 + value.len());
        tagged.extend_from_slice(&self.epoch.to_le_bytes());
        tagged.extend_from_slice(value);
        self.inner.set(key, &tagged, cas)
    }
}

/// A guard epoch the deploy path changed in a policy before putting it in force, so that no
/// latch of an epoch that was once in force comes back by accident (an operator re-applying
/// the file in git, with the epoch it had an incident ago).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochMove {
    pub model: String,
    /// The epoch the policy asked for.
    pub asked: u64,
    /// The epoch put in force instead.
    pub to: u64,
    /// Why: the epoch in force is kept (the policy's was older), or a fresh one is taken (the
    /// policy's was in force before, but is not now).
    pub kept: bool,
}

impl fmt::Display for EpochMove {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (m, asked, to) = (&self.model, self.asked, self.to);
        if self.kept {
            write!(
                f,
                "models.{m}.guard.epoch {asked} is older than the {to} in force: kept {to}, so the guard's latches \
                 stay as they are (to clear them, apply epoch {})",
                to + 1
            )
        } else {
            write!(
                f,
                "models.{m}.guard.epoch {asked} was in force before: epoch {to} instead, so its old latches stay cleared"
            )
        }
    }
}

/// Moves `next`'s guard epochs forward where putting them in force as they are would bring
/// back latches: an epoch older than the one `in_force`, or one at or below the highest this
/// Envoy ever ran (`highest`, per model) that is not the one in force. An epoch equal to the
/// one in force is a plain policy change and stays. Returns what was moved; the caller records
/// the epochs now in force into `highest` ([`record_epochs`]).
pub fn carry_epochs(next: &mut Config, in_force: Option<&Config>, highest: &BTreeMap<String, u64>) -> Vec<EpochMove> {
    let mut moves = Vec::new();
    for (model, policy) in &mut next.models {
        let Some(g) = policy.guard.as_mut() else { continue };
        let now = in_force.and_then(|c| c.models.get(model)).and_then(|m| m.guard.as_ref()).map(|g| g.epoch);
        let top = highest.get(model).copied();
        let to = match now {
            Some(now) if g.epoch == now => continue,
            Some(now) if g.epoch < now => EpochMove { model: model.clone(), asked: g.epoch, to: now, kept: true },
            _ => match top {
                Some(top) if g.epoch <= top => {
                    EpochMove { model: model.clone(), asked: g.epoch, to: top + 1, kept: false }
                }
                _ => continue,
            },
        };
        g.epoch = to.to;
        moves.push(to);
    }
    moves
}

/// Adds the epochs of `config` to the highest ever in force.
pub fn record_epochs(config: &Config, highest: &mut BTreeMap<String, u64>) {
    for (model, policy) in &config.models {
        if let Some(g) = &policy.guard {
            let top = highest.entry(model.clone()).or_insert(g.epoch);
            *top = (*top).max(g.epoch);
        }
    }
}

/// Which indicator tripped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sli {
    /// Availability: 5xx, timeouts, resets, shedding (`slo::Outcome::is_bad`).
    Errors,
    /// Successful requests slower than `slo.latency_ms`.
    Latency,
}

impl Sli {
    pub const ALL: [Sli; 2] = [Sli::Errors, Sli::Latency];

    /// The `sli` label, as the SLO metrics name the two indicators.
    pub fn as_str(self) -> &'static str {
        match self {
            Sli::Errors => "availability",
            Sli::Latency => "latency",
        }
    }
}

/// What a latch holds in shared data: when the version was taken out, on which SLI, and the
/// trip's counts in words; so every worker, and the metrics, can say since when and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latch {
    pub since_ms: u64,
    /// `None` for a latch a filter of an earlier release wrote (its value was the words only).
    pub sli: Option<Sli>,
    pub why: String,
}

impl Latch {
    pub fn of_trip(t: &Trip, window: &str, since_ms: u64) -> Latch {
        Latch { since_ms, sli: Some(t.sli), why: format!("{t} over {window}") }
    }

    pub fn encode(&self) -> String {
        let sli = self.sli.map_or("unknown", Sli::as_str);
        format!("{} {sli} {}", self.since_ms, self.why)
    }

    pub fn decode(bytes: &[u8]) -> Latch {
        let text = String::from_utf8_lossy(bytes);
        let mut parts = text.splitn(3, ' ');
        let since = parts.next().and_then(|s| s.parse::<u64>().ok());
        let sli = parts.next().and_then(|s| Sli::ALL.into_iter().find(|x| x.as_str() == s));
        match (since, sli, parts.next()) {
            (Some(since_ms), Some(sli), Some(why)) => Latch { since_ms, sli: Some(sli), why: why.to_owned() },
            _ => Latch { since_ms: 0, sli: None, why: text.into_owned() },
        }
    }
}

/// Why a version was taken out: the counts of both versions in the window when it tripped.
#[derive(Debug, Clone, PartialEq)]
pub struct Trip {
    pub sli: Sli,
    pub bad: u64,
    pub total: u64,
    pub stable_bad: u64,
    pub stable_total: u64,
    pub z: f64,
}

impl fmt::Display for Trip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.sli {
            Sli::Errors => "error ratio",
            Sli::Latency => "share of requests slower than the SLO threshold",
        };
        let pct = |bad: u64, total: u64| if total == 0 { 0.0 } else { 100.0 * bad as f64 / total as f64 };
        write!(
            f,
            "{what} {:.1}% ({}/{}) against the stable version's {:.1}% ({}/{}), z = {:.1}",
            pct(self.bad, self.total),
            self.bad,
            self.total,
            pct(self.stable_bad, self.stable_total),
            self.stable_bad,
            self.stable_total,
            self.z
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Too few requests in the window, the version's or the stable one's, to judge.
    Wait,
    Healthy,
    Trip(Trip),
}

/// Judges a version's window against the stable version's. Latency is judged only when
/// `judge_latency` (the model has an SLO threshold), and only on enough successful requests.
pub fn judge(g: &Guard, judge_latency: bool, version: &Counts, stable: &Counts) -> Verdict {
    if version.total < g.min_requests || stable.total < g.min_requests {
        return Verdict::Wait;
    }
    let trip = |sli, bad, total, stable_bad, stable_total, margin| {
        worse(bad, total, stable_bad, stable_total, margin, g.z).map(|z| Trip {
            sli,
            bad,
            total,
            stable_bad,
            stable_total,
            z,
        })
    };
    if let Some(t) = trip(Sli::Errors, version.bad, version.total, stable.bad, stable.total, g.error_margin) {
        return Verdict::Trip(t);
    }
    if judge_latency
        && version.latency_total >= g.min_requests
        && stable.latency_total >= g.min_requests
        && let Some(t) = trip(
            Sli::Latency,
            version.latency_bad,
            version.latency_total,
            stable.latency_bad,
            stable.latency_total,
            g.slow_margin,
        )
    {
        return Verdict::Trip(t);
    }
    Verdict::Healthy
}

/// Bad events a version needs in the window before it can trip: at a 0.25% shared error ratio
/// and 20 requests, five failures by chance have a probability of about 1e-9.
const MIN_BAD: u64 = 5;

/// The z score when `bad_a / n_a` exceeds `bad_b / n_b` by at least `margin` and the one-sided
/// pooled two-proportion z-test reaches `z_min`. Both counts are positive (see `judge`).
fn worse(bad_a: u64, n_a: u64, bad_b: u64, n_b: u64, margin: f64, z_min: f64) -> Option<f64> {
    let (na, nb) = (n_a as f64, n_b as f64);
    let (pa, pb) = (bad_a as f64 / na, bad_b as f64 / nb);
    // The normal approximation is far too bold on a handful of events (1 failure in 20 against
    // 0 in 1000 scores z = 7): no trip on fewer than MIN_BAD of them.
    if pa - pb < margin || bad_a < MIN_BAD {
        return None;
    }
    let pooled = (bad_a + bad_b) as f64 / (na + nb);
    let se = (pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb)).sqrt();
    // The pooled variance vanishes only when every request of both failed or none did, and then
    // the ratios are equal (refused above); guard the division all the same.
    let z = if se > 0.0 { (pa - pb) / se } else { f64::INFINITY };
    (z >= z_min).then_some(z)
}

/// `d` with the versions taken out (`out[i]`) avoided: a weighted or sticky choice of one goes
/// to the stable version, and so does an override unless `allow_override`; a shadow to one stops
/// unless `keep_shadow`. The stable version is never taken out.
pub fn reroute(policy: &ModelPolicy, mut d: Decision, out: &[bool]) -> Decision {
    let Some(g) = &policy.guard else { return d };
    let is_out = |i: usize| out.get(i).copied().unwrap_or(false);
    if is_out(d.version) && !(d.reason == Reason::Override && g.allow_override) {
        d.version = policy.stable();
        d.reason = Reason::Guarded;
    }
    if d.shadow.is_some_and(|s| (is_out(s) && !g.keep_shadow) || s == d.version) {
        d.shadow = None;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Override, Shadow, Version};
    use crate::hash::Rng;
    use crate::slo::{Outcome, Window, WindowSpec};
    use crate::split::{RequestFacts, decide};

    fn guard() -> Guard {
        let c = Config::parse(
            br#"{"models": {"m": {"versions": [{"name": "v1", "cluster": "a", "weight": 90},
                {"name": "v2", "cluster": "b", "weight": 10}], "guard": {}}}}"#,
        )
        .unwrap();
        c.models["m"].guard.clone().unwrap()
    }

    fn counts(total: u64, bad: u64) -> Counts {
        Counts { total, bad, latency_total: total - bad, latency_bad: 0 }
    }

    fn with_epoch(epoch: Option<u64>) -> Config {
        let guard = epoch.map_or(String::new(), |e| format!(r#", "guard": {{"epoch": {e}}}"#));
        Config::parse(
            format!(
                r#"{{"models": {{"m": {{"versions": [{{"name": "v1", "cluster": "a", "weight": 90}},
                {{"name": "v2", "cluster": "b", "weight": 10}}]{guard}}}}}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn carried(next: Option<u64>, now: Option<u64>, top: Option<u64>) -> (Option<u64>, Vec<EpochMove>) {
        let mut next = with_epoch(next);
        let now = with_epoch(now);
        let highest: BTreeMap<String, u64> = top.map(|t| ("m".to_owned(), t)).into_iter().collect();
        let moves = carry_epochs(&mut next, Some(&now), &highest);
        (next.models["m"].guard.as_ref().map(|g| g.epoch), moves)
    }

    #[test]
    fn an_older_epoch_keeps_the_one_in_force_and_a_reused_one_takes_a_fresh_one() {
        // The demo's sequence: epoch 1 in force after a reset, the file in git says 0.
        let (epoch, moves) = carried(Some(0), Some(1), Some(1));
        assert_eq!(epoch, Some(1));
        assert!(moves[0].kept && moves[0].to_string().contains("older than the 1 in force: kept 1"), "{}", moves[0]);
        // The same epoch is a plain policy change; a newer one is a reset, both as asked.
        assert_eq!(carried(Some(1), Some(1), Some(1)), (Some(1), vec![]));
        assert_eq!(carried(Some(2), Some(1), Some(1)), (Some(2), vec![]));
        // A guard removed at epoch 3 and added back at 0 would find epoch 0's latches.
        let (epoch, moves) = carried(Some(0), None, Some(3));
        assert_eq!(epoch, Some(4));
        assert!(!moves[0].kept && moves[0].to_string().contains("was in force before: epoch 4"), "{}", moves[0]);
        // Nothing known, nothing moved; no guard, nothing to move.
        assert_eq!(carried(Some(0), None, None), (Some(0), vec![]));
        assert_eq!(carried(None, Some(2), Some(2)), (None, vec![]));
    }

    #[test]
    fn a_latch_says_since_when_and_why_and_an_old_one_is_still_read() {
        let Verdict::Trip(t) = judge(&guard(), true, &counts(120, 60), &counts(1000, 10)) else { panic!() };
        let l = Latch::of_trip(&t, "6s", 1_765_000_000_123);
        assert!(l.encode().starts_with("1765000000123 availability error ratio 50.0%"), "{}", l.encode());
        assert_eq!(Latch::decode(l.encode().as_bytes()), l);
        let old = Latch::decode(b"error ratio 50.0% (60/120) over 6s");
        assert_eq!((old.since_ms, old.sli, old.why.as_str()), (0, None, "error ratio 50.0% (60/120) over 6s"));
    }

    #[test]
    fn one_key_per_version_across_epochs_an_older_value_is_absent_and_a_newer_one_is_never_overwritten() {
        use crate::slo::ModelStore;
        let mut store = ModelStore::default();
        let key = latch_key("m", "v2");
        assert_eq!(EpochStore::new(&mut store, 0).set(&key, b"out", Some(CREATE_CAS)), SetResult::Ok);
        assert_eq!(EpochStore::new(&mut store, 0).get(&key).map(|(v, _)| v), Some(b"out".to_vec()));
        // Epoch 1: the latch of epoch 0 reads as absent, and a trip now takes the same key.
        let mut one = EpochStore::new(&mut store, 1);
        assert_eq!(one.get(&key), None);
        assert_eq!(one.set(&key, b"out again", Some(CREATE_CAS)), SetResult::Ok);
        assert_eq!(store.map.len(), 1, "the same key");
        // A worker still on epoch 0 neither sees epoch 1's latch nor overwrites it.
        let mut stale = EpochStore::new(&mut store, 0);
        assert_eq!(stale.get(&key), None);
        assert_eq!(stale.set(&key, b"out", Some(CREATE_CAS)), SetResult::CasMismatch);
        assert_eq!(EpochStore::new(&mut store, 1).get(&key).map(|(v, _)| v), Some(b"out again".to_vec()));
        // A value too short to carry an epoch is overwritten as an older one.
        store.map.insert(key.clone(), (b"x".to_vec(), 7));
        let mut now = EpochStore::new(&mut store, 3);
        assert_eq!(now.get(&key), None);
        assert_eq!(now.set(&key, b"x", Some(CREATE_CAS)), SetResult::Ok);
    }

    #[test]
    fn guard_windows_merge_per_epoch_in_one_key() {
        use crate::slo::{ModelStore, WindowSpec, merge};
        let mut store = ModelStore::default();
        let spec = WindowSpec::parse_short("6s").unwrap();
        let key = window_key("m", "v2");
        let mut d = counts(10, 10);
        let w = merge(&mut EpochStore::new(&mut store, 0), &key, &spec, &mut d, 1000, 3).unwrap();
        assert_eq!(w.totals(1000).bad, 10);
        let mut d = counts(5, 0);
        let w = merge(&mut EpochStore::new(&mut store, 1), &key, &spec, &mut d, 1000, 3).unwrap();
        assert_eq!((w.totals(1000).total, w.totals(1000).bad), (5, 0), "a new epoch starts from an empty window");
        assert_eq!(store.map.len(), 1);
    }

    #[test]
    fn the_highest_epoch_only_ever_rises() {
        let mut highest = BTreeMap::new();
        record_epochs(&with_epoch(Some(3)), &mut highest);
        record_epochs(&with_epoch(Some(1)), &mut highest);
        record_epochs(&with_epoch(None), &mut highest);
        assert_eq!(highest.get("m"), Some(&3));
    }

    #[test]
    fn defaults_are_documented_ones() {
        let g = guard();
        assert_eq!((g.window.as_str(), g.min_requests, g.error_margin, g.slow_margin, g.z), ("6s", 20, 0.05, 0.1, 5.0));
        assert_eq!((g.epoch, g.allow_override, g.keep_shadow, g.stable), (0, false, false, None));
    }

    #[test]
    fn too_little_traffic_waits_however_bad_it_looks() {
        let g = guard();
        assert_eq!(judge(&g, true, &counts(19, 19), &counts(1000, 0)), Verdict::Wait);
        assert_eq!(judge(&g, true, &counts(500, 500), &counts(19, 0)), Verdict::Wait, "no stable to compare with");
        assert!(matches!(judge(&g, true, &counts(20, 20), &counts(1000, 0)), Verdict::Trip(_)));
    }

    #[test]
    fn a_dead_version_trips_and_says_why() {
        let Verdict::Trip(t) = judge(&guard(), true, &counts(120, 60), &counts(1000, 10)) else { panic!() };
        assert_eq!(t.sli, Sli::Errors);
        let text = t.to_string();
        assert!(
            text.starts_with("error ratio 50.0% (60/120) against the stable version's 1.0% (10/1000), z = "),
            "{text}"
        );
    }

    #[test]
    fn a_shared_baseline_is_not_the_canarys_fault() {
        let g = guard();
        // 5% errors on both, and a canary a little worse by chance: healthy.
        assert_eq!(judge(&g, true, &counts(300, 18), &counts(2700, 135)), Verdict::Healthy);
        // Worse by more than the margin, but on few requests: not significant at z = 5.
        assert_eq!(judge(&g, true, &counts(20, 4), &counts(180, 9)), Verdict::Healthy);
    }

    #[test]
    fn a_failure_or_two_at_low_counts_is_not_a_trip() {
        let g = guard();
        assert_eq!(judge(&g, true, &counts(20, 1), &counts(1000, 0)), Verdict::Healthy);
        assert_eq!(judge(&g, true, &counts(20, 2), &counts(1000, 5)), Verdict::Healthy);
        assert!(matches!(judge(&g, true, &counts(20, 5), &counts(1000, 0)), Verdict::Trip(_)));
    }

    #[test]
    fn a_slow_version_trips_on_latency_only_with_an_slo() {
        let g = guard();
        let slow = Counts { total: 200, bad: 0, latency_total: 200, latency_bad: 90 };
        let fast = Counts { total: 2000, bad: 0, latency_total: 2000, latency_bad: 20 };
        let Verdict::Trip(t) = judge(&g, true, &slow, &fast) else { panic!() };
        assert_eq!(t.sli, Sli::Latency);
        assert_eq!(judge(&g, false, &slow, &fast), Verdict::Healthy);
    }

    /// The issue's false-rollback goal, simulated: 30 runs of 30 s at 500 req/s, the canary at
    /// 10%, both versions at the same baseline error ratio (1-5%), judged every 100 ms over the
    /// guard's sliding window as the filter does. Not one trip.
    #[test]
    fn healthy_canaries_are_never_taken_out_by_noise() {
        let g = guard();
        let spec = WindowSpec::parse_short(&g.window).unwrap();
        let mut rng = Rng::new(42);
        let mut looks = 0;
        for run in 0..30u64 {
            let baseline = 0.01 + 0.04 * (run as f64 / 29.0);
            let (mut canary, mut stable) = (Window::new(&spec), Window::new(&spec));
            for tick in 0..300u64 {
                let now_ms = tick * 100;
                for _ in 0..50 {
                    let outcome = if rng.next_f64() < baseline { Outcome::ServerError } else { Outcome::Success };
                    let event = Counts::event(outcome, 5, 100);
                    if rng.next_f64() < 0.1 { canary.add(now_ms, &event) } else { stable.add(now_ms, &event) }
                }
                let verdict = judge(&g, true, &canary.totals(now_ms), &stable.totals(now_ms));
                assert!(!matches!(verdict, Verdict::Trip(_)), "run {run} at {now_ms} ms: {verdict:?}");
                looks += 1;
            }
        }
        assert_eq!(looks, 9000);
    }

    /// And the canary that does fail is caught fast: 100% errors from t = 0 at 50 req/s to the
    /// canary, after 6 s of health, trips within 0.5 s.
    #[test]
    fn a_failing_canary_is_caught_within_half_a_second() {
        let g = guard();
        let spec = WindowSpec::parse_short(&g.window).unwrap();
        let (mut canary, mut stable) = (Window::new(&spec), Window::new(&spec));
        let ok = Counts::event(Outcome::Success, 5, 100);
        let failed = Counts::event(Outcome::UpstreamReset, 1, 100);
        let mut tripped_at = None;
        for tick in 0..120u64 {
            let now_ms = tick * 100;
            let faulty = now_ms >= 6000;
            for _ in 0..5 {
                canary.add(now_ms, if faulty { &failed } else { &ok });
            }
            for _ in 0..45 {
                stable.add(now_ms, &ok);
            }
            if let Verdict::Trip(_) = judge(&g, true, &canary.totals(now_ms), &stable.totals(now_ms)) {
                tripped_at = Some(now_ms);
                break;
            }
        }
        let at = tripped_at.expect("never tripped");
        assert!((6000..=6500).contains(&at), "tripped at {at} ms");
    }

    fn policy() -> ModelPolicy {
        let mut p = Config::parse(
            br#"{"models": {"m": {"versions": [{"name": "v1", "cluster": "a", "weight": 50},
                {"name": "v2", "cluster": "b", "weight": 50}], "guard": {}}}}"#,
        )
        .unwrap()
        .models
        .remove("m")
        .unwrap();
        p.override_ = Some(Override { header: "x-o".into(), allow: vec!["v1".into(), "v2".into()] });
        p.shadow = Some(Shadow { version: "v2".into(), percent: 100.0, compare: None });
        p
    }

    #[test]
    fn a_version_taken_out_gets_no_split_sticky_override_or_shadow_traffic() {
        let p = policy();
        let out = [false, true];
        let mut rng = Rng::new(7);
        for i in 0..2000 {
            let key = format!("user-{i}");
            let facts = RequestFacts {
                requested: (i % 3 == 0).then_some("v2"),
                sticky_key: (i % 2 == 0).then_some(key.as_str()),
                random: rng.next_u64(),
                shadow_random: 0.0,
            };
            let d = reroute(&p, decide(&p, &facts), &out);
            assert_eq!(d.version, 0, "{facts:?}");
            assert_eq!(d.shadow, None);
            let untouched = reroute(&p, decide(&p, &facts), &[false, false]);
            assert_eq!(untouched, decide(&p, &facts));
        }
    }

    #[test]
    fn the_policy_may_keep_the_override_and_the_shadow() {
        let mut p = policy();
        let g = p.guard.as_mut().unwrap();
        (g.allow_override, g.keep_shadow) = (true, true);
        let asked = RequestFacts { requested: Some("v2"), ..Default::default() };
        assert_eq!(reroute(&p, decide(&p, &asked), &[false, true]).version, 1);
        let split = RequestFacts { random: u64::MAX, ..Default::default() };
        let d = reroute(&p, decide(&p, &split), &[false, true]);
        assert_eq!((d.version, d.reason), (0, Reason::Guarded), "the split still avoids it");
        let to_stable = RequestFacts { random: 0, ..Default::default() };
        assert_eq!(reroute(&p, decide(&p, &to_stable), &[false, true]).shadow, Some(1));
    }

    #[test]
    fn the_stable_version_can_be_named() {
        let mut p = policy();
        p.versions.push(Version { name: "v3".into(), cluster: "c".into(), weight: 10 });
        p.guard.as_mut().unwrap().stable = Some("v3".into());
        assert_eq!(p.stable(), 2);
        let d = reroute(&p, decide(&p, &RequestFacts { random: 0, ..Default::default() }), &[true, false, false]);
        assert_eq!((d.version, d.reason), (2, Reason::Guarded));
    }

    #[test]
    fn bad_guards_are_refused_with_every_problem() {
        let e = Config::parse(
            br#"{"models": {"m": {"versions": [{"name": "v1", "cluster": "a", "weight": 1}],
                "guard": {"stable": "v9", "window": "5s", "min_requests": 0, "error_margin": 0,
                          "slow_margin": 2, "z": 0.5}}}}"#,
        )
        .unwrap_err()
        .to_string();
        for needle in [
            "guard.stable 'v9'",
            "guard.window: '5s'",
            "guard.min_requests must be positive",
            "guard.error_margin must be in (0, 1]",
            "guard.slow_margin must be in (0, 1]",
            "guard.z must be 1-10",
            "guard needs at least two versions",
        ] {
            assert!(e.contains(needle), "missing {needle:?} in {e}");
        }
    }
}
