//! Evidently's drift tests: which one a column gets by default, each test as a small pure
//! function, and its threshold semantics (`p < t`, `p <= t` or `d >= t`) next to it.

use serde::{Deserialize, Serialize};

use crate::ks::ks_2samp;
use crate::special::{chi2_sf, ndtr, pairwise_sum};
use crate::summary::{Kind, Summary, union_keys, union_unique, walk_union};

/// A drift test, by Evidently's name for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Test {
    /// Two-sample Kolmogorov–Smirnov p-value (`scipy.stats.ks_2samp`); drift if `p <= t`.
    Ks,
    /// Pearson chi-square p-value, expected = reference counts scaled to the current size;
    /// drift if `p < t`.
    ChiSquare,
    /// Two-proportion z-test p-value; drift if `p < t`.
    Z,
    /// Wasserstein-1 distance over `max(std(reference), 0.001)`; drift if `d >= t`.
    Wasserstein,
    /// Jensen–Shannon distance (natural log) over bins; drift if `d >= t`.
    JensenShannon,
    /// Population stability index over bins (empty bins filled); drift if `psi >= t`.
    Psi,
}

pub const TESTS: [Test; 6] = [Test::Ks, Test::ChiSquare, Test::Z, Test::Wasserstein, Test::JensenShannon, Test::Psi];

impl Test {
    pub fn name(self) -> &'static str {
        match self {
            Test::Ks => "ks",
            Test::ChiSquare => "chisquare",
            Test::Z => "z",
            Test::Wasserstein => "wasserstein",
            Test::JensenShannon => "jensenshannon",
            Test::Psi => "psi",
        }
    }

    pub fn from_name(name: &str) -> Option<Test> {
        TESTS.into_iter().find(|t| t.name() == name)
    }

    /// Evidently's default threshold.
    pub fn default_threshold(self) -> f64 {
        match self {
            Test::Ks | Test::ChiSquare | Test::Z => 0.05,
            Test::Wasserstein | Test::JensenShannon | Test::Psi => 0.1,
        }
    }

    /// The score is a p-value (small means drift) rather than a distance (large means drift).
    pub fn is_p_value(self) -> bool {
        matches!(self, Test::Ks | Test::ChiSquare | Test::Z)
    }

    /// Evidently's decision for a score: note KS is `<=` and the other p-values `<`.
    pub fn drifted(self, score: f64, threshold: f64) -> bool {
        match self {
            Test::Ks => score <= threshold,
            Test::ChiSquare | Test::Z => score < threshold,
            Test::Wasserstein | Test::JensenShannon | Test::Psi => score >= threshold,
        }
    }

    /// Tests that need numbers refuse a categorical column.
    pub fn allows(self, kind: Kind) -> bool {
        kind == Kind::Numerical || !matches!(self, Test::Ks | Test::Wasserstein)
    }
}

impl std::fmt::Display for Test {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a column could not be tested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// No finite value in the reference (Evidently raises "An empty column … was provided").
    EmptyReference,
    /// No finite value in the current data.
    EmptyCurrent,
    /// The reference and current summaries are of different kinds.
    KindMismatch,
    /// The test needs numbers.
    NotNumerical(Test),
    /// The values span more than a double can hold: no bins.
    Unbinnable,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::EmptyReference => f.write_str("the reference has no usable value"),
            Error::EmptyCurrent => f.write_str("the current data has no usable value"),
            Error::KindMismatch => f.write_str("reference and current are summarised as different kinds"),
            Error::NotNumerical(t) => write!(f, "test '{t}' needs a numerical column"),
            Error::Unbinnable => f.write_str("the values span more than a double can hold: they cannot be binned"),
        }
    }
}

impl std::error::Error for Error {}

/// One column's result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ColumnDrift {
    pub test: Test,
    pub score: f64,
    pub threshold: f64,
    pub drifted: bool,
}

/// Evidently's default test: on the reference's size (≤ 1000 rows is small), the column's
/// kind and the distinct values of reference ∪ current.
pub fn default_test(reference: &Summary, current: &Summary) -> Test {
    // Past 5 distinct reference values the union has more than 5 too: skip the merge.
    let few = || reference.unique() <= 5 && union_unique(reference, current) <= 5;
    match (reference.rows() <= 1000, reference.kind) {
        (true, Kind::Numerical) if !few() => Test::Ks,
        (true, _) => {
            if union_unique(reference, current) > 2 {
                Test::ChiSquare
            } else {
                Test::Z
            }
        }
        (false, Kind::Numerical) if !few() => Test::Wasserstein,
        (false, _) => Test::JensenShannon,
    }
}

