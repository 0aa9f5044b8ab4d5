//! The special functions the tests need: log-gamma, the regularised incomplete gamma
//! function (chi-square survival), the complementary error function and the normal CDF, and
//! numpy's pairwise summation (so sums round as numpy's do).
//!
//! Written here rather than taken from a crate because the tests must score as scipy and numpy
//! do, not merely closely: numpy's pairwise summation and scipy's split of `ndtr` (which decides
//! how a z-test's `1 - Φ` rounds near 0) are in no crate. What a crate could replace
//! (log-gamma, the incomplete gamma, erfc: about a hundred lines) would bring `statrs` (~30k
//! lines, plus `approx`, `num-traits` and `libm`) or `puruspe` (~11k, mostly Bessel and
//! Faddeeva functions) into every build of the monitor and the controller for three functions.
//! Each is checked against scipy in `tests/scipy_parity.rs`; the rollout controller's canary
//! judge uses `ln_gamma` and `erfc` from here too.

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, n = 9: about 1e-15 relative on Γ).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1-x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).abs().ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

const EPS: f64 = 1e-17;
const MAX_ITER: usize = 100_000;

/// The lower regularised incomplete gamma `P(a, x)` by its series (for `x < a + 1`).
fn gamma_p_series(a: f64, x: f64) -> f64 {
    let mut ap = a;
    let mut term = 1.0 / a;
    let mut sum = term;
    for _ in 0..MAX_ITER {
        ap += 1.0;
        term *= x / ap;
        sum += term;
        if term.abs() < sum.abs() * EPS {
            break;
        }
    }
    sum * (-x + a * x.ln() - ln_gamma(a)).exp()
}

/// The upper regularised incomplete gamma `Q(a, x)` by its continued fraction (modified
/// Lentz, for `x >= a + 1`).
fn gamma_q_fraction(a: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut b = x + 1.0 - a;
    let mut c = 1.0 / TINY;
    let mut d = 1.0 / b;
    let mut h = d;
    for i in 1..MAX_ITER {
        let an = -(i as f64) * (i as f64 - a);
        b += 2.0;
        d = an * d + b;
        if d.abs() < TINY {
            d = TINY;
        }
        c = b + an / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < EPS {
            break;
        }
    }
    (-x + a * x.ln() - ln_gamma(a)).exp() * h
}

/// `Q(a, x) = Γ(a, x) / Γ(a)`, the upper regularised incomplete gamma function; NaN outside
/// its domain (as scipy's `gammaincc`).
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if a.is_nan() || x.is_nan() || a <= 0.0 || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return 1.0;
    }
    if x.is_infinite() {
        return 0.0;
    }
    if x < a + 1.0 { 1.0 - gamma_p_series(a, x) } else { gamma_q_fraction(a, x) }
}

/// The chi-square survival function with `df` degrees of freedom (scipy's `chdtrc`).
pub fn chi2_sf(stat: f64, df: f64) -> f64 {
    if stat.is_nan() || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if stat <= 0.0 {
        return 1.0;
    }
    gamma_q(df / 2.0, stat / 2.0)
}

/// `erf(x)` for `|x| < 1.5` by the gamma series; the caller uses `erfc` beyond.
fn erf_small(x: f64) -> f64 {
    if x == 0.0 {
        return x;
    }
    x.signum() * gamma_p_series(0.5, x * x)
}

/// The complementary error function for `x >= 0`.
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    if x * x < 1.5 { 1.0 - erf_small(x) } else { gamma_q_fraction(0.5, x * x) }
}

/// The standard normal CDF, split as scipy's `ndtr` splits it (the error function near 0, the
/// complementary one beyond `|a| >= 1`), so `1 - ndtr(a)` cancels as it does there.
pub fn ndtr(a: f64) -> f64 {
    let x = a * std::f64::consts::FRAC_1_SQRT_2;
    let z = x.abs();
    if z < std::f64::consts::FRAC_1_SQRT_2 {
        0.5 + 0.5 * erf_small(x)
    } else {
        let y = 0.5 * erfc(z);
        if x > 0.0 { 1.0 - y } else { y }
    }
}

/// Sums as numpy's `pairwise_sum` does (8 accumulators per block of up to 128, halves above),
/// so short sums round the same way and long ones as closely.
pub fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        // numpy starts from -0.0 so that a sum of negative zeros stays negative.
        return a.iter().fold(-0.0, |s, x| s + x);
    }
    if n <= 128 {
        let mut r = [0.0; 8];
        r.copy_from_slice(&a[..8]);
        let whole = n - n % 8;
        for block in a[8..whole].chunks_exact(8) {
            for (acc, x) in r.iter_mut().zip(block) {
                *acc += x;
            }
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for x in &a[whole..] {
            res += x;
        }
        return res;
    }
    let mut half = n / 2;
    half -= half % 8;
    pairwise_sum(&a[..half]) + pairwise_sum(&a[half..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs()
    }

    #[test]
    fn gamma_at_known_points() {
        assert!(close(ln_gamma(0.5), std::f64::consts::PI.sqrt().ln(), 1e-14));
        assert!(close(ln_gamma(10.0), 362_880f64.ln(), 1e-14));
        assert!(ln_gamma(1.0).abs() < 1e-14 && ln_gamma(2.0).abs() < 1e-14);
    }

    #[test]
    fn chi2_with_two_degrees_is_an_exponential() {
        for x in [0.1, 1.0, 5.0, 40.0, 300.0] {
            assert!(close(chi2_sf(x, 2.0), (-x / 2.0).exp(), 1e-13), "{x}");
        }
        assert_eq!(chi2_sf(f64::INFINITY, 3.0), 0.0);
        assert_eq!(chi2_sf(0.0, 3.0), 1.0);
        assert!(chi2_sf(1.0, 0.0).is_nan());
    }

    #[test]
    fn the_normal_cdf_is_symmetric_and_known() {
        assert_eq!(ndtr(0.0), 0.5);
        assert!(close(ndtr(1.959_963_984_540_054), 0.975, 1e-14));
        for a in [0.3, 1.0, 2.5, 7.0] {
            assert!(close(ndtr(-a) + ndtr(a), 1.0, 1e-15));
        }
        assert!(close(erfc(3.0), 2.209_049_699_858_544e-5, 1e-13));
    }

    #[test]
    fn pairwise_sum_matches_plain_sums_of_exact_values() {
        let v: Vec<f64> = (0..1000).map(f64::from).collect();
        assert_eq!(pairwise_sum(&v), 499_500.0);
        assert_eq!(pairwise_sum(&[]), 0.0);
        assert_eq!(pairwise_sum(&v[..13]), 78.0);
    }
}
