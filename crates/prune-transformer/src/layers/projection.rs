//! ELECTRA's `embeddings_project`: a linear layer from the embeddings' width E to the hidden
//! width C. Under a hidden-channel mask its output is zeroed at the dropped channels, as
//! every LayerNorm's is, so the first layer reads nothing from them.

use crate::error::Result;
use crate::params::Linear;
use prune_tensor::Backend;
use std::borrow::Cow;

/// What the projection's backward needs.
#[derive(Clone, Debug)]
pub struct ProjectionCache<T> {
    /// The embeddings' output, `[B·T, E]`.
    x: T,
}

/// Inference forward: `(x · Wᵀ + b) ⊙ keep`, `[B·T, C]`; `keep` is the hidden-channel mask
/// repeated over the rows, `[B·T, C]`.
pub fn projection_forward<B: Backend>(
    b: &B,
    dense: &Linear<B::Tensor>,
    x: &B::Tensor,
    keep: Option<&B::Tensor>,
    mask: Option<&Linear<Option<B::Tensor>>>,
) -> Result<B::Tensor> {
    let y = dense.forward(b, x, mask)?;
    Ok(match keep {
        Some(k) => b.mul_fwd(&y, k)?,
        None => y,
    })
}

/// Training forward: the output and a cache for [`projection_backward`].
pub fn projection_forward_t<B: Backend>(
    b: &B,
    dense: &Linear<B::Tensor>,
    x: B::Tensor,
    keep: Option<&B::Tensor>,
    mask: Option<&Linear<Option<B::Tensor>>>,
) -> Result<(B::Tensor, ProjectionCache<B::Tensor>)> {
    let y = projection_forward(b, dense, &x, keep, mask)?;
    Ok((y, ProjectionCache { x }))
}

/// Accumulates the projection's gradients and returns `d x`, `[B·T, E]`.
pub fn projection_backward<B: Backend>(
    b: &B,
    dense: &Linear<B::Tensor>,
    cache: &ProjectionCache<B::Tensor>,
    dy: &B::Tensor,
    keep: Option<&B::Tensor>,
    mask: Option<&Linear<Option<B::Tensor>>>,
    grads: &mut Linear<B::Tensor>,
) -> Result<B::Tensor> {
    let dy = match keep {
        Some(k) => Cow::Owned(b.mul_fwd(dy, k)?),
        None => Cow::Borrowed(dy),
    };
    dense.backward(b, &cache.x, &dy, mask, grads)
}
