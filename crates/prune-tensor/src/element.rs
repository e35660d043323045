//! `Element`: the floating-point types a CPU tensor may hold (f32 for work, f64 for checks).

use num_traits::{Float, FromPrimitive, ToPrimitive};
use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

/// A float type the CPU backend computes in: `f32` for real work, `f64` for gradient checks.
pub trait Element:
    Float
    + FromPrimitive
    + ToPrimitive
    + Default
    + Debug
    + Send
    + Sync
    + Sum
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + 'static
{
    /// The Gauss error function.
    fn erf(self) -> Self;
    /// `eˣ`; for f32 a branch-free polynomial that vectorises (relative error < 3e-7).
    fn exp_fast(self) -> Self;
    /// `tanh(x)`; for f32 branch-free from [`Element::exp_fast`] so that it vectorises
    /// (absolute error < 3e-7), where libm's `tanhf` is one call per element.
    fn tanh_fast(self) -> Self;
    /// Converts from `f64` (rounding for `f32`).
    fn of(x: f64) -> Self;
    /// Widens to `f64`.
    fn f64(self) -> f64;
}

/// Numerator coefficients (in powers of x², lowest first) of a rational approximation
/// `erf(x) ≈ x·P(x²)/Q(x²)` on [-4, 4], fitted here by iteratively reweighted least squares;
/// its absolute error is below 5e-7 when evaluated in f32 (libm's `erff` reaches about 1e-7).
const ERF_P: [f32; 7] = [
    1.128_378_7,
    0.213_945_23,
    0.052_433_24,
    0.004_292_85,
    0.000_155_514_7,
    -1.989_854e-6,
    1.921_053_9e-8,
];
/// Denominator coefficients of the same approximation.
const ERF_Q: [f32; 5] = [
    1.0,
    0.522_931_7,
    0.120_799_54,
    0.015_550_884,
    0.001_097_932_1,
];

/// Branch-free f32 erf (vectorises, unlike libm's): the rational approximation above, with
/// the argument clamped to [-4, 4] where f32 erf is already ±1.
#[inline(always)]
fn erf_f32(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let z = x * x;
    let p = ERF_P.iter().rev().fold(0.0f32, |acc, &c| acc * z + c);
    let q = ERF_Q.iter().rev().fold(0.0f32, |acc, &c| acc * z + c);
    x * p / q
}

/// Branch-free f32 `eˣ`: `x = n·ln2 + r` with `|r| ≤ ln2/2` (ln2 split in two parts so `r`
/// is exact), `eʳ` by its degree-6 Taylor polynomial, then `2ⁿ` put into the exponent bits.
/// Inputs below -87.3 (where f32 underflows) give exactly 0, above 88.7 give +∞.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let xc = x.clamp(-87.3, 88.7);
    // Round to nearest by adding and subtracting 1.5·2²³ (no `roundf` call, so it vectorises
    // on baseline x86-64); exact for |x·log₂e| < 2²².
    const ROUNDER: f32 = 12_582_912.0;
    let shifted = xc * std::f32::consts::LOG2_E + ROUNDER;
    let n = shifted - ROUNDER;
    // n as an integer, read from the low mantissa bits of `shifted` (which lies in
    // [2²³, 2²⁴), so its bits are ROUNDER's plus n): `n as i32` would saturate lane by
    // lane, which compiles to one scalar conversion per element.
    let ni = (shifted.to_bits() as i32).wrapping_sub(ROUNDER.to_bits() as i32);
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2ⁿ as two factors, each a normal f32 for every n in [-126, 128].
    let (n1, n2) = (ni / 2, ni - ni / 2);
    let pow2 = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    let y = p * pow2(n1) * pow2(n2);
    if x < -87.3 {
        0.0
    } else if x > 88.7 {
        f32::INFINITY
    } else {
        y
    }
}

/// Branch-free f32 `tanh`: `(1 − e)/(1 + e)` with `e = exp(−2|x|)` and the sign of `x`;
/// below |x| = 1/4, where that difference cancels, the odd Taylor series to x¹¹.
#[inline(always)]
fn tanh_f32(x: f32) -> f32 {
    let a = x.abs();
    let e = exp_f32(-2.0 * a);
    let far = ((1.0 - e) / (1.0 + e)).copysign(x);
    let z = x * x;
    let near = x
        * (1.0
            + z * (-1.0 / 3.0
                + z * (2.0 / 15.0
                    + z * (-17.0 / 315.0 + z * (62.0 / 2835.0 + z * (-1382.0 / 155_925.0))))));
    if a < 0.25 { near } else { far }
}

impl Element for f32 {
    #[inline(always)]
    fn erf(self) -> Self {
        erf_f32(self)
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        exp_f32(self)
    }
    #[inline(always)]
    fn tanh_fast(self) -> Self {
        tanh_f32(self)
    }
    fn of(x: f64) -> Self {
        x as f32
    }
    fn f64(self) -> f64 {
        self as f64
    }
}

impl Element for f64 {
    fn erf(self) -> Self {
        libm::erf(self)
    }
    fn exp_fast(self) -> Self {
        self.exp()
    }
    fn tanh_fast(self) -> Self {
        self.tanh()
    }
    fn of(x: f64) -> Self {
        x
    }
    fn f64(self) -> f64 {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_f32_erf_is_within_5e7_of_the_exact_one() {
        let worst = (-600_000..=600_000)
            .map(|i| i as f32 * 1e-5)
            .map(|x| (f64::from(erf_f32(x)) - libm::erf(f64::from(x))).abs())
            .fold(0.0, f64::max);
        assert!(worst < 5e-7, "max error {worst:e}");
        assert_eq!(erf_f32(40.0), 1.0);
        assert_eq!(erf_f32(-40.0), -1.0);
    }

    #[test]
    fn fast_f32_exp_is_within_3e7_relative() {
        let worst = (-870_000..=887_000)
            .map(|i| i as f32 * 1e-4)
            .map(|x| {
                let exact = f64::from(x).exp();
                (f64::from(exp_f32(x)) - exact).abs() / exact
            })
            .fold(0.0, f64::max);
        assert!(worst < 3e-7, "max relative error {worst:e}");
        assert_eq!(exp_f32(-1e30), 0.0);
        assert_eq!(exp_f32(f32::MIN), 0.0);
        assert_eq!(exp_f32(100.0), f32::INFINITY);
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(f32::NAN).is_nan());
    }

    #[test]
    fn fast_f32_tanh_is_within_3e7_of_the_exact_one() {
        let worst = (-200_000..=200_000)
            .map(|i| i as f32 * 1e-4)
            .map(|x| (f64::from(tanh_f32(x)) - f64::from(x).tanh()).abs())
            .fold(0.0, f64::max);
        assert!(worst < 3e-7, "max error {worst:e}");
        // Relative accuracy where tanh is tiny, and the far tails.
        for x in [1e-30f32, 1e-6, 3e-3, -0.2] {
            let rel = (f64::from(tanh_f32(x)) / f64::from(x).tanh() - 1.0).abs();
            assert!(rel < 1e-6, "{x}: {rel:e}");
        }
        assert_eq!(tanh_f32(100.0), 1.0);
        assert_eq!(tanh_f32(-1e30), -1.0);
        assert_eq!(tanh_f32(0.0), 0.0);
        assert!(tanh_f32(f32::NAN).is_nan());
    }
}
