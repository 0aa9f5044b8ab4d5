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

#[cfg(test)]
mod tests {
    use super::*;

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
