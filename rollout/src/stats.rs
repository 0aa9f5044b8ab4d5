//! The canary judge's tests, each one-sided ("is the canary worse?"):
//! - error ratios: Fisher's exact test, exact at any count (a normal approximation is not at
//!   the few requests of an early step);
//! - latency: the Mann-Whitney U test on the two latency histograms (Kayenta's judge), ties
//!   within a bucket counted as ties, with the tie-corrected normal approximation.
//!
//! Hand-written: a statistics crate for two tests would pull in linear algebra; the tests
//! below check them against exact enumeration and textbook values. The special functions
//! (log-gamma, erfc) are the drift statistics' (`switchyard_drift::special`).

use switchyard_drift::special::{erfc, ln_gamma};

fn ln_choose(n: u64, k: u64) -> f64 {
    ln_gamma(n as f64 + 1.0) - ln_gamma(k as f64 + 1.0) - ln_gamma((n - k) as f64 + 1.0)
}

/// One-sided Fisher exact test: the probability, were both versions equally bad, of the canary
/// having at least `bad_a` of the `bad_a + bad_b` bad events among its `n_a` of `n_a + n_b`
/// requests. Small means the canary is worse.
pub fn fisher_worse(bad_a: u64, n_a: u64, bad_b: u64, n_b: u64) -> f64 {
    // Counters read across a restart can be inconsistent: no evidence, never a panic.
    if bad_a > n_a || bad_b > n_b {
        return 1.0;
    }
    let (n, k, draws) = (n_a + n_b, bad_a + bad_b, n_a);
    if n == 0 || k == 0 || draws == 0 {
        return 1.0;
    }
    let hi = k.min(draws);
    let lo = k.saturating_sub(n - draws);
    if bad_a <= lo {
        return 1.0;
    }
    // P(X = x) for the hypergeometric, then the upper tail by the ratio of successive terms.
    let ln_p = |x: u64| ln_choose(k, x) + ln_choose(n - k, draws - x) - ln_choose(n, draws);
    let mut term = ln_p(bad_a).exp();
    let mut sum = term;
    for x in bad_a..hi {
        let (xf, kf, df, nf) = (x as f64, k as f64, draws as f64, n as f64);
        term *= (kf - xf) * (df - xf) / ((xf + 1.0) * (nf - kf - df + xf + 1.0));
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum.min(1.0)
}

/// The standard normal's upper tail, 1 - Φ(z).
pub fn normal_upper(z: f64) -> f64 {
    erfc(z / std::f64::consts::SQRT_2) / 2.0
}

/// One-sided Mann-Whitney U test on two histograms over the same buckets (ascending): the
/// probability, were both drawn from one distribution, of the canary's (`a`) latencies ranking
/// at least this high. Equal buckets are ties. `None` with an empty side.
pub fn mann_whitney_worse(a: &[u64], b: &[u64]) -> Option<f64> {
    let (n1, n2): (u64, u64) = (a.iter().sum(), b.iter().sum());
    if n1 == 0 || n2 == 0 || a.len() != b.len() {
        return None;
    }
    let (mut u, mut below, mut ties) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        u += x as f64 * (below + y as f64 / 2.0);
        below += y as f64;
        let t = (x + y) as f64;
        ties += t * t * t - t;
    }
    let (n1, n2) = (n1 as f64, n2 as f64);
    let n = n1 + n2;
    let var = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    if var <= 0.0 {
        // Every value in one bucket: no evidence either way.
        return Some(1.0);
    }
    // Continuity correction towards the null.
    let z = (u - n1 * n2 / 2.0 - 0.5) / var.sqrt();
    Some(normal_upper(z))
}

/// The median of a histogram by linear interpolation within its bucket; `bounds` are the
/// buckets' upper bounds (the last may be `+Inf` or `f64::MAX`: its lower bound is returned
/// there).
pub fn median(counts: &[u64], bounds: &[f64]) -> Option<f64> {
    quantile(counts, bounds, 0.5)
}

