//! Which version serves a request.
//!
//! Versions own consecutive ranges of the 64-bit hash space in config order, sized by weight.
//! A sticky key always hashes to the same point, so it keeps its version while weights stay;
//! when the last version (the canary) grows at the expense of the one before it, only points
//! at their shared boundary change hands, all of them *to* the canary.

use crate::config::ModelPolicy;
use crate::hash::stable_hash;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The client asked for this version and the config allows it.
    Override,
    /// Chosen by the sticky key's hash.
    Sticky,
    /// Chosen at random by weight.
    Weighted,
    /// The version chosen otherwise was taken out by the guard: the stable one instead.
    Guarded,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Override => "override",
            Reason::Sticky => "sticky",
            Reason::Weighted => "weighted",
            Reason::Guarded => "guard",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Index into the model's versions.
    pub version: usize,
    pub reason: Reason,
    /// The client asked for a version the config does not allow (it was ignored).
    pub override_refused: bool,
    /// Also mirror this request to the shadow version.
    pub shadow: Option<usize>,
}

/// The version owning `point` of the hash space.
pub fn version_at(policy: &ModelPolicy, point: u64) -> usize {
    let total: u64 = policy.versions.iter().map(|v| u64::from(v.weight)).sum();
    // Scale the 64-bit point to [0, total) without bias beyond 2^-64.
    let target = ((u128::from(point) * u128::from(total)) >> 64) as u64;
    let mut upper = 0u64;
    for (i, v) in policy.versions.iter().enumerate() {
        upper += u64::from(v.weight);
        if target < upper {
            return i;
        }
    }
    // Unreachable with a validated policy (some weight > 0); the last version is a safe answer.
    policy.versions.len().saturating_sub(1)
}

/// Sticky keys that change hands between two policies of a model: `keys` of the points
/// given (each a key's [`stable_hash`]) are served by `from` under the first and by `to`
/// under the second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub from: String,
    pub to: String,
    pub keys: usize,
}

/// Where the sticky keys hashed to `points` go under `before` and under `after`, as the
/// filter's split would send them (guard and override aside): every pair of versions that
/// keys move between, largest first.
pub fn moves(before: &ModelPolicy, after: &ModelPolicy, points: &[u64]) -> Vec<Move> {
    let name = |p: &ModelPolicy, i: usize| p.versions.get(i).map_or("", |v| v.name.as_str()).to_owned();
    let mut out: Vec<Move> = Vec::new();
    for &point in points {
        let (from, to) = (name(before, version_at(before, point)), name(after, version_at(after, point)));
        if from == to {
            continue;
        }
        match out.iter_mut().find(|m| m.from == from && m.to == to) {
            Some(m) => m.keys += 1,
            None => out.push(Move { from, to, keys: 1 }),
        }
    }
    out.sort_by(|a, b| b.keys.cmp(&a.keys).then_with(|| (&a.from, &a.to).cmp(&(&b.from, &b.to))));
    out
}

/// What the filter knows about a request when it decides.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts<'a> {
    /// Version named by the override header or by the path (`/versions/{v}/`).
    pub requested: Option<&'a str>,
    pub sticky_key: Option<&'a str>,
    /// Uniform random draws in [0, 2^64): one for the split, one for the shadow.
    pub random: u64,
    pub shadow_random: f64,
}

pub fn decide(policy: &ModelPolicy, facts: &RequestFacts<'_>) -> Decision {
    let mut override_refused = false;
    let mut chosen = None;
    if let Some(want) = facts.requested {
        let allowed = policy.override_.as_ref().is_some_and(|o| o.allow.iter().any(|a| a == want));
        match policy.version(want) {
            Some(i) if allowed => chosen = Some((i, Reason::Override)),
            _ => override_refused = true,
        }
    }
    let (version, reason) = chosen.unwrap_or_else(|| match facts.sticky_key {
        Some(k) => (version_at(policy, stable_hash(k.as_bytes())), Reason::Sticky),
        None => (version_at(policy, facts.random), Reason::Weighted),
    });
    let shadow = policy
        .shadow
        .as_ref()
        .and_then(|s| policy.version(&s.version).filter(|&i| i != version && facts.shadow_random * 100.0 < s.percent));
    Decision { version, reason, override_refused, shadow }
}

