//! A model run one encoder layer at a time, in inference mode (no dropout), keeping what
//! each layer computed inside ([`LayerCache`]: the attention context, the FFN input and its
//! GELU output), so that mask tuning can fit a layer and rerun it with its new weights.

use crate::error::{PostTrainError, Result};
use prune_tensor::{Backend, Tensor};
use prune_transformer::layers::embeddings::EmbeddingInput;
use prune_transformer::layers::encoder::{LayerCache, LayerCtx};
use prune_transformer::layers::norm::NormSpec;
use prune_transformer::{Batch, BertModel, MASK_VALUE};

/// One batch's inputs, checked against the model and ready for its layers.
pub struct LayerInputs<T> {
    /// Batch size B.
    pub batch: usize,
    /// Sequence length T.
    pub seq: usize,
    ids: Vec<usize>,
    type_ids: Vec<usize>,
    positions: Vec<usize>,
    /// Additive attention mask `[B, T]`.
    attn_mask: T,
    /// Rows of `[B·T, C]` that hold real tokens.
    tokens: Vec<usize>,
    /// Rows of `[B·T, C]` that hold each sequence's first token (what the pooler reads).
    first_tokens: Vec<usize>,
}

impl<T> LayerInputs<T> {
    /// `batch` for `model` (see [`LayerInputs::check`]); the inputs also serve any model
    /// on the same backend that passes the check.
    pub fn new<B: Backend<Tensor = T>>(model: &BertModel<B>, batch: &Batch) -> Result<Self> {
        Self::check(model, batch)?;
        let mask: Vec<f32> = batch
            .attention_mask
            .iter()
            .map(|&m| if m == 1 { 0.0 } else { MASK_VALUE })
            .collect();
        Ok(LayerInputs {
            batch: batch.batch,
            seq: batch.seq,
            ids: batch.input_ids.iter().map(|&i| i as usize).collect(),
            type_ids: batch.token_type_ids.iter().map(|&i| i as usize).collect(),
            positions: (model.config.family).positions(batch, model.config.pad_token_id),
            attn_mask: model
                .backend()
                .upload(&Tensor::new([batch.batch, batch.seq], mask)?)?,
            tokens: (0..batch.attention_mask.len())
                .filter(|&r| batch.attention_mask[r] == 1)
                .collect(),
            first_tokens: (0..batch.batch).map(|i| i * batch.seq).collect(),
        })
    }

    /// Checks that `batch`'s ids fit `model`'s embeddings and that the model carries no
    /// masks (they would not be applied layer by layer).
    pub fn check<B: Backend<Tensor = T>>(model: &BertModel<B>, batch: &Batch) -> Result<()> {
        batch.check()?;
        if model.masks().is_some() || model.head_mask().is_some() || model.hidden_mask().is_some() {
            return Err(PostTrainError::Input(
                "the model carries masks: apply them (speedup) before pruning without retraining"
                    .into(),
            ));
        }
        let b = model.backend();
        let rows = |t: &T| b.shape(t).dims().first().copied().unwrap_or(0);
        let e = &model.params.embeddings;
        let positions = (model.config.family).positions(batch, model.config.pad_token_id);
        let fits = positions.iter().all(|&p| p < rows(&e.position))
            && batch
                .input_ids
                .iter()
                .all(|&i| (i as usize) < rows(&e.word))
            && batch
                .token_type_ids
                .iter()
                .all(|&i| rows(&e.token_type) == 0 || (i as usize) < rows(&e.token_type));
        if !fits {
            return Err(PostTrainError::Input(
                "a batch does not fit the model's embeddings (token id, token type or length)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The rows a fit reads: each sequence's first token in the `last` layer (all the
    /// pooler reads), every real token before.
    pub fn rows(&self, last: bool) -> &[usize] {
        if last {
            &self.first_tokens
        } else {
            &self.tokens
        }
    }
}

/// The embedding output `[B·T, C]`.
pub fn embed<B: Backend>(model: &BertModel<B>, inp: &LayerInputs<B::Tensor>) -> Result<B::Tensor> {
    let input = EmbeddingInput {
        ids: &inp.ids,
        type_ids: &inp.type_ids,
        positions: &inp.positions,
    };
    let norm = NormSpec {
        eps: model.config.layer_norm_eps,
        keep: None,
    };
    Ok(model
        .params
        .embeddings
        .forward(model.backend(), &input, norm, None)?)
}

/// Layer `l` on `x` (the hidden state entering it, `[B·T, C]`): its output and what it
/// computed inside.
pub fn layer<B: Backend>(
    model: &BertModel<B>,
    l: usize,
    x: &B::Tensor,
    inp: &LayerInputs<B::Tensor>,
) -> Result<(B::Tensor, LayerCache<B::Tensor>)> {
    let ctx = LayerCtx {
        batch: inp.batch,
        seq: inp.seq,
        head_dim: model.config.head_dim(),
        norm: NormSpec {
            eps: model.config.layer_norm_eps,
            keep: None,
        },
        attn_mask: &inp.attn_mask,
        head_mask: None,
        activation: model.config.activation,
        hidden_dropout: 0.0,
        attention_dropout: 0.0,
        seed: 0,
        masks: None,
    };
    let layer = model
        .params
        .layers
        .get(l)
        .ok_or_else(|| PostTrainError::Input(format!("the model has no layer {l}")))?;
    Ok(layer.forward_t(model.backend(), x.clone(), &ctx)?)
}
