//! Shared helpers of the speedup tests: a tiny random BERT, the MiniLM checkpoint with a
//! seeded head, batches, random plans, and the masked-versus-cut comparison.
#![allow(dead_code)]

use anyhow::Result;
use prune_graph::{GroupKind, PruningPlan};
use prune_speedup::{PruningReport, apply, mask_model};
use prune_tensor::rng::Rng;
use prune_tensor::{CpuBackend, Tensor};
use prune_transformer::paths::require_model_dir;
use prune_transformer::{
    Batch, BertConfig, BertForSequenceClassification, BertModel, ForwardOptions,
};

/// The CPU backend in f32.
pub type Cpu = CpuBackend<f32>;

/// A tiny BERT (2 layers, hidden 32, 4 heads, FFN 64, 3 labels) with random weights whose
/// biases and LayerNorm parameters are not trivial.
pub fn tiny(seed: u64) -> BertModel<Cpu> {
    let mut config = BertConfig::new(50, 32, 2, 4, 64).unwrap();
    config.num_labels = Some(3);
    randomised(config, seed)
}

/// [`tiny`] as an ELECTRA whose embeddings (width 16) are projected to the hidden width.
pub fn tiny_electra(seed: u64) -> BertModel<Cpu> {
    let mut v = BertConfig::new(50, 32, 2, 4, 64).unwrap().to_json();
    v["model_type"] = "electra".into();
    v["embedding_size"] = 16.into();
    v["num_labels"] = 3.into();
    randomised(BertConfig::from_json(&v).unwrap(), seed)
}

/// A random model with `config` whose biases and LayerNorm parameters are not trivial.
fn randomised(config: BertConfig, seed: u64) -> BertModel<Cpu> {
    let mut m = BertModel::random(Cpu::new(), config, true, true, seed).unwrap();
    let mut rng = Rng::new(seed + 1);
    for (name, t) in m.params.named_mut() {
        let spread = if name.contains("LayerNorm") || name.ends_with("bias") {
            0.3
        } else {
            0.1
        };
        for v in t.data_mut() {
            *v += rng.range(-spread, spread) as f32;
        }
    }
    m
}

/// The MiniLM checkpoint with a seeded 2-label head; fails with the fetch hint when the
/// checkpoint is missing.
pub fn minilm() -> Result<BertModel<Cpu>> {
    let dir = require_model_dir()?;
    Ok(BertForSequenceClassification::from_pretrained(Cpu::new(), &dir, 2, 5)?.bert)
}

/// `batch` random sequences of `seq` tokens, the last one padded over its second half.
pub fn batch(config: &BertConfig, batch: usize, seq: usize, seed: u64) -> Batch {
    let mut rng = Rng::new(seed);
    let n = batch * seq;
    let ids = (0..n)
        .map(|_| rng.below(config.vocab_size.min(2000)) as u32)
        .collect();
    let types = (0..n).map(|i| u32::from(i % seq >= seq / 2)).collect();
    let mask = (0..n)
        .map(|i| u32::from(i / seq + 1 < batch || i % seq < seq / 2))
        .collect();
    Batch::new(batch, seq, ids, types, mask).unwrap()
}

/// What a random plan touches.
#[derive(Clone, Copy, Debug, Default)]
pub struct Touch {
    /// Remove random heads in every layer.
    pub heads: bool,
    /// Remove random FFN neurons in every layer.
    pub ffn: bool,
    /// Remove random hidden channels.
    pub hidden: bool,
    /// Remove every head of this layer.
    pub kill_heads_of: Option<usize>,
}

/// A random subset of `0..n`, each kept with probability `p`, never empty unless `n` is 0
/// or `allow_empty`.
fn subset(rng: &mut Rng, n: usize, p: f64, allow_empty: bool) -> Vec<usize> {
    let mut keep: Vec<usize> = (0..n).filter(|_| rng.uniform() < p).collect();
    if keep.is_empty() && !allow_empty && n > 0 {
        keep.push(rng.below(n));
    }
    keep
}

/// A random plan for a model with `config`.
pub fn random_plan(config: &BertConfig, touch: Touch, seed: u64) -> PruningPlan {
    let mut rng = Rng::new(seed);
    let mut plan = PruningPlan::new();
    for layer in 0..config.num_hidden_layers {
        let h = config.heads(layer);
        if touch.kill_heads_of == Some(layer) {
            plan.keep(GroupKind::Heads { layer }, h, &[]).unwrap();
        } else if touch.heads {
            let keep = subset(&mut rng, h, 0.6, true);
            plan.keep(GroupKind::Heads { layer }, h, &keep).unwrap();
        }
        if touch.ffn {
            let f = config.intermediate(layer);
            let keep = subset(&mut rng, f, 0.5, false);
            plan.keep(GroupKind::Ffn { layer }, f, &keep).unwrap();
        }
    }
    if touch.hidden {
        let c = config.hidden();
        let keep = subset(&mut rng, c, 0.7, false);
        plan.keep(GroupKind::Hidden, c, &keep).unwrap();
    }
    plan
}

/// Logits `[B, K]` of `model` on `batch`.
pub fn logits(model: &BertModel<Cpu>, batch: &Batch) -> Tensor<f32> {
    model
        .forward(batch, &ForwardOptions::default())
        .unwrap()
        .logits
        .unwrap()
}

/// The dense model masked by `plan` and the model cut by `plan`: checks that the cut model
/// has the parameter count the report predicts, and returns the max-abs difference of
/// their logits on `batch`.
pub fn masked_vs_cut(dense: &BertModel<Cpu>, plan: &PruningPlan, batch: &Batch) -> Result<f64> {
    let report = PruningReport::new(&dense.config, true, true, plan, batch.seq)?;
    let mut masked = dense.clone();
    mask_model(&mut masked, plan)?;
    let mut cut = dense.clone();
    apply(&mut cut, plan, &mut [])?;
    assert_eq!(cut.num_parameters(), report.after.parameters);
    assert_eq!(dense.num_parameters(), report.before.parameters);
    assert_eq!(cut.config.layer_heads, report.after.heads);
    assert_eq!(cut.config.layer_intermediate, report.after.intermediate);
    let cut_logits = logits(&cut, batch);
    if !plan.is_identity() {
        // The plan changes the function, so the comparison is not vacuous.
        assert!(logits(dense, batch).max_abs_diff(&cut_logits) > 1e-6);
    }
    Ok(logits(&masked, batch).max_abs_diff(&cut_logits))
}
