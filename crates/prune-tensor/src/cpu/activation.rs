//! GELU (erf and tanh forms), ReLU and tanh on the CPU.

use super::CpuBackend;
use super::elementwise::{map, zip_map};
use super::{row_vector, rows_per_task, simd::vectorized};
use crate::error::Result;
use crate::{ActivationOps, Element, Tensor};
use rayon::prelude::*;

/// `1/sqrt(2)`.
const FRAC_1_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// `1/sqrt(2π)`.
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// `gelu(v) = v · Φ(v)` in BERT's erf form (constants folded at compile time, so the loops
/// that call it keep them in registers).
#[inline(always)]
fn gelu<E: Element>(v: E) -> E {
    E::of(0.5) * v * (E::one() + (v * E::of(FRAC_1_SQRT_2)).erf())
}

/// `√(2/π)`.
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
/// The cubic coefficient of the tanh form of GELU.
const GELU_TANH_CUBIC: f64 = 0.044_715;

impl<E: Element> ActivationOps for CpuBackend<E> {
    fn gelu_tanh_fwd(&self, x: &Tensor<E>) -> Result<Tensor<E>> {
        let (k, a) = (E::of(SQRT_2_OVER_PI), E::of(GELU_TANH_CUBIC));
        Ok(map(x, move |v| {
            E::of(0.5) * v * (E::one() + (k * (v + a * v * v * v)).tanh_fast())
        }))
    }

    fn gelu_tanh_bwd(&self, x: &Tensor<E>, dy: &Tensor<E>) -> Result<Tensor<E>> {
        let (k, a, half) = (E::of(SQRT_2_OVER_PI), E::of(GELU_TANH_CUBIC), E::of(0.5));
        zip_map("gelu_tanh_bwd", x, dy, move |v, g| {
            let t = (k * (v + a * v * v * v)).tanh_fast();
            let du = k * (E::one() + E::of(3.0) * a * v * v);
            g * (half * (E::one() + t) + half * v * (E::one() - t * t) * du)
        })
    }

    fn relu_fwd(&self, x: &Tensor<E>) -> Result<Tensor<E>> {
        Ok(map(x, |v| if v > E::zero() { v } else { E::zero() }))
    }

    fn relu_bwd(&self, x: &Tensor<E>, dy: &Tensor<E>) -> Result<Tensor<E>> {
        zip_map(
            "relu_bwd",
            x,
            dy,
            |v, g| if v > E::zero() { g } else { E::zero() },
        )
    }

    fn gelu_fwd(&self, x: &Tensor<E>) -> Result<Tensor<E>> {
        Ok(map(x, gelu))
    }

    fn bias_gelu_fwd(&self, x: &mut Tensor<E>, bias: &Tensor<E>) -> Result<Tensor<E>> {
        row_vector("bias_gelu_fwd", x, bias)?;
        let c = bias.data().len();
        let bias = bias.data();
        let mut g = Vec::with_capacity(x.data().len());
        if c > 0 {
            let chunk = rows_per_task(x.shape().rows(), c) * c;
            let out = &mut g.spare_capacity_mut()[..x.data().len()];
            x.data_mut()
                .par_chunks_mut(chunk)
                .zip(out.par_chunks_mut(chunk))
                .for_each(|(xs, gs)| {
                    vectorized(
                        #[inline(always)]
                        || {
                            let rows = xs.chunks_exact_mut(c).zip(gs.chunks_exact_mut(c));
                            for (xr, gr) in rows {
                                for ((v, o), &b) in xr.iter_mut().zip(gr).zip(bias) {
                                    *v += b;
                                    o.write(gelu(*v));
                                }
                            }
                        },
                    )
                });
            // SAFETY: every row of every chunk was written above.
            unsafe { g.set_len(x.data().len()) };
        }
        Tensor::new(x.shape().clone(), g)
    }

    fn gelu_bwd(&self, x: &Tensor<E>, dy: &Tensor<E>) -> Result<Tensor<E>> {
        let (half, r, c) = (E::of(0.5), E::of(FRAC_1_SQRT_2), E::of(FRAC_1_SQRT_2PI));
        zip_map("gelu_bwd", x, dy, move |v, g| {
            let cdf = half * (E::one() + (v * r).erf());
            let pdf = c * (-half * v * v).exp_fast();
            g * (cdf + v * pdf)
        })
    }

    fn tanh_fwd(&self, x: &Tensor<E>) -> Result<Tensor<E>> {
        Ok(map(x, move |v| v.tanh_fast()))
    }

    fn tanh_bwd(&self, y: &Tensor<E>, dy: &Tensor<E>) -> Result<Tensor<E>> {
        zip_map("tanh_bwd", y, dy, move |v, g| g * (E::one() - v * v))
    }
}
