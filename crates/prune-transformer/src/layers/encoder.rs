//! One encoder layer (`encoder.layer.{i}`): multi-head self-attention with an additive
//! padding mask and an optional head mask, attention output + residual + LayerNorm, then
//! the GELU feed-forward block + residual + LayerNorm. Heads and FFN width may differ per
//! layer. A layer without heads runs the same code on empty `[B, 0, T, D]` tensors: its
//! context is empty, so the block adds only its attention-output bias (as transformers
//! does), and a trace of it still shows every parameter in use.
//! Backward derivation: `docs/bert-backward.md`, §Encoder layer.

use super::norm::{LayerNormCache, NormSpec};
use super::{dropout_add, dropout_bwd, dropout_bwd_ref, site_seed};
use crate::error::Result;
use crate::params::Layer;
use prune_tensor::{Activation, AttentionSpec, Backend};

/// Per-call settings shared by every layer of one forward pass.
#[derive(Clone, Copy, Debug)]
pub struct LayerCtx<'a, T> {
    /// Batch size B.
    pub batch: usize,
    /// Sequence length T.
    pub seq: usize,
    /// Head dim D.
    pub head_dim: usize,
    /// LayerNorm epsilon and kept hidden channels.
    pub norm: NormSpec<'a, T>,
    /// Additive attention mask, `[B, T]` (0 keep, very negative for padding).
    pub attn_mask: &'a T,
    /// Per-(batch, head) factors on the attention probabilities, `[B·H]`.
    pub head_mask: Option<&'a T>,
    /// The FFN's activation.
    pub activation: Activation,
    /// Dropout on the attention and FFN outputs (training only).
    pub hidden_dropout: f64,
    /// Dropout on the attention probabilities (training only).
    pub attention_dropout: f64,
    /// Seed of this layer's dropout draws.
    pub seed: u64,
    /// Masks of this layer's parameters.
    pub masks: Option<&'a Layer<Option<T>>>,
}

/// What self-attention's backward needs.
#[derive(Clone, Debug)]
struct AttentionCache<T> {
    /// Queries, keys, values, `[B·T, H·D]` each (heads side by side).
    q: T,
    k: T,
    v: T,
    /// Softmax output, `[B, H, T, T]` (with `Fused`, what the backend's forward saved).
    probs: T,
    /// How the probabilities became the context.
    path: AttentionPath<T>,
}

/// Which of self-attention's two paths ran.
#[derive(Clone, Debug)]
enum AttentionPath<T> {
    /// The backend's fused training attention, without a head mask.
    Fused(AttentionSpec),
    /// Op by op, with a head mask.
    Parts {
        /// The head mask, `[B·H]`.
        head_mask: T,
        /// Dropout factors on the probabilities, `[B, H, T, T]`.
        probs_keep: Option<T>,
        /// Probabilities after dropout and head mask, `[B, H, T, T]`.
        probs_eff: T,
    },
}

/// What an encoder layer's backward needs.
#[derive(Clone, Debug)]
pub struct LayerCache<T> {
    /// Layer input, `[B·T, C]` (the hidden state entering this layer).
    pub x: T,
    /// The rows of the output that were computed, when not all
    /// ([`Layer::forward_t_rows`]).
    rows: Option<Vec<usize>>,
    /// Self-attention internals.
    attention: AttentionCache<T>,
    /// Context (attention-output input), `[B·T, H·D]` (its `rows` alone when given).
    context: T,
    /// Dropout factors on the attention output, `[B·T, C]`.
    attention_keep: Option<T>,
    /// Attention LayerNorm input/stats, `[B·T, C]`.
    attention_norm: LayerNormCache<T>,
    /// Attention block output (FFN input), `[B·T, C]`.
    h1: T,
    /// FFN pre-activation, `[B·T, F]`.
    u: T,
    /// GELU output, `[B·T, F]`.
    g: T,
    /// Dropout factors on the FFN output, `[B·T, C]`.
    output_keep: Option<T>,
    /// Output LayerNorm input/stats, `[B·T, C]`.
    output_norm: LayerNormCache<T>,
}

impl<T> LayerCache<T> {
    /// The context entering the attention output projection, `[B·T, H·D]` (head `h` is
    /// columns `h·D..(h+1)·D`).
    pub fn context(&self) -> &T {
        &self.context
    }

    /// The FFN's input: the attention block's output after its LayerNorm, `[B·T, C]`.
    pub fn ffn_input(&self) -> &T {
        &self.h1
    }

