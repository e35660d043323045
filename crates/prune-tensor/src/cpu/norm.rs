//! LayerNorm over the last axis on the CPU (two-pass statistics per row), optionally over a
//! subset of kept channels (hidden-width pruning: the masked model normalises exactly as the
//! shrunk one).

use super::{
    CpuBackend, lanes, row_vector, rows_per_task, same_shape, simd::vectorized, sum_partials,
};
use crate::error::Result;
use crate::{Element, LayerNormStats, NormOps, Tensor};
use rayon::prelude::*;

/// Checks a keep mask: `[C]` of zeros and ones with at least one one. Returns the kept count.
fn kept_channels<E: Element>(op: &'static str, x: &Tensor<E>, keep: &Tensor<E>) -> Result<usize> {
    row_vector(op, x, keep)?;
    crate::checks::keep_mask(op, keep.data().iter().map(|k| k.f64()))
}

/// `keep`, or `c` ones (stored in `ones`) when every channel is kept, so that one code path
/// serves both.
fn keep_or_ones<'a, E: Element>(keep: Option<&'a [E]>, c: usize, ones: &'a mut Vec<E>) -> &'a [E] {
    match keep {
        Some(k) => k,
        None => {
            *ones = vec![E::one(); c];
            ones
        }
    }
}

/// LayerNorm forward over the channels where `keep` is 1 (all when `None`); output 0 at the
/// others. With `residual`, it normalises `x + residual`, summed row by row in a buffer that
/// stays in cache instead of a tensor of its own.
fn forward<E: Element>(
    x: &Tensor<E>,
    residual: Option<&Tensor<E>>,
    gamma: &Tensor<E>,
    beta: &Tensor<E>,
    keep: Option<&[E]>,
    kept: usize,
    eps: f64,
) -> Result<(Tensor<E>, LayerNormStats<Tensor<E>>)> {
    crate::checks::layer_norm_args("layer_norm_fwd", x.shape(), eps)?;
    let c = x.shape().last();
    let rows = x.shape().rows();
    let (g, b) = (gamma.data(), beta.data());
    let (eps, inv_n) = (E::of(eps), E::one() / E::of(kept as f64));
    let mut ones = Vec::new();
    let k = keep_or_ones(keep, c, &mut ones);
    let chunk = rows_per_task(rows, c);
    let mut y = vec![E::zero(); rows * c];
    let mut mean = vec![E::zero(); rows];
    let mut rstd = vec![E::zero(); rows];
    y.par_chunks_mut(chunk * c)
        .zip(x.data().par_chunks(chunk * c))
        .zip(mean.par_chunks_mut(chunk).zip(rstd.par_chunks_mut(chunk)))
        .enumerate()
        .for_each(|(task, ((yb, xb), (mb, rb)))| {
            vectorized(
                #[inline(always)]
                || {
                    let mut sum = vec![E::zero(); if residual.is_some() { c } else { 0 }];
                    for (j, (yr, xr)) in yb.chunks_exact_mut(c).zip(xb.chunks_exact(c)).enumerate()
                    {
                        let xr = match residual {
                            Some(res) => {
                                let rr = &res.data()[(task * chunk + j) * c..][..c];
                                for ((s, &a), &b) in sum.iter_mut().zip(xr).zip(rr) {
                                    *s = a + b;
                                }
                                &sum[..]
                            }
                            None => xr,
                        };
                        let mu = lanes::dot(k, xr) * inv_n;
                        let var = lanes::sum_zip(k, xr, |k, x| k * (x - mu) * (x - mu)) * inv_n;
                        let r = E::one() / (var + eps).sqrt();
                        for (i, (y, &x)) in yr.iter_mut().zip(xr).enumerate() {
                            *y = k[i] * ((x - mu) * r * g[i] + b[i]);
                        }
                        mb[j] = mu;
                        rb[j] = r;
                    }
                },
            )
        });
    let stats = LayerNormStats {
        mean: Tensor::new([rows], mean)?,
        rstd: Tensor::new([rows], rstd)?,
    };
    Ok((Tensor::new(x.shape().clone(), y)?, stats))
}

