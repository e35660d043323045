//! Row reductions in a fixed number of independent lanes. A plain `for` loop that adds into
//! one accumulator is a serial chain the compiler may not reorder; sixteen accumulators let
//! it keep the sum in vector registers. The lanes are combined in a fixed order, so results
//! stay reproducible run to run.

use crate::Element;

/// Independent accumulators per reduction.
const LANES: usize = 16;

/// Adds the lanes and the tail in a fixed order.
#[inline(always)]
fn combine<E: Element>(acc: [E; LANES], tail: E) -> E {
    acc.iter().fold(E::zero(), |s, &a| s + a) + tail
}

/// `Σ f(a[i], b[i])` over two slices of equal length.
#[inline(always)]
pub(super) fn sum_zip<E: Element>(a: &[E], b: &[E], f: impl Fn(E, E) -> E) -> E {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [E::zero(); LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .fold(E::zero(), |s, (&x, &y)| s + f(x, y));
    for (xa, xb) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += f(xa[l], xb[l]);
        }
    }
    combine(acc, tail)
}

/// `Σ x[i]`.
#[inline(always)]
pub(super) fn sum<E: Element>(x: &[E]) -> E {
    sum_zip(x, x, |v, _| v)
}

/// `Σ a[i] · b[i]`.
#[inline(always)]
pub(super) fn dot<E: Element>(a: &[E], b: &[E]) -> E {
    sum_zip(a, b, |x, y| x * y)
}

/// The larger of `m` and `v`, ignoring a NaN `v` (as `f32::max` does) but as a plain compare
/// and select, which vectorises (`max` must also order ±0 and NaN, which it does not).
#[inline(always)]
fn larger<E: Element>(m: E, v: E) -> E {
    if v > m { v } else { m }
}

/// The largest element (`-∞` for an empty slice), NaNs ignored.
#[inline(always)]
pub(super) fn max<E: Element>(x: &[E]) -> E {
    let mut acc = [E::neg_infinity(); LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .fold(E::neg_infinity(), |m, &v| larger(m, v));
    for c in chunks {
        for l in 0..LANES {
            acc[l] = larger(acc[l], c[l]);
        }
    }
    acc.iter().fold(tail, |m, &v| larger(m, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_reductions_match_plain_loops_at_every_length() {
        for n in [0, 1, 15, 16, 17, 40, 385] {
            let a: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
            let b: Vec<f64> = (0..n).map(|i| (i as f64 * 0.11).cos()).collect();
            let close = |x: f64, y: f64| (x - y).abs() <= 1e-12 * (1.0 + y.abs());
            assert!(close(sum(&a), a.iter().sum()));
            assert!(close(
                dot(&a, &b),
                a.iter().zip(&b).map(|(x, y)| x * y).sum()
            ));
            let m = a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            assert_eq!(max(&a), m);
        }
    }
}