    /// The FFN's GELU output, entering its output projection, `[B·T, F]`.
    pub fn ffn_activation(&self) -> &T {
        &self.g
    }
}

impl<T: Clone> Layer<T> {
    /// Heads H of this layer (rows of the query weight / D).
    pub fn heads<B: Backend<Tensor = T>>(&self, b: &B, head_dim: usize) -> usize {
        b.shape(&self.query.weight)
            .dims()
            .first()
            .copied()
            .unwrap_or(0)
            / head_dim.max(1)
    }

    /// Self-attention up to the context `[B·T, H·D]`, and with `train` what its backward
    /// needs (and dropout of the attention probabilities). Without a head mask, the
    /// backend's fused attention runs, which need not materialise the scores.
    fn self_attention<B: Backend<Tensor = T>>(
        &self,
        b: &B,
        x: &T,
        ctx: &LayerCtx<'_, T>,
        train: bool,
    ) -> Result<(T, Option<AttentionCache<T>>)> {
        let m = ctx.masks;
        let q = self.query.forward(b, x, m.map(|m| &m.query))?;
        let k = self.key.forward(b, x, m.map(|m| &m.key))?;
        let v = self.value.forward(b, x, m.map(|m| &m.value))?;
        let (batch, d) = (ctx.batch, ctx.head_dim);
        let scale = 1.0 / (d as f64).sqrt();
        let spec = AttentionSpec {
            batch,
            head_dim: d,
            scale,
            dropout: if train { ctx.attention_dropout } else { 0.0 },
            seed: site_seed(ctx.seed, 0, 0),
        };
        let Some(head_mask) = ctx.head_mask else {
            if !train {
                let (context, _) =
                    b.attention(&q, &k, &v, ctx.attn_mask, scale, batch, d, false)?;
                return Ok((context, None));
            }
            let (context, probs) = b.attention_train(&q, &k, &v, ctx.attn_mask, &spec)?;
            let path = AttentionPath::Fused(spec);
            return Ok((
                context,
                Some(AttentionCache {
                    q,
                    k,
                    v,
                    probs,
                    path,
                }),
            ));
        };
        let mut probs = b.head_scores(&q, &k, batch, d)?; // [B, H, T, T]
        b.softmax_assign(&mut probs, scale, Some(ctx.attn_mask))?;
        let (dropped, probs_keep) = if spec.dropout > 0.0 {
            let (y, keep) = b.dropout_fwd(&probs, spec.dropout, spec.seed)?;
            (Some(y), Some(keep))
        } else {
            (None, None)
        };
        let probs_eff = b.scale_rows_fwd(dropped.as_ref().unwrap_or(&probs), head_mask, ctx.seq)?;
        let context = b.head_context(&probs_eff, &v, batch, d, false)?; // [B·T, H·D]
        let path = AttentionPath::Parts {
            head_mask: head_mask.clone(),
            probs_keep,
            probs_eff,
        };
        let cache = train.then_some(AttentionCache {
            q,
            k,
            v,
            probs,
            path,
        });
        Ok((context, cache))
    }

    /// Inference: the layer output `[B·T, C]` for input `x` `[B·T, C]`; nothing is kept.
    pub fn forward<B: Backend<Tensor = T>>(
        &self,
        b: &B,
        x: &T,
        ctx: &LayerCtx<'_, T>,
    ) -> Result<T> {
        let h1 = self.attention_sublayer(b, x, ctx, None)?;
        self.ffn_sublayer(b, &h1, ctx)
    }

    /// Inference of the attention sub-layer alone: self-attention, output projection,
    /// residual and LayerNorm, `[B·T, C]` → `[B·T, C]`. With `rows`, for a caller that reads
    /// only those rows: everything after self-attention runs on them alone, as in
    /// [`Layer::forward_t_rows`], and the output is `[rows.len(), C]`.
    pub fn attention_sublayer<B: Backend<Tensor = T>>(
        &self,
        b: &B,
        x: &T,
        ctx: &LayerCtx<'_, T>,
        rows: Option<&[usize]>,
    ) -> Result<T> {
        let m = ctx.masks;
        let (context, _) = self.self_attention(b, x, ctx, false)?;
        let (context, residual) = at_rows(b, context, x, rows)?;
        let a = self
            .attention_output
            .forward(b, &context, m.map(|m| &m.attention_output))?;
        let residual = residual.as_ref().unwrap_or(x);
        self.attention_norm.forward_residual(
            b,
            &a,
            residual,
            ctx.norm,
            m.map(|m| &m.attention_norm),
        )
    }

