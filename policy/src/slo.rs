//! SLO accounting: outcome classification, sliding windows of good/bad events, burn rates.
//!
//! A window is a ring of fixed buckets (1/30 of its span) so that it can live in Envoy's
//! shared data as a few hundred bytes and be merged by every worker with compare-and-swap.
//! Time is in milliseconds: the guard's windows (`crate::guard`) are seconds long, with
//! buckets of a tenth of a second.

/// How a request ended. Most outcomes are the version's doing; `ClientGone` and
/// `ClientDeadline` are the client's, and an SLO must not charge them to the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Success,
    ClientError,
    /// 429: the server shed the request. Bad: the client did nothing wrong, and the
    /// Prometheus rules tell it from other 4xx by this outcome.
    Overloaded,
    ServerError,
    Timeout,
    UpstreamReset,
    /// The client hung up before the answer came (Envoy's `DC` / `DR` response flags).
    ClientGone,
    /// A 504 the backend marked as the client's own deadline (its `timeout` parameter) passing.
    ClientDeadline,
    /// The gateway's 429 for a tenant over its quota (`identity::QUOTA_HEADER`): the version
    /// never saw the request.
    QuotaExceeded,
}

/// The response header a backend sets on a 504 caused by the client's own deadline, and its
/// value; anything else on a 504 is the version's timeout.
pub const DEADLINE_HEADER: &str = "x-switchyard-deadline";
pub const DEADLINE_BY_CLIENT: &str = "client";

impl Outcome {
    pub const COUNT: usize = 9;
    pub const ALL: [Outcome; Self::COUNT] = [
        Outcome::Success,
        Outcome::ClientError,
        Outcome::Overloaded,
        Outcome::ServerError,
        Outcome::Timeout,
        Outcome::UpstreamReset,
        Outcome::ClientGone,
        Outcome::ClientDeadline,
        Outcome::QuotaExceeded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::ClientError => "4xx",
            Outcome::Overloaded => "overloaded",
            Outcome::ServerError => "5xx",
            Outcome::Timeout => "timeout",
            Outcome::UpstreamReset => "upstream_reset",
            Outcome::ClientGone => "client_gone",
            Outcome::ClientDeadline => "client_deadline",
            Outcome::QuotaExceeded => "quota",
        }
    }

    /// The client, not the version, ended the request: it is neither good nor bad for
    /// availability, and for latency it counts only if the version was already too slow.
    pub fn ended_by_client(self) -> bool {
        matches!(self, Outcome::ClientGone | Outcome::ClientDeadline)
    }

    /// Whether it is an SLO event at all (good or bad): not when the client ended it, nor when
    /// no version saw it (the gateway's quota).
    pub fn is_event(self) -> bool {
        !self.ended_by_client() && self != Outcome::QuotaExceeded
    }

    /// Availability SLI: a bad event is the service's fault, shedding included.
    pub fn is_bad(self) -> bool {
        match self {
            Outcome::ServerError | Outcome::Timeout | Outcome::UpstreamReset | Outcome::Overloaded => true,
            Outcome::Success
            | Outcome::ClientError
            | Outcome::ClientGone
            | Outcome::ClientDeadline
            | Outcome::QuotaExceeded => false,
        }
    }
}

/// What is known of how a request ended besides its status: from Envoy's response flags and,
/// on a 504, the backend's deadline header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ending {
    /// UT, SI: Envoy timed the upstream out.
    pub timed_out: bool,
    /// UH, LR, UR, UF, UC: no usable response from the upstream.
    pub reset: bool,
    /// DC, DR: the downstream (client) connection or stream went away.
    pub client_gone: bool,
    /// The response carried `x-switchyard-deadline: client`.
    pub client_deadline: bool,
    /// A 429 carried `x-switchyard-quota: exceeded`: the gateway's quota, not the version.
    pub quota_exceeded: bool,
}

/// `status` is absent when no response passed the filter.
pub fn classify(status: Option<u16>, e: Ending) -> Outcome {
    match status {
        // No answer, and the client had left: the reset Envoy then makes upstream is the
        // client's doing. Once an answer's headers have passed, the version did answer, and
        // its status says how.
        None if e.client_gone => Outcome::ClientGone,
        Some(504) if e.client_deadline => Outcome::ClientDeadline,
        _ if e.timed_out || status == Some(504) => Outcome::Timeout,
        None => Outcome::UpstreamReset,
        Some(_) if e.reset => Outcome::UpstreamReset,
        Some(500..=599) => Outcome::ServerError,
        Some(429) if e.quota_exceeded => Outcome::QuotaExceeded,
        Some(429) => Outcome::Overloaded,
        Some(400..=499) => Outcome::ClientError,
        Some(_) => Outcome::Success,
    }
}

