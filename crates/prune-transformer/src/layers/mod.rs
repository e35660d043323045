//! The building blocks of BERT written over `Backend`: linear and LayerNorm (`norm`),
//! embeddings and their projection, one encoder layer, the pooler and the classifier. Each
//! layer struct of [`crate::params`] holds parameters only and gets `forward` (saves
//! nothing), `forward_t` (returns a cache) and `backward` (accumulates parameter gradients
//! with `+=`, returns a fresh input gradient). The maths is derived in
//! `docs/bert-backward.md`.

pub mod classifier;
pub mod embeddings;
pub mod encoder;
pub mod linear;
pub mod norm;
pub mod projection;

use crate::error::Result;
use prune_tensor::Backend;
use std::borrow::Cow;

/// `p ⊙ m` when a mask is given, `p` itself (borrowed) otherwise: the effective parameter.
pub fn masked<'a, B: Backend>(
    b: &B,
    p: &'a B::Tensor,
    m: Option<&B::Tensor>,
) -> Result<Cow<'a, B::Tensor>> {
    Ok(match m {
        Some(m) => Cow::Owned(b.mul_fwd(p, m)?),
        None => Cow::Borrowed(p),
    })
}

/// Inverted dropout with probability `p` drawn from `seed`: `(y, Some(keep))`, or `(x, None)`
/// when `p == 0`.
pub fn dropout<B: Backend>(
    b: &B,
    x: B::Tensor,
    p: f64,
    seed: u64,
) -> Result<(B::Tensor, Option<B::Tensor>)> {
    if p == 0.0 {
        return Ok((x, None));
    }
    let (y, keep) = b.dropout_fwd(&x, p, seed)?;
    Ok((y, Some(keep)))
}

/// `dropout(x) + residual` with [`dropout`]'s draw, fused where the backend can:
/// `(y, Some(keep))`, or `(x + residual, None)` when `p == 0`.
pub fn dropout_add<B: Backend>(
    b: &B,
    x: &B::Tensor,
    residual: &B::Tensor,
    p: f64,
    seed: u64,
) -> Result<(B::Tensor, Option<B::Tensor>)> {
    if p == 0.0 {
        return Ok((b.add_fwd(x, residual)?, None));
    }
    let (y, keep) = b.dropout_add_fwd(x, residual, p, seed)?;
    Ok((y, Some(keep)))
}

/// Backward of [`dropout`]: `dy ⊙ keep`, or `dy` unchanged when nothing was dropped.
pub fn dropout_bwd<B: Backend>(
    b: &B,
    dy: B::Tensor,
    keep: &Option<B::Tensor>,
) -> Result<B::Tensor> {
    match keep {
        Some(k) => Ok(b.mul_fwd(&dy, k)?),
        None => Ok(dy),
    }
}

/// Backward of [`dropout`] on a borrowed gradient: `dy ⊙ keep`, or `dy` itself (no copy)
/// when nothing was dropped.
pub fn dropout_bwd_ref<'a, B: Backend>(
    b: &B,
    dy: &'a B::Tensor,
    keep: &Option<B::Tensor>,
) -> Result<Cow<'a, B::Tensor>> {
    match keep {
        Some(k) => Ok(Cow::Owned(b.mul_fwd(dy, k)?)),
        None => Ok(Cow::Borrowed(dy)),
    }
}

/// `acc += x` for a gradient leaf.
pub fn accumulate<B: Backend>(b: &B, acc: &mut B::Tensor, x: &B::Tensor) -> Result<()> {
    Ok(b.add_assign(acc, x)?)
}

/// Seed of dropout site `site` of block `block` for the forward seeded with `seed`.
pub fn site_seed(seed: u64, block: u64, site: u64) -> u64 {
    prune_tensor::rng::mix64(
        prune_tensor::rng::mix64(seed ^ block.wrapping_mul(0x9E37_79B9)) ^ site,
    )
}
