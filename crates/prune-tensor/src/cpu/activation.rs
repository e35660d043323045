//! GELU (erf form) and tanh on the CPU.

use super::CpuBackend;
use super::elementwise::map;
use super::same_shape;
use crate::error::Result;
use crate::{ActivationOps, Element, Tensor};
use rayon::prelude::*;

/// `1/sqrt(2)`.
const FRAC_1_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// `1/sqrt(2π)`.
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

impl<E: Element> ActivationOps for CpuBackend<E> {
    fn gelu_fwd(&self, x: &Tensor<E>) -> Result<Tensor<E>> {
        let (half, r) = (E::of(0.5), E::of(FRAC_1_SQRT_2));
        Ok(map(x, |v| half * v * (E::one() + (v * r).erf())))
    }

    fn gelu_bwd(&self, x: &Tensor<E>, dy: &Tensor<E>) -> Result<Tensor<E>> {
        same_shape("gelu_bwd", x, dy)?;
        let (half, r, c) = (E::of(0.5), E::of(FRAC_1_SQRT_2), E::of(FRAC_1_SQRT_2PI));
        let data = x
            .data()
            .par_iter()
            .zip(dy.data().par_iter())
            .map(|(&v, &g)| {
                let cdf = half * (E::one() + (v * r).erf());
                let pdf = c * (-half * v * v).exp_fast();
                g * (cdf + v * pdf)
            })
            .collect();
        Tensor::new(x.shape().clone(), data)
    }

    fn tanh_fwd(&self, x: &Tensor<E>) -> Result<Tensor<E>> {
        Ok(map(x, |v| v.tanh()))
    }

    fn tanh_bwd(&self, y: &Tensor<E>, dy: &Tensor<E>) -> Result<Tensor<E>> {
        same_shape("tanh_bwd", y, dy)?;
        let data = y
            .data()
            .par_iter()
            .zip(dy.data().par_iter())
            .map(|(&v, &g)| g * (E::one() - v * v))
            .collect();
        Tensor::new(y.shape().clone(), data)
    }
}
