//! The fused AdamW update on the CPU.

use super::{CpuBackend, PAR_MIN_ELEMENTS, same_shape, simd::vectorized};
use crate::error::Result;
use crate::{AdamW, Element, OptimOps, Tensor};
use rayon::prelude::*;

impl<E: Element> OptimOps for CpuBackend<E> {
    fn adamw_step(
        &self,
        param: &mut Tensor<E>,
        grad: &Tensor<E>,
        m: &mut Tensor<E>,
        v: &mut Tensor<E>,
        hp: &AdamW,
        mask: Option<&Tensor<E>>,
    ) -> Result<()> {
        same_shape("adamw_step", param, grad)?;
        same_shape("adamw_step", param, m)?;
        same_shape("adamw_step", param, v)?;
        if let Some(mk) = mask {
            same_shape("adamw_step", param, mk)?;
        }
        crate::checks::adamw_step(hp.step)?;
        let t = hp.step as i32;
        let bc1 = 1.0 - hp.beta1.powi(t);
        let bc2 = 1.0 - hp.beta2.powi(t);
        let (b1, b2) = (E::of(hp.beta1), E::of(hp.beta2));
        let (decay, step_size) = (E::of(1.0 - hp.lr * hp.weight_decay), E::of(hp.lr / bc1));
        let (eps, inv_sqrt_bc2) = (E::of(hp.eps), E::of(1.0 / bc2.sqrt()));
        let one = E::one();
        let update = |p: &mut E, g: E, mi: &mut E, vi: &mut E| {
            *mi = b1 * *mi + (one - b1) * g;
            *vi = b2 * *vi + (one - b2) * g * g;
            *p = *p * decay - step_size * *mi / ((*vi).sqrt() * inv_sqrt_bc2 + eps);
        };
        let (grad, mask) = (grad.data(), mask.map(|mk| mk.data()));
        let chunks = param
            .data_mut()
            .par_chunks_mut(PAR_MIN_ELEMENTS)
            .zip(m.data_mut().par_chunks_mut(PAR_MIN_ELEMENTS))
            .zip(v.data_mut().par_chunks_mut(PAR_MIN_ELEMENTS))
            .enumerate();
        chunks.for_each(|(i, ((pc, mc), vc))| {
            let start = i * PAR_MIN_ELEMENTS;
            let gc = &grad[start..start + pc.len()];
            vectorized(
                #[inline(always)]
                || match mask {
                    Some(mk) => {
                        let kc = &mk[start..start + pc.len()];
                        for ((((p, &g), mi), vi), &k) in
                            pc.iter_mut().zip(gc).zip(mc).zip(vc).zip(kc)
                        {
                            update(p, g * k, mi, vi);
                        }
                    }
                    None => {
                        for (((p, &g), mi), vi) in pc.iter_mut().zip(gc).zip(mc).zip(vc) {
                            update(p, g, mi, vi);
                        }
                    }
                },
            )
        });
        Ok(())
    }
}