/// The sticky key from a `Cookie` header value.
pub fn cookie_value<'a>(cookie_header: &'a str, name: &str) -> Option<&'a str> {
    cookie_header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name && !v.is_empty()).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::config::{Override, Shadow, Version};
    use crate::hash::Rng;

    fn policy(weights: &[u32]) -> ModelPolicy {
        ModelPolicy {
            versions: weights
                .iter()
                .enumerate()
                .map(|(i, w)| Version { name: format!("v{}", i + 1), cluster: format!("c{}", i + 1), weight: *w })
                .collect(),
            sticky: None,
            override_: Some(Override { header: "x-o".into(), allow: vec!["v2".into()] }),
            shadow: None,
            sampling: None,
            slo: None,
            guard: None,
        }
    }

    #[test]
    fn weighted_split_is_proportional() {
        // 100k draws at 90/10: the canary's share has sd sqrt(p(1-p)/n) ≈ 0.00095; 5 sd.
        let p = policy(&[90, 10]);
        let mut rng = Rng::new(1);
        let n = 100_000;
        let canary = (0..n).filter(|_| version_at(&p, rng.next_u64()) == 1).count();
        let share = canary as f64 / f64::from(n);
        assert!((share - 0.10).abs() < 0.005, "{share}");
    }

    #[test]
    fn zero_weight_takes_nothing_and_single_version_takes_all() {
        let p = policy(&[0, 5, 0]);
        let mut rng = Rng::new(2);
        assert!((0..10_000).all(|_| version_at(&p, rng.next_u64()) == 1));
        assert_eq!(version_at(&policy(&[1]), u64::MAX), 0);
    }

    #[test]
    fn override_only_when_allowed() {
        let p = policy(&[100, 0]);
        let facts = |r| RequestFacts { requested: Some(r), ..Default::default() };
        let d = decide(&p, &facts("v2"));
        assert_eq!((d.version, d.reason, d.override_refused), (1, Reason::Override, false));
        let d = decide(&p, &facts("v1"));
        assert_eq!((d.version, d.reason, d.override_refused), (0, Reason::Weighted, true), "v1 is not in allow");
        let d = decide(&p, &facts("v9"));
        assert!(d.override_refused);
        let mut no_override = p;
        no_override.override_ = None;
        assert!(decide(&no_override, &facts("v2")).override_refused);
    }

    #[test]
    fn shadow_goes_to_the_shadow_version_at_its_rate_and_never_to_itself() {
        let mut p = policy(&[100, 0]);
        p.shadow = Some(Shadow { version: "v2".into(), percent: 25.0, compare: None });
        let mut rng = Rng::new(3);
        let n = 40_000;
        let shadowed = (0..n)
            .filter(|_| {
                decide(
                    &p,
                    &RequestFacts { random: rng.next_u64(), shadow_random: rng.next_f64(), ..Default::default() },
                )
                .shadow
                    == Some(1)
            })
            .count();
        assert!((shadowed as f64 / f64::from(n) - 0.25).abs() < 0.011, "{shadowed}");
        let to_self = RequestFacts { requested: Some("v2"), shadow_random: 0.0, ..Default::default() };
        assert_eq!(decide(&p, &to_self).shadow, None);
    }

    #[test]
    fn cookies() {
        assert_eq!(cookie_value("a=1; user=alice; b=2", "user"), Some("alice"));
        assert_eq!(cookie_value("a=1;user=", "user"), None);
        assert_eq!(cookie_value("", "user"), None);
    }

    #[test]
    fn moves_count_the_keys_that_change_version() {
        let points: Vec<u64> = (0..1000).map(|i| stable_hash(format!("user-{i}").as_bytes())).collect();
        let (before, after) = (policy(&[100, 0]), policy(&[50, 50]));
        let m = moves(&before, &after, &points);
        let to_v2 = points.iter().filter(|&&p| version_at(&after, p) == 1).count();
        assert_eq!(m, vec![Move { from: "v1".into(), to: "v2".into(), keys: to_v2 }]);
        assert!((400..600).contains(&to_v2), "{to_v2}");
        assert!(moves(&after, &after, &points).is_empty(), "the same weights move nobody");
        let back = moves(&after, &before, &points);
        assert_eq!(back, vec![Move { from: "v2".into(), to: "v1".into(), keys: to_v2 }]);
    }

    proptest! {
        /// The same key always gets the same version while weights are unchanged.
        #[test]
        fn sticky_keys_never_flip(key in "[a-z0-9-]{1,24}", w1 in 0u32..1000, w2 in 1u32..1000) {
            let mut p = policy(&[w1, w2]);
            p.sticky = Some(crate::config::Sticky { header: Some("x-user".into()), cookie: None });
            let facts = RequestFacts { sticky_key: Some(&key), random: 1, ..Default::default() };
            let first = decide(&p, &facts);
            for r in 0..20u64 {
                let again = decide(&p, &RequestFacts { random: r.wrapping_mul(0x9e37_79b9), ..facts });
                prop_assert_eq!(again.version, first.version);
            }
        }

        /// Raising the canary (last) weight at the stable's expense only moves keys to it.
        #[test]
        fn canary_growth_is_monotonic(keys in proptest::collection::vec("[a-z0-9]{4,12}", 200), a in 0u32..=100, b in 0u32..=100) {
            let (lo, hi) = (a.min(b), a.max(b));
            let before = policy(&[100 - lo, lo]);
            let after = policy(&[100 - hi, hi]);
            for k in &keys {
                let point = stable_hash(k.as_bytes());
                let (x, y) = (version_at(&before, point), version_at(&after, point));
                prop_assert!(x == y || (x == 0 && y == 1), "key {} moved {} -> {}", k, x, y);
            }
        }

        /// Sticky keys spread by weight too.
        #[test]
        fn sticky_split_is_proportional(seed in any::<u64>()) {
            let p = policy(&[70, 30]);
            let mut rng = Rng::new(seed);
            let n = 20_000;
            let canary = (0..n).filter(|_| {
                let key = format!("user-{}", rng.next_u64());
                version_at(&p, stable_hash(key.as_bytes())) == 1
            }).count();
            // sd ≈ 0.0032; 5 sd.
            prop_assert!((canary as f64 / f64::from(n) - 0.30).abs() < 0.017);
        }
    }
}
