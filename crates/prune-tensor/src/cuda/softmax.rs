//! Softmax with fused scale and additive mask, and its backward, on the GPU (`softmax.cu`).

use super::launch::{self, launch};
use super::{CudaBackend, CudaTensor, int};
use crate::SoftmaxOps;
use crate::checks;
use crate::error::{Result, shape_error};
use prune_kernels::SOFTMAX;

impl SoftmaxOps for CudaBackend {
    fn softmax_fwd(
        &self,
        x: &CudaTensor,
        scale: f64,
        mask: Option<&CudaTensor>,
    ) -> Result<CudaTensor> {
        const OP: &str = "softmax_fwd";
        let shape = &x.shape;
        if shape.rank() == 0 {
            return Err(shape_error(OP, &[shape], "x needs a last axis"));
        }
        let (tk, rows) = (shape.last(), shape.rows());
        let rows_per_batch = match mask {
            None => rows.max(1),
            Some(m) => {
                if shape.rank() < 2 || m.shape.dims() != [shape.dims()[0], tk] {
                    return Err(shape_error(
                        OP,
                        &[shape, &m.shape],
                        "mask must be [B, Tk] for x [B, .., Tk]",
                    ));
                }
                (rows / shape.dims()[0].max(1)).max(1)
            }
        };
        let mut y = self.alloc(OP, shape.clone())?;
        if tk == 0 || rows == 0 {
            return Ok(y);
        }
        let (tk_i, rpb) = (int(OP, tk)?, int(OP, rows_per_batch)?);
        let has_mask = i32::from(mask.is_some());
        let mask = mask.map_or(&x.data, |m| &m.data);
        let scale = scale as f32;
        launch!(self, OP, SOFTMAX, "softmax_fwd_f32", launch::per_row(rows, tk);
            &x.data, mask, &has_mask, &mut y.data, &tk_i, &rpb, &scale)?;
        Ok(y)
    }

    fn softmax_bwd(&self, y: &CudaTensor, dy: &CudaTensor, scale: f64) -> Result<CudaTensor> {
        const OP: &str = "softmax_bwd";
        checks::same_shape(OP, &y.shape, &dy.shape)?;
        let (tk, rows) = (y.shape.last(), y.shape.rows());
        let mut dx = self.alloc(OP, y.shape.clone())?;
        if tk == 0 {
            return Ok(dx);
        }
        let tk_i = int(OP, tk)?;
        let scale = scale as f32;
        launch!(self, OP, SOFTMAX, "softmax_bwd_f32", launch::per_row(rows, tk);
            &y.data, &dy.data, &mut dx.data, &tk_i, &scale)?;
        Ok(dx)
    }
}
