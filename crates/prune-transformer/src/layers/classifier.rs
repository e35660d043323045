//! The pooler (`tanh` of a dense layer on each sequence's first token, `pooler.dense`;
//! RoBERTa's `classifier.dense`, which drops out its input first; DistilBERT's
//! `pre_classifier`, with ReLU for tanh; ELECTRA's, with GELU) and the sequence
//! classification / regression head (`classifier`, after dropout).

use super::{dropout, dropout_bwd};
use crate::error::Result;
use crate::family::HeadActivation;
use crate::params::Linear;
use prune_tensor::Backend;

/// Rows of the first (`[CLS]`) token of each sequence in `[B·T, C]` hidden states.
pub fn first_token_rows(batch: usize, seq: usize) -> Vec<usize> {
    (0..batch).map(|i| i * seq).collect()
}

/// What the pooler's backward needs.
#[derive(Clone, Debug)]
pub struct PoolerCache<T> {
    /// The activation.
    act: HeadActivation,
    /// First-token hidden states after dropout, `[B, C]`.
    first: T,
    /// The dense layer's output, `[B, C]` (GELU's backward needs it).
    z: T,
    /// Dropout factors of the first-token states, `[B, C]`, when dropout is on.
    keep: Option<T>,
    /// Pooled output, `[B, C]`.
    pooled: T,
    /// Rows of the first tokens in `[B·T, C]`, `[B]`.
    rows: Vec<usize>,
    /// B·T.
    n: usize,
}

/// `act(z)`.
fn head_fwd<B: Backend>(b: &B, act: HeadActivation, z: &B::Tensor) -> Result<B::Tensor> {
    Ok(match act {
        HeadActivation::Tanh => b.tanh_fwd(z)?,
        HeadActivation::Relu => b.relu_fwd(z)?,
        HeadActivation::Gelu => b.gelu_fwd(z)?,
    })
}

/// `dz` of `act` given its input `z` and output `y` (ReLU's output is positive exactly
/// where its input is).
fn head_bwd<B: Backend>(
    b: &B,
    act: HeadActivation,
    z: &B::Tensor,
    y: &B::Tensor,
    dy: &B::Tensor,
) -> Result<B::Tensor> {
    Ok(match act {
        HeadActivation::Tanh => b.tanh_bwd(y, dy)?,
        HeadActivation::Relu => b.relu_bwd(y, dy)?,
        HeadActivation::Gelu => b.gelu_bwd(z, dy)?,
    })
}

/// Pooler forward: `act(first · Wᵀ + b)` from hidden states `[B·T, C]`, `[B, C]` (the
/// training forward without dropout, its cache dropped).
pub fn pooler_forward<B: Backend>(
    b: &B,
    dense: &Linear<B::Tensor>,
    act: HeadActivation,
    hidden: &B::Tensor,
    batch: usize,
    seq: usize,
    mask: Option<&Linear<Option<B::Tensor>>>,
) -> Result<B::Tensor> {
    let (pooled, _) = pooler_forward_t(b, dense, act, hidden, batch, seq, 0.0, 0, mask)?;
    Ok(pooled)
}

/// Pooler forward keeping a cache, with dropout `p` (seeded) on the first-token states
/// (0 for BERT's pooler); the pooled output is returned as well as kept.
#[allow(clippy::too_many_arguments)]
pub fn pooler_forward_t<B: Backend>(
    b: &B,
    dense: &Linear<B::Tensor>,
    act: HeadActivation,
    hidden: &B::Tensor,
    batch: usize,
    seq: usize,
    p: f64,
    seed: u64,
    mask: Option<&Linear<Option<B::Tensor>>>,
) -> Result<(B::Tensor, PoolerCache<B::Tensor>)> {
    let rows = first_token_rows(batch, seq);
    let first = b.gather_rows_fwd(hidden, &rows)?;
    let (first, keep) = dropout(b, first, p, seed)?;
    let z = dense.forward(b, &first, mask)?;
    let pooled = head_fwd(b, act, &z)?;
    let cache = PoolerCache {
        act,
        first,
        z,
        keep,
        pooled: pooled.clone(),
        rows,
        n: batch * seq,
    };
    Ok((pooled, cache))
}

/// Pooler backward: accumulates `pooler.dense` gradients, returns `d hidden` `[B·T, C]`
/// (non-zero on first-token rows only).
pub fn pooler_backward<B: Backend>(
    b: &B,
    dense: &Linear<B::Tensor>,
    cache: &PoolerCache<B::Tensor>,
    dpooled: &B::Tensor,
    mask: Option<&Linear<Option<B::Tensor>>>,
    grads: &mut Linear<B::Tensor>,
) -> Result<B::Tensor> {
    let dz = head_bwd(b, cache.act, &cache.z, &cache.pooled, dpooled)?;
    let dfirst = dense.backward(b, &cache.first, &dz, mask, grads)?;
    let dfirst = dropout_bwd(b, dfirst, &cache.keep)?;
    Ok(b.gather_rows_bwd(&dfirst, &cache.rows, cache.n)?)
}

/// What the classifier's backward needs.
#[derive(Clone, Debug)]
pub struct ClassifierCache<T> {
    /// Classifier input after dropout, `[B, C]`.
    x: T,
    /// Dropout factors, `[B, C]`.
    keep: Option<T>,
}

/// Classifier forward (inference): `pooled · Wᵀ + b`, `[B, K]`.
pub fn classifier_forward<B: Backend>(
    b: &B,
    head: &Linear<B::Tensor>,
    pooled: &B::Tensor,
    mask: Option<&Linear<Option<B::Tensor>>>,
) -> Result<B::Tensor> {
    head.forward(b, pooled, mask)
}

/// Classifier forward with dropout `p` on its input, keeping a cache.
pub fn classifier_forward_t<B: Backend>(
    b: &B,
    head: &Linear<B::Tensor>,
    pooled: B::Tensor,
    p: f64,
    seed: u64,
    mask: Option<&Linear<Option<B::Tensor>>>,
) -> Result<(B::Tensor, ClassifierCache<B::Tensor>)> {
    let (x, keep) = dropout(b, pooled, p, seed)?;
    let logits = head.forward(b, &x, mask)?;
    Ok((logits, ClassifierCache { x, keep }))
}

/// Classifier backward: accumulates its gradients, returns `d pooled` `[B, C]`.
pub fn classifier_backward<B: Backend>(
    b: &B,
    head: &Linear<B::Tensor>,
    cache: ClassifierCache<B::Tensor>,
    dlogits: &B::Tensor,
    mask: Option<&Linear<Option<B::Tensor>>>,
    grads: &mut Linear<B::Tensor>,
) -> Result<B::Tensor> {
    let dx = head.backward(b, &cache.x, dlogits, mask, grads)?;
    dropout_bwd(b, dx, &cache.keep)
}
