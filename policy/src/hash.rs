//! A stable 64-bit hash: the same key must land on the same version on every Envoy worker,
//! every machine and every release, so no std hasher (randomised or unspecified) is used.

/// FNV-1a over the bytes, then the splitmix64 finaliser so that similar keys (user-1,
/// user-2) spread over the whole range.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    mix(Fnv1a::default().update(bytes).finish())
}

/// FNV-1a (64-bit), fed in pieces: stable across builds and platforms, which std's hashers
/// are not. It guards against mistakes, not attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    #[must_use]
    pub fn update(mut self, bytes: &[u8]) -> Self {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }

    pub fn finish(self) -> u64 {
        self.0
    }
}

/// splitmix64's finaliser: a bijection with full avalanche.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A small deterministic generator (splitmix64) for the per-request random draws; seeded
/// from the host's clock and entropy, never shared across threads.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_vectors_in_one_piece_or_many() {
        assert_eq!(Fnv1a::default().finish(), 0xcbf2_9ce4_8422_2325);
        assert_eq!(Fnv1a::default().update(b"a").finish(), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(Fnv1a::default().update(b"foobar").finish(), 0x8594_4171_f739_67e8);
        assert_eq!(Fnv1a::default().update(b"foo").update(b"bar").finish(), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn hash_is_pinned() {
        // Changing these values reshuffles every sticky user in production: never do it.
        assert_eq!(stable_hash(b""), mix(0xcbf2_9ce4_8422_2325));
        assert_eq!(stable_hash(b"user-1"), stable_hash(b"user-1"));
        assert_ne!(stable_hash(b"user-1"), stable_hash(b"user-2"));
        assert_eq!(stable_hash(b"user-42"), 0x7a15_96f0_e94b_5793);
    }

    #[test]
    fn rng_is_uniform_enough() {
        let mut r = Rng::new(7);
        let n = 100_000;
        let mean = (0..n).map(|_| r.next_f64()).sum::<f64>() / f64::from(n);
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
    }
}
