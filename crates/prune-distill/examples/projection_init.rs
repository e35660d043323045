//! Compares the two initialisations of the projections on a small problem: a teacher of
//! hidden width 64 is distilled into a copy of itself cut to 32 hidden channels, once with
//! least-squares projections and once with PyTorch-style random ones, same data, same
//! seeds. Prints the hidden-state loss (sum over the mapped layers) and the total loss at a
//! few steps (10-step means ending there, averaged over three seeds), and the first step at
//! which each run's layer loss is down to what the random start reaches at the end.
//!
//! Run: `cargo run --release -p prune-distill --example projection_init`

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Recorder, toy_data};
use prune_data::LabelledBatch;
use prune_distill::{DistillConfig, Distiller, LayerMapping, ProjectionConfig, ProjectionInit};
use prune_speedup::{GroupKind, PruningPlan};
use prune_tensor::CpuBackend;
use prune_train::{ByRef, Callback, Objective, Optimizer, StepInfo, TrainConfig, Trainer};
use prune_transformer::{BertConfig, BertForSequenceClassification, BertModel, BertParams};
use serde_json::json;

type Model = BertForSequenceClassification<CpuBackend>;

/// Per seed, the loss after every step.
type Curves = Vec<Vec<f64>>;

/// The distiller as the objective, recording its layer loss after every step.
struct LayerLoss {
    distiller: Distiller<CpuBackend>,
    losses: Vec<f64>,
}

impl Callback<CpuBackend> for LayerLoss {
    fn after_step(
        &mut self,
        info: &StepInfo,
        model: &mut Model,
        optimizer: &mut Optimizer<prune_tensor::Tensor<f32>>,
    ) -> prune_train::Result<()> {
        self.distiller.after_step(info, model, optimizer)?;
        let stats = self.distiller.last_stats();
        self.losses
            .push(stats.and_then(|s| s.layer).unwrap_or(f64::NAN));
        Ok(())
    }
}

impl Objective<CpuBackend> for LayerLoss {
    fn accumulate(
        &mut self,
        model: &Model,
        batch: &LabelledBatch,
        seed: u64,
        scale: f64,
        grads: &mut BertParams<prune_tensor::Tensor<f32>>,
    ) -> prune_train::Result<f64> {
        self.distiller.accumulate(model, batch, seed, scale, grads)
    }
}

fn teacher(seed: u64) -> Model {
    let config = BertConfig::from_json(&json!({
        "vocab_size": 30, "hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
        "intermediate_size": 128, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
        "max_position_embeddings": 16, "type_vocab_size": 2, "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "num_labels": 2
    }))
    .unwrap();
    BertForSequenceClassification::new(
        BertModel::random(CpuBackend::new(), config, true, true, seed).unwrap(),
    )
    .unwrap()
}

/// Runs `steps` steps and returns (layer losses, total losses) per step.
fn run(init: ProjectionInit, seed: u64, steps: u64) -> (Vec<f64>, Vec<f64>) {
    let data = toy_data(512, seed);
    let t = teacher(seed);
    let mut student = t.clone();
    let mut plan = PruningPlan::new();
    let keep: Vec<usize> = (0..64).filter(|c| c % 2 == 0).collect();
    plan.keep(GroupKind::Hidden, 64, &keep).unwrap();
    prune_speedup::apply(&mut student.bert, &plan, &mut []).unwrap();
    let cfg = DistillConfig {
        mapping: LayerMapping::identity(4),
        projection: ProjectionConfig {
            init,
            seed,
            ..ProjectionConfig::default()
        },
        ..DistillConfig::default()
    };
    let mut layer = LayerLoss {
        distiller: Distiller::new(t, cfg).unwrap(),
        losses: Vec::new(),
    };
    let total = Recorder::default();
    let train = TrainConfig {
        max_steps: Some(steps),
        batch_size: 16,
        lr: 1e-3,
        progress_bar: false,
        seed,
        ..TrainConfig::default()
    };
    Trainer::new(train, &data, 0)
        .unwrap()
        .with_objective(ByRef(&mut layer))
        .with_callback(total.clone())
        .run(&mut student, false)
        .unwrap();
    let layer = layer.losses;
    (layer, total.losses())
}

/// Mean over `runs` of the 10-step mean of `series` ending at step `m` (1-based).
fn at(runs: &[Vec<f64>], m: usize) -> f64 {
    let lo = m.saturating_sub(10);
    common::mean(
        &runs
            .iter()
            .map(|v| common::mean(&v[lo..m]))
            .collect::<Vec<_>>(),
    )
}

/// First step at which the 10-step mean of `v` is at most `x`.
fn first_below(v: &[f64], x: f64) -> String {
    v.windows(10)
        .position(|w| common::mean(w) <= x)
        .map_or("-".into(), |p| (p + 10).to_string())
}

fn main() {
    let steps = 400usize;
    let seeds = [1u64, 2, 3];
    let marks = [1usize, 10, 25, 50, 100, 200, 400];
    let inits = [
        ("least squares", ProjectionInit::LeastSquares),
        ("random", ProjectionInit::Random),
    ];
    let results: Vec<(Curves, Curves)> = inits
        .iter()
        .map(|&(_, init)| seeds.iter().map(|&s| run(init, s, steps as u64)).unzip())
        .collect();
    let random_final = at(&results[1].0, steps);
    println!("hidden 64 -> 32, 4 layers, identity mapping, batch 16, lr 1e-3, 3 seeds");
    println!(
        "{:<20}{}",
        "step",
        marks.map(|m| format!("{m:>9}")).join("")
    );
    for ((name, _), (layer, total)) in inits.iter().zip(&results) {
        let row = |runs: &[Vec<f64>]| marks.map(|m| format!("{:>9.4}", at(runs, m))).join("");
        println!("{:<20}{}", format!("{name} layer"), row(layer));
        println!("{:<20}{}", format!("{name} total"), row(total));
        let reach: Vec<String> = layer.iter().map(|v| first_below(v, random_final)).collect();
        println!(
            "  first step with layer loss <= {random_final:.4} (random's final): {}",
            reach.join(", ")
        );
    }
}
