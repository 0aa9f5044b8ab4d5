//! What a drill is (`Spec`), what its clients saw (`Rec`), and what it measured (`Outcome`),
//! with the pure arithmetic from the one to the other: the client-visible impact, its end,
//! the p99s, MTTD and MTTM.

use std::collections::BTreeMap;
use std::time::Duration;

/// The rules run on drill time: every window and `for:` divided by this (five minutes are
/// five seconds), with Prometheus scraping and evaluating every second.
pub const TIME_SCALE: u64 = 60;

/// The drill policy's latency objective: a slower answer is client-visible impact too. The
/// slow models' is 500 ms.
pub const SLO_LATENCY_MS: u64 = 100;
pub(crate) const SLOW_SLO_LATENCY_MS: u64 = 500;

/// One request of the traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct Rec {
    /// Seconds since the drill started, when the request was due to be sent (its intended
    /// time: a request that waited to leave shows the wait as latency).
    pub t: f64,
    /// 0: no answer (refused, reset, timed out).
    pub status: u16,
    /// From the intended send time to the answer (or to giving up).
    pub latency_ms: f64,
    /// The version that answered (`x-switchyard-version`); empty when none said.
    pub version: String,
}

impl Rec {
    pub fn failed(&self) -> bool {
        !(200..300).contains(&self.status)
    }

    /// Failed, or slower than the SLO's threshold.
    pub fn bad(&self, slo_ms: u64) -> bool {
        self.failed() || self.latency_ms > slo_ms as f64
    }

    /// When the answer came (or the client gave up), drill time.
    pub fn done(&self) -> f64 {
        self.t + self.latency_ms / 1e3
    }
}

/// The slow models' batching queue.
pub struct SlowModels {
    pub max_queue_size: u32,
}

/// Warm-up before the onset, the longest the drill waits for detection and mitigation, and
/// how long traffic must stay healthy to call the incident over.
pub struct Timing {
    pub warmup: Duration,
    pub deadline: Duration,
    pub healthy_tail: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            warmup: Duration::from_secs(10),
            deadline: Duration::from_secs(60),
            healthy_tail: Duration::from_secs(5),
        }
    }
}

/// What the clients' records say about the incident.
#[derive(Debug, Clone, PartialEq)]
pub struct Impact {
    /// When the last bad request (failed, or slower than the SLO) after the onset was
    /// answered; `None`: no client saw any.
    pub end: Option<f64>,
    /// Whether the traffic was healthy over the drill's last stretch (the healthy tail, or
    /// half the time since the onset if that is shorter).
    pub recovered: bool,
    /// Failed after the onset (non-2xx or no answer).
    pub failed: usize,
    /// Answered after the onset, but slower than the SLO.
    pub slow: usize,
    /// Without an answer, over the whole drill.
    pub unanswered: usize,
    /// Over the 5 s before the onset.
    pub p99_before_ms: f64,
    /// From the onset to 1 s past the impact's end.
    pub p99_during_ms: f64,
}

impl Impact {
    /// The impact in `records` (sorted by `t`) of a fault at `onset`, judged against an SLO of
    /// `slo_ms`.
    pub fn of(records: &[Rec], onset: f64, slo_ms: u64, healthy_tail: Duration) -> Impact {
        let after: Vec<&Rec> = records.iter().filter(|r| r.t >= onset).collect();
        let end = after.iter().filter(|r| r.bad(slo_ms)).map(|r| r.done()).reduce(f64::max);
        let last = records.last().map_or(onset, |r| r.t);
        let tail = healthy_tail.as_secs_f64().min((last - onset) / 2.0);
        let recovered = after.iter().filter(|r| r.t > last - tail).all(|r| !r.bad(slo_ms));
        let before: Vec<&Rec> = records.iter().filter(|r| r.t < onset && r.t > onset - 5.0).collect();
        let during: Vec<&Rec> = after.iter().copied().filter(|r| end.is_none_or(|e| r.t <= e + 1.0)).collect();
        Impact {
            end,
            recovered,
            failed: after.iter().filter(|r| r.failed()).count(),
            slow: after.iter().filter(|r| !r.failed() && r.bad(slo_ms)).count(),
            unanswered: records.iter().filter(|r| r.status == 0).count(),
            p99_before_ms: p99(&before),
            p99_during_ms: p99(&during),
        }
    }
}

