//! LayerNorm over the last axis on the CPU (two-pass statistics per row).

use super::{CpuBackend, row_vector, rows_per_task, same_shape, sum_partials};
use crate::error::{Result, TensorError, shape_error};
use crate::{Element, LayerNormStats, NormOps, Tensor};
use rayon::prelude::*;

impl<E: Element> NormOps for CpuBackend<E> {
    fn layer_norm_fwd(
        &self,
        x: &Tensor<E>,
        gamma: &Tensor<E>,
        beta: &Tensor<E>,
        eps: f64,
    ) -> Result<(Tensor<E>, LayerNormStats<Tensor<E>>)> {
        row_vector("layer_norm_fwd", x, gamma)?;
        row_vector("layer_norm_fwd", x, beta)?;
        let c = x.shape().last();
        if c == 0 || eps < 0.0 {
            return Err(TensorError::Argument {
                op: "layer_norm_fwd",
                what: format!("needs C > 0 and eps >= 0, got C = {c}, eps = {eps}"),
            });
        }
        let rows = x.shape().rows();
        let (g, b) = (gamma.data(), beta.data());
        let (eps, inv_c) = (E::of(eps), E::one() / E::of(c as f64));
        let chunk = rows_per_task(rows, c);
        let mut y = vec![E::zero(); rows * c];
        let mut mean = vec![E::zero(); rows];
        let mut rstd = vec![E::zero(); rows];
        y.par_chunks_mut(chunk * c)
            .zip(x.data().par_chunks(chunk * c))
            .zip(mean.par_chunks_mut(chunk).zip(rstd.par_chunks_mut(chunk)))
            .for_each(|((yb, xb), (mb, rb))| {
                for (j, (yr, xr)) in yb.chunks_exact_mut(c).zip(xb.chunks_exact(c)).enumerate() {
                    let mu = xr.iter().copied().sum::<E>() * inv_c;
                    let var = xr.iter().map(|&v| (v - mu) * (v - mu)).sum::<E>() * inv_c;
                    let r = E::one() / (var + eps).sqrt();
                    for i in 0..c {
                        yr[i] = (xr[i] - mu) * r * g[i] + b[i];
                    }
                    mb[j] = mu;
                    rb[j] = r;
                }
            });
        let stats = LayerNormStats {
            mean: Tensor::new([rows], mean)?,
            rstd: Tensor::new([rows], rstd)?,
        };
        Ok((Tensor::new(x.shape().clone(), y)?, stats))
    }

    fn layer_norm_bwd(
        &self,
        x: &Tensor<E>,
        gamma: &Tensor<E>,
        stats: &LayerNormStats<Tensor<E>>,
        dy: &Tensor<E>,
    ) -> Result<(Tensor<E>, Tensor<E>, Tensor<E>)> {
        row_vector("layer_norm_bwd", x, gamma)?;
        same_shape("layer_norm_bwd", x, dy)?;
        let (c, rows) = (x.shape().last(), x.shape().rows());
        if stats.mean.dims() != [rows] || stats.rstd.dims() != [rows] {
            return Err(shape_error(
                "layer_norm_bwd",
                &[x.shape(), stats.mean.shape(), stats.rstd.shape()],
                "stats must be [rows] each",
            ));
        }
        let g = gamma.data();
        let inv_c = E::one() / E::of(c.max(1) as f64);
        let chunk = rows_per_task(rows, c);
        let mut dx = vec![E::zero(); rows * c];
        // Per task: dx rows, and partial (dγ, dβ) sums reduced afterwards.
        let partials: Vec<(Vec<E>, Vec<E>)> = dx
            .par_chunks_mut(chunk * c)
            .enumerate()
            .map(|(task, dxb)| {
                let mut dg = vec![E::zero(); c];
                let mut db = vec![E::zero(); c];
                let mut xhat = vec![E::zero(); c];
                for (j, dxr) in dxb.chunks_exact_mut(c).enumerate() {
                    let r = task * chunk + j;
                    let (xr, gr) = (&x.data()[r * c..][..c], &dy.data()[r * c..][..c]);
                    let (mu, rs) = (stats.mean.data()[r], stats.rstd.data()[r]);
                    let (mut sum_gg, mut sum_ggx) = (E::zero(), E::zero());
                    for i in 0..c {
                        xhat[i] = (xr[i] - mu) * rs;
                        let gg = gr[i] * g[i];
                        sum_gg += gg;
                        sum_ggx += gg * xhat[i];
                        dg[i] += gr[i] * xhat[i];
                        db[i] += gr[i];
                    }
                    let (mean_gg, mean_ggx) = (sum_gg * inv_c, sum_ggx * inv_c);
                    for i in 0..c {
                        dxr[i] = rs * (gr[i] * g[i] - mean_gg - xhat[i] * mean_ggx);
                    }
                }
                (dg, db)
            })
            .collect();
        let (dg, db): (Vec<_>, Vec<_>) = partials.into_iter().unzip();
        let (dgamma, dbeta) = (sum_partials(dg, c), sum_partials(db, c));
        Ok((
            Tensor::new(x.shape().clone(), dx)?,
            Tensor::new([c], dgamma)?,
            Tensor::new([c], dbeta)?,
        ))
    }
}
