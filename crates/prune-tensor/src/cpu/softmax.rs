//! Softmax over the last axis with a fused scale and additive mask, on the CPU.

use super::{CpuBackend, lanes, rows_per_task, same_shape, simd::vectorized};
use crate::error::{Result, shape_error};
use crate::{Element, SoftmaxOps, Tensor};
use rayon::prelude::*;

/// In place: `row = softmax(scale · row + mask)`.
#[inline(always)]
pub(super) fn softmax_row<E: Element>(row: &mut [E], scale: E, mask: Option<&[E]>) {
    if let Some(m) = mask {
        row.iter_mut()
            .zip(m)
            .for_each(|(v, &a)| *v = *v * scale + a);
    } else {
        row.iter_mut().for_each(|v| *v *= scale);
    }
    let max = lanes::max(row);
    row.iter_mut().for_each(|v| *v = (*v - max).exp_fast());
    let sum = lanes::sum(row);
    let inv = E::one() / sum;
    row.iter_mut().for_each(|v| *v *= inv);
}

/// In place: `d = scale · y ⊙ (d − ⟨d, y⟩)`, softmax's backward for one row of output `y`.
#[inline(always)]
pub(super) fn softmax_bwd_row<E: Element>(d: &mut [E], y: &[E], scale: E) {
    let dot = lanes::dot(d, y);
    d.iter_mut()
        .zip(y)
        .for_each(|(g, &p)| *g = scale * p * (*g - dot));
}

impl<E: Element> SoftmaxOps for CpuBackend<E> {
    fn softmax_fwd(
        &self,
        x: &Tensor<E>,
        scale: f64,
        mask: Option<&Tensor<E>>,
    ) -> Result<Tensor<E>> {
        let mut y = x.clone();
        self.softmax_assign(&mut y, scale, mask)?;
        Ok(y)
    }

    fn softmax_assign(
        &self,
        x: &mut Tensor<E>,
        scale: f64,
        mask: Option<&Tensor<E>>,
    ) -> Result<()> {
        let shape = x.shape();
        if shape.rank() == 0 {
            return Err(shape_error("softmax_fwd", &[shape], "x needs a last axis"));
        }
        let tk = shape.last();
        let rows = shape.rows();
        let rows_per_batch = match mask {
            None => rows.max(1),
            Some(m) => {
                let ok = shape.rank() >= 2 && m.dims() == [shape.dims()[0], tk];
                if !ok {
                    return Err(shape_error(
                        "softmax_fwd",
                        &[shape, m.shape()],
                        "mask must be [B, Tk] for x [B, .., Tk]",
                    ));
                }
                rows / shape.dims()[0].max(1)
            }
        };
        if tk == 0 {
            return Ok(());
        }
        let scale = E::of(scale);
        let chunk = rows_per_task(rows, tk);
        x.data_mut()
            .par_chunks_mut(chunk * tk)
            .enumerate()
            .for_each(|(task, block)| {
                vectorized(
                    #[inline(always)]
                    || {
                        for (j, row) in block.chunks_exact_mut(tk).enumerate() {
                            let r = task * chunk + j;
                            let m = mask.map(|m| &m.data()[(r / rows_per_batch) * tk..][..tk]);
                            softmax_row(row, scale, m);
                        }
                    },
                )
            });
        Ok(())
    }

    fn softmax_bwd(&self, y: &Tensor<E>, dy: &Tensor<E>, scale: f64) -> Result<Tensor<E>> {
        same_shape("softmax_bwd", y, dy)?;
        let tk = y.shape().last();
        let mut dx = dy.clone();
        if tk == 0 {
            return Ok(dx);
        }
        let scale = E::of(scale);
        let chunk = rows_per_task(y.shape().rows(), tk) * tk;
        dx.data_mut()
            .par_chunks_mut(chunk)
            .zip(y.data().par_chunks(chunk))
            .for_each(|(dblock, yblock)| {
                vectorized(
                    #[inline(always)]
                    || {
                        for (d, yr) in dblock.chunks_exact_mut(tk).zip(yblock.chunks_exact(tk)) {
                            softmax_bwd_row(d, yr, scale);
                        }
                    },
                )
            });
        Ok(dx)
    }
}