/// LayerNorm backward matching [`forward`].
fn backward<E: Element>(
    x: &Tensor<E>,
    gamma: &Tensor<E>,
    keep: Option<&[E]>,
    kept: usize,
    stats: &LayerNormStats<Tensor<E>>,
    dy: &Tensor<E>,
) -> Result<(Tensor<E>, Tensor<E>, Tensor<E>)> {
    same_shape("layer_norm_bwd", x, dy)?;
    let (c, rows) = (x.shape().last(), x.shape().rows());
    crate::checks::layer_norm_stats(x.shape(), stats.mean.shape(), stats.rstd.shape())?;
    let g = gamma.data();
    let mut ones = Vec::new();
    let k = keep_or_ones(keep, c, &mut ones);
    let inv_n = E::one() / E::of(kept.max(1) as f64);
    let chunk = rows_per_task(rows, c);
    let mut dx = vec![E::zero(); rows * c];
    // Per task: dx rows, and partial (dγ, dβ) sums added in task order afterwards.
    let partials: Vec<(Vec<E>, Vec<E>)> = dx
        .par_chunks_mut(chunk * c)
        .enumerate()
        .map(|(task, dxb)| {
            vectorized(
                #[inline(always)]
                || {
                    let mut dg = vec![E::zero(); c];
                    let mut db = vec![E::zero(); c];
                    let mut xhat = vec![E::zero(); c];
                    let mut gg = vec![E::zero(); c];
                    for (j, dxr) in dxb.chunks_exact_mut(c).enumerate() {
                        let r = task * chunk + j;
                        let (xr, gr) = (&x.data()[r * c..][..c], &dy.data()[r * c..][..c]);
                        let (mu, rs) = (stats.mean.data()[r], stats.rstd.data()[r]);
                        for i in 0..c {
                            let dyk = gr[i] * k[i];
                            xhat[i] = (xr[i] - mu) * rs;
                            gg[i] = dyk * g[i];
                            dg[i] += dyk * xhat[i];
                            db[i] += dyk;
                        }
                        let mean_gg = lanes::sum(&gg) * inv_n;
                        let mean_ggx = lanes::dot(&gg, &xhat) * inv_n;
                        for i in 0..c {
                            dxr[i] = k[i] * rs * (gr[i] * g[i] - mean_gg - xhat[i] * mean_ggx);
                        }
                    }
                    (dg, db)
                },
            )
        })
        .collect();
    let (dg, db): (Vec<_>, Vec<_>) = partials.into_iter().unzip();
    Ok((
        Tensor::new(x.shape().clone(), dx)?,
        Tensor::new([c], sum_partials(dg, c))?,
        Tensor::new([c], sum_partials(db, c))?,
    ))
}

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
        forward(x, None, gamma, beta, None, x.shape().last(), eps)
    }

    fn layer_norm_bwd(
        &self,
        x: &Tensor<E>,
        gamma: &Tensor<E>,
        stats: &LayerNormStats<Tensor<E>>,
        dy: &Tensor<E>,
    ) -> Result<(Tensor<E>, Tensor<E>, Tensor<E>)> {
        row_vector("layer_norm_bwd", x, gamma)?;
        backward(x, gamma, None, x.shape().last(), stats, dy)
    }

    fn masked_layer_norm_fwd(
        &self,
        x: &Tensor<E>,
        gamma: &Tensor<E>,
        beta: &Tensor<E>,
        keep: &Tensor<E>,
        eps: f64,
    ) -> Result<(Tensor<E>, LayerNormStats<Tensor<E>>)> {
        row_vector("masked_layer_norm_fwd", x, gamma)?;
        row_vector("masked_layer_norm_fwd", x, beta)?;
        let kept = kept_channels("masked_layer_norm_fwd", x, keep)?;
        forward(x, None, gamma, beta, Some(keep.data()), kept, eps)
    }

    fn masked_layer_norm_bwd(
        &self,
        x: &Tensor<E>,
        gamma: &Tensor<E>,
        keep: &Tensor<E>,
        stats: &LayerNormStats<Tensor<E>>,
        dy: &Tensor<E>,
    ) -> Result<(Tensor<E>, Tensor<E>, Tensor<E>)> {
        row_vector("masked_layer_norm_bwd", x, gamma)?;
        let kept = kept_channels("masked_layer_norm_bwd", x, keep)?;
        backward(x, gamma, Some(keep.data()), kept, stats, dy)
    }

    fn add_layer_norm_fwd(
        &self,
        x: &Tensor<E>,
        residual: &Tensor<E>,
        gamma: &Tensor<E>,
        beta: &Tensor<E>,
        keep: Option<&Tensor<E>>,
        eps: f64,
    ) -> Result<Tensor<E>> {
        same_shape("add_layer_norm_fwd", x, residual)?;
        row_vector("add_layer_norm_fwd", x, gamma)?;
        row_vector("add_layer_norm_fwd", x, beta)?;
        let (keep, kept) = match keep {
            Some(k) => (Some(k.data()), kept_channels("add_layer_norm_fwd", x, k)?),
            None => (None, x.shape().last()),
        };
        Ok(forward(x, Some(residual), gamma, beta, keep, kept, eps)?.0)
    }
}
