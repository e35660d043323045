//! Criterion benchmarks of surgery's payoff on the CPU: inference latency of a dense
//! MiniLM-shaped model (hidden 384, 6 layers, 12 heads, FFN 1536, random weights: the
//! timing does not depend on them) against the same model cut by a plan that removes half
//! the heads and half the FFN neurons of every layer. Groups `cpu/bert_dense/<shape>` and
//! `cpu/bert_pruned/<shape>`; the report's FLOPs ratio is printed for comparison.

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use prune::graph::{GroupKind, PruningPlan};
use prune::speedup::{PruningReport, apply};
use prune::tensor::CpuBackend;
use prune::tensor::rng::Rng;
use prune::transformer::{Batch, BertConfig, BertModel, ForwardOptions};
use std::time::Duration;

type Cpu = CpuBackend<f32>;

/// Tokens per sequence.
const SEQ: usize = 128;

/// A MiniLM-shaped model with pooler and a 2-label classifier, random weights.
fn minilm_shaped() -> BertModel<Cpu> {
    let mut cfg = BertConfig::new(30522, 384, 6, 12, 1536).unwrap();
    cfg.num_labels = Some(2);
    BertModel::random(Cpu::new(), cfg, true, true, 1).unwrap()
}

/// Every other head and every other FFN neuron of every layer.
fn half_heads_half_ffn(config: &BertConfig) -> PruningPlan {
    let mut plan = PruningPlan::new();
    for layer in 0..config.num_hidden_layers {
        let (h, f) = (config.heads(layer), config.intermediate(layer));
        let heads: Vec<usize> = (0..h).step_by(2).collect();
        let ffn: Vec<usize> = (0..f).step_by(2).collect();
        plan.keep(GroupKind::Heads { layer }, h, &heads).unwrap();
        plan.keep(GroupKind::Ffn { layer }, f, &ffn).unwrap();
    }
    plan
}

/// `b` sequences of `SEQ` random tokens, no padding.
fn batch(b: usize) -> Batch {
    let mut rng = Rng::new(7);
    let ids = (0..b * SEQ)
        .map(|_| 1000 + rng.below(20000) as u32)
        .collect();
    let types = (0..b * SEQ)
        .map(|i| u32::from(i % SEQ >= SEQ / 2))
        .collect();
    Batch::new(b, SEQ, ids, types, vec![1; b * SEQ]).unwrap()
}

fn bench(c: &mut Criterion, group: &str, model: &BertModel<Cpu>, b: usize) {
    let batch = batch(b);
    let mut g = c.benchmark_group(group);
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(if b == 1 { 4 } else { 10 }));
    g.throughput(Throughput::Elements(b as u64));
    let opts = ForwardOptions::default();
    g.bench_function(format!("B{b}_T{SEQ}"), |bench| {
        bench.iter(|| model.forward(&batch, &opts).unwrap().logits)
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let dense = minilm_shaped();
    let plan = half_heads_half_ffn(&dense.config);
    let report = PruningReport::new(&dense.config, true, true, &plan, SEQ).unwrap();
    let mut pruned = dense.clone();
    apply(&mut pruned, &plan, &mut []).unwrap();
    assert_eq!(pruned.num_parameters(), report.after.parameters);
    eprintln!(
        "plan: half the heads and half the FFN of every layer; FLOPs per sequence at T={SEQ}: \
         {:.3} GFLOP dense, {:.3} GFLOP pruned (ratio {:.3}); encoder parameters ratio {:.3}",
        report.before.flops_per_sequence as f64 * 1e-9,
        report.after.flops_per_sequence as f64 * 1e-9,
        report.flops_ratio(),
        report.encoder_parameter_ratio(),
    );
    for b in [1, 32] {
        bench(c, "cpu/bert_dense", &dense, b);
        bench(c, "cpu/bert_pruned", &pruned, b);
    }
}

criterion_group!(speedup, benches);
criterion_main!(speedup);