/// The 99th percentile of the records' latencies (nearest rank); 0 for none.
pub fn p99(records: &[&Rec]) -> f64 {
    let mut l: Vec<f64> = records.iter().map(|r| r.latency_ms).collect();
    l.sort_by(f64::total_cmp);
    l.get(((l.len() as f64 * 0.99).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0)
}

/// What the drill measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub title: String,
    pub onset: f64,
    /// (drill time, alert name, receiver) of the first expected alert at the pager.
    pub detected: Option<(f64, String, String)>,
    /// (drill time, what) when the mitigation acted.
    pub mitigated: Option<(f64, String)>,
    /// When the last bad request (failed, or slower than the SLO) after the onset was
    /// answered: the impact's end; `None`: no client saw any.
    pub impact_end: Option<f64>,
    /// Whether the traffic was healthy again at the end of the drill.
    pub recovered: bool,
    pub records: Vec<Rec>,
    /// Whether an alert was expected at all (a drill of alerting down expects none).
    pub expects_detection: bool,
    pub failed_during: usize,
    /// Answered, but slower than the SLO's latency threshold, after the onset.
    pub slow_during: usize,
    pub slo_latency_ms: u64,
    pub sent: usize,
    pub unanswered: usize,
    pub samples: Samples,
    pub blast: Blast,
    pub events: Vec<(f64, String)>,
    /// Every alert Prometheus had pending or firing at the end: (name, labels, state).
    pub alerts: Vec<(String, String, String)>,
    /// (drill time, receiver, what) of every notification after the onset.
    pub notifications: Vec<(f64, String, String)>,
    pub p99_before_ms: f64,
    pub p99_during_ms: f64,
    /// Unix seconds at drill time 0.
    pub started_unix: f64,
}

/// Which versions the clients' requests went to: per version (`x-switchyard-version`; the
/// empty name for requests no version answered), the bad requests after the onset (failed, or
/// slower than the SLO), the good ones after it, and each version's share of the answers in
/// the 5 s before it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Blast {
    pub bad_after_onset: BTreeMap<String, usize>,
    pub good_after_onset: BTreeMap<String, usize>,
    pub share_before_onset: BTreeMap<String, f64>,
}

impl Blast {
    pub fn of(records: &[Rec], onset: f64, slo_ms: u64) -> Blast {
        let mut b = Blast::default();
        for r in records.iter().filter(|r| r.t >= onset) {
            let by = if r.bad(slo_ms) { &mut b.bad_after_onset } else { &mut b.good_after_onset };
            *by.entry(r.version.clone()).or_default() += 1;
        }
        let before: Vec<&Rec> = records.iter().filter(|r| r.t < onset && r.t > onset - 5.0).collect();
        for r in &before {
            *b.share_before_onset.entry(r.version.clone()).or_default() += 1.0 / before.len() as f64;
        }
        b
    }

    /// What the record shows went our way, one line each; none when it shows nothing. Only
    /// facts: a fault that hit one version while another kept answering well.
    pub fn lucky(&self) -> Vec<String> {
        let hit: Vec<&String> = self.bad_after_onset.keys().collect();
        let [only] = hit.as_slice() else { return Vec::new() };
        if only.is_empty() {
            return Vec::new();
        }
        let healthy: Vec<&str> = self
            .good_after_onset
            .iter()
            .filter(|(v, n)| **n > 0 && !v.is_empty() && v != only)
            .map(|(v, _)| v.as_str())
            .collect();
        if healthy.is_empty() {
            return Vec::new();
        }
        let share = self.share_before_onset.get(*only).copied().unwrap_or(0.0) * 100.0;
        vec![format!(
            "The fault hit version {only} only ({share:.0} % of the answers before the onset); {} kept answering within \
             the SLO, a healthy version to fall back to.",
            healthy.join(", ")
        )]
    }
}

