//! Criterion benchmark `cuda/train_step/bert_base_8x128`: one training step (forward,
//! cross-entropy, backward, AdamW on every parameter) of a randomly initialised BERT-base
//! (12 layers, C=768, F=3072, H=12) on the GPU, batch 8 × 128 tokens. Synchronises before the
//! clock is read.

use criterion::{Criterion, criterion_group, criterion_main};
use prune_tensor::{AdamW, CudaBackend, OptimOps};
use prune_transformer::batch::Batch;
use prune_transformer::{
    BertConfig, BertForSequenceClassification, BertModel, ForwardOptions, Targets,
};

fn train_step(c: &mut Criterion) {
    let b = CudaBackend::new(0).expect("the CUDA benchmarks need a GPU");
    let mut config = BertConfig::new(30522, 768, 12, 12, 3072).unwrap();
    config.num_labels = Some(2);
    let bert = BertModel::random(b.clone(), config, true, true, 1).unwrap();
    let mut model = BertForSequenceClassification::new(bert).unwrap();
    let (batch_size, seq) = (8, 128);
    let ids = (0..batch_size * seq)
        .map(|i| (i * 7919 % 30000) as u32 + 100)
        .collect();
    let batch = Batch::new(
        batch_size,
        seq,
        ids,
        vec![0; batch_size * seq],
        vec![1; batch_size * seq],
    )
    .unwrap();
    let labels: Vec<i64> = (0..batch_size as i64).map(|i| i % 2).collect();
    let mut m = model.bert.zero_grads().unwrap();
    let mut v = model.bert.zero_grads().unwrap();
    let hp = AdamW {
        lr: 1e-5,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        step: 1,
    };
    let opts = ForwardOptions {
        output_hidden_states: false,
        seed: 0,
    };
    c.bench_function("cuda/train_step/bert_base_8x128", |bencher| {
        bencher.iter(|| {
            let (_, _, cache) = model
                .forward_t(&batch, Targets::Classes(&labels), &opts)
                .unwrap();
            let mut grads = model.bert.zero_grads().unwrap();
            model.backward(cache, 1.0, &mut grads).unwrap();
            for (name, p) in model.bert.params.named_mut() {
                let g = grads.get(&name).unwrap();
                let (mi, vi) = (m.get_mut(&name).unwrap(), v.get_mut(&name).unwrap());
                b.adamw_step(p, g, mi, vi, &hp, None).unwrap();
            }
            b.synchronize().unwrap();
        })
    });
}

criterion_group!(benches, train_step);
criterion_main!(benches);