    /// Inference of the FFN sub-layer alone: GELU feed-forward, residual and LayerNorm,
    /// `[B·T, C]` → `[B·T, C]`.
    pub fn ffn_sublayer<B: Backend<Tensor = T>>(
        &self,
        b: &B,
        h1: &T,
        ctx: &LayerCtx<'_, T>,
    ) -> Result<T> {
        let m = ctx.masks;
        let (_, g) = self.intermediate.forward_activation(
            b,
            h1,
            ctx.activation,
            m.map(|m| &m.intermediate),
        )?;
        let o = self.output.forward(b, &g, m.map(|m| &m.output))?;
        self.output_norm
            .forward_residual(b, &o, h1, ctx.norm, m.map(|m| &m.output_norm))
    }

    /// Training: the layer output and a cache; `x` `[B·T, C]` is moved into the cache.
    /// Dropout (seeded by `ctx.seed`) acts on the attention probabilities and on both
    /// sub-layer outputs before their residual sums.
    pub fn forward_t<B: Backend<Tensor = T>>(
        &self,
        b: &B,
        x: T,
        ctx: &LayerCtx<'_, T>,
    ) -> Result<(T, LayerCache<T>)> {
        self.forward_t_rows(b, x, ctx, None)
    }

    /// [`Layer::forward_t`] for a caller that reads only `rows` of the output (the last
    /// layer under a pooler, which reads each sequence's first token): self-attention runs
    /// on every token (they are all keys and values), the attention output, its residual,
    /// the feed-forward block and both LayerNorms on `rows` alone. The output is
    /// `[rows.len(), C]`; the hidden-state dropouts draw over those rows.
    pub fn forward_t_rows<B: Backend<Tensor = T>>(
        &self,
        b: &B,
        x: T,
        ctx: &LayerCtx<'_, T>,
        rows: Option<&[usize]>,
    ) -> Result<(T, LayerCache<T>)> {
        let m = ctx.masks;
        let (context, attention) = self.self_attention(b, &x, ctx, true)?;
        let attention = attention.ok_or_else(|| prune_tensor::TensorError::Argument {
            op: "attention",
            what: "the backend kept no probabilities for the backward".into(),
        })?;
        let (context, residual) = at_rows(b, context, &x, rows)?;
        let a = self
            .attention_output
            .forward(b, &context, m.map(|m| &m.attention_output))?;
        let residual = residual.as_ref().unwrap_or(&x);
        let (s1, attention_keep) = dropout_add(
            b,
            &a,
            residual,
            ctx.hidden_dropout,
            site_seed(ctx.seed, 0, 1),
        )?;
        let (h1, attention_norm) =
            self.attention_norm
                .forward_t(b, s1, ctx.norm, m.map(|m| &m.attention_norm))?;
        let (u, g) = self.intermediate.forward_activation(
            b,
            &h1,
            ctx.activation,
            m.map(|m| &m.intermediate),
        )?;
        let o = self.output.forward(b, &g, m.map(|m| &m.output))?;
        let (s2, output_keep) =
            dropout_add(b, &o, &h1, ctx.hidden_dropout, site_seed(ctx.seed, 0, 2))?;
        let (y, output_norm) =
            self.output_norm
                .forward_t(b, s2, ctx.norm, m.map(|m| &m.output_norm))?;
        let cache = LayerCache {
            x,
            rows: rows.map(<[usize]>::to_vec),
            attention,
            context,
            attention_keep,
            attention_norm,
            h1,
            u,
            g,
            output_keep,
            output_norm,
        };
        Ok((y, cache))
    }

