//! Forward and backward of LayerNorm on `[N, C]` rows, optionally over a hidden-channel
//! mask's kept channels only.

use super::{accumulate, masked};
use crate::error::Result;
use crate::params::LayerNorm;
use prune_tensor::{Backend, LayerNormStats};

/// How a LayerNorm normalises: its epsilon and, when the model has a hidden-channel mask,
/// the channels it keeps (`[C]`, 1 keep, 0 drop). With `keep`, mean and variance run over
/// the kept channels only and the output is 0 at the dropped ones, so the masked model
/// computes exactly what the model with those channels cut out computes.
#[derive(Debug)]
pub struct NormSpec<'a, T> {
    /// Added to the variance.
    pub eps: f64,
    /// Kept channels, `[C]`, or `None` for an ordinary LayerNorm.
    pub keep: Option<&'a T>,
}

impl<T> Clone for NormSpec<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for NormSpec<'_, T> {}

/// What LayerNorm's backward needs: its input, the row statistics and the kept channels.
#[derive(Clone, Debug)]
pub struct LayerNormCache<T> {
    /// The input, `[N, C]`.
    pub x: T,
    /// Per-row mean and 1/σ, `[N]` each.
    pub stats: LayerNormStats<T>,
    /// Kept channels of a masked LayerNorm, `[C]`.
    pub keep: Option<T>,
}

impl<T: Clone> LayerNorm<T> {
    /// `γ ⊙ x̂ + β` per row; `x` `[N, C]`; over the kept channels only under a mask.
    pub fn forward<B: Backend<Tensor = T>>(
        &self,
        b: &B,
        x: &T,
        spec: NormSpec<'_, T>,
        mask: Option<&LayerNorm<Option<T>>>,
    ) -> Result<T> {
        Ok(self.run(b, x, spec, mask)?.0)
    }

    /// Inference: the LayerNorm of `x + residual` (a residual connection), in one pass where
    /// the backend fuses the two.
    pub fn forward_residual<B: Backend<Tensor = T>>(
        &self,
        b: &B,
        x: &T,
        residual: &T,
        spec: NormSpec<'_, T>,
        mask: Option<&LayerNorm<Option<T>>>,
    ) -> Result<T> {
        let g = masked(b, &self.weight, mask.and_then(|m| m.weight.as_ref()))?;
        let beta = masked(b, &self.bias, mask.and_then(|m| m.bias.as_ref()))?;
        Ok(b.add_layer_norm_fwd(x, residual, &*g, &*beta, spec.keep, spec.eps)?)
    }

    /// Forward keeping the input (moved in), the statistics and the kept channels.
    pub fn forward_t<B: Backend<Tensor = T>>(
        &self,
        b: &B,
        x: T,
        spec: NormSpec<'_, T>,
        mask: Option<&LayerNorm<Option<T>>>,
    ) -> Result<(T, LayerNormCache<T>)> {
        let (y, stats) = self.run(b, &x, spec, mask)?;
        let keep = spec.keep.cloned();
        Ok((y, LayerNormCache { x, stats, keep }))
    }

    fn run<B: Backend<Tensor = T>>(
        &self,
        b: &B,
        x: &T,
        spec: NormSpec<'_, T>,
        mask: Option<&LayerNorm<Option<T>>>,
    ) -> Result<(T, LayerNormStats<T>)> {
        let g = masked(b, &self.weight, mask.and_then(|m| m.weight.as_ref()))?;
        let beta = masked(b, &self.bias, mask.and_then(|m| m.bias.as_ref()))?;
        Ok(match spec.keep {
            Some(keep) => b.masked_layer_norm_fwd(x, &*g, &*beta, keep, spec.eps)?,
            None => b.layer_norm_fwd(x, &*g, &*beta, spec.eps)?,
        })
    }

    /// Accumulates `dγ`, `dβ` into `grads` and returns `dx`.
    pub fn backward<B: Backend<Tensor = T>>(
        &self,
        b: &B,
        cache: &LayerNormCache<T>,
        dy: &T,
        mask: Option<&LayerNorm<Option<T>>>,
        grads: &mut LayerNorm<T>,
    ) -> Result<T> {
        let g = masked(b, &self.weight, mask.and_then(|m| m.weight.as_ref()))?;
        let (dx, dg, db) = match &cache.keep {
            Some(keep) => b.masked_layer_norm_bwd(&cache.x, &*g, keep, &cache.stats, dy)?,
            None => b.layer_norm_bwd(&cache.x, &*g, &cache.stats, dy)?,
        };
        accumulate(b, &mut grads.weight, &dg)?;
        accumulate(b, &mut grads.bias, &db)?;
        Ok(dx)
    }
}
