//! When each request of an open-loop phase is due. A phase's rate is piecewise linear in time
//! (constant, ramp, spike); the k-th request (k = 0, 1, …) is due when the expected number of
//! arrivals since the phase began, N(t) = ∫ rate, reaches k. Pure arithmetic, so the timing of
//! every shape is unit-tested without a clock.

use std::time::Duration;

/// A stretch of time over which the rate moves linearly from `from` to `to` (requests/s).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Segment {
    pub seconds: f64,
    pub from: f64,
    pub to: f64,
}

impl Segment {
    pub fn constant(rate: f64, seconds: f64) -> Self {
        Segment { seconds, from: rate, to: rate }
    }

    /// Expected arrivals over the whole segment.
    pub fn count(&self) -> f64 {
        (self.from + self.to) / 2.0 * self.seconds
    }

    /// Time into the segment at which `n` arrivals are expected: the root of
    /// from·t + (to − from)·t² / (2·seconds) = n. The form 2n / (b + √(b² + 4an)) stays exact
    /// for a constant rate (a = 0) and never divides by zero but for n = 0.
    fn time_for(&self, n: f64) -> f64 {
        if n <= 0.0 {
            return 0.0;
        }
        let a = (self.to - self.from) / (2.0 * self.seconds);
        let b = self.from;
        let disc = b * b + 4.0 * a * n;
        if disc < 0.0 {
            return f64::INFINITY;
        }
        let denom = b + disc.sqrt();
        if denom <= 0.0 { f64::INFINITY } else { 2.0 * n / denom }
    }
}

/// The due times of a phase's requests, in seconds from the phase's start, in order.
#[derive(Clone, Debug)]
pub struct Arrivals {
    segments: Vec<Segment>,
    seg: usize,
    seg_start: f64,
    count_at_start: f64,
    next: u64,
}

impl Arrivals {
    pub fn new(segments: Vec<Segment>) -> Self {
        Arrivals { segments, seg: 0, seg_start: 0.0, count_at_start: 0.0, next: 0 }
    }
}

impl Iterator for Arrivals {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        loop {
            let s = *self.segments.get(self.seg)?;
            let t = s.time_for(self.next as f64 - self.count_at_start);
            if t < s.seconds {
                self.next += 1;
                return Some(Duration::from_secs_f64(self.seg_start + t));
            }
            self.count_at_start += s.count();
            self.seg_start += s.seconds;
            self.seg += 1;
        }
    }
}

/// Rate (requests/s) at `t` seconds into the phase; 0 past its end.
pub fn rate_at(segments: &[Segment], mut t: f64) -> f64 {
    for s in segments {
        if t < s.seconds {
            return s.from + (s.to - s.from) * t / s.seconds;
        }
        t -= s.seconds;
    }
    0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(a: Arrivals) -> Vec<f64> {
        a.map(|d| d.as_secs_f64()).collect()
    }

    #[test]
    fn constant_rate_is_evenly_spaced() {
        let t = secs(Arrivals::new(vec![Segment::constant(100.0, 1.0)]));
        assert_eq!(t.len(), 100);
        for (k, x) in t.iter().enumerate() {
            assert!((x - k as f64 / 100.0).abs() < 1e-9, "request {k} due at {x}");
        }
    }

    #[test]
    fn ramp_delivers_its_integral_with_rising_density() {
        // 0 → 200 req/s over 2 s: 200 requests, half of them in the last 0.59 s (√½ of the way).
        let t = secs(Arrivals::new(vec![Segment { seconds: 2.0, from: 0.0, to: 200.0 }]));
        assert_eq!(t.len(), 200);
        let median = t[100];
        assert!((median - 2.0 * 0.5f64.sqrt()).abs() < 0.01, "median arrival at {median}");
        // Gaps shrink as the rate grows.
        assert!(t[10] - t[9] > t[190] - t[189]);
        assert!(t.windows(2).all(|w| w[1] >= w[0]));
    }

    #[test]
    fn falling_ramp_ends_on_time() {
        let t = secs(Arrivals::new(vec![Segment { seconds: 1.0, from: 100.0, to: 0.0 }]));
        assert_eq!(t.len(), 50);
        assert!(t.iter().all(|x| *x < 1.0));
        assert!(t[1] - t[0] < t[49] - t[48]);
    }

    #[test]
    fn spike_segments_join_without_gaps_or_doubles() {
        let segs = vec![Segment::constant(10.0, 1.0), Segment::constant(1000.0, 0.5), Segment::constant(10.0, 1.0)];
        let a = Arrivals::new(segs.clone());
        assert!((segs.iter().map(Segment::count).sum::<f64>() - 520.0).abs() < 1e-9);
        let t = secs(a);
        assert_eq!(t.len(), 520);
        let in_spike = t.iter().filter(|x| (1.0..1.5).contains(*x)).count();
        assert_eq!(in_spike, 500);
        assert!(t.windows(2).all(|w| w[1] > w[0]), "arrivals strictly ordered");
        assert_eq!(rate_at(&segs, 1.2), 1000.0);
        assert_eq!(rate_at(&segs, 2.2), 10.0);
        assert_eq!(rate_at(&segs, 3.0), 0.0);
    }

    #[test]
    fn fractional_rates_keep_their_average() {
        let t = secs(Arrivals::new(vec![Segment::constant(2.5, 4.0)]));
        assert_eq!(t.len(), 10);
        assert!((t[1] - 0.4).abs() < 1e-9);
    }
}
