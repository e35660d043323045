//! `BertModel::forward_t`: the training forward pass, dropout on, with the cache its
//! backward reads.

use super::{BertCache, BertModel, BertOutput, ForwardOptions, TrainForward};
use crate::batch::Batch;
use crate::error::Result;
use crate::layers::classifier::{classifier_forward_t, pooler_forward_t};
use crate::layers::embeddings::EmbeddingInput;
use crate::layers::projection::projection_forward_t;
use crate::layers::site_seed;
use prune_tensor::Backend;

impl<B: Backend> BertModel<B> {
    /// Training forward: dropout as configured (seeded by `opts.seed`) and a cache for
    /// [`BertModel::backward`].
    pub fn forward_t(
        &self,
        batch: &Batch,
        opts: &ForwardOptions,
    ) -> Result<TrainForward<B::Tensor>> {
        self.forward_t_reading(batch, opts, false)
    }

    /// [`BertModel::forward_t`]; with `first_tokens`, for a caller that reads nothing of
    /// the last layer but each sequence's first token (the pooler's input): the last layer
    /// computes only those rows after its self-attention
    /// ([`crate::params::Layer::forward_t_rows`]), and `last_hidden_state` is `[B, 1, C]`.
    /// Hidden states cannot be asked for then.
    pub fn forward_t_reading(
        &self,
        batch: &Batch,
        opts: &ForwardOptions,
        first_tokens: bool,
    ) -> Result<TrainForward<B::Tensor>> {
        let out_seq = self.rows_read(first_tokens, opts, batch.seq)?;
        let b = &self.backend;
        let cfg = &self.config;
        let prep = self.prepare(batch)?;
        let masks = self.masks.as_ref();
        let input = EmbeddingInput {
            ids: &prep.ids,
            type_ids: &prep.type_ids,
            positions: &prep.positions,
        };
        let (x, emb_cache) = self.params.embeddings.forward_t(
            b,
            &input,
            self.embeddings_norm(prep.hidden_keep.as_ref()),
            cfg.hidden_dropout_prob,
            site_seed(opts.seed, 0, 0),
            masks.map(|m| &m.embeddings),
        )?;
        let (mut x, projection_cache) = match &self.params.embeddings_project {
            Some(p) => {
                let (y, c) = projection_forward_t(
                    b,
                    p,
                    x,
                    prep.projection_keep.as_ref(),
                    masks.and_then(|m| m.embeddings_project.as_ref()),
                )?;
                (y, Some(c))
            }
            None => (x, None),
        };
        let mut states = Vec::new();
        let mut layer_caches = Vec::with_capacity(self.params.layers.len());
        for (l, layer) in self.params.layers.iter().enumerate() {
            let (ctx, rows) = self.layer_pass(l, batch, &prep, opts.seed, out_seq);
            if opts.output_hidden_states {
                states.push(self.unflatten(x.clone(), batch.batch, batch.seq)?);
            }
            let (y, cache) = layer.forward_t_rows(b, x, &ctx, rows.as_deref())?;
            layer_caches.push(cache);
            x = y;
        }
        let (pooled, pooler_cache) = match &self.params.pooler {
            Some(p) => {
                let first_dropout = match cfg.family.dropout_before_dense() {
                    true => cfg.classifier_dropout_prob(),
                    false => 0.0,
                };
                let (y, c) = pooler_forward_t(
                    b,
                    p,
                    cfg.family.head_activation(),
                    &x,
                    batch.batch,
                    out_seq,
                    first_dropout,
                    site_seed(opts.seed, self.params.layers.len() as u64 + 1, 1),
                    masks.and_then(|m| m.pooler.as_ref()),
                )?;
                (Some(y), Some(c))
            }
            None => (None, None),
        };
        let (logits, classifier_cache) = match (&self.params.classifier, &pooled) {
            (Some(c), Some(p)) => {
                let seed = site_seed(opts.seed, self.params.layers.len() as u64 + 1, 0);
                let (y, cache) = classifier_forward_t(
                    b,
                    c,
                    p.clone(),
                    cfg.classifier_dropout_prob(),
                    seed,
                    masks.and_then(|m| m.classifier.as_ref()),
                )?;
                (Some(y), Some(cache))
            }
            _ => (None, None),
        };
        let last = self.unflatten(x, batch.batch, out_seq)?;
        if opts.output_hidden_states {
            states.push(last.clone());
        }
        let cache = BertCache {
            batch: batch.batch,
            seq: batch.seq,
            out_seq,
            seed: opts.seed,
            attn_mask: prep.attn_mask,
            head_masks: prep.head_masks,
            hidden_keep: prep.hidden_keep,
            projection_keep: prep.projection_keep,
            embeddings: emb_cache,
            projection: projection_cache,
            layers: layer_caches,
            pooler: pooler_cache,
            classifier: classifier_cache,
        };
        Ok((
            BertOutput {
                last_hidden_state: last,
                hidden_states: states,
                pooled,
                logits,
            },
            cache,
        ))
    }
}