/// Tests one column: `test` and `threshold` default as Evidently's do.
pub fn column_drift(
    reference: &Summary,
    current: &Summary,
    test: Option<Test>,
    threshold: Option<f64>,
) -> Result<ColumnDrift, Error> {
    if reference.kind != current.kind {
        return Err(Error::KindMismatch);
    }
    if reference.rows() == 0 {
        return Err(Error::EmptyReference);
    }
    if current.rows() == 0 {
        return Err(Error::EmptyCurrent);
    }
    let test = test.unwrap_or_else(|| default_test(reference, current));
    if !test.allows(reference.kind) {
        return Err(Error::NotNumerical(test));
    }
    // Values ±1.7e308 apart have no finite range to bin (numpy refuses them too).
    if matches!(test, Test::JensenShannon | Test::Psi) && reference.kind == Kind::Numerical && reference.unique() > 20 {
        let (lo, hi) = combined_range(reference, current);
        if !(hi - lo).is_finite() {
            return Err(Error::Unbinnable);
        }
    }
    let threshold = threshold.unwrap_or_else(|| test.default_threshold());
    let score = match test {
        Test::Ks => ks_2samp(reference.sorted(), current.sorted()).map_or(f64::NAN, |(_, p)| p),
        Test::ChiSquare => chi_square(reference, current),
        Test::Z => z_test(reference, current),
        Test::Wasserstein => wasserstein(reference.sorted(), current.sorted()) / reference.std().max(0.001),
        Test::JensenShannon => {
            let (r, c) = binned(reference, current, false);
            jensen_shannon(&r, &c)
        }
        Test::Psi => {
            let (r, c) = binned(reference, current, true);
            let terms: Vec<f64> = r.iter().zip(&c).map(|(r, c)| (r - c) * (r / c).ln()).collect();
            pairwise_sum(&terms)
        }
    };
    Ok(ColumnDrift { test, score, threshold, drifted: test.drifted(score, threshold) })
}

/// `scipy.stats.chisquare(f_obs, f_exp)`: a category the reference never saw makes the
/// statistic infinite and the p-value 0, as there.
fn chi_square(reference: &Summary, current: &Summary) -> f64 {
    let keys = union_keys(reference, current);
    let k_norm = current.rows() as f64 / reference.rows() as f64;
    let terms: Vec<f64> = keys
        .iter()
        .map(|k| {
            let expected = reference.count(k) as f64 * k_norm;
            let observed = current.count(k) as f64;
            (observed - expected) * (observed - expected) / expected
        })
        .collect();
    chi2_sf(pairwise_sum(&terms), keys.len() as f64 - 1.0)
}