/// The `q` quantile (0-1) of a histogram, as [`median`] (and Prometheus's
/// `histogram_quantile`) interpolate it.
pub fn quantile(counts: &[u64], bounds: &[f64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = total as f64 * q.clamp(0.0, 1.0);
    let (mut seen, mut lower) = (0.0, 0.0);
    for (&c, &upper) in counts.iter().zip(bounds) {
        let c = c as f64;
        if seen + c >= rank && c > 0.0 {
            if !upper.is_finite() || upper == f64::MAX {
                return Some(lower);
            }
            return Some(lower + (upper - lower) * (rank - seen) / c);
        }
        seen += c;
        lower = upper;
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// By direct enumeration of every way the bad events could fall, in plain factorials.
    fn fisher_by_enumeration(bad_a: u64, n_a: u64, bad_b: u64, n_b: u64) -> f64 {
        let fact = |n: u64| (1..=n).map(|i| i as f64).product::<f64>();
        let choose = |n: u64, k: u64| fact(n) / (fact(k) * fact(n - k));
        let (n, k) = (n_a + n_b, bad_a + bad_b);
        let all = choose(n, n_a);
        (bad_a..=k.min(n_a)).filter(|x| n_a - x <= n - k).map(|x| choose(k, x) * choose(n - k, n_a - x) / all).sum()
    }

    #[test]
    fn fisher_matches_the_tea_tasting_lady_and_enumeration() {
        // Fisher's own example: 3 of 4 cups right, one-sided p = 17/70.
        assert!((fisher_worse(3, 4, 1, 4) - 17.0 / 70.0).abs() < 1e-12);
        for (a, na, b, nb) in
            [(0, 10, 0, 10), (5, 20, 1, 30), (10, 12, 3, 40), (0, 5, 9, 9), (7, 25, 7, 25), (30, 60, 10, 90)]
        {
            let want = fisher_by_enumeration(a, na, b, nb);
            let got = fisher_worse(a, na, b, nb);
            assert!((got - want).abs() < 1e-9 * want.max(1e-300) + 1e-12, "{a}/{na} vs {b}/{nb}: {got} vs {want}");
        }
    }

    #[test]
    fn fisher_at_large_counts_is_finite_and_decisive() {
        let p = fisher_worse(300, 5_000, 500, 45_000);
        assert!(p > 0.0 && p < 1e-30, "{p}");
        assert!(fisher_worse(50, 5_000, 450, 45_000) > 0.4, "equal ratios are no evidence");
    }

    #[test]
    fn normal_tail() {
        for (z, want) in
            [(0.0, 0.5), (1.0, 0.158_655_25), (2.326_347_87, 0.01), (-1.0, 0.841_344_75), (5.0, 2.866_515_7e-7)]
        {
            let got = normal_upper(z);
            assert!((got - want).abs() < 2e-7 * want.max(1e-3), "{z}: {got} vs {want}");
        }
    }

    /// The exact permutation distribution of U for small samples, by enumerating every split of
    /// the pooled values.
    fn mw_exact(a: &[u64], b: &[u64]) -> f64 {
        let mut values = Vec::new();
        for (bucket, (&x, &y)) in a.iter().zip(b).enumerate() {
            values.extend(std::iter::repeat_n(bucket, (x + y) as usize));
        }
        let n1: usize = a.iter().sum::<u64>() as usize;
        let u_of = |pick: &[usize]| {
            let mut u = 0.0;
            for &i in pick {
                for (j, other) in values.iter().enumerate() {
                    if !pick.contains(&j) {
                        u += match values[i].cmp(other) {
                            std::cmp::Ordering::Greater => 1.0,
                            std::cmp::Ordering::Equal => 0.5,
                            std::cmp::Ordering::Less => 0.0,
                        };
                    }
                }
            }
            u
        };
        let mut observed_pick = Vec::new();
        let mut idx = 0;
        for (&x, &y) in a.iter().zip(b) {
            observed_pick.extend(idx..idx + x as usize);
            idx += (x + y) as usize;
        }
        let observed = u_of(&observed_pick);
        let (mut at_least, mut all) = (0u64, 0u64);
        let n = values.len();
        for mask in 0u32..(1 << n) {
            if mask.count_ones() as usize != n1 {
                continue;
            }
            let pick: Vec<usize> = (0..n).filter(|i| mask & (1 << i) != 0).collect();
            all += 1;
            if u_of(&pick) >= observed - 1e-9 {
                at_least += 1;
            }
        }
        at_least as f64 / all as f64
    }

    #[test]
    fn mann_whitney_tracks_the_exact_permutation_test() {
        // Eight values a side, with ties: the normal approximation is within a few points of
        // exact (the exact tail includes the mass at the observed U, which the approximation
        // spreads: 0.06 off at worst here, and far less at the counts a step judges).
        for (a, b) in [
            (vec![0, 1, 3, 4], vec![4, 3, 1, 0]),
            (vec![2, 2, 2, 2], vec![2, 2, 2, 2]),
            (vec![0, 0, 2, 6], vec![3, 3, 1, 1]),
            (vec![1, 3, 2, 0], vec![1, 2, 3, 2]),
        ] {
            let exact = mw_exact(&a, &b);
            let approx = mann_whitney_worse(&a, &b).unwrap();
            assert!((exact - approx).abs() < 0.07, "{a:?} vs {b:?}: exact {exact}, approx {approx}");
        }
        // Large and clearly slower: decisive; identical: not.
        let fast = [500, 300, 150, 50, 0, 0];
        let slow = [50, 100, 150, 300, 300, 100];
        assert!(mann_whitney_worse(&slow, &fast).unwrap() < 1e-12);
        assert!(mann_whitney_worse(&fast, &slow).unwrap() > 0.99);
        assert!(mann_whitney_worse(&fast, &fast).unwrap() > 0.45);
        assert_eq!(mann_whitney_worse(&[0, 0], &[1, 1]), None);
    }

    #[test]
    fn medians_interpolate_within_a_bucket() {
        let bounds = [1.0, 2.0, 5.0, f64::INFINITY];
        assert_eq!(median(&[0, 10, 0, 0], &bounds), Some(1.5));
        assert_eq!(median(&[5, 5, 0, 0], &bounds), Some(1.0));
        assert_eq!(median(&[0, 0, 0, 3], &bounds), Some(5.0));
        assert_eq!(median(&[0, 0, 0, 0], &bounds), None);
    }
}
