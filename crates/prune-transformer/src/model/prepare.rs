//! The inputs of one forward pass, checked against the model (ids, token types, positions)
//! and moved to the backend with the masks the model carries.

use super::{BertModel, MASK_VALUE};
use crate::batch::Batch;
use crate::error::{Result, TransformerError};
use prune_tensor::{Backend, Tensor};

/// Checked, backend-side inputs of one forward pass.
pub(super) struct Prepared<T> {
    pub(super) ids: Vec<usize>,
    pub(super) type_ids: Vec<usize>,
    pub(super) positions: Vec<usize>,
    /// `[B, T]`
    pub(super) attn_mask: T,
    /// `[B·H]` per layer
    pub(super) head_masks: Vec<Option<T>>,
    /// `[C]`, under a hidden-channel mask
    pub(super) hidden_keep: Option<T>,
    /// `[B·T, C]`, the hidden-channel mask on every row, for a projection's output
    pub(super) projection_keep: Option<T>,
}

impl<B: Backend> BertModel<B> {
    /// Checks `batch` against the model and moves its masks to the backend.
    pub(super) fn prepare(&self, batch: &Batch) -> Result<Prepared<B::Tensor>> {
        batch.check()?;
        self.check_layer_counts()?;
        let b = &self.backend;
        let rows = |t: &B::Tensor| b.shape(t).dims().first().copied().unwrap_or(0);
        let (vocab, types, max_pos) = (
            rows(&self.params.embeddings.word),
            rows(&self.params.embeddings.token_type),
            rows(&self.params.embeddings.position),
        );
        let (family, pad) = (self.config.family, self.config.pad_token_id);
        let positions = family.positions(batch, pad);
        if let Some(p) = positions.iter().copied().max().filter(|&p| p >= max_pos) {
            return Err(TransformerError::Input(format!(
                "sequence length {} needs position id {p}, beyond max_position_embeddings = \
                 {max_pos} (at most {} tokens)",
                batch.seq,
                family.max_sequence(max_pos, pad)
            )));
        }
        let ids: Vec<usize> = batch.input_ids.iter().map(|&i| i as usize).collect();
        if let Some(bad) = ids.iter().find(|&&i| i >= vocab) {
            return Err(TransformerError::Input(format!(
                "token id {bad} out of range (vocab_size = {vocab})"
            )));
        }
        let type_ids: Vec<usize> = batch.token_type_ids.iter().map(|&i| i as usize).collect();
        // A model without token types (an empty table) ignores them.
        if let Some(bad) = type_ids.iter().find(|&&i| types > 0 && i >= types) {
            return Err(TransformerError::Input(format!(
                "token type id {bad} out of range (type_vocab_size = {types})"
            )));
        }
        let mask = Tensor::new(
            [batch.batch, batch.seq],
            batch
                .attention_mask
                .iter()
                .map(|&m| if m == 1 { 0.0 } else { MASK_VALUE })
                .collect(),
        )?;
        let attn_mask = b.upload(&mask)?;
        let head_masks = match &self.head_mask {
            None => vec![None; self.params.layers.len()],
            Some(hm) => hm
                .iter()
                .map(|row| {
                    let expanded: Vec<f32> =
                        (0..batch.batch).flat_map(|_| row.iter().copied()).collect();
                    let t = Tensor::new([expanded.len()], expanded)?;
                    Ok(Some(b.upload(&t)?))
                })
                .collect::<Result<_>>()?,
        };
        let c = self.config.hidden();
        if let Some(m) = self.hidden_mask.as_ref().filter(|m| m.len() != c) {
            return Err(TransformerError::Input(format!(
                "hidden mask has {} entries, the model's hidden width is {c}",
                m.len()
            )));
        }
        let hidden_keep = (self.hidden_mask.as_ref())
            .map(|m| b.upload(&Tensor::new([c], m.clone())?))
            .transpose()?;
        let projection_keep = (self.hidden_mask.as_ref())
            .filter(|_| self.params.embeddings_project.is_some())
            .map(|m| {
                let rows = m.repeat(batch.tokens());
                b.upload(&Tensor::new([batch.tokens(), c], rows)?)
            })
            .transpose()?;
        Ok(Prepared {
            ids,
            type_ids,
            positions,
            attn_mask,
            head_masks,
            hidden_keep,
            projection_keep,
        })
    }
}
