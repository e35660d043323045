//! Criterion benchmarks of a whole BERT on the CPU: inference forward and a training step
//! (forward with cache + backward into accumulated gradients), named
//! `cpu/bert_forward/<shape>` and `cpu/bert_train_step/<shape>`.
//!
//! Throughput convention: `Throughput::Elements` is the number of examples (sequences) per
//! iteration, so criterion's elem/s reads as examples/s. MiniLM uses the default checkpoint
//! when it is in the cache and a random model of the same shape otherwise (the timing is
//! the same); BERT-base is always a random-init config (no download).

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use prune::tensor::CpuBackend;
use prune::tensor::rng::Rng;
use prune::transformer::paths::model_dir;
use prune::transformer::{
    Batch, BertConfig, BertForSequenceClassification, BertModel, ForwardOptions, Targets,
};
use std::time::Duration;

type Cpu = CpuBackend<f32>;

/// all-MiniLM-L6-v2 with a 2-label head (checkpoint weights when available).
fn minilm() -> BertForSequenceClassification<Cpu> {
    let dir = model_dir().unwrap_or_default();
    let config = BertConfig::from_file(&dir.join("config.json")).ok();
    let bert = match config {
        Some(mut cfg) => {
            cfg.num_labels = Some(2);
            let mut host = prune::transformer::load_params(&dir.join("model.safetensors"), &cfg)
                .expect("checkpoint readable");
            let random = BertModel::random(Cpu::new(), cfg.clone(), true, true, 1).unwrap();
            host.classifier = random.to_host().unwrap().classifier;
            BertModel::from_host(Cpu::new(), cfg, &host).unwrap()
        }
        None => {
            let cfg = BertConfig::new(30522, 384, 6, 12, 1536).unwrap();
            BertModel::random(Cpu::new(), cfg, true, true, 1).unwrap()
        }
    };
    BertForSequenceClassification::new(bert).unwrap()
}

/// BERT-base (hidden 768, 12 layers, 12 heads, FFN 3072), random weights.
fn bert_base() -> BertForSequenceClassification<Cpu> {
    let cfg = BertConfig::new(30522, 768, 12, 12, 3072).unwrap();
    BertForSequenceClassification::new(BertModel::random(Cpu::new(), cfg, true, true, 2).unwrap())
        .unwrap()
}

/// A full batch of random tokens (no padding) with random labels.
fn batch(b: usize, t: usize, seed: u64) -> (Batch, Vec<i64>) {
    let mut rng = Rng::new(seed);
    let ids = (0..b * t).map(|_| 1000 + rng.below(20000) as u32).collect();
    let types = (0..b * t).map(|i| u32::from(i % t >= t / 2)).collect();
    let batch = Batch::new(b, t, ids, types, vec![1; b * t]).unwrap();
    let labels = (0..b).map(|_| rng.below(2) as i64).collect();
    (batch, labels)
}

fn bench_model(
    c: &mut Criterion,
    name: &str,
    model: &BertForSequenceClassification<Cpu>,
    b: usize,
    t: usize,
) {
    let (batch, labels) = batch(b, t, 7);
    let mut g = c.benchmark_group("cpu/bert_forward");
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(b as u64));
    g.bench_function(name, |bench| bench.iter(|| model.logits(&batch).unwrap()));
    g.finish();

    let mut g = c.benchmark_group("cpu/bert_train_step");
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(b as u64));
    let mut grads = model.bert.zero_grads().unwrap();
    let mut seed = 0;
    g.bench_function(name, |bench| {
        bench.iter(|| {
            seed += 1;
            let opts = ForwardOptions {
                output_hidden_states: false,
                seed,
            };
            let (loss, _, cache) = model
                .forward_t(&batch, Targets::Classes(&labels), &opts)
                .unwrap();
            model.backward(cache, 1.0, &mut grads).unwrap();
            loss
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_model(c, "minilm_b32_t128", &minilm(), 32, 128);
    bench_model(c, "bert_base_b8_t128", &bert_base(), 8, 128);
}

criterion_group!(bert, benches);
criterion_main!(bert);
