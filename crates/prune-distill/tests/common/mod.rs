//! Tiny models, batches, toy data and a loss recorder shared by the integration tests.
#![allow(dead_code)]

use prune_data::{BatchLabels, Encoded, LabelledBatch};
use prune_tensor::{Backend, CpuBackend, Element};
use prune_train::{Callback, Optimizer, StepInfo, TrainConfig};
use prune_transformer::{Batch, BertConfig, BertForSequenceClassification, BertModel};
use serde_json::json;
use std::cell::RefCell;
use std::rc::Rc;

/// A tiny BERT config: `layers` layers, hidden 16 (of which `kept_hidden` remain), 2 heads
/// of 8, FFN 32, vocabulary 30.
pub fn config(layers: usize, kept_hidden: usize, labels: usize, dropout: f64) -> BertConfig {
    let mut c = BertConfig::from_json(&json!({
        "vocab_size": 30, "hidden_size": 16, "num_hidden_layers": layers,
        "num_attention_heads": 2, "intermediate_size": 32, "hidden_act": "gelu",
        "layer_norm_eps": 1e-12, "max_position_embeddings": 16, "type_vocab_size": 2,
        "hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout,
        "num_labels": labels
    }))
    .unwrap();
    c.kept_hidden_size = kept_hidden;
    c.validate().unwrap();
    c
}

/// A random model with pooler and classifier.
pub fn model<E: Element>(
    config: BertConfig,
    seed: u64,
) -> BertForSequenceClassification<CpuBackend<E>> {
    BertForSequenceClassification::new(
        BertModel::random(CpuBackend::<E>::new(), config, true, true, seed).unwrap(),
    )
    .unwrap()
}

/// Two sequences of 6 tokens, the second padded after 4.
pub fn batch(labels: BatchLabels) -> LabelledBatch {
    let ids = vec![1, 5, 9, 12, 7, 2, 1, 14, 3, 2, 0, 0];
    let types = vec![0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 0, 0];
    let mask = vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0];
    LabelledBatch {
        inputs: Batch::new(2, 6, ids, types, mask).unwrap(),
        labels,
    }
}

/// `n` examples of the synthetic marker task (token 7 present or not).
pub fn toy_data(n: usize, seed: u64) -> Vec<Encoded> {
    prune_data::synthetic::marker_task(n, 30, 7, seed)
}

/// A quiet training config of `steps` steps, batches of 8.
pub fn train_config(steps: u64) -> TrainConfig {
    TrainConfig {
        max_steps: Some(steps),
        batch_size: 8,
        lr: 2e-3,
        progress_bar: false,
        log_every: 1,
        seed: 5,
        ..TrainConfig::default()
    }
}

/// Records the loss of every step.
#[derive(Clone, Default)]
pub struct Recorder(pub Rc<RefCell<Vec<f64>>>);

impl Recorder {
    /// The losses so far.
    pub fn losses(&self) -> Vec<f64> {
        self.0.borrow().clone()
    }
}

impl<B: Backend> Callback<B> for Recorder {
    fn after_step(
        &mut self,
        info: &StepInfo,
        _model: &mut BertForSequenceClassification<B>,
        _optimizer: &mut Optimizer<B::Tensor>,
    ) -> prune_train::Result<()> {
        self.0.borrow_mut().push(info.loss);
        Ok(())
    }
}

/// Mean of a slice.
pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}
