//! Reproducibility across thread counts: one training step of a tiny random BERT (training
//! forward with dropout, backward, gradient clipping and an AdamW update) run in a rayon
//! pool of 1 thread and in one of 2 threads gives bit-identical losses, gradient norms and
//! parameters, for classification (cross-entropy) and regression (MSE).

use prune::tensor::rng::Rng;
use prune::tensor::{CpuBackend, Storage};
use prune::train::{AdamWConfig, Optimizer, clip_grad_norm};
use prune::transformer::{
    Batch, BertConfig, BertForSequenceClassification, BertModel, ForwardOptions, Targets,
};

/// Hidden width: with the batch shapes below, large enough that row-parallel ops split
/// into several tasks and GEMMs run threaded.
const C: usize = 64;

/// Everything one step produced, as bits: the loss, the gradient norm, then each
/// parameter by name.
type StepBits = (u64, u64, Vec<(String, Vec<u32>)>);

/// One training step in a pool of `threads` threads, with `labels` outputs (1: regression),
/// on a batch of `b` sequences of `t` tokens.
fn step(threads: usize, labels: usize, (b, t): (usize, usize)) -> StepBits {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let (batch_size, seq) = (b, t);
        let b = CpuBackend::<f32>::new();
        let mut config = BertConfig::new(100, C, 2, 4, 4 * C).unwrap();
        config.num_labels = Some(labels);
        let bert = BertModel::random(b, config, true, true, 11).unwrap();
        let mut model = BertForSequenceClassification::new(bert).unwrap();
        let mut rng = Rng::new(5);
        let n = batch_size * seq;
        let lengths: Vec<usize> = (0..batch_size).map(|_| 1 + rng.below(seq)).collect();
        let real = |i: usize| i % seq < lengths[i / seq];
        let ids = (0..n).map(|i| u32::from(real(i)) * (1 + rng.below(99) as u32));
        let mask = (0..n).map(|i| u32::from(real(i)));
        let batch = Batch::new(batch_size, seq, ids.collect(), vec![0; n], mask.collect()).unwrap();
        let classes: Vec<i64> = (0..batch_size)
            .map(|_| rng.below(labels.max(2)) as i64)
            .collect();
        let values: Vec<f32> = (0..batch_size)
            .map(|_| rng.uniform() as f32 * 5.0)
            .collect();
        let targets = if labels == 1 {
            Targets::Values(&values)
        } else {
            Targets::Classes(&classes)
        };
        let opts = ForwardOptions {
            output_hidden_states: false,
            seed: 9,
        };
        let (loss, _, cache) = model.forward_t(&batch, targets, &opts).unwrap();
        let mut grads = model.bert.zero_grads().unwrap();
        model.backward(cache, 1.0, &mut grads).unwrap();
        let norm = clip_grad_norm(&b, &mut grads, 1.0).unwrap();
        let adamw = AdamWConfig {
            weight_decay: 0.01,
            ..AdamWConfig::default()
        };
        let mut optimizer = Optimizer::new(&b, &model.bert.params, adamw).unwrap();
        let (params, masks) = model.bert.params_and_masks_mut();
        optimizer.step(&b, params, &grads, masks, 1e-3).unwrap();
        let bits = model
            .bert
            .params
            .named()
            .into_iter()
            .map(|(name, t)| {
                let host = b.download(t).unwrap();
                (name, host.data().iter().map(|v| v.to_bits()).collect())
            })
            .collect();
        (loss.to_bits(), norm.to_bits(), bits)
    })
}

#[test]
fn one_and_two_threads_give_bit_identical_training_steps() {
    // Classification on long sequences; regression on many short ones (the loss sums over
    // the batch).
    for (labels, shape) in [(3, (16, 64)), (1, (1024, 4))] {
        let (one, two) = (step(1, labels, shape), step(2, labels, shape));
        let what = if labels == 1 {
            "regression"
        } else {
            "classification"
        };
        assert_eq!(
            f64::from_bits(one.0),
            f64::from_bits(two.0),
            "{what}: losses differ"
        );
        assert_eq!(one.0, two.0, "{what}: losses differ in their last bits");
        assert_eq!(one.1, two.1, "{what}: gradient norms differ");
        for ((name, a), (_, b)) in one.2.iter().zip(&two.2) {
            let first = a.iter().zip(b).position(|(x, y)| x != y);
            assert_eq!(
                first, None,
                "{what}: `{name}` differs first at index {first:?}"
            );
        }
    }
}
