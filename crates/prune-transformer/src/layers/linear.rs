//! Forward and backward of a (masked) linear layer, on `[N, ·]` rows.
//!
//! A linear layer folds every leading dim into N rows, so each call is one large NT GEMM.
//! With a mask `m`, it computes with `w ⊙ m`, and its backward stores the gradient with
//! respect to that effective weight (see `docs/bert-backward.md`, §Linear).

use super::{accumulate, masked};
use crate::error::Result;
use crate::params::Linear;
use prune_tensor::{Activation, Backend, Transpose};
use std::borrow::Cow;

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
        Ok(b.linear_fwd(x, &w, &bias)?)
    }

    /// `(u, act(u))` with `u` what [`Linear::forward`] returns, its bias add fused with the
    /// activation where the backend can (`u` is what the activation's backward needs).
    pub fn forward_activation<B: Backend<Tensor = T>>(
        &self,
        b: &B,
        x: &T,
        act: Activation,
        mask: Option<&Linear<Option<T>>>,
    ) -> Result<(T, T)> {
        let (mut u, bias) = self.product_and_bias(b, x, mask)?;
        let g = b.bias_activation_fwd(act, &mut u, &*bias)?;
        Ok((u, g))
    }

    /// The two halves of the forward: `x · (W ⊙ m_W)ᵀ` and the bias `b ⊙ m_b` to add to it.
    fn product_and_bias<'a, B: Backend<Tensor = T>>(
        &'a self,
        b: &B,
        x: &T,
        mask: Option<&Linear<Option<T>>>,
    ) -> Result<(T, Cow<'a, T>)> {
        let w = masked(b, &self.weight, mask.and_then(|m| m.weight.as_ref()))?;
        let bias = masked(b, &self.bias, mask.and_then(|m| m.bias.as_ref()))?;
        Ok((b.matmul_fwd(x, &*w, Transpose::NT)?, bias))
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
