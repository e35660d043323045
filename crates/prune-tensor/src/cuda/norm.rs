//! LayerNorm, optionally over kept channels only, forward and backward on the GPU (`norm.cu`).

use super::launch::{self, launch};
use super::{CudaBackend, CudaTensor, int};
use crate::checks;
use crate::error::Result;
use crate::{LayerNormStats, NormOps, Shape};
use prune_kernels::NORM;

impl CudaBackend {
    /// Validates a keep mask (downloading its `C` values) and returns the kept count.
    fn kept_channels(&self, op: &'static str, x: &CudaTensor, keep: &CudaTensor) -> Result<usize> {
        checks::row_vector(op, &x.shape, &keep.shape)?;
        let host = self.to_host(op, &keep.data, keep.shape.numel())?;
        checks::keep_mask(op, host.iter().map(|&k| f64::from(k)))
    }

    /// Forward over the channels where `keep` is 1 (all when `None`).
    fn norm_forward(
        &self,
        x: &CudaTensor,
        gamma: &CudaTensor,
        beta: &CudaTensor,
        keep: Option<&CudaTensor>,
        kept: usize,
        eps: f64,
    ) -> Result<(CudaTensor, LayerNormStats<CudaTensor>)> {
        const OP: &str = "layer_norm_fwd";
        checks::layer_norm_args(OP, &x.shape, eps)?;
        let (rows, c) = (x.shape.rows(), x.shape.last());
        let c_i = int(OP, c)?;
        let mut y = self.alloc(OP, x.shape.clone())?;
        let mut mean = self.alloc(OP, Shape::from([rows]))?;
        let mut rstd = self.alloc(OP, Shape::from([rows]))?;
        let has_keep = i32::from(keep.is_some());
        let keep = keep.map_or(&gamma.data, |k| &k.data);
        let (inv_n, eps) = ((1.0 / kept as f64) as f32, eps as f32);
        launch!(self, OP, NORM, "layer_norm_fwd_f32", launch::per_row(rows, c);
            &x.data, &gamma.data, &beta.data, keep, &has_keep, &inv_n, &eps,
            &mut y.data, &mut mean.data, &mut rstd.data, &c_i)?;
        Ok((y, LayerNormStats { mean, rstd }))
    }

    /// Backward matching [`CudaBackend::norm_forward`].
    fn norm_backward(
        &self,
        x: &CudaTensor,
        gamma: &CudaTensor,
        keep: Option<&CudaTensor>,
        kept: usize,
        stats: &LayerNormStats<CudaTensor>,
        dy: &CudaTensor,
    ) -> Result<(CudaTensor, CudaTensor, CudaTensor)> {
        const OP: &str = "layer_norm_bwd";
        checks::same_shape(OP, &x.shape, &dy.shape)?;
        checks::layer_norm_stats(&x.shape, &stats.mean.shape, &stats.rstd.shape)?;
        let (rows, c) = (x.shape.rows(), x.shape.last());
        let (rows_i, c_i) = (int(OP, rows)?, int(OP, c)?);
        let mut dx = self.alloc(OP, x.shape.clone())?;
        let mut dgamma = self.column_partials(OP, rows, c)?;
        let mut dbeta = self.column_partials(OP, rows, c)?;
        let has_keep = i32::from(keep.is_some());
        let keep = keep.map_or(&gamma.data, |k| &k.data);
        let inv_n = (1.0 / kept.max(1) as f64) as f32;
        let (mean, rstd) = (&stats.mean.data, &stats.rstd.data);
        launch!(self, OP, NORM, "layer_norm_bwd_dx_f32", launch::per_row(rows, c);
            &x.data, &gamma.data, keep, &has_keep, &inv_n, mean, rstd, &dy.data,
            &mut dx.data, &c_i)?;
        launch!(self, OP, NORM, "layer_norm_bwd_params_f32", launch::per_columns(rows, c);
            &x.data, keep, &has_keep, mean, rstd, &dy.data, &mut dgamma.data,
            &mut dbeta.data, &rows_i, &c_i)?;
        Ok((
            dx,
            self.column_totals(OP, &dgamma)?,
            self.column_totals(OP, &dbeta)?,
        ))
    }
}

impl NormOps for CudaBackend {
    fn layer_norm_fwd(
        &self,
        x: &CudaTensor,
        gamma: &CudaTensor,
        beta: &CudaTensor,
        eps: f64,
    ) -> Result<(CudaTensor, LayerNormStats<CudaTensor>)> {
        checks::row_vector("layer_norm_fwd", &x.shape, &gamma.shape)?;
        checks::row_vector("layer_norm_fwd", &x.shape, &beta.shape)?;
        self.norm_forward(x, gamma, beta, None, x.shape.last(), eps)
    }

    fn layer_norm_bwd(
        &self,
        x: &CudaTensor,
        gamma: &CudaTensor,
        stats: &LayerNormStats<CudaTensor>,
        dy: &CudaTensor,
    ) -> Result<(CudaTensor, CudaTensor, CudaTensor)> {
        checks::row_vector("layer_norm_bwd", &x.shape, &gamma.shape)?;
        self.norm_backward(x, gamma, None, x.shape.last(), stats, dy)
    }

    fn masked_layer_norm_fwd(
        &self,
        x: &CudaTensor,
        gamma: &CudaTensor,
        beta: &CudaTensor,
        keep: &CudaTensor,
        eps: f64,
    ) -> Result<(CudaTensor, LayerNormStats<CudaTensor>)> {
        const OP: &str = "masked_layer_norm_fwd";
        checks::row_vector(OP, &x.shape, &gamma.shape)?;
        checks::row_vector(OP, &x.shape, &beta.shape)?;
        let kept = self.kept_channels(OP, x, keep)?;
        self.norm_forward(x, gamma, beta, Some(keep), kept, eps)
    }

    fn masked_layer_norm_bwd(
        &self,
        x: &CudaTensor,
        gamma: &CudaTensor,
        keep: &CudaTensor,
        stats: &LayerNormStats<CudaTensor>,
        dy: &CudaTensor,
    ) -> Result<(CudaTensor, CudaTensor, CudaTensor)> {
        const OP: &str = "masked_layer_norm_bwd";
        checks::row_vector(OP, &x.shape, &gamma.shape)?;
        let kept = self.kept_channels(OP, x, keep)?;
        self.norm_backward(x, gamma, Some(keep), kept, stats, dy)
    }
}