/// The shared-data key of a version's window.
pub fn window_key(model: &str, version: &str, spec: &WindowSpec) -> String {
    format!("switchyard/slo/{model}/{version}/{}", spec.seconds)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpec {
    pub label: String,
    pub seconds: u64,
}

const BUCKETS: u64 = 30;

/// Why a window label was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("'{0}' is not a duration like 5m or 1h")]
    NotADuration(String),
    #[error("'{0}' must be whole seconds")]
    NotWholeSeconds(String),
    #[error("'{0}' must be between 30s and 30d")]
    OutOfRange(String),
    #[error("'{0}' ({1}s) must be a multiple of {BUCKETS}s: a window is {BUCKETS} buckets of whole seconds")]
    NotWholeBuckets(String, u64),
    #[error("'{0}' is not a duration in seconds like 6s")]
    NotSeconds(String),
    #[error("'{0}' must be 3s to 60s in steps of 3s: a window is {BUCKETS} buckets of whole tenths of a second")]
    ShortOutOfRange(String),
}

impl WindowSpec {
    /// `30s`, `5m`, `1h`, `3d`: 30 seconds to 30 days, a whole number of 30 equal buckets of
    /// whole seconds (`45s` would be 30 one-second buckets: a 30 s window under a 45 s label).
    pub fn parse(s: &str) -> Result<WindowSpec, WindowError> {
        let ms = crate::duration::parse_ms(s).ok_or_else(|| WindowError::NotADuration(s.to_owned()))?;
        if !ms.is_multiple_of(1000) {
            return Err(WindowError::NotWholeSeconds(s.to_owned()));
        }
        let seconds = ms / 1000;
        if !(30..=30 * 86_400).contains(&seconds) {
            return Err(WindowError::OutOfRange(s.to_owned()));
        }
        if !seconds.is_multiple_of(BUCKETS) {
            return Err(WindowError::NotWholeBuckets(s.to_owned(), seconds));
        }
        Ok(WindowSpec { label: s.to_owned(), seconds })
    }

    /// `3s` to `60s` in steps of 3 s: the guard's short windows, 30 buckets of whole 100 ms.
    pub fn parse_short(s: &str) -> Result<WindowSpec, WindowError> {
        let seconds = s
            .strip_suffix('s')
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| WindowError::NotSeconds(s.to_owned()))?;
        if !(3..=60).contains(&seconds) || !seconds.is_multiple_of(3) {
            return Err(WindowError::ShortOutOfRange(s.to_owned()));
        }
        Ok(WindowSpec { label: s.to_owned(), seconds })
    }

    /// Exact: `parse` and `parse_short` accept only spans of 30 whole buckets.
    pub fn bucket_ms(&self) -> u64 {
        (self.seconds * 1000 / BUCKETS).max(1)
    }
}

