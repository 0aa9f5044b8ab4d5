//! SLO accounting: outcome classification, sliding windows of good/bad events, burn rates.
//!
//! A window is a ring of fixed buckets (1/30 of its span) so that it can live in Envoy's
//! shared data as a few hundred bytes and be merged by every worker with compare-and-swap.

/// How a request ended, from the client's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Success,
    ClientError,
    ServerError,
    Timeout,
    UpstreamReset,
}

impl Outcome {
    pub const ALL: [Outcome; 5] =
        [Outcome::Success, Outcome::ClientError, Outcome::ServerError, Outcome::Timeout, Outcome::UpstreamReset];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::ClientError => "4xx",
            Outcome::ServerError => "5xx",
            Outcome::Timeout => "timeout",
            Outcome::UpstreamReset => "upstream_reset",
        }
    }

    /// Availability SLI: a bad event is the service's fault. 429 (overload) counts as bad:
    /// the client did nothing wrong.
    pub fn is_bad(self, status: Option<u16>) -> bool {
        match self {
            Outcome::ServerError | Outcome::Timeout | Outcome::UpstreamReset => true,
            Outcome::ClientError => status == Some(429),
            Outcome::Success => false,
        }
    }
}

/// `status` is absent when no response was received; `timed_out` / `reset` come from Envoy's
/// response flags (UT; UF, UR, UC, LR).
pub fn classify(status: Option<u16>, timed_out: bool, reset: bool) -> Outcome {
    if timed_out || status == Some(504) {
        Outcome::Timeout
    } else if reset || status.is_none() {
        Outcome::UpstreamReset
    } else {
        match status.unwrap_or(0) {
            500..=599 => Outcome::ServerError,
            400..=499 => Outcome::ClientError,
            _ => Outcome::Success,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpec {
    pub label: String,
    pub seconds: u64,
}

const BUCKETS: u64 = 30;

impl WindowSpec {
    /// `30s`, `5m`, `1h`, `3d`: 30 seconds to 30 days.
    pub fn parse(s: &str) -> Result<WindowSpec, String> {
        let (num, unit) = s.split_at(s.trim_end_matches(|c: char| c.is_ascii_alphabetic()).len());
        let n: u64 = num.parse().map_err(|_| format!("'{s}' is not a duration like 5m or 1h"))?;
        let mult = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(format!("'{s}' is not a duration like 5m or 1h")),
        };
        let seconds = n.saturating_mul(mult);
        if !(30..=30 * 86_400).contains(&seconds) {
            return Err(format!("'{s}' must be between 30s and 30d"));
        }
        Ok(WindowSpec { label: s.to_owned(), seconds })
    }

    pub fn bucket_seconds(&self) -> u64 {
        (self.seconds / BUCKETS).max(1)
    }
}

/// Event counts for one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Every classified request.
    pub total: u64,
    /// Availability-bad events.
    pub bad: u64,
    /// Successful requests (the latency SLI's population).
    pub latency_total: u64,
    /// Successful requests slower than the latency threshold.
    pub latency_bad: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.total += o.total;
        self.bad += o.bad;
        self.latency_total += o.latency_total;
        self.latency_bad += o.latency_bad;
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// One request's contribution.
    pub fn event(outcome: Outcome, status: Option<u16>, latency_ms: u64, threshold_ms: u64) -> Counts {
        let ok = outcome == Outcome::Success;
        Counts {
            total: 1,
            bad: u64::from(outcome.is_bad(status)),
            latency_total: u64::from(ok),
            latency_bad: u64::from(ok && latency_ms > threshold_ms),
        }
    }
}

/// Error-budget burn rate: the bad ratio over the budget (1 - objective). 1.0 spends the
/// budget exactly over the SLO period.
pub fn burn_rate(bad: u64, total: u64, objective: f64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    (bad as f64 / total as f64) / (1.0 - objective)
}

/// A sliding window as a ring of buckets, keyed by absolute bucket number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    bucket_seconds: u64,
    buckets: Vec<(u64, Counts)>,
}

impl Window {
    pub fn new(spec: &WindowSpec) -> Self {
        Window { bucket_seconds: spec.bucket_seconds(), buckets: vec![(0, Counts::default()); BUCKETS as usize] }
    }

    pub fn add(&mut self, now_seconds: u64, c: &Counts) {
        let idx = now_seconds / self.bucket_seconds;
        let slot = (idx % BUCKETS) as usize;
        if let Some(b) = self.buckets.get_mut(slot) {
            if b.0 != idx {
                *b = (idx, Counts::default());
            }
            b.1.add(c);
        }
    }

    /// Sum of the buckets within the window ending now (the current bucket included).
    pub fn totals(&self, now_seconds: u64) -> Counts {
        let idx = now_seconds / self.bucket_seconds;
        let mut sum = Counts::default();
        for (b, c) in &self.buckets {
            if *b <= idx && idx - *b < BUCKETS {
                sum.add(c);
            }
        }
        sum
    }

