//! Checks of a [`BertConfig`]: every size positive and below a sane limit, the parameter
//! count (in checked arithmetic) below a limit too, and the surgery fields consistent with
//! each other. Nothing sized by a configuration is allocated before these checks pass.

use super::BertConfig;
use crate::error::{Result, TransformerError};
use crate::family::TOKEN_TYPES;
use crate::params::BertParams;
use std::collections::BTreeSet;

/// Most encoder layers a configuration may have (real BERTs have 2 to 48).
pub const MAX_LAYERS: usize = 1 << 10;

/// Largest width a configuration may give (hidden and FFN widths, heads, head dim,
/// vocabulary, positions, token types, labels).
pub const MAX_WIDTH: usize = 1 << 24;

/// Most parameters a configuration may describe, pooler and classifier included (about 17
/// billion: far above any BERT, far below what would overflow an allocation size).
pub const MAX_PARAMETERS: u64 = 1 << 34;

/// Fails unless `value` is at most `max`.
pub(crate) fn check_limit(key: &str, value: usize, max: usize) -> Result<()> {
    if value > max {
        return Err(TransformerError::config(
            key,
            format!("{value} is above the limit of {max}"),
        ));
    }
    Ok(())
}

/// The configuration key that sizes the rows of the parameter `name` (for messages).
fn key_of(name: &str) -> &'static str {
    let keys = [
        ("word_embeddings", "vocab_size"),
        ("position_embeddings", "max_position_embeddings"),
        ("token_type_embeddings", "type_vocab_size"),
        ("LayerNorm", "hidden_size"),
        ("attention.", "num_attention_heads"),
        ("intermediate.", "intermediate_size"),
        ("output.dense", "intermediate_size"),
        ("classifier.", "num_labels"),
    ];
    keys.iter()
        .find(|(part, _)| name.contains(part))
        .map_or("hidden_size", |&(_, key)| key)
}

impl BertConfig {
    /// Checks that every size is usable and that the surgery fields agree with each other.
    pub fn validate(&self) -> Result<()> {
        let l = self.num_hidden_layers;
        let positive = [
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", l),
            ("num_attention_heads", self.num_attention_heads),
            ("vocab_size", self.vocab_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("attention_head_size", self.attention_head_size),
            ("prune_hidden_size", self.kept_hidden_size),
            ("embedding_size", self.embedding_size),
            ("prune_embedding_size", self.kept_embedding_size),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(TransformerError::config(key, "must be at least 1"));
            }
            let max = if key == "num_hidden_layers" {
                MAX_LAYERS
            } else {
                MAX_WIDTH
            };
            check_limit(key, v, max)?;
        }
        check_limit("intermediate_size", self.intermediate_size, MAX_WIDTH)?;
        check_limit("type_vocab_size", self.type_vocab_size, MAX_WIDTH)?;
        // A family without token types (DistilBERT) has an empty table, every other at
        // least one row.
        let with_types = self.family.stores(TOKEN_TYPES);
        if with_types == (self.type_vocab_size == 0) {
            return Err(TransformerError::config(
                "type_vocab_size",
                format!(
                    "{} for a {} model, which has {} token types",
                    self.type_vocab_size,
                    self.family.model_type(),
                    if with_types { "at least one" } else { "no" }
                ),
            ));
        }
        for &f in &self.layer_intermediate {
            check_limit("prune_layer_intermediate", f, MAX_WIDTH)?;
        }
        check_limit("num_labels", self.labels(), MAX_WIDTH)?;
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps < 0.0 {
            return Err(TransformerError::config("layer_norm_eps", "must be >= 0"));
        }
        if self.kept_hidden_size > self.hidden_size {
            return Err(TransformerError::config(
                "prune_hidden_size",
                format!(
                    "{} exceeds hidden_size = {}",
                    self.kept_hidden_size, self.hidden_size
                ),
            ));
        }
        if self.kept_embedding_size > self.embedding_size {
            return Err(TransformerError::config(
                "prune_embedding_size",
                format!(
                    "{} exceeds embedding_size = {}",
                    self.kept_embedding_size, self.embedding_size
                ),
            ));
        }
        if !self.projects_embeddings() && self.kept_embedding_size != self.embedding_size {
            return Err(TransformerError::config(
                "prune_embedding_size",
                "only a model whose embeddings are projected to the hidden width \
                 (embedding_size ≠ hidden_size) has a width of its own to prune",
            ));
        }
        if self.layer_heads.len() != l {
            return Err(TransformerError::config(
                "prune_layer_heads",
                format!("has {} entries for {l} layers", self.layer_heads.len()),
            ));
        }
        if self.layer_intermediate.len() != l {
            return Err(TransformerError::config(
                "prune_layer_intermediate",
                format!(
                    "has {} entries for {l} layers",
                    self.layer_intermediate.len()
                ),
            ));
        }
        self.check_heads()?;
        if let (Some(n), Some(names)) = (self.num_labels, &self.id2label)
            && names.len() != n
        {
            return Err(TransformerError::config(
                "num_labels",
                format!("{n} but id2label names {} labels", names.len()),
            ));
        }
        if self.labels() == 0 {
            return Err(TransformerError::config("num_labels", "must be at least 1"));
        }
        self.parameter_count(true, true).map(|_| ())
    }

    /// Checks `pruned_heads` and `prune_layer_heads` against the layer and head counts.
    fn check_heads(&self) -> Result<()> {
        let (l, heads) = (self.num_hidden_layers, self.num_attention_heads);
        for (layer, pruned) in &self.pruned_heads {
            if *layer >= l {
                return Err(TransformerError::config(
                    "pruned_heads",
                    format!("layer {layer} does not exist ({l} layers)"),
                ));
            }
            if let Some(h) = pruned.iter().find(|&&h| h >= heads) {
                return Err(TransformerError::config(
                    "pruned_heads",
                    format!("layer {layer}: head {h} out of range (num_attention_heads = {heads})"),
                ));
            }
        }
        for (layer, &h) in self.layer_heads.iter().enumerate() {
            let removed = self.pruned_heads.get(&layer).map_or(0, BTreeSet::len);
            if h.checked_add(removed).is_none_or(|total| total > heads) {
                return Err(TransformerError::config(
                    "prune_layer_heads",
                    format!(
                        "layer {layer} keeps {h} heads but {removed} of num_attention_heads = {heads} are pruned"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Number of parameter values of a model with this configuration (with a pooler and a
    /// classifier when asked), counted in checked arithmetic; an error names the key behind
    /// the tensor that takes the count over [`MAX_PARAMETERS`]. Every width must already be
    /// within [`MAX_WIDTH`] (as [`BertConfig::validate`] checks first).
    pub fn parameter_count(&self, pooler: bool, classifier: bool) -> Result<u64> {
        let mut total: u64 = 0;
        for (name, shape) in BertParams::expected(self, pooler, classifier).named() {
            let sum = shape
                .dims()
                .iter()
                .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
                .and_then(|n| total.checked_add(n))
                .filter(|&t| t <= MAX_PARAMETERS);
            total = sum.ok_or_else(|| {
                TransformerError::config(
                    key_of(&name),
                    format!(
                        "`{name}` of shape {shape} takes the model above {MAX_PARAMETERS} parameters"
                    ),
                )
            })?;
        }
        Ok(total)
    }
}