/// The payload samples of a drill: the filter's counters once its queue drained, and what
/// the collector's file holds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Samples {
    pub captured: f64,
    /// Stored: the collector said so.
    pub sent: f64,
    /// Not stored: the call could not be made, or the collector refused it.
    pub failed: f64,
    /// Never sent: the filter's queue was full.
    pub dropped: f64,
    /// Sent, but no answer came (a timeout, a reset): stored or not, the filter cannot know.
    pub unanswered: f64,
    /// Samples in the collector's file: what was delivered, whatever the filter's counters
    /// say (a crashed VM takes its unflushed counts with it).
    pub received: f64,
}

impl Samples {
    /// Samples whose fate nobody can account for. Every captured sample has one result, and
    /// the file holds every sample the collector acknowledged and at most the unanswered ones
    /// besides: a sample acknowledged but missing is lost, one in the file that the filter
    /// counted as not stored is a miscount, and both count here.
    pub fn unaccounted(&self) -> f64 {
        let results = self.sent + self.failed + self.dropped + self.unanswered;
        let missing = (self.sent - self.received).max(0.0);
        let extra = (self.received - self.sent - self.unanswered).max(0.0);
        (self.captured - results).abs() + missing + extra
    }

    /// How many of the unanswered samples the collector stored nonetheless.
    pub fn unanswered_stored(&self) -> f64 {
        (self.received - self.sent).clamp(0.0, self.unanswered)
    }
}

impl Outcome {
    /// Every alert that reached the pager firing after the onset, sorted.
    pub fn fired(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .notifications
            .iter()
            .flat_map(|(_, _, what)| {
                what.split("; ").filter_map(|p| p.strip_prefix("firing: ")).flat_map(|p| p.split(", "))
            })
            .map(str::to_owned)
            .collect();
        names.sort();
        names.dedup();
        names
    }

    pub fn mttd(&self) -> Option<f64> {
        self.detected.as_ref().map(|d| d.0 - self.onset)
    }

    /// Onset to the end of client-visible impact (0 when no client saw any).
    pub fn mttm(&self) -> Option<f64> {
        if !self.recovered {
            return None;
        }
        Some(self.impact_end.map_or(0.0, |e| (e - self.onset).max(0.0)))
    }

    /// Requests without an answer, and samples unaccounted for (see [`Samples::unaccounted`]).
    pub fn lost(&self) -> f64 {
        self.unanswered as f64 + self.samples.unaccounted()
    }

