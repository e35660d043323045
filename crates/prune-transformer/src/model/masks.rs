//! The masks a `BertModel` carries: per-element weight masks, the head mask and the
//! hidden-width mask, each checked against the model when set.

use super::{BertModel, dims_of};
use crate::error::{Result, TransformerError};
use crate::params::BertParams;
use prune_tensor::Backend;

impl<B: Backend> BertModel<B> {
    /// The weight masks, if any.
    pub fn masks(&self) -> Option<&BertParams<Option<B::Tensor>>> {
        self.masks.as_ref()
    }

    /// Sets (or clears) the weight masks; each given mask must have its parameter's shape.
    pub fn set_masks(&mut self, masks: Option<BertParams<Option<B::Tensor>>>) -> Result<()> {
        if let Some(m) = &masks {
            let params = self.params.named();
            let named = m.named();
            if params.len() != named.len() {
                return Err(TransformerError::Input(format!(
                    "mask tree has {} entries, the model {} parameters",
                    named.len(),
                    params.len()
                )));
            }
            for ((name, p), (_, mask)) in params.into_iter().zip(named) {
                if let Some(mask) = mask
                    && self.backend.shape(mask) != self.backend.shape(p)
                {
                    return Err(TransformerError::TensorShape {
                        name: format!("mask of {name}"),
                        expected: dims_of(&self.backend, p),
                        found: dims_of(&self.backend, mask),
                    });
                }
            }
        }
        self.masks = masks;
        Ok(())
    }

    /// An empty mask tree (every entry `None`) to fill in by name.
    pub fn empty_masks(&self) -> BertParams<Option<B::Tensor>> {
        self.params.map(|_, _| None)
    }

    /// The head mask, if any.
    pub fn head_mask(&self) -> Option<&Vec<Vec<f32>>> {
        self.head_mask.as_ref()
    }

    /// Sets (or clears) the head mask: one factor per head of every layer, applied to that
    /// head's attention probabilities.
    pub fn set_head_mask(&mut self, mask: Option<Vec<Vec<f32>>>) -> Result<()> {
        if let Some(m) = &mask {
            if m.len() != self.params.layers.len() {
                return Err(TransformerError::Input(format!(
                    "head mask has {} layers, the model {}",
                    m.len(),
                    self.params.layers.len()
                )));
            }
            for (l, (row, layer)) in m.iter().zip(&self.params.layers).enumerate() {
                let h = layer.heads(&self.backend, self.config.head_dim());
                if row.len() != h {
                    return Err(TransformerError::Input(format!(
                        "head mask of layer {l} has {} entries, the layer {h} heads",
                        row.len()
                    )));
                }
            }
        }
        self.head_mask = mask;
        Ok(())
    }

    /// The hidden-channel mask, if any.
    pub fn hidden_mask(&self) -> Option<&Vec<f32>> {
        self.hidden_mask.as_ref()
    }

    /// Sets (or clears) the hidden-channel mask: `[C]` of 1 (keep) and 0 (drop). Under it
    /// every LayerNorm (embeddings, attention output, FFN output) computes its mean and
    /// variance over the kept channels only and outputs 0 at the dropped ones, in forward
    /// and backward. Together with weight masks that zero the dropped channels of the
    /// embeddings, this model then computes exactly the function of the model whose hidden
    /// width is cut down to the kept channels. (NNI's masked model normalises over every
    /// channel, so its speedup changes the function.)
    pub fn set_hidden_mask(&mut self, mask: Option<Vec<f32>>) -> Result<()> {
        if let Some(m) = &mask {
            let c = self.config.hidden();
            if m.len() != c {
                return Err(TransformerError::Input(format!(
                    "hidden mask has {} entries, the model's hidden width is {c}",
                    m.len()
                )));
            }
            if let Some(v) = m.iter().find(|&&v| v != 0.0 && v != 1.0) {
                return Err(TransformerError::Input(format!(
                    "hidden mask holds {v}; only 0 (drop) and 1 (keep) are allowed"
                )));
            }
            if !m.contains(&1.0) {
                return Err(TransformerError::Input(
                    "hidden mask drops every channel".into(),
                ));
            }
        }
        self.hidden_mask = mask;
        Ok(())
    }

    /// Checks that masks and head mask cover exactly the model's layers (the parameters are
    /// public and may have been edited since the masks were set).
    pub(super) fn check_layer_counts(&self) -> Result<()> {
        let l = self.params.layers.len();
        if let Some(m) = &self.masks
            && m.layers.len() != l
        {
            return Err(TransformerError::Input(format!(
                "masks cover {} layers, the model has {l}",
                m.layers.len()
            )));
        }
        if let Some(h) = &self.head_mask
            && h.len() != l
        {
            return Err(TransformerError::Input(format!(
                "head mask covers {} layers, the model has {l}",
                h.len()
            )));
        }
        Ok(())
    }
}
