//! Attention's per-head products, the fused inference attention and the fused training
//! attention with its backward ([`AttentionOps`]).

use super::{ElementwiseOps, IndexOps, MatmulOps, SoftmaxOps, Transpose};
use crate::Shape;
use crate::checks::HeadGeometry;
use crate::error::Result;

/// How [`AttentionOps::attention_train`] and [`AttentionOps::attention_bwd`] attend.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionSpec {
    /// Batch size B.
    pub batch: usize,
    /// Head dim D.
    pub head_dim: usize,
    /// Factor on the scores `Q_bh · K_bhᵀ` before the mask is added.
    pub scale: f64,
    /// Probability of dropping each attention probability (0: no dropout).
    pub dropout: f64,
    /// Seed of the dropout draw: element `i` of the `[B, H, T, T]` probabilities is
    /// dropped exactly when `dropout_fwd(probs, dropout, seed)` drops it.
    pub seed: u64,
}

/// Attention's per-head products on heads stored side by side, as the Q/K/V projections
/// leave them: `x` `[B·T, H·D]`, head `h` of batch entry `b` being rows `b·T..(b+1)·T`,
/// columns `h·D..(h+1)·D` (`X_bh`, `[T, D]`). Scores are `[B, H, T, T]` (`S_bh`, `[T, T]`).
/// The defaults split the heads into `[B, H, T, D]` copies and run batched matmuls; a
/// backend may instead read and write the heads in place.
pub trait AttentionOps: MatmulOps + IndexOps + SoftmaxOps + ElementwiseOps {
    /// `S_bh = X_bh · Y_bhᵀ` for `x`, `y` `[B·T, H·D]` with `batch` B and `head_dim` D
    /// (the scores `Q·Kᵀ`, or `dP = dC·Vᵀ`).
    fn head_scores(
        &self,
        x: &Self::Tensor,
        y: &Self::Tensor,
        batch: usize,
        head_dim: usize,
    ) -> Result<Self::Tensor> {
        let g = HeadGeometry::of("head_scores", self.shape(x), batch, head_dim)?;
        crate::checks::same_shape("head_scores", self.shape(x), self.shape(y))?;
        let (xs, ys) = (split_heads(self, x, &g)?, split_heads(self, y, &g)?);
        self.matmul_fwd(&xs, &ys, Transpose::NT)
    }

    /// `C_bh = op(P_bh) · Y_bh` back into side-by-side heads `[B·T, H·D]`, for `p`
    /// `[B, H, T, T]` and `y` `[B·T, H·D]`; `op` transposes when `transpose_p` (the context
    /// `P·V`, or `dV = Pᵀ·dC`, `dQ = dS·K`, `dK = dSᵀ·Q`).
    fn head_context(
        &self,
        p: &Self::Tensor,
        y: &Self::Tensor,
        batch: usize,
        head_dim: usize,
        transpose_p: bool,
    ) -> Result<Self::Tensor> {
        let g = HeadGeometry::of("head_context", self.shape(y), batch, head_dim)?;
        crate::checks::same_shape("head_context", self.shape(p), &g.scores())?;
        let t = if transpose_p {
            Transpose::TN
        } else {
            Transpose::NN
        };
        let c = self.matmul_fwd(p, &split_heads(self, y, &g)?, t)?; // [B, H, T, D]
        let c = self.permute(&c, &[0, 2, 1, 3])?;
        self.reshape(c, g.side_by_side())
    }

    /// Scaled dot-product attention without dropout or head mask:
    /// `C_bh = softmax(scale · Q_bh · K_bhᵀ + mask_b) · V_bh` for `q`, `k`, `v` `[B·T, H·D]`
    /// and the additive `mask` `[B, T]`. Returns the context `[B·T, H·D]` and, when
    /// `keep_probs`, the probabilities `[B, H, T, T]` its backward needs. A backend may run
    /// each head's scores, softmax and product while they are in cache instead of
    /// materialising every score.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        mask: &Self::Tensor,
        scale: f64,
        batch: usize,
        head_dim: usize,
        keep_probs: bool,
    ) -> Result<(Self::Tensor, Option<Self::Tensor>)> {
        let mut probs = self.head_scores(q, k, batch, head_dim)?;
        self.softmax_assign(&mut probs, scale, Some(mask))?;
        let context = self.head_context(&probs, v, batch, head_dim, false)?;
        Ok((context, keep_probs.then_some(probs)))
    }

    /// Training attention: `C_bh = dropout(softmax(scale · Q_bh · K_bhᵀ + mask_b)) · V_bh`
    /// with `spec`'s dropout on the probabilities. Returns the context `[B·T, H·D]` and
    /// `saved` `[B, H, T, T]`, what [`AttentionOps::attention_bwd`] needs: the probabilities
    /// before dropout, in magnitude (the CPU backend negates the dropped ones, so that its
    /// backward need not draw the dropout again). Only this backend's backward reads `saved`.
    fn attention_train(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        mask: &Self::Tensor,
        spec: &AttentionSpec,
    ) -> Result<(Self::Tensor, Self::Tensor)> {
        let (batch, d) = (spec.batch, spec.head_dim);
        let mut probs = self.head_scores(q, k, batch, d)?;
        self.softmax_assign(&mut probs, spec.scale, Some(mask))?;
        let context = if spec.dropout > 0.0 {
            let (dropped, _) = self.dropout_fwd(&probs, spec.dropout, spec.seed)?;
            self.head_context(&dropped, v, batch, d, false)?
        } else {
            self.head_context(&probs, v, batch, d, false)?
        };
        Ok((context, probs))
    }

    /// Backward of [`AttentionOps::attention_train`]: `[dQ, dK, dV]`, each `[B·T, H·D]`, from
    /// `dcontext` `[B·T, H·D]` and what the forward saved (the dropout draw is made again
    /// from `spec`). With `P̃ = P ⊙ keep`: `dV = P̃ᵀ·dC`, `dS = softmax_bwd(P, (dC·Vᵀ) ⊙ keep)`,
    /// `dQ = dS·K`, `dK = dSᵀ·Q`.
    fn attention_bwd(
        &self,
        qkv: [&Self::Tensor; 3],
        saved: &Self::Tensor,
        dcontext: &Self::Tensor,
        spec: &AttentionSpec,
    ) -> Result<[Self::Tensor; 3]> {
        let ([q, k, v], batch, d) = (qkv, spec.batch, spec.head_dim);
        let (dropped, keep) = if spec.dropout > 0.0 {
            let (dropped, keep) = self.dropout_fwd(saved, spec.dropout, spec.seed)?;
            (Some(dropped), Some(keep))
        } else {
            (None, None)
        };
        let dv = self.head_context(dropped.as_ref().unwrap_or(saved), dcontext, batch, d, true)?;
        let mut dp = self.head_scores(dcontext, v, batch, d)?;
        if let Some(keep) = keep {
            dp = self.mul_fwd(&dp, &keep)?;
        }
        let ds = self.softmax_bwd(saved, &dp, spec.scale)?;
        let dq = self.head_context(&ds, k, batch, d, false)?;
        let dk = self.head_context(&ds, q, batch, d, true)?;
        Ok([dq, dk, dv])
    }
}

/// `x` `[B·T, H·D]` as a `[B, H, T, D]` copy.
fn split_heads<B: AttentionOps + ?Sized>(
    b: &B,
    x: &B::Tensor,
    g: &HeadGeometry,
) -> Result<B::Tensor> {
    let x = b.reshape(x.clone(), Shape::from([g.batch, g.seq, g.heads, g.dim]))?;
    b.permute(&x, &[0, 2, 1, 3])
}
