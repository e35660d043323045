//! Forward and backward of a (masked) linear layer and of LayerNorm, on `[N, ·]` rows.
//!
//! A linear layer folds every leading dim into N rows, so each call is one large NT GEMM.
//! With a mask `m`, it computes with `w ⊙ m`, and its backward stores the gradient with
//! respect to that effective weight (see `docs/bert-backward.md`, §Linear).

use super::{accumulate, masked};
use crate::error::Result;
use crate::params::{LayerNorm, Linear};
use prune_tensor::{Backend, LayerNormStats, Transpose};

impl<T: Clone> Linear<T> {
    /// `y = x · (W ⊙ m_W)ᵀ + b ⊙ m_b`; `x` `[N, I]`, `y` `[N, O]`.
    pub fn forward<B: Backend<Tensor = T>>(
        &self,
        b: &B,
        x: &T,
        mask: Option<&Linear<Option<T>>>,
    ) -> Result<T> {
        let w = masked(b, &self.weight, mask.and_then(|m| m.weight.as_ref()))?;
        let bias = masked(b, &self.bias, mask.and_then(|m| m.bias.as_ref()))?;
        let y = b.matmul_fwd(x, &*w, Transpose::NT)?;
        Ok(b.add_bias_fwd(&y, &*bias)?)
    }

    /// Backward given the forward input `x` `[N, I]` and `dy` `[N, O]`: accumulates
    /// `dW += dyᵀ · x` and `db += Σ_rows dy` into `grads`, returns `dx = dy · (W ⊙ m)`.
    pub fn backward<B: Backend<Tensor = T>>(
        &self,
        b: &B,
        x: &T,
        dy: &T,
        mask: Option<&Linear<Option<T>>>,
        grads: &mut Linear<T>,
    ) -> Result<T> {
        let w = masked(b, &self.weight, mask.and_then(|m| m.weight.as_ref()))?;
        let (dx, dw) = b.matmul_bwd(x, &*w, Transpose::NT, dy)?;
        accumulate(b, &mut grads.weight, &dw)?;
        let db = b.add_bias_bwd(dy)?;
        accumulate(b, &mut grads.bias, &db)?;
        Ok(dx)
    }
}

/// What LayerNorm's backward needs: its input and the row statistics.
#[derive(Clone, Debug)]
pub struct LayerNormCache<T> {
    /// The input, `[N, C]`.
    pub x: T,
    /// Per-row mean and 1/σ, `[N]` each.
    pub stats: LayerNormStats<T>,
}

impl<T: Clone> LayerNorm<T> {
    /// `γ ⊙ x̂ + β` per row; `x` `[N, C]`.
    pub fn forward<B: Backend<Tensor = T>>(
        &self,
        b: &B,
        x: &T,
        eps: f64,
        mask: Option<&LayerNorm<Option<T>>>,
    ) -> Result<T> {
        let g = masked(b, &self.weight, mask.and_then(|m| m.weight.as_ref()))?;
        let beta = masked(b, &self.bias, mask.and_then(|m| m.bias.as_ref()))?;
        Ok(b.layer_norm_fwd(x, &*g, &*beta, eps)?.0)
    }

    /// Forward keeping the input (moved in) and the statistics.
    pub fn forward_t<B: Backend<Tensor = T>>(
        &self,
        b: &B,
        x: T,
        eps: f64,
        mask: Option<&LayerNorm<Option<T>>>,
    ) -> Result<(T, LayerNormCache<T>)> {
        let g = masked(b, &self.weight, mask.and_then(|m| m.weight.as_ref()))?;
        let beta = masked(b, &self.bias, mask.and_then(|m| m.bias.as_ref()))?;
        let (y, stats) = b.layer_norm_fwd(&x, &*g, &*beta, eps)?;
        Ok((y, LayerNormCache { x, stats }))
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
        let (dx, dg, db) = b.layer_norm_bwd(&cache.x, &*g, &cache.stats, dy)?;
        accumulate(b, &mut grads.weight, &dg)?;
        accumulate(b, &mut grads.bias, &db)?;
        Ok(dx)
    }
}