    const RECORD: usize = 5 * 8;

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.buckets.len() * Self::RECORD);
        out.extend_from_slice(&self.bucket_seconds.to_le_bytes());
        for (b, c) in &self.buckets {
            for v in [*b, c.total, c.bad, c.latency_total, c.latency_bad] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// `None` when the bytes are not a window of this spec (then start afresh).
    pub fn decode(spec: &WindowSpec, bytes: &[u8]) -> Option<Window> {
        let mut words = bytes.chunks_exact(8).map(|c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            u64::from_le_bytes(a)
        });
        if bytes.len() != 8 + BUCKETS as usize * Self::RECORD || words.next()? != spec.bucket_seconds() {
            return None;
        }
        let mut buckets = Vec::with_capacity(BUCKETS as usize);
        for _ in 0..BUCKETS {
            let b = words.next()?;
            let c = Counts {
                total: words.next()?,
                bad: words.next()?,
                latency_total: words.next()?,
                latency_bad: words.next()?,
            };
            buckets.push((b, c));
        }
        Some(Window { bucket_seconds: spec.bucket_seconds(), buckets })
    }
}

/// The host's shared key-value store (Envoy's proxy-wasm shared data), as far as windows need
/// it. A set with `cas` succeeds only while the stored token is still `cas`; with `None` it
/// always overwrites. There is no create-if-absent, which is why [`merge`] never writes a
/// window with `None`.
pub trait SharedStore {
    /// The value and its CAS token; `None` when the key is absent.
    fn get(&mut self, key: &str) -> Option<(Vec<u8>, u32)>;
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> SetResult;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetResult {
    Ok,
    CasMismatch,
    Failed,
}

/// The token a creation passes as its CAS. Envoy inserts an absent key whatever the token and
/// refuses to overwrite a present one unless the token matches; tokens count up from 1 per
/// process, so a live entry would need four billion writes before it carried this one. Two
/// workers creating the same key at once therefore cannot overwrite each other's counts,
/// which an unconditional write did (one worker's events vanished).
const CREATE_CAS: u32 = u32::MAX;

/// Adds `delta` to the window stored under `key` by compare-and-swap, so every worker's
/// events add up. On success `delta` is cleared; when `attempts` all lose a race (or the store
/// fails) `delta` is kept for the next flush, and `Err` carries the window as last read, so
/// nothing is lost to a lost race. Returns the window as merged.
pub fn merge(
    store: &mut impl SharedStore,
    key: &str,
    spec: &WindowSpec,
    delta: &mut Counts,
    now_seconds: u64,
    attempts: usize,
) -> Result<Window, Window> {
    let mut seen = Window::new(spec);
    for _ in 0..attempts {
        let stored = store.get(key);
        seen = stored.as_ref().and_then(|(b, _)| Window::decode(spec, b)).unwrap_or_else(|| Window::new(spec));
        if delta.is_empty() {
            return Ok(seen);
        }
        let mut merged = seen.clone();
        merged.add(now_seconds, delta);
        let cas = stored.map_or(CREATE_CAS, |(_, cas)| cas);
        match store.set(key, &merged.encode(), Some(cas)) {
            SetResult::Ok => {
                *delta = Counts::default();
                return Ok(merged);
            }
            SetResult::CasMismatch => {}
            SetResult::Failed => break,
        }
    }
    Err(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Envoy's shared data (proxy-wasm-cpp-host `SharedData::set`): tokens count up from 1,
    /// CAS 0 (`None`) overwrites, an absent key is inserted whatever the token.
    #[derive(Default)]
    struct EnvoyStore {
        map: std::collections::HashMap<String, (Vec<u8>, u32)>,
        next: u32,
    }

    impl SharedStore for EnvoyStore {
        fn get(&mut self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.map.get(key).cloned()
        }

        fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> SetResult {
            if let (Some((_, current)), Some(cas)) = (self.map.get(key), cas)
                && *current != cas
            {
                return SetResult::CasMismatch;
            }
            self.next += 1;
            self.map.insert(key.to_owned(), (value.to_vec(), self.next));
            SetResult::Ok
        }
    }

    /// Runs `rival` (another worker's whole flush) between this worker's read and its write.
    struct Interleaved<'a, F: FnMut(&mut EnvoyStore)> {
        store: &'a mut EnvoyStore,
        rival: Option<F>,
    }

    impl<F: FnMut(&mut EnvoyStore)> SharedStore for Interleaved<'_, F> {
        fn get(&mut self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.store.get(key)
        }

        fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> SetResult {
            if let Some(mut rival) = self.rival.take() {
                rival(self.store);
            }
            self.store.set(key, value, cas)
        }
    }

    fn events(total: u64, bad: u64) -> Counts {
        Counts { total, bad, latency_total: total - bad, latency_bad: 0 }
    }

