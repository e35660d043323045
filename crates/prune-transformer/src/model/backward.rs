//! `BertModel::backward`: the training forward pass in reverse.

use super::{BertCache, BertModel, OutputGrads};
use crate::error::{Result, TransformerError};
use crate::layers::accumulate;
use crate::layers::classifier::{classifier_backward, pooler_backward};
use crate::layers::projection::projection_backward;
use crate::params::BertParams;
use prune_tensor::{Backend, Shape};

impl<B: Backend> BertModel<B> {
    /// Backward of [`BertModel::forward_t`]: accumulates (`+=`) every parameter gradient
    /// into `grads` (gradients with respect to the effective, masked parameters) and
    /// returns the gradient of the summed input embeddings (word + position + type, before
    /// the embedding LayerNorm), `[B, T, E]` (E = C unless the embeddings are projected).
    /// Derivation: `docs/bert-backward.md`.
    pub fn backward(
        &self,
        cache: BertCache<B::Tensor>,
        d: OutputGrads<B::Tensor>,
        grads: &mut BertParams<B::Tensor>,
    ) -> Result<B::Tensor> {
        let b = &self.backend;
        let masks = self.masks.as_ref();
        let (batch, seq) = (cache.batch, cache.seq);
        let n = batch * seq;
        let c = self.config.hidden();
        let n_layers = self.params.layers.len();
        if cache.layers.len() != n_layers
            || cache.head_masks.len() != n_layers
            || grads.layers.len() != n_layers
        {
            return Err(TransformerError::Input(format!(
                "backward of a {n_layers}-layer model got a cache of {} layers and gradients of {}",
                cache.layers.len(),
                grads.layers.len()
            )));
        }
        self.check_layer_counts()?;
        let mut d_hidden = d.hidden_states;
        d_hidden.resize_with(self.params.layers.len() + 1, || None);
        let mut d_hidden: Vec<Option<B::Tensor>> = d_hidden
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                t.map(|t| self.flatten(t, n, &format!("hidden state gradient {i}")))
                    .transpose()
            })
            .collect::<Result<_>>()?;
        // logits = classifier(dropout(pooled))
        let mut d_pooled = d.pooled;
        if let Some(dl) = d.logits {
            let (head, cc) = match (&self.params.classifier, cache.classifier) {
                (Some(h), Some(cc)) => (h, cc),
                _ => {
                    return Err(TransformerError::Input(
                        "logits gradient given but the model has no classifier".into(),
                    ));
                }
            };
            let grad = grads
                .classifier
                .as_mut()
                .ok_or_else(|| TransformerError::Input("gradient tree has no classifier".into()))?;
            let dp = classifier_backward(
                b,
                head,
                cc,
                &dl,
                masks.and_then(|m| m.classifier.as_ref()),
                grad,
            )?;
            d_pooled = Some(match d_pooled {
                Some(mut p) => {
                    accumulate(b, &mut p, &dp)?;
                    p
                }
                None => dp,
            });
        }
        // pooled = tanh(pooler(last[:, 0]))
        let n_out = batch * cache.out_seq;
        let mut dy = match d.last_hidden_state {
            Some(t) => self.flatten(t, n_out, "last hidden state gradient")?,
            None => b.zeros(&Shape::from([n_out, c]))?,
        };
        if let Some(t) = d_hidden.pop().flatten() {
            accumulate(b, &mut dy, &t)?;
        }
        if let Some(dp) = d_pooled {
            let (dense, pc) = match (&self.params.pooler, &cache.pooler) {
                (Some(p), Some(pc)) => (p, pc),
                _ => {
                    return Err(TransformerError::Input(
                        "pooled gradient given but the model has no pooler".into(),
                    ));
                }
            };
            let grad = grads
                .pooler
                .as_mut()
                .ok_or_else(|| TransformerError::Input("gradient tree has no pooler".into()))?;
            let dlast = pooler_backward(
                b,
                dense,
                pc,
                &dp,
                masks.and_then(|m| m.pooler.as_ref()),
                grad,
            )?;
            accumulate(b, &mut dy, &dlast)?;
        }
        // hidden[l + 1] = layer_l(hidden[l]), in reverse
        let mut layer_caches = cache.layers;
        for l in (0..self.params.layers.len()).rev() {
            let lc = layer_caches.pop().ok_or_else(|| {
                TransformerError::Input("cache has fewer layers than the model".into())
            })?;
            let ctx = self.layer_ctx(
                l,
                batch,
                seq,
                &cache.attn_mask,
                cache.head_masks[l].as_ref(),
                cache.hidden_keep.as_ref(),
                cache.seed,
            );
            let mut dx = self.params.layers[l].backward(b, lc, &dy, &ctx, &mut grads.layers[l])?;
            if let Some(t) = d_hidden.pop().flatten() {
                accumulate(b, &mut dx, &t)?; // hidden[l] is also an output
            }
            dy = dx;
        }
        // hidden[0] = embeddings_project(embeddings(ids)), or embeddings(ids)
        if let Some(dense) = &self.params.embeddings_project {
            let (pc, grad) = match (&cache.projection, grads.embeddings_project.as_mut()) {
                (Some(pc), Some(g)) => (pc, g),
                _ => {
                    return Err(TransformerError::Input(
                        "the cache or the gradient tree has no embeddings projection".into(),
                    ));
                }
            };
            dy = projection_backward(
                b,
                dense,
                pc,
                &dy,
                cache.projection_keep.as_ref(),
                masks.and_then(|m| m.embeddings_project.as_ref()),
                grad,
            )?;
        }
        let de = self.params.embeddings.backward(
            b,
            cache.embeddings,
            dy,
            masks.map(|m| &m.embeddings),
            &mut grads.embeddings,
        )?;
        self.unflatten(de, batch, seq)
    }
}
