//! Shared helpers of the pruner tests: tiny BERTs (2 layers, hidden 32, 4 heads of 8), a
//! toy classification set, trainer settings and mask inspection.
#![allow(dead_code)]

use prune_data::Encoded;
use prune_tensor::{Backend, CpuBackend, Element};
use prune_train::{Callback, Optimizer, StepInfo, TrainConfig};
use prune_transformer::{BertConfig, BertForSequenceClassification, BertModel};
use serde_json::json;

/// Hidden width of the tiny model.
pub const C: usize = 32;
/// Heads per layer.
pub const H: usize = 4;
/// Head dim.
pub const D: usize = 8;
/// FFN width.
pub const F: usize = 64;

/// The tiny configuration (dropout off unless asked).
pub fn tiny_config(dropout: f64) -> BertConfig {
    BertConfig::from_json(&json!({
        "vocab_size": 20, "hidden_size": C, "num_hidden_layers": 2, "num_attention_heads": H,
        "intermediate_size": F, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
        "max_position_embeddings": 16, "type_vocab_size": 2, "hidden_dropout_prob": dropout,
        "attention_probs_dropout_prob": dropout, "num_labels": 2
    }))
    .unwrap()
}

/// A random tiny classifier on backend `E`.
pub fn tiny_on<E: Element>(seed: u64) -> BertForSequenceClassification<CpuBackend<E>> {
    let bert =
        BertModel::random(CpuBackend::<E>::new(), tiny_config(0.0), true, true, seed).unwrap();
    BertForSequenceClassification::new(bert).unwrap()
}

/// A random tiny classifier in f32.
pub fn tiny(seed: u64) -> BertForSequenceClassification<CpuBackend> {
    tiny_on::<f32>(seed)
}

/// `n` examples of the synthetic marker task (token 7 present or not).
pub fn toy_data(n: usize, seed: u64) -> Vec<Encoded> {
    prune_data::synthetic::marker_task(n, 20, 7, seed)
}

/// Quiet trainer settings for `steps` steps of 8 examples, no clipping.
pub fn train_config(steps: u64) -> TrainConfig {
    TrainConfig {
        max_steps: Some(steps),
        batch_size: 8,
        lr: 3e-3,
        clip_norm: None,
        progress_bar: false,
        log_every: 1000,
        ..TrainConfig::default()
    }
}

/// The host copy of the model's per-element mask of `name`, if it has one.
pub fn model_mask<B: Backend>(model: &BertModel<B>, name: &str) -> Option<Vec<f32>> {
    let m = model.masks()?.get(name)?.as_ref()?;
    Some(model.backend().download(m).unwrap().into_data())
}

/// The host copy of parameter `name`.
pub fn param<B: Backend>(model: &BertModel<B>, name: &str) -> Vec<f32> {
    let t = model.params.get(name).unwrap();
    model.backend().download(t).unwrap().into_data()
}

/// Overwrites parameter `name` element by element with `f(index, old)`.
pub fn edit_param<B: Backend>(model: &mut BertModel<B>, name: &str, f: impl Fn(usize, f32) -> f32) {
    let b = model.backend().clone();
    let t = model.params.get_mut(name).unwrap();
    let host = b.download(t).unwrap();
    let shape = host.shape().clone();
    let data: Vec<f32> = host
        .data()
        .iter()
        .enumerate()
        .map(|(i, &x)| f(i, x))
        .collect();
    *t = b
        .upload(&prune_tensor::Tensor::new(shape, data).unwrap())
        .unwrap();
}

/// Records, after every step, how many elements of one weight the model's mask prunes
/// (`None`: no mask on it).
pub struct Recorder {
    /// The weight watched.
    pub name: String,
    /// Pruned element count after each step.
    pub zeros: Vec<Option<usize>>,
}

impl Recorder {
    /// A recorder of weight `name`.
    pub fn new(name: &str) -> Self {
        Recorder {
            name: name.to_string(),
            zeros: Vec::new(),
        }
    }
}

impl<B: Backend> Callback<B> for Recorder {
    fn after_step(
        &mut self,
        _: &StepInfo,
        model: &mut BertForSequenceClassification<B>,
        _: &mut Optimizer<B::Tensor>,
    ) -> prune_train::Result<()> {
        let zeros =
            model_mask(&model.bert, &self.name).map(|m| m.iter().filter(|&&x| x == 0.0).count());
        self.zeros.push(zeros);
        Ok(())
    }
}
