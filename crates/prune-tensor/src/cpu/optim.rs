//! The fused AdamW update on the CPU.

use super::{CpuBackend, same_shape};
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
        // One element: (param, grad, first moment, second moment, mask factor).
        type Entry<'a, E> = ((((&'a mut E, &'a E), &'a mut E), &'a mut E), E);
        let update = |((((p, &g), mi), vi), k): Entry<'_, E>| {
            let g = g * k;
            *mi = b1 * *mi + (one - b1) * g;
            *vi = b2 * *vi + (one - b2) * g * g;
            *p = *p * decay - step_size * *mi / ((*vi).sqrt() * inv_sqrt_bc2 + eps);
        };
        let param_len = param.data().len();
        let it = param.data_mut().par_iter_mut().zip(grad.data().par_iter());
        let it = it
            .zip(m.data_mut().par_iter_mut())
            .zip(v.data_mut().par_iter_mut());
        match mask {
            Some(mk) => it.zip(mk.data().par_iter().copied()).for_each(update),
            None => it
                .zip(rayon::iter::repeat_n(one, param_len))
                .for_each(update),
        }
        Ok(())
    }
}
