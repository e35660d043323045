//! Behaviour of the model beyond gradients: training and inference forwards agree without
//! dropout, dropout is seeded, fully padded rows stay finite, and gradients accumulate.

use prune_tensor::{CpuBackend, Tensor};
use prune_transformer::{
    Batch, BertConfig, BertForSequenceClassification, BertModel, ForwardOptions, Targets,
};

type Model = BertModel<CpuBackend<f32>>;

fn tiny(dropout: f64) -> Model {
    let mut cfg = BertConfig::new(40, 16, 2, 4, 32).unwrap();
    cfg.hidden_dropout_prob = dropout;
    cfg.attention_probs_dropout_prob = dropout;
    cfg.initializer_range = 0.3;
    Model::random(CpuBackend::new(), cfg, true, true, 3).unwrap()
}

fn batch() -> Batch {
    Batch::new(
        3,
        4,
        vec![1, 5, 9, 2, 1, 7, 2, 0, 0, 0, 0, 0],
        vec![0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0],
        // The last row is all padding.
        vec![1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
    )
    .unwrap()
}

fn opts(seed: u64) -> ForwardOptions {
    ForwardOptions {
        output_hidden_states: true,
        seed,
    }
}

#[test]
fn training_forward_equals_inference_without_dropout() {
    let m = tiny(0.0);
    let a = m.forward(&batch(), &opts(0)).unwrap();
    let (b, cache) = m.forward_t(&batch(), &opts(0)).unwrap();
    assert_eq!(a.hidden_states.len(), 3);
    assert_eq!(a.hidden_states[2], a.last_hidden_state);
    for (x, y) in a.hidden_states.iter().zip(&b.hidden_states) {
        assert_eq!(x, y);
    }
    assert_eq!(a.logits, b.logits);
    assert_eq!(a.pooled.as_ref().unwrap().dims(), &[3, 16]);
    // The cache exposes each layer's input without copies.
    let h1 = cache
        .hidden_state(1)
        .unwrap()
        .clone()
        .reshape([3, 4, 16])
        .unwrap();
    assert_eq!(&h1, &a.hidden_states[1]);
    // Hidden states are not returned unless asked for.
    let c = m.forward(&batch(), &ForwardOptions::default()).unwrap();
    assert!(c.hidden_states.is_empty());
    // A fully padded row attends uniformly and stays finite (no NaN from the mask).
    assert!(a.last_hidden_state.data().iter().all(|v| v.is_finite()));
}

#[test]
fn dropout_is_seeded() {
    let m = tiny(0.3);
    let (a, _) = m.forward_t(&batch(), &opts(1)).unwrap();
    let (b, _) = m.forward_t(&batch(), &opts(1)).unwrap();
    let (c, _) = m.forward_t(&batch(), &opts(2)).unwrap();
    let eval = m.forward(&batch(), &opts(1)).unwrap();
    assert_eq!(a.logits, b.logits);
    assert_ne!(a.logits, c.logits);
    assert_ne!(a.logits, eval.logits);
}

#[test]
fn gradients_accumulate() {
    let m = BertForSequenceClassification::new(tiny(0.0)).unwrap();
    let labels = [1i64, 0, -100];
    let mut once = m.bert.zero_grads().unwrap();
    let mut twice = m.bert.zero_grads().unwrap();
    for grads in [&mut once, &mut twice] {
        let (_, _, cache) = m
            .forward_t(&batch(), Targets::Classes(&labels), &opts(0))
            .unwrap();
        m.backward(cache, 1.0, grads).unwrap();
    }
    let (_, _, cache) = m
        .forward_t(&batch(), Targets::Classes(&labels), &opts(0))
        .unwrap();
    m.backward(cache, 1.0, &mut twice).unwrap();
    for ((name, a), (_, b)) in once.named().into_iter().zip(twice.named()) {
        let doubled = Tensor::new(
            a.shape().clone(),
            a.data().iter().map(|v| 2.0 * v).collect(),
        )
        .unwrap();
        assert!(
            doubled.max_abs_diff(b) <= 1e-6 * (1.0 + a.max_abs()),
            "{name}"
        );
    }
    assert!(once.embeddings.word.max_abs() > 0.0);
}