/// Evidently's two-proportion z-test: the share of values other than the smallest one,
/// `2 (1 - Φ(|z|))` (not `2 Φ(-|z|)`, so very small p-values round to 0 as they do there).
fn z_test(reference: &Summary, current: &Summary) -> f64 {
    let keys = union_keys(reference, current);
    if reference.unique() == 1 && current.unique() == 1 && keys.len() == 1 {
        return 1.0;
    }
    let Some(first) = keys.first() else { return f64::NAN };
    let (n1, n2) = (reference.rows() as f64, current.rows() as f64);
    let p1 = (reference.rows() as u64).saturating_sub(reference.count(first)) as f64 / n1;
    let p2 = (current.rows() as u64).saturating_sub(current.count(first)) as f64 / n2;
    let pooled = (p1 * n1 + p2 * n2) / (n1 + n2);
    let z = (p1 - p2) / (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    2.0 * (1.0 - ndtr(z.abs()))
}

/// `scipy.stats.wasserstein_distance(u, v)` for sorted samples: `∫ |F_u - F_v|` summed over
/// the gaps between consecutive values of both.
fn wasserstein(u: &[f64], v: &[f64]) -> f64 {
    let (nu, nv) = (u.len() as f64, v.len() as f64);
    let mut terms = Vec::with_capacity(u.len() + v.len());
    // The CDFs at the previous value hold over the gap up to this one.
    let mut prev: Option<(f64, f64)> = None;
    walk_union(u, v, |x, i, j| {
        if let Some((p, gap)) = prev {
            terms.push(gap * (x - p));
        }
        prev = Some((x, ((i as f64 / nu) - (j as f64 / nv)).abs()));
    });
    pairwise_sum(&terms)
}

/// `scipy.spatial.distance.jensenshannon(p, q)` (natural log).
fn jensen_shannon(p: &[f64], q: &[f64]) -> f64 {
    let (sp, sq) = (pairwise_sum(p), pairwise_sum(q));
    let rel_entr = |x: f64, y: f64| {
        if x > 0.0 && y > 0.0 {
            x * (x / y).ln()
        } else if x == 0.0 && y >= 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    };
    let (mut left, mut right) = (Vec::with_capacity(p.len()), Vec::with_capacity(p.len()));
    for (a, b) in p.iter().zip(q) {
        let (a, b) = (a / sp, b / sq);
        let m = (a + b) / 2.0;
        left.push(rel_entr(a, m));
        right.push(rel_entr(b, m));
    }
    ((pairwise_sum(&left) + pairwise_sum(&right)) / 2.0).sqrt()
}

/// Evidently's `get_binned_data`: numerical columns with more than 20 distinct reference
/// values go into Sturges bins over reference ∪ current, anything else one bucket per value;
/// shares of each side's size. `fill_zeroes` (PSI) replaces empty buckets by 1e-4, or by the
/// smallest share / 1e6 when that is ≤ 1e-4.
pub fn binned(reference: &Summary, current: &Summary, fill_zeroes: bool) -> (Vec<f64>, Vec<f64>) {
    let (nr, nc) = (reference.rows() as f64, current.rows() as f64);
    let (mut r, mut c): (Vec<f64>, Vec<f64>) = if reference.kind == Kind::Numerical && reference.unique() > 20 {
        let edges = sturges_edges(reference, current);
        let shares = |s: &Summary, n: f64| -> Vec<f64> {
            let last = edges.len() - 1;
            let cum: Vec<usize> = edges.iter().enumerate().map(|(i, e)| s.rank(*e, i == last)).collect();
            cum.windows(2).map(|w| (w[1] - w[0]) as f64 / n).collect()
        };
        (shares(reference, nr), shares(current, nc))
    } else {
        let keys = union_keys(reference, current);
        (
            keys.iter().map(|k| reference.count(k) as f64 / nr).collect(),
            keys.iter().map(|k| current.count(k) as f64 / nc).collect(),
        )
    };
    if fill_zeroes {
        fill(&mut r);
        fill(&mut c);
    }
    (r, c)
}

fn fill(shares: &mut [f64]) {
    let smallest = shares.iter().copied().filter(|s| *s != 0.0).fold(f64::INFINITY, f64::min);
    let value = if smallest <= 0.0001 { smallest / 1e6 } else { 0.0001 };
    for s in shares.iter_mut().filter(|s| **s == 0.0) {
        *s = value;
    }
}

/// `np.histogram_bin_edges(concat(reference, current), "sturges")` for two sorted samples.
pub fn sturges_edges(reference: &Summary, current: &Summary) -> Vec<f64> {
    let (lo, hi) = combined_range(reference, current);
    let (first, last) = if lo == hi { (lo - 0.5, hi + 0.5) } else { (lo, hi) };
    let size = (reference.rows() + current.rows()) as f64;
    let width = (hi - lo) / (size.log2() + 1.0);
    let bins = if width > 0.0 { ((last - first) / width).ceil() as usize } else { 1 };
    // np.linspace: i * step + start, the last edge exactly `stop`.
    let step = (last - first) / bins as f64;
    let mut edges: Vec<f64> = (0..=bins).map(|i| i as f64 * step + first).collect();
    if let Some(e) = edges.last_mut() {
        *e = last;
    }
    edges
}

/// The smallest and largest value of two numerical summaries together.
fn combined_range(reference: &Summary, current: &Summary) -> (f64, f64) {
    let (r, c) = (reference.sorted(), current.sorted());
    let lo = r.first().into_iter().chain(c.first()).copied().fold(f64::INFINITY, f64::min);
    let hi = r.last().into_iter().chain(c.last()).copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

/// Evidently's dataset drift: the share of drifted columns against `drift_share` (0.5).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DatasetDrift {
    pub columns: usize,
    pub drifted_columns: usize,
    pub share: f64,
    pub drift_share: f64,
    pub drifted: bool,
}

pub fn dataset_drift(drifted: impl IntoIterator<Item = bool>, drift_share: f64) -> DatasetDrift {
    let (mut columns, mut drifted_columns) = (0, 0);
    for d in drifted {
        columns += 1;
        drifted_columns += usize::from(d);
    }
    let share = if columns == 0 { 0.0 } else { drifted_columns as f64 / columns as f64 };
    DatasetDrift { columns, drifted_columns, share, drift_share, drifted: columns > 0 && share >= drift_share }
}