    /// Backward of [`Layer::forward_t`]: accumulates every parameter gradient into `grads`
    /// and returns `dx` `[B·T, C]`. Reads as the forward pass in reverse.
    pub fn backward<B: Backend<Tensor = T>>(
        &self,
        b: &B,
        cache: LayerCache<T>,
        dy: &T,
        ctx: &LayerCtx<'_, T>,
        grads: &mut Layer<T>,
    ) -> Result<T> {
        let m = ctx.masks;
        // y = LN(s2), s2 = dropout(output(gelu(intermediate(h1)))) + h1
        let ds2 = self.output_norm.backward(
            b,
            &cache.output_norm,
            dy,
            m.map(|m| &m.output_norm),
            &mut grads.output_norm,
        )?;
        let d_o = dropout_bwd_ref(b, &ds2, &cache.output_keep)?;
        let dg =
            self.output
                .backward(b, &cache.g, &*d_o, m.map(|m| &m.output), &mut grads.output)?;
        let du = b.activation_bwd(ctx.activation, &cache.u, &dg)?;
        let dh1_ffn = self.intermediate.backward(
            b,
            &cache.h1,
            &du,
            m.map(|m| &m.intermediate),
            &mut grads.intermediate,
        )?;
        let dh1 = b.add_fwd(&ds2, &dh1_ffn)?; // residual: h1 feeds both the FFN and s2
        // h1 = LN(s1), s1 = dropout(attention_output(context)) + x
        let ds1 = self.attention_norm.backward(
            b,
            &cache.attention_norm,
            &dh1,
            m.map(|m| &m.attention_norm),
            &mut grads.attention_norm,
        )?;
        let da = dropout_bwd_ref(b, &ds1, &cache.attention_keep)?;
        let dcontext = self.attention_output.backward(
            b,
            &cache.context,
            &*da,
            m.map(|m| &m.attention_output),
            &mut grads.attention_output,
        )?;
        let (dcontext, ds1) = match &cache.rows {
            Some(rows) => {
                let n = b.shape(&cache.x).dims().first().copied().unwrap_or(0);
                let dcontext = b.gather_rows_bwd(&dcontext, rows, n)?;
                (dcontext, b.gather_rows_bwd(&ds1, rows, n)?)
            }
            None => (dcontext, ds1),
        };
        let dx_att =
            self.self_attention_backward(b, &cache.x, cache.attention, dcontext, ctx, grads)?;
        Ok(b.add_fwd(&ds1, &dx_att)?) // residual: x feeds both attention and s1
    }

    /// Backward of self-attention from `dcontext` `[B·T, H·D]` to `dx` `[B·T, C]`.
    fn self_attention_backward<B: Backend<Tensor = T>>(
        &self,
        b: &B,
        x: &T,
        att: AttentionCache<T>,
        dcontext: T,
        ctx: &LayerCtx<'_, T>,
        grads: &mut Layer<T>,
    ) -> Result<T> {
        let m = ctx.masks;
        let (batch, d) = (ctx.batch, ctx.head_dim);
        let [dq, dk, dv] = match &att.path {
            AttentionPath::Fused(spec) => {
                b.attention_bwd([&att.q, &att.k, &att.v], &att.probs, &dcontext, spec)?
            }
            AttentionPath::Parts {
                head_mask,
                probs_keep,
                probs_eff,
            } => {
                let dp = b.head_scores(&dcontext, &att.v, batch, d)?; // dP = dC · Vᵀ
                let dv = b.head_context(probs_eff, &dcontext, batch, d, true)?; // dV = Pᵀ · dC
                let dp = b.scale_rows_fwd(&dp, head_mask, ctx.seq)?;
                let dp = dropout_bwd(b, dp, probs_keep)?;
                let scale = 1.0 / (d as f64).sqrt();
                let dscores = b.softmax_bwd(&att.probs, &dp, scale)?;
                let dq = b.head_context(&dscores, &att.k, batch, d, false)?; // dQ = dS · K
                let dk = b.head_context(&dscores, &att.q, batch, d, true)?; // dK = dSᵀ · Q
                [dq, dk, dv]
            }
        };
        let dxq = self
            .query
            .backward(b, x, &dq, m.map(|m| &m.query), &mut grads.query)?;
        let dxk = self
            .key
            .backward(b, x, &dk, m.map(|m| &m.key), &mut grads.key)?;
        let dxv = self
            .value
            .backward(b, x, &dv, m.map(|m| &m.value), &mut grads.value)?;
        Ok(b.add_fwd(&b.add_fwd(&dxq, &dxk)?, &dxv)?)
    }
}

/// The context and the residual `x` of an attention sub-layer at `rows` alone, when given
/// (the residual is then the gathered copy, else `None`: `x` itself).
fn at_rows<B: Backend>(
    b: &B,
    context: B::Tensor,
    x: &B::Tensor,
    rows: Option<&[usize]>,
) -> Result<(B::Tensor, Option<B::Tensor>)> {
    Ok(match rows {
        Some(rows) => (
            b.gather_rows_fwd(&context, rows)?,
            Some(b.gather_rows_fwd(x, rows)?),
        ),
        None => (context, None),
    })
}
