//! The two-sample Kolmogorov–Smirnov test as `scipy.stats.ks_2samp` computes it with its
//! default method (`auto`, two-sided): the statistic from the empirical CDFs, then the exact
//! p-value — Hodges' lattice-path count in the "inside" form (Viehmann's recursion for 1 - p)
//! for unequal sizes, the alternating series for equal ones.
//!
//! scipy switches to an asymptotic distribution when either sample has more than 10,000
//! values; this module stays exact there (see docs/drift.md: the monitor's windows hold at most
//! 10,000 rows, so only the batch command can get there).

use crate::summary::walk_union;

/// The KS statistic `D` and its two-sided p-value for two sorted, non-empty samples of finite
/// values; `None` if either is empty.
pub fn ks_2samp(a: &[f64], b: &[f64]) -> Option<(f64, f64)> {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let d = statistic(a, b);
    let g = gcd(n1 as u64, n2 as u64);
    let lcm = (n1 as u64 / g) * n2 as u64;
    // As scipy: the statistic is snapped to the lattice of attainable values first.
    let h = (d * lcm as f64).round_ties_even() as u64;
    let d = h as f64 / lcm as f64;
    if h == 0 {
        return Some((d, 1.0));
    }
    let p = if n1 == n2 { prob_outside_square(n1 as u64, h) } else { outer_prob_inside(n1 as u64, n2 as u64, g, h) };
    Some((d, p.clamp(0.0, 1.0)))
}

/// `max |F_a - F_b|` over every value of either sample, the differences rounded as scipy's
/// (`i/n1 - j/n2`), so the lattice point it snaps to is the same.
fn statistic(a: &[f64], b: &[f64]) -> f64 {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let (mut max, mut min) = (f64::NEG_INFINITY, f64::INFINITY);
    walk_union(a, b, |_, i, j| {
        let diff = i as f64 / n1 - j as f64 / n2;
        max = max.max(diff);
        min = min.min(diff);
    });
    let min_s = (-min).clamp(0.0, 1.0);
    if min_s > max { min_s } else { max }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `P(D_{n,n} >= h/n)`: `2 Σ_k (-1)^k binom(2n, n-kh) / binom(2n, n)` evaluated Horner-like
/// to avoid the cancellation of the alternating series.
fn prob_outside_square(n: u64, h: u64) -> f64 {
    // Signed: the last factors of a term may go below zero (after one that is zero).
    let (n, h) = (n as i64, h as i64);
    let mut p = 0.0;
    let mut k = n / h;
    loop {
        let mut p1 = 1.0;
        for j in 0..h {
            p1 = (n - k * h - j) as f64 * p1 / (n + k * h + j + 1) as f64;
        }
        p = p1 * (1.0 - p);
        if k == 0 {
            break;
        }
        k -= 1;
    }
    2.0 * p
}

/// The share of lattice paths from (0,0) to (m,n) that leave the band `|x/m - y/n| < h/lcm`,
/// computed as 1 - (paths inside) one column at a time over a sliding window.
fn outer_prob_inside(m: u64, n: u64, g: u64, h: u64) -> f64 {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let (mg, ng) = ((m / g) as f64, (n / g) as f64);
    let (m, n, h) = (m as i64, n as i64, h as f64);
    let mut minj: i64 = 0;
    let mut maxj: i64 = ((h / mg).ceil() as i64).min(n + 1);
    let mut curlen = maxj - minj;
    let len = (2 * maxj + 2).min(n + 1) as usize;
    let mut a = vec![1.0f64; len];
    for x in a.iter_mut().take(maxj as usize) {
        *x = 0.0;
    }
    for i in 1..=m {
        let (lastminj, lastlen) = (minj, curlen);
        minj = (((ng * i as f64 - h) / mg).floor() as i64 + 1).max(0).min(n);
        maxj = (((ng * i as f64 + h) / mg).ceil() as i64).min(n + 1);
        if maxj <= minj {
            return 1.0;
        }
        let mut val = if minj == 0 { 0.0 } else { 1.0 };
        for jj in 0..(maxj - minj) {
            let j = jj + minj;
            let prev = a.get((jj + minj - lastminj) as usize).copied().unwrap_or(1.0);
            val = (prev * i as f64 + val * j as f64) / (i + j) as f64;
            if let Some(slot) = a.get_mut(jj as usize) {
                *slot = val;
            }
        }
        curlen = maxj - minj;
        if lastlen > curlen {
            let from = curlen as usize;
            let to = (lastlen as usize).min(a.len());
            for x in a.iter_mut().take(to).skip(from) {
                *x = 1.0;
            }
        }
    }
    a.get((maxj - minj - 1) as usize).copied().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::ks_2samp;

    #[test]
    fn identical_samples_do_not_differ() {
        let a = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(ks_2samp(&a, &a), Some((0.0, 1.0)));
        assert_eq!(ks_2samp(&a, &[]), None);
    }

    #[test]
    fn disjoint_samples_have_d_one() {
        // scipy: ks_2samp([1,2,3], [4,5,6,7]) -> statistic 1.0, pvalue 0.05714285714285714
        let (d, p) = ks_2samp(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0, 7.0]).unwrap();
        assert_eq!(d, 1.0);
        assert!((p - 0.057_142_857_142_857_14).abs() < 1e-15, "{p}");
        // Equal sizes: 2 / binom(6, 3) = 0.1
        let (_, p) = ks_2samp(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert!((p - 0.1).abs() < 1e-15, "{p}");
    }
}
