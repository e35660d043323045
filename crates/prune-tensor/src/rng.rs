//! Small deterministic random numbers: a counter-based hash for dropout (the same draw on
//! every backend and thread count) and a seeded generator for initialisation and tests.

/// SplitMix64 finaliser: a high-quality 64-bit mix of `x`.
#[inline(always)]
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A uniform draw in `[0, 1)` that depends only on `(seed, index)`.
pub fn uniform_at(seed: u64, index: u64) -> f64 {
    let bits = mix64(mix64(seed) ^ index);
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Which draws of [`uniform_at`] fall below `p`, decided on the integers: draw `index` of
/// `seed` is below `p` exactly when [`DropTest::below`] says so. (The draw is `k · 2⁻⁵³` for
/// an integer `k`, so `draw < p` ⟺ `k < ⌈p · 2⁵³⌉`; no float conversion per element.)
#[derive(Clone, Copy, Debug)]
pub struct DropTest {
    /// `mix64(seed)`.
    key: u64,
    /// `⌈p · 2⁵³⌉`.
    threshold: u64,
}

impl DropTest {
    /// The test for draws of `seed` against probability `p` in `[0, 1]`.
    pub fn new(seed: u64, p: f64) -> Self {
        DropTest {
            key: mix64(seed),
            threshold: (p * (1u64 << 53) as f64).ceil() as u64,
        }
    }

    /// Whether `uniform_at(seed, index) < p`.
    #[inline(always)]
    pub fn below(&self, index: u64) -> bool {
        (mix64(self.key ^ index) >> 11) < self.threshold
    }
}

/// A seeded SplitMix64 generator.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.state)
    }

    /// A uniform draw in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform draw in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// A uniform integer in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }

    /// A standard normal draw (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// In-place Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_integer_drop_test_agrees_with_the_draws() {
        for p in [0.0, 0.1, 0.3, 0.5, 0.999, 1.0] {
            for seed in [0, 7, u64::MAX] {
                let test = DropTest::new(seed, p);
                for i in 0..20_000 {
                    assert_eq!(
                        test.below(i),
                        uniform_at(seed, i) < p,
                        "p {p} seed {seed} i {i}"
                    );
                }
            }
        }
        // Draws on either side of the threshold: k · 2⁻⁵³ just below and at p = 2⁻⁵³ · 5.
        let test = DropTest::new(0, 5.0 / (1u64 << 53) as f64);
        assert_eq!(test.threshold, 5);
    }

    #[test]
    fn uniform_draws_are_in_range_and_balanced() {
        let mean = (0..10_000).map(|i| uniform_at(7, i)).sum::<f64>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        let mut r = Rng::new(1);
        let normals: Vec<f64> = (0..10_000).map(|_| r.normal()).collect();
        let m = normals.iter().sum::<f64>() / 1e4;
        let var = normals.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / 1e4;
        assert!(m.abs() < 0.05 && (var - 1.0).abs() < 0.05, "{m} {var}");
    }
}
