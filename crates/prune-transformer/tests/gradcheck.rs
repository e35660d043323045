//! Finite-difference gradient checks of a whole tiny BERT on `CpuBackend<f64>`, for every
//! parameter tensor: plain with cross-entropy, with weight masks and a head mask under a
//! loss touching logits, pooled output and hidden states, with uneven per-layer widths
//! (a 0-head layer, pruned hidden width), under a hidden-channel mask (LayerNorm over the
//! kept channels), as a regression head, and for the other architectures and activations
//! (RoBERTa with dropout, DistilBERT, ELECTRA with its embeddings projection, `gelu_new`,
//! `relu`).

use prune_tensor::gradcheck::{GradCheck, dot, uniform};
use prune_tensor::rng::Rng;
use prune_tensor::{CpuBackend, ElementwiseOps, Tensor};
use prune_transformer::{
    Batch, BertConfig, BertForSequenceClassification, BertModel, BertOutput, BertParams,
    ForwardOptions, OutputGrads, Targets,
};
use serde_json::json;

type B64 = CpuBackend<f64>;
type Model = BertModel<B64>;

fn config(extra: serde_json::Value, labels: usize) -> BertConfig {
    let mut v = json!({
        "vocab_size": 50, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 64, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
        "max_position_embeddings": 16, "type_vocab_size": 2, "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0, "initializer_range": 0.4, "num_labels": labels,
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    BertConfig::from_json(&v).unwrap()
}

fn batch() -> Batch {
    // Two sequences of 5 tokens; the second is a pair padded after 3 tokens.
    Batch::new(
        2,
        5,
        vec![1, 7, 13, 7, 2, 1, 40, 2, 0, 0],
        vec![0, 0, 0, 1, 1, 0, 1, 1, 0, 0],
        vec![1, 1, 1, 1, 1, 1, 1, 1, 0, 0],
    )
    .unwrap()
}

/// Random parameters that are not all tiny, so every gradient is well above rounding.
fn model(cfg: BertConfig, seed: u64) -> Model {
    let mut m = Model::random(B64::new(), cfg, true, true, seed).unwrap();
    let mut rng = Rng::new(seed + 1);
    for (name, t) in m.params.named_mut() {
        if name.contains("LayerNorm") || name.ends_with("bias") {
            for v in t.data_mut() {
                *v += rng.range(-0.3, 0.3);
            }
        }
    }
    m
}

/// Checks `grads` against central differences of `loss` for every parameter; `masks`
/// (if any) turn the stored gradient (w.r.t. the effective parameter) into the gradient
/// w.r.t. the raw one.
fn check_all(
    model: &Model,
    grads: &BertParams<Tensor<f64>>,
    loss: &dyn Fn(&Model) -> f64,
    rng: &mut Rng,
) {
    let check = GradCheck {
        eps: 1e-5,
        samples: 20,
        ..GradCheck::default()
    };
    let b = B64::new();
    let masks = model.masks();
    let mut worst: f64 = 0.0;
    for (name, analytic) in grads.named() {
        let x = model.params.get(&name).unwrap().clone();
        let analytic = match masks.and_then(|m| m.get(&name)).and_then(Option::as_ref) {
            Some(m) => b.mul_fwd(analytic, m).unwrap(),
            None => analytic.clone(),
        };
        let f = |probe: &Tensor<f64>| {
            let mut m2 = model.clone();
            *m2.params.get_mut(&name).unwrap() = probe.clone();
            loss(&m2)
        };
        match check.run(&x, &analytic, f, rng) {
            Ok(e) => worst = worst.max(e),
            Err(m) => panic!("{name}: {m:?}"),
        }
    }
    println!(
        "{} parameter tensors, worst relative error {worst:.2e}",
        grads.len()
    );
    assert_eq!(grads.len(), model.params.len());
}

/// The training forward of `model` on `batch` with `targets` under `opts`: its outputs,
/// every parameter's gradient and the input embeddings' gradient, once the parameter
/// gradients have passed [`check_all`] against central differences of the same loss.
fn checked_loss_gradients(
    model: &BertForSequenceClassification<B64>,
    batch: &Batch,
    targets: Targets<'_>,
    opts: &ForwardOptions,
    rng: &mut Rng,
) -> (
    BertOutput<Tensor<f64>>,
    BertParams<Tensor<f64>>,
    Tensor<f64>,
) {
    let (_, out, cache) = model.forward_t(batch, targets, opts).unwrap();
    let mut grads = model.bert.zero_grads().unwrap();
    let d_embed = model.backward(cache, 1.0, &mut grads).unwrap();
    let loss = |m: &Model| {
        let m = BertForSequenceClassification::new(m.clone()).unwrap();
        m.forward_t(batch, targets, opts).unwrap().0
    };
    check_all(&model.bert, &grads, &loss, rng);
    (out, grads, d_embed)
}

#[test]
fn cross_entropy_gradients_of_every_parameter() {
    let model = BertForSequenceClassification::new(model(config(json!({}), 3), 1)).unwrap();
    let batch = batch();
    let labels = [2i64, 0];
    let targets = Targets::Classes(&labels);
    let opts = ForwardOptions::default();
    let (_, grads, d_embed) =
        checked_loss_gradients(&model, &batch, targets, &opts, &mut Rng::new(3));
    // The position-table gradient is the input-embedding gradient summed over the batch.
    let pos = grads.embeddings.position.data();
    for t in 0..5 {
        for c in 0..32 {
            let s = d_embed.data()[t * 32 + c] + d_embed.data()[(5 + t) * 32 + c];
            assert!((pos[t * 32 + c] - s).abs() < 1e-12);
        }
    }
}

/// A fixed random linear functional of logits, pooled output, last and first hidden states.
struct Functional {
    logits: Tensor<f64>,
    pooled: Tensor<f64>,
    last: Tensor<f64>,
    first: Tensor<f64>,
}

impl Functional {
    /// Weights for hidden width `c`, pooler width `p` (the original hidden size) and `k`
    /// labels.
    fn new(c: usize, p: usize, k: usize, rng: &mut Rng) -> Self {
        Functional {
            logits: uniform([2, k], -1.0, 1.0, rng),
            pooled: uniform([2, p], -1.0, 1.0, rng),
            last: uniform([2, 5, c], -1.0, 1.0, rng),
            first: uniform([2, 5, c], -1.0, 1.0, rng),
        }
    }

    fn value(&self, m: &Model, batch: &Batch) -> f64 {
        let opts = ForwardOptions {
            output_hidden_states: true,
            seed: 0,
        };
        let out = m.forward(batch, &opts).unwrap();
        dot(out.logits.as_ref().unwrap(), &self.logits)
            + dot(out.pooled.as_ref().unwrap(), &self.pooled)
            + dot(&out.last_hidden_state, &self.last)
            + dot(&out.hidden_states[1], &self.first)
    }

    fn grads(&self, m: &Model, batch: &Batch) -> BertParams<Tensor<f64>> {
        let opts = ForwardOptions {
            output_hidden_states: false,
            seed: 0,
        };
        let (_, cache) = m.forward_t(batch, &opts).unwrap();
        let mut grads = m.zero_grads().unwrap();
        let d = OutputGrads {
            logits: Some(self.logits.clone()),
            pooled: Some(self.pooled.clone()),
            last_hidden_state: Some(self.last.clone()),
            hidden_states: vec![None, Some(self.first.clone())],
        };
        m.backward(cache, d, &mut grads).unwrap();
        grads
    }
}

#[test]
fn masked_model_gradients_of_every_parameter() {
    let mut m = model(config(json!({}), 3), 5);
    let mut rng = Rng::new(11);
    let mut masks = m.empty_masks();
    for (name, slot) in masks.named_mut() {
        let p = m.params.get(&name).unwrap();
        *slot = Some(Tensor::from_fn(p.shape().clone(), |_| {
            if rng.uniform() < 0.8 { 1.0 } else { 0.0 }
        }));
    }
    m.set_masks(Some(masks.clone())).unwrap();
    m.set_head_mask(Some(vec![
        vec![1.0, 0.0, 0.5, 1.0],
        vec![0.0, 1.0, 1.0, 0.25],
    ]))
    .unwrap();
    let batch = batch();
    let f = Functional::new(32, 32, 3, &mut rng);
    let grads = f.grads(&m, &batch);
    check_all(&m, &grads, &|m: &Model| f.value(m, &batch), &mut rng);

    // The stored gradients are those of the effective parameters: the same model with
    // p ⊙ m baked in and no weight masks gives identical gradients.
    let b = B64::new();
    let mut baked = m.clone();
    baked.set_masks(None).unwrap();
    for (name, p) in baked.params.named_mut() {
        let mask = masks.get(&name).unwrap().as_ref().unwrap();
        *p = b.mul_fwd(p, mask).unwrap();
    }
    let g2 = f.grads(&baked, &batch);
    for ((name, a), (_, c)) in grads.named().into_iter().zip(g2.named()) {
        assert!(a.max_abs_diff(c) < 1e-12, "{name}");
    }
}

#[test]
fn uneven_layers_gradients_of_every_parameter() {
    let extra = json!({
        "prune_layer_heads": [0, 3],
        "prune_layer_intermediate": [40, 24],
        "prune_hidden_size": 24,
        "attention_head_size": 8,
    });
    let m = model(config(extra, 3), 9);
    assert_eq!(m.params.layers[0].query.weight.dims(), &[0, 24]);
    assert_eq!(m.params.layers[1].attention_output.weight.dims(), &[24, 24]);
    let mut rng = Rng::new(13);
    let batch = batch();
    let f = Functional::new(24, 32, 3, &mut rng);
    let grads = f.grads(&m, &batch);
    check_all(&m, &grads, &|m: &Model| f.value(m, &batch), &mut rng);
}

#[test]
fn hidden_mask_gradients_of_every_parameter() {
    // BERT, and ELECTRA whose projection's output the mask zeroes instead of the
    // embeddings' LayerNorm.
    let electra = json!({ "model_type": "electra", "embedding_size": 16 });
    for (extra, seed) in [(json!({}), 17), (electra, 18)] {
        let mut m = model(config(extra, 3), seed);
        let keep: Vec<f64> = (0..32)
            .map(|i| if i % 3 == 1 { 0.0 } else { 1.0 })
            .collect();
        m.set_hidden_mask(Some(keep.iter().map(|&k| k as f32).collect()))
            .unwrap();
        let mut rng = Rng::new(19);
        let batch = batch();
        let f = Functional::new(32, 32, 3, &mut rng);
        let grads = f.grads(&m, &batch);
        check_all(&m, &grads, &|m: &Model| f.value(m, &batch), &mut rng);
        // The embedding output and every LayerNorm are 0 at the dropped channels.
        let opts = ForwardOptions {
            output_hidden_states: true,
            seed: 0,
        };
        let out = m.forward(&batch, &opts).unwrap();
        for state in [&out.hidden_states[0], &out.last_hidden_state] {
            for (i, v) in state.data().iter().enumerate() {
                if keep[i % 32] == 0.0 {
                    assert_eq!(*v, 0.0);
                }
            }
        }
        let e = m.set_hidden_mask(Some(vec![1.0; 31])).unwrap_err();
        assert!(e.to_string().contains("hidden mask has 31 entries"), "{e}");
        let e = m.set_hidden_mask(Some(vec![0.5; 32])).unwrap_err();
        assert!(e.to_string().contains("only 0 (drop) and 1 (keep)"), "{e}");
    }
}

#[test]
fn regression_gradients_of_every_parameter() {
    let model = BertForSequenceClassification::new(model(config(json!({}), 1), 21)).unwrap();
    let targets = [0.7f32, -1.2];
    let opts = ForwardOptions::default();
    let targets = Targets::Values(&targets);
    let (out, _, _) = checked_loss_gradients(&model, &batch(), targets, &opts, &mut Rng::new(23));
    assert_eq!(out.logits.unwrap().dims(), &[2, 1]);
}

#[test]
fn roberta_gradients_of_every_parameter_with_dropout() {
    // RoBERTa's positions and its head's dropout on the first token, seeded so that the
    // loss is a fixed function of the parameters.
    let extra = json!({
        "model_type": "roberta", "pad_token_id": 0, "type_vocab_size": 1,
        "hidden_dropout_prob": 0.2, "classifier_dropout": 0.3,
    });
    let model = BertForSequenceClassification::new(model(config(extra, 3), 31)).unwrap();
    let batch = Batch {
        token_type_ids: vec![0; 10],
        ..batch()
    };
    let labels = [1i64, 2];
    let opts = ForwardOptions {
        seed: 5,
        ..ForwardOptions::default()
    };
    let targets = Targets::Classes(&labels);
    let (_, grads, _) = checked_loss_gradients(&model, &batch, targets, &opts, &mut Rng::new(37));
    // Positions 1..=5 and 1..=3 are used; the padding row 0 gets nothing.
    let pos = grads.embeddings.position.data();
    assert!(pos[..32].iter().all(|&v| v == 0.0));
    assert!(pos[32 * 5..32 * 6].iter().any(|&v| v != 0.0));
}

#[test]
fn gelu_new_and_relu_gradients_of_every_parameter() {
    for (act, seed) in [("gelu_new", 41), ("relu", 43)] {
        let extra = json!({ "hidden_act": act });
        let model = BertForSequenceClassification::new(model(config(extra, 2), seed)).unwrap();
        let labels = [1i64, 0];
        let (targets, opts) = (Targets::Classes(&labels), ForwardOptions::default());
        checked_loss_gradients(&model, &batch(), targets, &opts, &mut Rng::new(seed + 1));
    }
}

#[test]
fn distilbert_gradients_of_every_parameter() {
    // No token types (the batch's are ignored) and a ReLU head.
    let extra = json!({ "model_type": "distilbert" });
    let model = BertForSequenceClassification::new(model(config(extra, 2), 47)).unwrap();
    assert_eq!(model.bert.config.type_vocab_size, 0);
    let labels = [0i64, 1];
    let (targets, opts) = (Targets::Classes(&labels), ForwardOptions::default());
    let (out, _, _) = checked_loss_gradients(&model, &batch(), targets, &opts, &mut Rng::new(48));
    assert!(out.pooled.unwrap().data().iter().all(|&v| v >= 0.0));
}

#[test]
fn electra_gradients_of_every_parameter_with_dropout() {
    // Embeddings of width 16 projected to 32, and a GELU head with dropout on the first
    // token, seeded so that the loss is a fixed function of the parameters.
    let extra = json!({
        "model_type": "electra", "embedding_size": 16,
        "hidden_dropout_prob": 0.2, "classifier_dropout": 0.3,
    });
    let model = BertForSequenceClassification::new(model(config(extra, 2), 53)).unwrap();
    assert_eq!(model.bert.params.embeddings.word.dims(), &[50, 16]);
    let labels = [1i64, 0];
    let opts = ForwardOptions {
        seed: 7,
        ..ForwardOptions::default()
    };
    let targets = Targets::Classes(&labels);
    let (_, grads, d_embed) =
        checked_loss_gradients(&model, &batch(), targets, &opts, &mut Rng::new(54));
    assert_eq!(grads.embeddings_project.unwrap().weight.dims(), &[32, 16]);
    assert_eq!(d_embed.dims(), &[2, 5, 16]);
}