    #[test]
    fn two_workers_creating_a_window_at_once_both_count() {
        let spec = WindowSpec::parse("5m").unwrap();
        let mut store = EnvoyStore::default();
        let mut mine = events(54, 0);
        let rival = |s: &mut EnvoyStore| {
            let mut theirs = events(44, 2);
            merge(s, "k", &spec, &mut theirs, 1000, 8).unwrap();
            assert!(theirs.is_empty());
        };
        let mut racing = Interleaved { store: &mut store, rival: Some(rival) };
        let merged = merge(&mut racing, "k", &spec, &mut mine, 1000, 8).unwrap();
        assert!(mine.is_empty());
        assert_eq!(merged.totals(1000), events(98, 2));
        let stored = Window::decode(&spec, &store.get("k").unwrap().0).unwrap();
        assert_eq!(stored.totals(1000), events(98, 2));
    }

    #[test]
    fn a_worker_losing_every_race_keeps_its_events_for_the_next_flush() {
        let spec = WindowSpec::parse("5m").unwrap();
        let mut store = EnvoyStore::default();
        merge(&mut store, "k", &spec, &mut events(1, 0), 1000, 1).unwrap();
        struct AlwaysStale<'a>(&'a mut EnvoyStore);
        impl SharedStore for AlwaysStale<'_> {
            fn get(&mut self, key: &str) -> Option<(Vec<u8>, u32)> {
                self.0.get(key).map(|(v, cas)| (v, cas - 1))
            }
            fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> SetResult {
                self.0.set(key, value, cas)
            }
        }
        let mut mine = events(5, 1);
        let seen = merge(&mut AlwaysStale(&mut store), "k", &spec, &mut mine, 1000, 8).unwrap_err();
        assert_eq!(seen.totals(1000), events(1, 0));
        assert_eq!(mine, events(5, 1), "events were dropped");
        merge(&mut store, "k", &spec, &mut mine, 1001, 8).unwrap();
        assert_eq!(Window::decode(&spec, &store.get("k").unwrap().0).unwrap().totals(1001), events(6, 1));
    }

    #[test]
    fn classification() {
        assert_eq!(classify(Some(200), false, false), Outcome::Success);
        assert_eq!(classify(Some(404), false, false), Outcome::ClientError);
        assert_eq!(classify(Some(503), false, false), Outcome::ServerError);
        assert_eq!(classify(Some(504), false, false), Outcome::Timeout);
        assert_eq!(classify(Some(503), true, false), Outcome::Timeout);
        assert_eq!(classify(Some(503), false, true), Outcome::UpstreamReset);
        assert_eq!(classify(None, false, false), Outcome::UpstreamReset);
        assert!(Outcome::ClientError.is_bad(Some(429)));
        assert!(!Outcome::ClientError.is_bad(Some(400)));
    }

    #[test]
    fn window_specs() {
        assert_eq!(WindowSpec::parse("5m").unwrap().seconds, 300);
        assert_eq!(WindowSpec::parse("5m").unwrap().bucket_seconds(), 10);
        assert_eq!(WindowSpec::parse("3d").unwrap().seconds, 259_200);
        for bad in ["", "5", "m", "10s", "31d", "5y", "-5m"] {
            assert!(WindowSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn window_slides_and_forgets() {
        let spec = WindowSpec::parse("5m").unwrap();
        let mut w = Window::new(&spec);
        let bad = Counts { total: 1, bad: 1, ..Default::default() };
        let good = Counts { total: 1, ..Default::default() };
        w.add(1000, &bad);
        w.add(1005, &good);
        w.add(1100, &good);
        assert_eq!(w.totals(1100), Counts { total: 3, bad: 1, ..Default::default() });
        // 300 s later the first events have left the window.
        assert_eq!(w.totals(1305).total, 1);
        assert_eq!(w.totals(2000).total, 0);
        // A bucket is reused for a new period, not summed into.
        w.add(1300, &good);
        assert_eq!(w.totals(1300).total, 2);
    }

    #[test]
    fn window_encoding_round_trips_and_rejects_other_specs() {
        let spec = WindowSpec::parse("1h").unwrap();
        let mut w = Window::new(&spec);
        w.add(7200, &Counts { total: 5, bad: 2, latency_total: 3, latency_bad: 1 });
        let bytes = w.encode();
        assert_eq!(Window::decode(&spec, &bytes), Some(w));
        assert_eq!(Window::decode(&WindowSpec::parse("5m").unwrap(), &bytes), None);
        assert_eq!(Window::decode(&spec, &bytes[1..]), None);
    }

    #[test]
    fn burn_rates() {
        assert_eq!(burn_rate(0, 0, 0.999), 0.0);
        assert!((burn_rate(1, 1000, 0.999) - 1.0).abs() < 1e-9);
        assert!((burn_rate(144, 10_000, 0.999) - 14.4).abs() < 1e-9);
    }

    #[test]
    fn latency_sli_counts_only_successes() {
        assert_eq!(Counts::event(Outcome::Success, Some(200), 300, 250).latency_bad, 1);
        assert_eq!(
            Counts::event(Outcome::ServerError, Some(500), 300, 250),
            Counts { total: 1, bad: 1, ..Default::default() }
        );
    }
}
