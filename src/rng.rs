//! SplitMix64 (Steele, Lea & Flood 2014): the one seeded generator `ser`'s host code uses for
//! weight initialisation, shuffles, dropout seeds and benchmark data.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// One SplitMix64 output for state `z` (state advanced by the golden gamma, then mixed).
pub fn splitmix64(z: u64) -> u64 {
    let mut z = z.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The stream seed + 1·gamma, seed + 2·gamma, ..., each mixed.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        let out = splitmix64(self.0);
        self.0 = self.0.wrapping_add(GOLDEN);
        out
    }

    /// Uniform in [lo, hi), from the top 24 bits (every value exact in f32).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
    }

    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }

    /// Uniform in 0..n (n at most 2^32) by a multiply-high of the top 32 bits: bias below
    /// n / 2^32, nothing the forest's bootstrap or feature draws can see.
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0 && n as u64 <= 1 << 32);
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}

/// Seeded Fisher-Yates shuffle (SplitMix64).
pub fn shuffle(idx: &mut [usize], seed: u64) {
    let mut rng = SplitMix64::new(seed);
    for i in (1..idx.len()).rev() {
        idx.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_splitmix64_sequence() {
        // Reference outputs of SplitMix64 seeded with 0 (Vigna's splitmix64.c).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
    }
}
