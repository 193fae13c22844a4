//! A tiny seeded PRNG (splitmix64) and a per-key rank built on it.
//!
//! Ranks are keyed by device id (not by input position), so the choice does not depend on the
//! order in which the server lists devices.

/// splitmix64 (Steele, Lea, Flood 2014): the standard seeder of xoshiro; good enough to shuffle.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting at `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// FNV-1a of a string: stable across platforms and Rust versions (unlike `DefaultHasher`).
fn fnv1a(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// A pseudo-random rank of `key` under `seed`: same inputs, same rank.
pub fn rank(seed: u64, key: &str) -> u64 {
    let mut g = SplitMix64::new(seed ^ SplitMix64::new(fnv1a(key)).next_u64());
    g.next_u64()
}
