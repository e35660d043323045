//! Cross-entropy fused with softmax, MSE and temperature-scaled KL divergence on the GPU
//! (`loss.cu`, and `reduce.cu` for MSE). Per-row losses come back in f64 and are added on the
//! host in row order (reproducible).

use super::elementwise::Reduction;
use super::launch::{self, OrDevice, launch};
use super::{CudaBackend, CudaTensor, int};
use crate::checks;
use crate::error::{Result, TensorError};
use crate::{LossOps, Shape};
use cudarc::driver::CudaSlice;
use prune_kernels::{ELEMENTWISE, LOSS};

impl CudaBackend {
    /// A device buffer for one f64 per row.
    fn per_row_f64(&self, op: &'static str, rows: usize) -> Result<CudaSlice<f64>> {
        // SAFETY: the row kernels write one value per row, every row.
        unsafe { self.dev.stream.alloc::<f64>(rows.max(1)) }.or_device(op)
    }
}

impl LossOps for CudaBackend {
    fn cross_entropy_fwd(
        &self,
        logits: &CudaTensor,
        labels: &[i64],
        ignore_index: i64,
    ) -> Result<(f64, CudaTensor)> {
        const OP: &str = "cross_entropy_fwd";
        let counted = checks::labels(OP, &logits.shape, labels, ignore_index)?;
        let (n, k) = (labels.len(), logits.shape.dims()[1]);
        let k_i = int(OP, k)?;
        int(OP, n * k)?;
        let mut probs = self.alloc(OP, logits.shape.clone())?;
        if k == 0 || n == 0 {
            return Ok((0.0, probs));
        }
        let labels_dev = self.to_device(OP, labels)?;
        let mut row_loss = self.per_row_f64(OP, n)?;
        launch!(self, OP, LOSS, "cross_entropy_fwd_f32", launch::per_row(n, k);
            &logits.data, &labels_dev, &ignore_index, &mut probs.data, &mut row_loss, &k_i)?;
        let total: f64 = self.to_host(OP, &row_loss, n)?.iter().sum();
        let loss = if counted == 0 {
            0.0
        } else {
            total / counted as f64
        };
        Ok((loss, probs))
    }

    fn cross_entropy_bwd(
        &self,
        probs: &CudaTensor,
        labels: &[i64],
        ignore_index: i64,
        dl: f64,
    ) -> Result<CudaTensor> {
        const OP: &str = "cross_entropy_bwd";
        let counted = checks::labels(OP, &probs.shape, labels, ignore_index)?;
        let (n, k) = (labels.len(), probs.shape.dims()[1]);
        let (n_i, k_i) = (int(OP, n)?, int(OP, k)?);
        int(OP, n * k)?;
        let scale = if counted == 0 {
            0.0
        } else {
            (dl / counted as f64) as f32
        };
        let labels_dev = self.to_device(OP, labels)?;
        let mut d = self.alloc(OP, probs.shape.clone())?;
        launch!(self, OP, LOSS, "cross_entropy_bwd_f32", launch::elementwise(n * k);
            &probs.data, &labels_dev, &ignore_index, &scale, &mut d.data, &n_i, &k_i)?;
        Ok(d)
    }

    fn mse_fwd(&self, pred: &CudaTensor, target: &CudaTensor) -> Result<f64> {
        const OP: &str = "mse_fwd";
        checks::same_shape(OP, &pred.shape, &target.shape)?;
        let n = pred.shape.numel();
        if n == 0 {
            return Err(TensorError::Argument {
                op: OP,
                what: "empty tensors".into(),
            });
        }
        Ok(self.reduce(OP, Reduction::SquaredDifference, pred, target)? / n as f64)
    }

    fn mse_bwd(&self, pred: &CudaTensor, target: &CudaTensor, dl: f64) -> Result<CudaTensor> {
        const OP: &str = "mse_bwd";
        checks::same_shape(OP, &pred.shape, &target.shape)?;
        let n = int(OP, pred.shape.numel())?;
        let scale = (2.0 * dl / pred.shape.numel().max(1) as f64) as f32;
        let mut d = self.alloc(OP, pred.shape.clone())?;
        launch!(self, OP, ELEMENTWISE, "scaled_difference_f32", launch::elementwise(n as usize);
            &pred.data, &target.data, &scale, &mut d.data, &n)?;
        Ok(d)
    }

    fn kl_div_fwd(
        &self,
        student: &CudaTensor,
        teacher: &CudaTensor,
        temperature: f64,
    ) -> Result<f64> {
        const OP: &str = "kl_div_fwd";
        checks::distillation(OP, &student.shape, &teacher.shape, temperature)?;
        let (n, k) = (student.shape.dims()[0], student.shape.dims()[1]);
        if n == 0 || k == 0 {
            return Ok(0.0);
        }
        let k_i = int(OP, k)?;
        int(OP, n * k)?;
        let inv_t = 1.0 / temperature;
        let mut row_kl = self.per_row_f64(OP, n)?;
        launch!(self, OP, LOSS, "kl_div_fwd_f32", launch::per_row(n, k);
            &student.data, &teacher.data, &inv_t, &mut row_kl, &k_i)?;
        let total: f64 = self.to_host(OP, &row_kl, n)?.iter().sum();
        Ok(temperature * temperature * total / n as f64)
    }

    fn kl_div_bwd(
        &self,
        student: &CudaTensor,
        teacher: &CudaTensor,
        temperature: f64,
        dl: f64,
    ) -> Result<CudaTensor> {
        const OP: &str = "kl_div_bwd";
        checks::distillation(OP, &student.shape, &teacher.shape, temperature)?;
        let (n, k) = (student.shape.dims()[0], student.shape.dims()[1]);
        let mut d = self.alloc(OP, Shape::from([n, k]))?;
        if k == 0 {
            return Ok(d);
        }
        let k_i = int(OP, k)?;
        int(OP, n * k)?;
        let inv_t = (1.0 / temperature) as f32;
        let scale = (dl * temperature / n.max(1) as f64) as f32;
        launch!(self, OP, LOSS, "kl_div_bwd_f32", launch::per_row(n, k);
            &student.data, &teacher.data, &inv_t, &scale, &mut d.data, &k_i)?;
        Ok(d)
    }
}
