//! Size and cost of a model before and after a plan: parameters (total and encoder-only),
//! matmul FLOPs per token at a sequence length, per-layer heads and FFN widths, hidden
//! width. Everything follows from the config, so the report predicts the cut model exactly.

use crate::config::planned_config;
use crate::error::Result;
use prune_graph::PruningPlan;
use prune_tensor::Shape;
use prune_transformer::{BertConfig, BertParams};
use serde::{Deserialize, Serialize};

/// Size and cost of one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelStats {
    /// Every parameter element (embeddings, encoder, pooler, classifier).
    pub parameters: usize,
    /// Parameters of the encoder layers only (`encoder.layer.*`), the figure NNI reports.
    pub encoder_parameters: usize,
    /// Parameters of the embeddings (`embeddings.*`: word, position and token-type tables and
    /// their LayerNorm, sized by the hidden width, or by their own width with a projection
    /// `embeddings_project.*` to the hidden width, counted here too).
    #[serde(default)]
    pub embedding_parameters: usize,
    /// Hidden width C.
    pub hidden: usize,
    /// Heads kept in each layer.
    pub heads: Vec<usize>,
    /// FFN width of each layer.
    pub intermediate: Vec<usize>,
    /// Matmul FLOPs (2·M·N·K) of the encoder for one sequence: Q/K/V, attention scores and
    /// context, attention output, FFN.
    pub encoder_flops_per_sequence: u64,
    /// Matmul FLOPs of one whole sequence: the encoder, the embeddings' projection when
    /// there is one, and the pooler and classifier (which run once per sequence).
    pub flops_per_sequence: u64,
    /// `flops_per_sequence / seq_len`.
    pub flops_per_token: f64,
}

impl ModelStats {
    /// The stats of a model with `config`, with or without pooler and classifier, at
    /// `seq_len` tokens per sequence.
    pub fn of(config: &BertConfig, pooler: bool, classifier: bool, seq_len: usize) -> Self {
        let shapes = BertParams::<Shape>::expected(config, pooler, classifier);
        let named = shapes.named();
        let parameters = named.iter().map(|(_, s)| s.numel()).sum();
        let count = |prefix: &str| {
            named
                .iter()
                .filter(|(n, _)| n.starts_with(prefix))
                .map(|(_, s)| s.numel())
                .sum()
        };
        let (encoder_parameters, embedding_parameters) = (count("encoder."), count("embeddings"));
        let (t, c, d) = (
            seq_len as u64,
            config.hidden() as u64,
            config.head_dim() as u64,
        );
        let layers = config.num_hidden_layers;
        let encoder: u64 = (0..layers)
            .map(|l| {
                let hd = config.heads(l) as u64 * d;
                let f = config.intermediate(l) as u64;
                let per_token = 2 * c * 3 * hd // Q, K, V
                    + 2 * t * hd // scores q·kᵀ
                    + 2 * t * hd // context p·v
                    + 2 * hd * c // attention output
                    + 2 * 2 * c * f; // FFN in and out
                per_token * t
            })
            .sum();
        let c0 = config.hidden_size as u64;
        let heads = if pooler { 2 * c * c0 } else { 0 }
            + if pooler && classifier {
                2 * c0 * config.labels() as u64
            } else {
                0
            };
        let projection = match config.projects_embeddings() {
            true => 2 * config.embedding_width() as u64 * c * t,
            false => 0,
        };
        let flops_per_sequence = encoder + projection + heads;
        ModelStats {
            parameters,
            encoder_parameters,
            embedding_parameters,
            hidden: config.hidden(),
            heads: config.layer_heads.clone(),
            intermediate: config.layer_intermediate.clone(),
            encoder_flops_per_sequence: encoder,
            flops_per_sequence,
            flops_per_token: flops_per_sequence as f64 / seq_len.max(1) as f64,
        }
    }
}

/// The widest hidden width at which a model with `config`'s heads and FFN widths (with or
/// without pooler and classifier) has at most `target` parameters; `None` when even a width
/// of 1 has more. Parameters grow with the width, so the answer is found by bisection.
pub fn widest_hidden_within(
    config: &BertConfig,
    pooler: bool,
    classifier: bool,
    target: usize,
) -> Option<usize> {
    let params = |hidden: usize| {
        let mut c = config.clone();
        c.kept_hidden_size = hidden;
        ModelStats::of(&c, pooler, classifier, 1).parameters
    };
    let (mut lo, mut hi) = (1, config.hidden());
    if params(lo) > target {
        return None;
    }
    // Invariant: params(lo) ≤ target; the answer is in lo..=hi.
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if params(mid) <= target {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo)
}

