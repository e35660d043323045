//! Embeddings: word + position + token type, LayerNorm, dropout (`embeddings.*`), of the
//! tables' width E (the hidden width C unless a projection follows them). A model without
//! token types (an empty table) adds none and ignores the token type ids.

use super::norm::{LayerNormCache, NormSpec};
use super::{accumulate, dropout, dropout_bwd, masked};
use crate::error::Result;
use crate::params::Embeddings;
use prune_tensor::Backend;

/// Token-level inputs of the embeddings, flattened over `[B, T]`.
#[derive(Clone, Debug)]
pub struct EmbeddingInput<'a> {
    /// Token ids, `[B·T]`.
    pub ids: &'a [usize],
    /// Token type ids, `[B·T]`.
    pub type_ids: &'a [usize],
    /// Position ids, `[B·T]` (`Family::positions`).
    pub positions: &'a [usize],
}

/// What the embeddings' backward needs.
#[derive(Clone, Debug)]
pub struct EmbeddingsCache<T> {
    /// Token ids, `[B·T]`.
    ids: Vec<usize>,
    /// Token type ids, `[B·T]`.
    type_ids: Vec<usize>,
    /// Position ids, `[B·T]`.
    positions: Vec<usize>,
    /// LayerNorm input (the summed embeddings) and statistics, `[B·T, E]`.
    norm: LayerNormCache<T>,
    /// Dropout factors, `[B·T, E]`, when dropout is on.
    keep: Option<T>,
}

impl<T: Clone> Embeddings<T> {
    /// `word[ids] + position[pos] + token_type[type_ids]` (no token type term when the table
    /// is empty), `[B·T, E]`.
    fn sum<B: Backend<Tensor = T>>(
        &self,
        b: &B,
        input: &EmbeddingInput<'_>,
        mask: Option<&Embeddings<Option<T>>>,
    ) -> Result<T> {
        let word = masked(b, &self.word, mask.and_then(|m| m.word.as_ref()))?;
        let position = masked(b, &self.position, mask.and_then(|m| m.position.as_ref()))?;
        let token_type = masked(
            b,
            &self.token_type,
            mask.and_then(|m| m.token_type.as_ref()),
        )?;
        let w = b.gather_rows_fwd(&*word, input.ids)?;
        let p = b.gather_rows_fwd(&*position, input.positions)?;
        let sum = b.add_fwd(&w, &p)?;
        if rows(b, &token_type) == 0 {
            return Ok(sum);
        }
        let t = b.gather_rows_fwd(&*token_type, input.type_ids)?;
        Ok(b.add_fwd(&sum, &t)?)
    }

    /// Inference: `LayerNorm(word + position + token type)`, `[B·T, E]` (over the kept
    /// channels when `norm` has a hidden-channel mask).
    pub fn forward<B: Backend<Tensor = T>>(
        &self,
        b: &B,
        input: &EmbeddingInput<'_>,
        norm: NormSpec<'_, T>,
        mask: Option<&Embeddings<Option<T>>>,
    ) -> Result<T> {
        let e = self.sum(b, input, mask)?;
        self.norm.forward(b, &e, norm, mask.map(|m| &m.norm))
    }

    /// Training: as [`Embeddings::forward`] followed by dropout `p` (seeded), with a cache.
    pub fn forward_t<B: Backend<Tensor = T>>(
        &self,
        b: &B,
        input: &EmbeddingInput<'_>,
        norm: NormSpec<'_, T>,
        p: f64,
        seed: u64,
        mask: Option<&Embeddings<Option<T>>>,
    ) -> Result<(T, EmbeddingsCache<T>)> {
        let e = self.sum(b, input, mask)?;
        let (y, norm) = self.norm.forward_t(b, e, norm, mask.map(|m| &m.norm))?;
        let (y, keep) = dropout(b, y, p, seed)?;
        let cache = EmbeddingsCache {
            ids: input.ids.to_vec(),
            type_ids: input.type_ids.to_vec(),
            positions: input.positions.to_vec(),
            norm,
            keep,
        };
        Ok((y, cache))
    }

    /// Accumulates the table and LayerNorm gradients (scatter-adds into the rows used) and
    /// returns the gradient of the summed input embeddings, `[B·T, E]`.
    pub fn backward<B: Backend<Tensor = T>>(
        &self,
        b: &B,
        cache: EmbeddingsCache<T>,
        dy: T,
        mask: Option<&Embeddings<Option<T>>>,
        grads: &mut Embeddings<T>,
    ) -> Result<T> {
        let dy = dropout_bwd(b, dy, &cache.keep)?;
        let de = self
            .norm
            .backward(b, &cache.norm, &dy, mask.map(|m| &m.norm), &mut grads.norm)?;
        let dw = b.gather_rows_bwd(&de, &cache.ids, rows(b, &self.word))?;
        accumulate(b, &mut grads.word, &dw)?;
        let dp = b.gather_rows_bwd(&de, &cache.positions, rows(b, &self.position))?;
        accumulate(b, &mut grads.position, &dp)?;
        let types = rows(b, &self.token_type);
        if types > 0 {
            let dt = b.gather_rows_bwd(&de, &cache.type_ids, types)?;
            accumulate(b, &mut grads.token_type, &dt)?;
        }
        Ok(de)
    }
}

/// Rows of a table.
fn rows<B: Backend>(b: &B, t: &B::Tensor) -> usize {
    b.shape(t).dims().first().copied().unwrap_or(0)
}
