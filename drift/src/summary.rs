//! A column summarised once: sorted finite values for a numerical column, value counts for a
//! categorical one. References are summarised when they are loaded; a window is summarised
//! each time it is evaluated.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a column is compared (Evidently's column types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Numerical,
    Categorical,
}

/// One categorical value. Numbers and booleans compare by value (`true == 1`, `1 == 1.0`, as
/// pandas' value counts see them); text after every number.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Key {
    Num(f64),
    Text(String),
}

impl Key {
    /// A number as a key, `-0.0` folded into `0.0`; `None` for NaN and infinities, which
    /// Evidently drops before testing.
    pub fn num(x: f64) -> Option<Key> {
        x.is_finite().then_some(Key::Num(if x == 0.0 { 0.0 } else { x }))
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Key::Num(a), Key::Num(b)) => a.total_cmp(b),
            (Key::Num(_), Key::Text(_)) => Ordering::Less,
            (Key::Text(_), Key::Num(_)) => Ordering::Greater,
            (Key::Text(a), Key::Text(b)) => a.cmp(b),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Num(x) => write!(f, "{x}"),
            Key::Text(s) => f.write_str(s),
        }
    }
}

/// A column's values as the tests need them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub kind: Kind,
    /// Numerical: the finite values, ascending. Empty for a categorical column.
    sorted: Vec<f64>,
    /// Categorical: each value's count. Empty for a numerical column.
    counts: BTreeMap<Key, u64>,
    /// Values kept (NaN, infinities and missing values are not).
    rows: usize,
    /// Distinct values kept.
    unique: usize,
    /// Numerical: the population standard deviation (ddof 0, as `np.std`).
    std: f64,
    /// Values dropped as NaN, infinite or missing.
    pub dropped: usize,
}

impl Summary {
    /// A numerical column; NaN and infinities are dropped (and counted).
    pub fn numerical(values: impl IntoIterator<Item = f64>) -> Summary {
        let mut dropped = 0;
        let mut sorted: Vec<f64> = values
            .into_iter()
            .filter(|x| {
                let keep = x.is_finite();
                dropped += usize::from(!keep);
                keep
            })
            .map(|x| if x == 0.0 { 0.0 } else { x })
            .collect();
        sorted.sort_unstable_by(f64::total_cmp);
        let unique = runs(&sorted).count();
        let std = population_std(&sorted);
        Summary { kind: Kind::Numerical, rows: sorted.len(), sorted, counts: BTreeMap::new(), unique, std, dropped }
    }

    /// A categorical column; `None` values (missing, NaN) are dropped (and counted).
    pub fn categorical(values: impl IntoIterator<Item = Option<Key>>) -> Summary {
        let mut counts = BTreeMap::new();
        let (mut rows, mut dropped) = (0, 0);
        for v in values {
            match v {
                Some(k) => {
                    *counts.entry(k).or_insert(0) += 1;
                    rows += 1;
                }
                None => dropped += 1,
            }
        }
        Summary { kind: Kind::Categorical, sorted: Vec::new(), unique: counts.len(), counts, rows, std: 0.0, dropped }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn unique(&self) -> usize {
        self.unique
    }

    pub fn sorted(&self) -> &[f64] {
        &self.sorted
    }

    pub fn std(&self) -> f64 {
        self.std
    }

    /// Each distinct value with its count, ascending.
    pub fn value_counts(&self) -> Vec<(Key, u64)> {
        match self.kind {
            Kind::Categorical => self.counts.iter().map(|(k, c)| (k.clone(), *c)).collect(),
            Kind::Numerical => runs(&self.sorted).map(|(x, c)| (Key::Num(x), c as u64)).collect(),
        }
    }

    /// The count of one value.
    pub fn count(&self, key: &Key) -> u64 {
        match (self.kind, key) {
            (Kind::Categorical, k) => self.counts.get(k).copied().unwrap_or(0),
            (Kind::Numerical, Key::Num(x)) => {
                let lo = self.sorted.partition_point(|v| v < x);
                let hi = self.sorted.partition_point(|v| v <= x);
                (hi - lo) as u64
            }
            (Kind::Numerical, Key::Text(_)) => 0,
        }
    }

    /// Values below `x` (`side = left` of numpy's searchsorted), or at most `x`.
    pub(crate) fn rank(&self, x: f64, inclusive: bool) -> usize {
        if inclusive { self.sorted.partition_point(|v| *v <= x) } else { self.sorted.partition_point(|v| *v < x) }
    }

    /// Approximate heap bytes held (for the monitor's memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.sorted.capacity() * 8
            + self.counts.keys().map(|k| 48 + if let Key::Text(s) = k { s.capacity() } else { 0 }).sum::<usize>()
    }
}