    /// Whether it passed: an expected alert reached the pager (or none was expected), the
    /// mitigation acted, the traffic recovered, and nothing was lost.
    pub fn passed(&self) -> bool {
        (self.detected.is_some() || !self.expects_detection)
            && self.mitigated.is_some()
            && self.recovered
            && self.lost() == 0.0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn rec(t: f64, status: u16, latency_ms: f64) -> Rec {
        Rec { t, status, latency_ms, version: "v1".into() }
    }

    /// An outcome with nothing in it but the onset at 10 s, for the tests to fill in.
    pub(crate) fn outcome() -> Outcome {
        Outcome {
            name: "canary-5xx".into(),
            title: "The canary answers 503 to every request".into(),
            onset: 10.0,
            detected: None,
            mitigated: None,
            impact_end: None,
            recovered: true,
            records: Vec::new(),
            expects_detection: true,
            failed_during: 0,
            slow_during: 0,
            slo_latency_ms: 100,
            sent: 0,
            unanswered: 0,
            samples: Samples::default(),
            blast: Blast::default(),
            events: Vec::new(),
            alerts: Vec::new(),
            notifications: Vec::new(),
            p99_before_ms: 0.0,
            p99_during_ms: 0.0,
            started_unix: 0.0,
        }
    }

    const TAIL: Duration = Duration::from_secs(5);

    #[test]
    fn a_request_is_bad_when_it_failed_or_was_slower_than_the_slo() {
        assert!(!rec(0.0, 200, 100.0).bad(100), "at the threshold is within it");
        assert!(rec(0.0, 200, 100.1).bad(100));
        assert!(rec(0.0, 204, 5.0).bad(1) && !rec(0.0, 204, 5.0).failed());
        assert!(rec(0.0, 503, 1.0).failed() && rec(0.0, 0, 1.0).failed() && rec(0.0, 302, 1.0).failed());
        assert!((rec(2.0, 200, 250.0).done() - 2.25).abs() < 1e-9);
    }

    #[test]
    fn the_impact_ends_when_the_last_bad_request_after_the_onset_was_answered() {
        let mut records = vec![rec(9.0, 503, 5.0), rec(9.5, 200, 300.0)];
        // After the onset at 10 s: a failure answered at 10.6 s, one slow answer at 11.2 s
        // (sent earlier than the failure, answered later), then healthy traffic.
        records.push(rec(10.1, 200, 1_100.0));
        records.push(rec(10.5, 0, 100.0));
        records.extend((0..40).map(|i| rec(11.0 + 0.25 * f64::from(i), 200, 4.0)));
        let i = Impact::of(&records, 10.0, 100, TAIL);
        assert!(i.end.is_some_and(|e| (e - 11.2).abs() < 1e-9), "{i:?}");
        assert_eq!((i.failed, i.slow, i.unanswered), (1, 1, 1), "before the onset does not count");
        assert!(i.recovered);
        let mut o = outcome();
        (o.impact_end, o.recovered) = (i.end, i.recovered);
        assert!((o.mttm().unwrap() - 1.2).abs() < 1e-9);
    }

    #[test]
    fn the_impact_before_the_onset_is_not_the_faults() {
        // A slow request sent before the onset and answered after it is no impact.
        let records = vec![rec(9.9, 200, 900.0), rec(10.2, 200, 3.0), rec(30.0, 200, 3.0)];
        let i = Impact::of(&records, 10.0, 100, TAIL);
        assert_eq!((i.end, i.failed, i.slow), (None, 0, 0));
        let mut o = outcome();
        (o.impact_end, o.recovered) = (i.end, i.recovered);
        assert_eq!(o.mttm(), Some(0.0), "no client saw impact");
    }

    #[test]
    fn traffic_still_failing_in_the_tail_is_not_recovered_and_has_no_mttm() {
        let records: Vec<Rec> =
            (0..100).map(|i| rec(f64::from(i) * 0.5, if i >= 80 { 503 } else { 200 }, 2.0)).collect();
        let i = Impact::of(&records, 20.0, 100, TAIL);
        assert!(!i.recovered, "the last 5 s failed");
        assert_eq!(i.failed, 20);
        let mut o = outcome();
        (o.onset, o.impact_end, o.recovered) = (20.0, i.end, i.recovered);
        assert_eq!(o.mttm(), None);
        assert!(!o.passed());
        // One bad request 4 s before the end is inside the 5 s tail; 6 s before, outside.
        let mut late = vec![rec(10.0, 200, 1.0), rec(40.0, 200, 1.0)];
        late.insert(1, rec(36.0, 200, 500.0));
        assert!(!Impact::of(&late, 10.0, 100, TAIL).recovered);
        late[1].t = 34.0;
        assert!(Impact::of(&late, 10.0, 100, TAIL).recovered);
    }

    #[test]
    fn a_short_drill_judges_recovery_on_half_the_time_since_the_onset() {
        // 4 s after the onset: the tail is 2 s, so a failure at +1 s is before it.
        let records = vec![rec(10.0, 200, 1.0), rec(11.0, 503, 1.0), rec(12.5, 200, 1.0), rec(14.0, 200, 1.0)];
        assert!(Impact::of(&records, 10.0, 100, TAIL).recovered);
    }

    #[test]
    fn p99s_before_and_during_the_impact() {
        // 100 requests over the 5 s before the onset: latencies 1..=100 ms, p99 is 99.
        let mut records: Vec<Rec> = (1..=100).map(|i| rec(5.0 + f64::from(i) * 0.049, 200, f64::from(i))).collect();
        // During: a failure answered at 10.5 s; the window runs to 11.5 s. The 20 ms request
        // at 12 s is after it.
        records.push(rec(10.0, 503, 500.0));
        records.push(rec(11.4, 200, 7.0));
        records.push(rec(12.0, 200, 20.0));
        let i = Impact::of(&records, 10.0, 100, TAIL);
        assert_eq!(i.p99_before_ms, 99.0);
        assert_eq!(i.p99_during_ms, 500.0);
        assert_eq!(p99(&[]), 0.0);
        let one = rec(0.0, 200, 3.0);
        assert_eq!(p99(&[&one]), 3.0);
    }

    #[test]
    fn mttd_fired_alerts_and_lost() {
        let mut o = outcome();
        assert_eq!(o.mttd(), None);
        o.detected = Some((13.3, "SwitchyardGuardTookVersionOut".into(), "ticket".into()));
        assert!((o.mttd().unwrap() - 3.3).abs() < 1e-9);
        o.notifications = vec![
            (13.4, "ticket".into(), "firing: B".into()),
            (15.0, "page".into(), "firing: A, B; resolved: C".into()),
            (16.0, "ticket".into(), "resolved: B".into()),
        ];
        assert_eq!(o.fired(), ["A", "B"]);
        o.samples = Samples { captured: 79.0, sent: 79.0, received: 79.0, ..Samples::default() };
        assert_eq!(o.lost(), 0.0);
        o.mitigated = Some((10.5, "guard".into()));
        assert!(o.passed());
        // Two samples acknowledged but not in the file, one request unanswered.
        o.samples = Samples { captured: 81.0, sent: 81.0, received: 79.0, ..Samples::default() };
        o.unanswered = 1;
        assert_eq!(o.lost(), 3.0);
        assert!(!o.passed());
    }

    #[test]
    fn luck_is_only_what_the_record_shows() {
        let recs = |v2_bad: bool, v1_bad: bool| -> Vec<Rec> {
            let mut r: Vec<Rec> = (0..10).map(|i| rec(f64::from(i), 200, 3.0)).collect();
            r.extend((0..2).map(|i| Rec { version: "v2".into(), ..rec(8.0 + f64::from(i), 200, 3.0) }));
            r.push(Rec { version: "v2".into(), ..rec(11.0, if v2_bad { 503 } else { 200 }, 3.0) });
            r.push(rec(12.0, if v1_bad { 503 } else { 200 }, 3.0));
            r.push(rec(13.0, 200, 3.0));
            r
        };
        // The canary failed, the stable kept answering.
        let lucky = Blast::of(&recs(true, false), 10.0, 100).lucky();
        assert_eq!(lucky.len(), 1);
        assert!(lucky[0].starts_with("The fault hit version v2 only (33 % of"), "{lucky:?}");
        assert!(lucky[0].contains("v1 kept answering"), "{lucky:?}");
        // The stable failed: the draft must not say the canary was hit.
        let b = Blast::of(&recs(false, true), 10.0, 100);
        assert_eq!(b.bad_after_onset.keys().collect::<Vec<_>>(), ["v1"]);
        assert!(b.lucky()[0].starts_with("The fault hit version v1 only (67 %"), "{:?}", b.lucky());
        // Both failed, or nothing did: no luck to claim.
        assert!(Blast::of(&recs(true, true), 10.0, 100).lucky().is_empty());
        assert!(Blast::of(&recs(false, false), 10.0, 100).lucky().is_empty());
    }

    #[test]
    fn unanswered_samples_may_or_may_not_be_in_the_file() {
        let s =
            |received| Samples { captured: 100.0, sent: 90.0, failed: 2.0, dropped: 1.0, unanswered: 7.0, received };
        // Anywhere from none to all seven unanswered ones stored: every sample accounted for.
        for received in [90.0, 94.0, 97.0] {
            assert_eq!(s(received).unaccounted(), 0.0, "{received}");
        }
        assert_eq!(s(94.0).unanswered_stored(), 4.0);
        // An acknowledged sample missing, or more in the file than could have been stored.
        assert_eq!(s(88.0).unaccounted(), 2.0);
        assert_eq!(s(99.0).unaccounted(), 2.0);
        // A captured sample without a result.
        assert_eq!(Samples { captured: 101.0, ..s(90.0) }.unaccounted(), 1.0);
    }

    #[test]
    fn a_drill_of_blind_alerting_passes_without_detection() {
        let mut o = outcome();
        o.mitigated = Some((10.5, "guard".into()));
        assert!(!o.passed(), "an alert was expected");
        o.expects_detection = false;
        assert!(o.passed());
    }
}