/// A model before and after a plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PruningReport {
    /// Tokens per sequence the FLOPs are counted at.
    pub seq_len: usize,
    /// The model the plan was made for.
    pub before: ModelStats,
    /// The model the plan leaves.
    pub after: ModelStats,
}

impl PruningReport {
    /// The report of applying `plan` to a model with `config` (with or without pooler and
    /// classifier), FLOPs at `seq_len` tokens.
    pub fn new(
        config: &BertConfig,
        pooler: bool,
        classifier: bool,
        plan: &PruningPlan,
        seq_len: usize,
    ) -> Result<Self> {
        let after = planned_config(config, plan)?;
        Ok(PruningReport {
            seq_len,
            before: ModelStats::of(config, pooler, classifier, seq_len),
            after: ModelStats::of(&after, pooler, classifier, seq_len),
        })
    }

    /// Parameters after / before.
    pub fn parameter_ratio(&self) -> f64 {
        self.after.parameters as f64 / self.before.parameters.max(1) as f64
    }

    /// Encoder parameters after / before.
    pub fn encoder_parameter_ratio(&self) -> f64 {
        self.after.encoder_parameters as f64 / self.before.encoder_parameters.max(1) as f64
    }

    /// FLOPs per sequence after / before.
    pub fn flops_ratio(&self) -> f64 {
        self.after.flops_per_sequence as f64 / self.before.flops_per_sequence.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prune_graph::GroupKind;

    #[test]
    fn counts_bert_base_and_a_plan() {
        let config = BertConfig::new(30522, 768, 12, 12, 3072).unwrap();
        let s = ModelStats::of(&config, true, true, 128);
        assert_eq!(s.encoder_parameters, 85_054_464); // NNI's 85.1M
        assert_eq!(s.parameters, 109_482_240 + 768 * 2 + 2);
        // Per token and layer: 24·C² (Q, K, V, O, FFN at F = 4C) + 4·T·C.
        let per_layer = 24 * 768 * 768 + 4 * 128 * 768;
        assert_eq!(s.encoder_flops_per_sequence, 12 * 128 * per_layer as u64);
        let mut plan = PruningPlan::new();
        plan.keep(GroupKind::Heads { layer: 0 }, 12, &[0, 1, 2])
            .unwrap();
        plan.keep(GroupKind::Ffn { layer: 0 }, 3072, &[0]).unwrap();
        let r = PruningReport::new(&config, true, true, &plan, 128).unwrap();
        assert_eq!(r.after.heads[0], 3);
        assert_eq!(r.after.intermediate[0], 1);
        let removed = 9 * 64 * (3 * 769 + 768) + 3071 * (768 + 1 + 768);
        assert_eq!(r.before.parameters - r.after.parameters, removed);
        assert!(r.flops_ratio() < 1.0 && r.parameter_ratio() < 1.0);
        let json = serde_json::to_string(&r).unwrap();
        let back: PruningReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn the_widest_hidden_width_within_a_size_is_the_last_that_fits() {
        let config = BertConfig::new(30522, 384, 6, 12, 1536).unwrap();
        let s = ModelStats::of(&config, true, true, 1);
        assert_eq!(s.embedding_parameters, (30522 + 512 + 2) * 384 + 2 * 384);
        let at = |h: usize| {
            let mut c = config.clone();
            c.kept_hidden_size = h;
            ModelStats::of(&c, true, true, 1).parameters
        };
        for target in [at(1), at(200) + 5, at(384) - 1, 10_200_000] {
            let h = widest_hidden_within(&config, true, true, target).unwrap();
            assert!(
                at(h) <= target && (h == 384 || at(h + 1) > target),
                "{target}: {h}"
            );
        }
        assert_eq!(
            widest_hidden_within(&config, true, true, at(384)),
            Some(384)
        );
        assert_eq!(widest_hidden_within(&config, true, true, at(1) - 1), None);
    }
}