/// Distinct values of `ref ∪ cur` (Evidently counts them over both to pick a test).
pub fn union_unique(reference: &Summary, current: &Summary) -> usize {
    match (reference.kind, current.kind) {
        (Kind::Numerical, Kind::Numerical) => {
            let mut n = 0;
            walk_union(&reference.sorted, &current.sorted, |_, _, _| n += 1);
            n
        }
        _ => union_keys(reference, current).len(),
    }
}

/// Calls `f(v, i, j)` for each distinct value `v` of two sorted slices, ascending, with `i` and
/// `j` the values of `a` and of `b` that are ≤ `v` (the empirical CDFs' counts at `v`).
pub fn walk_union(a: &[f64], b: &[f64], mut f: impl FnMut(f64, usize, usize)) {
    let (mut i, mut j) = (0, 0);
    loop {
        let v = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.min(*y),
            (Some(x), None) => *x,
            (None, Some(y)) => *y,
            (None, None) => break,
        };
        while a.get(i).is_some_and(|x| *x <= v) {
            i += 1;
        }
        while b.get(j).is_some_and(|y| *y <= v) {
            j += 1;
        }
        f(v, i, j);
    }
}

/// The distinct values of both, ascending.
pub fn union_keys(reference: &Summary, current: &Summary) -> Vec<Key> {
    let mut keys: Vec<Key> = reference.value_counts().into_iter().map(|(k, _)| k).collect();
    keys.extend(current.value_counts().into_iter().map(|(k, _)| k));
    keys.sort();
    keys.dedup();
    keys
}

/// Runs of equal values in a sorted slice: (value, length).
fn runs(sorted: &[f64]) -> impl Iterator<Item = (f64, usize)> + '_ {
    sorted.chunk_by(|a, b| a == b).map(|run| (run[0], run.len()))
}

/// `np.std(x)` (ddof 0): the mean and the squared deviations summed as numpy sums them.
fn population_std(x: &[f64]) -> f64 {
    if x.is_empty() {
        return f64::NAN;
    }
    let n = x.len() as f64;
    let mean = crate::special::pairwise_sum(x) / n;
    let squares: Vec<f64> = x.iter().map(|v| (v - mean) * (v - mean)).collect();
    (crate::special::pairwise_sum(&squares) / n).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_are_dropped_and_counted() {
        let s = Summary::numerical([3.0, f64::NAN, 1.0, f64::INFINITY, 1.0, -0.0]);
        assert_eq!(s.sorted(), &[0.0, 1.0, 1.0, 3.0]);
        assert_eq!((s.rows(), s.unique(), s.dropped), (4, 3, 2));
        assert_eq!(s.count(&Key::Num(1.0)), 2);
        let c = Summary::categorical([Key::num(1.0), None, Some(Key::Text("a".into())), Key::num(1.0)]);
        assert_eq!((c.rows(), c.unique(), c.dropped), (3, 2, 1));
        assert_eq!(union_unique(&s, &Summary::numerical([7.0, 3.0])), 4);
    }

    #[test]
    fn numbers_sort_before_text_and_compare_by_value() {
        assert!(Key::Num(2.0) < Key::Text("1".into()));
        assert_eq!(Key::num(-0.0), Key::num(0.0));
        assert_eq!(Key::num(f64::NAN), None);
    }
}