/// Event counts for one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Every request the availability SLI judges (those the client ended are not).
    pub total: u64,
    /// Availability-bad events.
    pub bad: u64,
    /// The latency SLI's population: successful requests, and requests the client ended after
    /// the threshold had already passed.
    pub latency_total: u64,
    /// Of those, the ones slower than the latency threshold.
    pub latency_bad: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.total += o.total;
        self.bad += o.bad;
        self.latency_total += o.latency_total;
        self.latency_bad += o.latency_bad;
    }

    /// Nothing to merge. Every field counts: a latency-only event (a slow request the client
    /// gave up on) has `total` 0 and must still be merged.
    pub fn is_empty(&self) -> bool {
        *self == Counts::default()
    }

    /// One request's contribution.
    pub fn event(outcome: Outcome, latency_ms: u64, threshold_ms: u64) -> Counts {
        let slow = latency_ms > threshold_ms;
        if outcome == Outcome::QuotaExceeded {
            // Refused before any version was asked.
            return Counts::default();
        }
        if outcome.ended_by_client() {
            // The client's choice says nothing of the version's availability; but a version that
            // had already taken longer than the threshold was slow whatever the client did.
            return Counts { total: 0, bad: 0, latency_total: u64::from(slow), latency_bad: u64::from(slow) };
        }
        let ok = outcome == Outcome::Success;
        Counts {
            total: 1,
            bad: u64::from(outcome.is_bad()),
            latency_total: u64::from(ok),
            latency_bad: u64::from(ok && slow),
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
    bucket_ms: u64,
    buckets: Vec<(u64, Counts)>,
}

impl Window {
    pub fn new(spec: &WindowSpec) -> Self {
        Window { bucket_ms: spec.bucket_ms(), buckets: vec![(0, Counts::default()); BUCKETS as usize] }
    }

    pub fn add(&mut self, now_ms: u64, c: &Counts) {
        let idx = now_ms / self.bucket_ms;
        let slot = (idx % BUCKETS) as usize;
        if let Some(b) = self.buckets.get_mut(slot) {
            if b.0 != idx {
                *b = (idx, Counts::default());
            }
            b.1.add(c);
        }
    }

    /// Sum of the buckets within the window ending now (the current bucket included).
    pub fn totals(&self, now_ms: u64) -> Counts {
        let idx = now_ms / self.bucket_ms;
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
        out.extend_from_slice(&self.bucket_ms.to_le_bytes());
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
        if bytes.len() != 8 + BUCKETS as usize * Self::RECORD || words.next()? != spec.bucket_ms() {
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
        Some(Window { bucket_ms: spec.bucket_ms(), buckets })
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

/// An in-memory model of Envoy's shared data (proxy-wasm-cpp-host `SharedData::set`):
/// tokens count up from 1, CAS 0 (`None`) overwrites, an absent key is inserted whatever the
/// token. The merge's tests and the filter's fake host both run against it.
#[derive(Debug, Default)]
pub struct ModelStore {
    pub map: std::collections::HashMap<String, (Vec<u8>, u32)>,
    next: u32,
}

impl SharedStore for ModelStore {
    fn get(&mut self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.map.get(key).cloned()
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> SetResult {
        if let (Some((_, current)), Some(cas)) = (self.map.get(key), cas)
            && *current != cas
        {
            return SetResult::CasMismatch;
        }
        self.next = self.next.wrapping_add(1);
        self.map.insert(key.to_owned(), (value.to_vec(), self.next));
        SetResult::Ok
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetResult {
    Ok,
    CasMismatch,
    Failed,
}

/// The shared-data key that counts the keys the filter created in this Envoy (u64, little
/// endian): Envoy cannot list or delete keys, so the filter counts its own, and the soak proves
/// the count flat under churn.
pub const KEY_COUNT: &str = "switchyard/keys";

/// A [`SharedStore`] that counts every key it creates (a set with [`CREATE_CAS`] that
/// succeeds: only one worker's creation of a key can) under [`KEY_COUNT`]. `started` is set
/// when it created the count itself: the shared data had no key of the filter's, as after
/// Envoy starts (or a filter upgrade that does not keep it).
pub struct CountingStore<'a, S> {
    inner: &'a mut S,
    pub started: bool,
}

impl<'a, S> CountingStore<'a, S> {
    pub fn new(inner: &'a mut S) -> CountingStore<'a, S> {
        CountingStore { inner, started: false }
    }
}

impl<S: SharedStore> SharedStore for CountingStore<'_, S> {
    fn get(&mut self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.inner.get(key)
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> SetResult {
        let created = cas == Some(CREATE_CAS) && self.inner.get(key).is_none();
        let result = self.inner.set(key, value, cas);
        if created && result == SetResult::Ok {
            for _ in 0..8 {
                let (count, token) = match self.inner.get(KEY_COUNT) {
                    Some((v, t)) => (key_count(&v), t),
                    None => (1, CREATE_CAS),
                };
                match self.inner.set(KEY_COUNT, &(count + 1).to_le_bytes(), Some(token)) {
                    SetResult::CasMismatch => continue,
                    SetResult::Ok if token == CREATE_CAS => self.started = true,
                    _ => {}
                }
                break;
            }
        }
        result
    }
}

/// The keys counted in [`KEY_COUNT`]'s value, itself included.
pub fn key_count(value: &[u8]) -> u64 {
    <[u8; 8]>::try_from(value).map_or(0, u64::from_le_bytes)
}

/// The token a creation passes as its CAS. Envoy inserts an absent key whatever the token and
/// refuses to overwrite a present one unless the token matches; tokens count up from 1 per
/// process, so a live entry would need four billion writes before it carried this one. Two
/// workers creating the same key at once therefore cannot overwrite each other's counts,
/// which an unconditional write did (one worker's events vanished).
pub const CREATE_CAS: u32 = u32::MAX;

/// Adds `delta` to the window stored under `key` by compare-and-swap, so every worker's
/// events add up. On success `delta` is cleared; when `attempts` all lose a race (or the store
/// fails) `delta` is kept for the next flush, and `Err` carries the window as last read, so
/// nothing is lost to a lost race. Returns the window as merged.
pub fn merge(
    store: &mut impl SharedStore,
    key: &str,
    spec: &WindowSpec,
    delta: &mut Counts,
    now_ms: u64,
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
        merged.add(now_ms, delta);
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

    /// Runs `rival` (another worker's whole flush) between this worker's read and its write.
    struct Interleaved<'a, F: FnMut(&mut ModelStore)> {
        store: &'a mut ModelStore,
        rival: Option<F>,
    }

    impl<F: FnMut(&mut ModelStore)> SharedStore for Interleaved<'_, F> {
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
        let mut store = ModelStore::default();
        let mut mine = events(54, 0);
        let rival = |s: &mut ModelStore| {
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
        let mut store = ModelStore::default();
        merge(&mut store, "k", &spec, &mut events(1, 0), 1000, 1).unwrap();
        struct AlwaysStale<'a>(&'a mut ModelStore);
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
        let none = Ending::default();
        let timed_out = Ending { timed_out: true, ..none };
        let reset = Ending { reset: true, ..none };
        assert_eq!(classify(Some(200), none), Outcome::Success);
        assert_eq!(classify(Some(404), none), Outcome::ClientError);
        assert_eq!(classify(Some(503), none), Outcome::ServerError);
        assert_eq!(classify(Some(504), none), Outcome::Timeout);
        assert_eq!(classify(Some(503), timed_out), Outcome::Timeout);
        assert_eq!(classify(Some(503), reset), Outcome::UpstreamReset);
        assert_eq!(classify(None, none), Outcome::UpstreamReset);
        // A 429 is the server shedding load: its own outcome, bad, as in the Prometheus rules.
        assert_eq!(classify(Some(429), none), Outcome::Overloaded);
        let quota = Ending { quota_exceeded: true, ..none };
        assert_eq!(classify(Some(429), quota), Outcome::QuotaExceeded);
        assert!(!Outcome::QuotaExceeded.is_bad() && !Outcome::QuotaExceeded.is_event());
        assert!(Outcome::Success.is_event() && !Outcome::ClientGone.is_event());
        assert_eq!(Counts::event(Outcome::QuotaExceeded, 10_000, 250), Counts::default());
        assert!(Outcome::Overloaded.is_bad() && !Outcome::ClientError.is_bad());
    }

    /// The attack: a client hanging up (or giving up by its own deadline) burnt the version's
    /// error budget as `upstream_reset` / `timeout`.
    #[test]
    fn what_the_client_did_is_not_charged_to_the_version() {
        let gone = Ending { client_gone: true, ..Ending::default() };
        assert_eq!(classify(None, gone), Outcome::ClientGone);
        // Envoy resets the upstream when the client leaves: the client's doing all the same.
        assert_eq!(classify(None, Ending { reset: true, ..gone }), Outcome::ClientGone);
        // An answer had come: the version's status stands.
        assert_eq!(classify(Some(503), gone), Outcome::ServerError);
        let deadline = Ending { client_deadline: true, ..Ending::default() };
        assert_eq!(classify(Some(504), deadline), Outcome::ClientDeadline);
        // Only a 504 can be the client's deadline.
        assert_eq!(classify(Some(503), deadline), Outcome::ServerError);
        assert_eq!(classify(Some(504), Ending::default()), Outcome::Timeout);
        for o in [Outcome::ClientGone, Outcome::ClientDeadline] {
            assert!(!o.is_bad());
            // Not an availability event at all; a latency event only when already slow.
            assert_eq!(Counts::event(o, 100, 250), Counts::default());
            assert_eq!(Counts::event(o, 300, 250), Counts { total: 0, bad: 0, latency_total: 1, latency_bad: 1 });
        }
        // 429 stays the server's fault.
        assert_eq!(Counts::event(Outcome::Overloaded, 1, 250).bad, 1);
    }

    #[test]
    fn a_latency_only_event_is_merged() {
        let spec = WindowSpec::parse("5m").unwrap();
        let mut store = ModelStore::default();
        let mut delta = Counts::event(Outcome::ClientGone, 900, 250);
        let merged = merge(&mut store, "k", &spec, &mut delta, 1000, 8).unwrap();
        assert!(delta.is_empty());
        assert_eq!(merged.totals(1000), Counts { total: 0, bad: 0, latency_total: 1, latency_bad: 1 });
    }

    #[test]
    fn window_specs() {
        assert_eq!(WindowSpec::parse("5m").unwrap().seconds, 300);
        assert_eq!(WindowSpec::parse("5m").unwrap().bucket_ms(), 10_000);
        assert_eq!(WindowSpec::parse("3d").unwrap().seconds, 259_200);
        for bad in ["", "5", "m", "10s", "31d", "5y", "-5m"] {
            assert!(WindowSpec::parse(bad).is_err(), "{bad}");
        }
    }

    /// The attack: `45s` and `100s` were silently 30 s and 90 s windows.
    #[test]
    fn a_window_is_exactly_its_buckets_or_refused() {
        for bad in ["45s", "100s", "31s", "59s", "1001s"] {
            let e = WindowSpec::parse(bad).unwrap_err();
            assert!(matches!(e, WindowError::NotWholeBuckets(..)), "{bad}: {e}");
            assert!(e.to_string().contains("must be a multiple of 30s"), "{bad}: {e}");
        }
        for good in ["30s", "60s", "90s", "5m", "7m", "1h", "1d", "30d"] {
            let spec = WindowSpec::parse(good).unwrap();
            assert_eq!(spec.bucket_ms() * BUCKETS, spec.seconds * 1000, "{good}");
        }
    }

    #[test]
    fn short_windows_have_tenth_of_a_second_buckets() {
        let spec = WindowSpec::parse_short("6s").unwrap();
        assert_eq!((spec.seconds, spec.bucket_ms()), (6, 200));
        assert_eq!(WindowSpec::parse_short("3s").unwrap().bucket_ms(), 100);
        for bad in ["", "6", "2s", "4s", "63s", "1m", "-3s"] {
            assert!(WindowSpec::parse_short(bad).is_err(), "{bad}");
        }
        let mut w = Window::new(&spec);
        let one = Counts { total: 1, ..Default::default() };
        w.add(10_000, &one);
        w.add(15_900, &one);
        assert_eq!(w.totals(15_900).total, 2);
        // 6 s after the first event's bucket began, it has left.
        assert_eq!(w.totals(16_000).total, 1);
    }

    #[test]
    fn window_slides_and_forgets() {
        let spec = WindowSpec::parse("5m").unwrap();
        let mut w = Window::new(&spec);
        let bad = Counts { total: 1, bad: 1, ..Default::default() };
        let good = Counts { total: 1, ..Default::default() };
        w.add(1_000_000, &bad);
        w.add(1_005_000, &good);
        w.add(1_100_000, &good);
        assert_eq!(w.totals(1_100_000), Counts { total: 3, bad: 1, ..Default::default() });
        // 300 s later the first events have left the window.
        assert_eq!(w.totals(1_305_000).total, 1);
        assert_eq!(w.totals(2_000_000).total, 0);
        // A bucket is reused for a new period, not summed into.
        w.add(1_300_000, &good);
        assert_eq!(w.totals(1_300_000).total, 2);
    }

    #[test]
    fn window_encoding_round_trips_and_rejects_other_specs() {
        let spec = WindowSpec::parse("1h").unwrap();
        let mut w = Window::new(&spec);
        w.add(7_200_000, &Counts { total: 5, bad: 2, latency_total: 3, latency_bad: 1 });
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
        assert_eq!(Counts::event(Outcome::Success, 300, 250).latency_bad, 1);
        assert_eq!(Counts::event(Outcome::ServerError, 300, 250), Counts { total: 1, bad: 1, ..Default::default() });
    }

    #[test]
    fn created_keys_are_counted_once_and_rewrites_not_at_all() {
        let mut store = ModelStore::default();
        let mut counting = CountingStore::new(&mut store);
        assert_eq!(counting.set("a", b"1", Some(CREATE_CAS)), SetResult::Ok);
        assert_eq!(counting.set("a", b"2", Some(CREATE_CAS)), SetResult::CasMismatch, "a second creation loses");
        let (_, token) = counting.get("a").unwrap();
        assert_eq!(counting.set("a", b"3", Some(token)), SetResult::Ok);
        assert!(counting.started, "the first key started the count");
        counting.started = false;
        assert_eq!(counting.set("b", b"1", Some(CREATE_CAS)), SetResult::Ok);
        assert!(!counting.started);
        let count = store.get(KEY_COUNT).map(|(v, _)| key_count(&v));
        assert_eq!(count, Some(3), "a, b and the count itself");
    }
}
