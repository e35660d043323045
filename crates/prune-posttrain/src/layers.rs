//! A model run one encoder layer at a time, in inference mode (no dropout), keeping what
//! each layer computed inside ([`LayerCache`]: the attention context, the FFN input and its
//! GELU output), so that mask tuning can fit a layer and rerun it with its new weights.

use crate::error::{PostTrainError, Result};
use prune_tensor::{Backend, Tensor};
use prune_transformer::layers::encoder::{LayerCache, LayerCtx};
use prune_transformer::layers::norm::NormSpec;
use prune_transformer::{Batch, BertModel, MASK_VALUE};

/// One batch's inputs, ready for a model's layers.
pub struct LayerInputs<T> {
    /// Batch size B.
    pub batch: usize,
    /// Sequence length T.
    pub seq: usize,
    /// The batch itself (what the embeddings read).
    input: Batch,
    /// Additive attention mask `[B, T]`.
    attn_mask: T,
    /// Rows of `[B·T, C]` that hold real tokens.
    tokens: Vec<usize>,
    /// Rows of `[B·T, C]` that hold each sequence's first token (what the pooler reads).
    first_tokens: Vec<usize>,
}

impl<T> LayerInputs<T> {
    /// `batch` for `model` (see [`LayerInputs::check`]); the inputs also serve any model
    /// on the same backend that passes the check. The embeddings check the ids
    /// ([`embed`]).
    pub fn new<B: Backend<Tensor = T>>(model: &BertModel<B>, batch: &Batch) -> Result<Self> {
        Self::check(model)?;
        batch.check()?;
        let mask: Vec<f32> = batch
            .attention_mask
            .iter()
            .map(|&m| if m == 1 { 0.0 } else { MASK_VALUE })
            .collect();
        Ok(LayerInputs {
            batch: batch.batch,
            seq: batch.seq,
            input: batch.clone(),
            attn_mask: model
                .backend()
                .upload(&Tensor::new([batch.batch, batch.seq], mask)?)?,
            tokens: (0..batch.attention_mask.len())
                .filter(|&r| batch.attention_mask[r] == 1)
                .collect(),
            first_tokens: (0..batch.batch).map(|i| i * batch.seq).collect(),
        })
    }

    /// Checks that `model` carries no masks (they would not be applied layer by layer).
    pub fn check<B: Backend<Tensor = T>>(model: &BertModel<B>) -> Result<()> {
        if model.masks().is_some() || model.head_mask().is_some() || model.hidden_mask().is_some() {
            return Err(PostTrainError::Input(
                "the model carries masks: apply them (speedup) before pruning without retraining"
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

/// The hidden state entering the first layer, `[B·T, C]` ([`BertModel::embed`], which
/// checks the batch against the model's embeddings).
pub fn embed<B: Backend>(model: &BertModel<B>, inp: &LayerInputs<B::Tensor>) -> Result<B::Tensor> {
    Ok(model.embed(&inp.input)?)
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
