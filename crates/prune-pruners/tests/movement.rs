//! Movement pruning: the score gradient against finite differences, the regulariser's
//! gradient, soft mode without regulariser, sparsity against `regular_scale`, hard mode's
//! exact ratio, the cubic ramp of the masks step by step inside the trainer.

mod common;

use common::{Recorder, model_mask, tiny, tiny_on, toy_data, train_config};
use prune_data::collate;
use prune_pruners::{
    ConfigList, Cubic, MovementPruner, MovementSettings, Selection, modules_of, score_gradient,
};
use prune_tensor::rng::Rng;
use prune_tensor::{Backend, CpuBackend, Tensor};
use prune_train::ByRef;
use prune_train::{Callback, Optimizer, StepInfo, TrainConfig, TrainError, Trainer};
use prune_transformer::{BertForSequenceClassification, ForwardOptions};

/// Q, K, V and O of every layer in [8, 8] blocks (one block per head pair, as [64, 64] for
/// BERT-base or [32, 32] for MiniLM), soft with threshold `tau` or hard with `ratio`.
fn attention(soft: bool, goal: f64) -> ConfigList {
    let key = if soft {
        "sparse_threshold"
    } else {
        "sparse_ratio"
    };
    ConfigList::from_json_str(&format!(
        r#"[{{"op_types": ["Linear"],
              "op_names_re": ["bert\\.encoder\\.layer\\.[0-9]*\\.attention\\.*"],
              "{key}": {goal}, "granularity": [8, 8]}}]"#
    ))
    .unwrap()
}

fn selection<B: Backend>(
    model: &BertForSequenceClassification<B>,
    soft: bool,
    goal: f64,
) -> Selection {
    attention(soft, goal)
        .select(&modules_of(&model.bert))
        .unwrap()
}

const Q0: &str = "encoder.layer.0.attention.self.query.weight";

#[test]
fn score_gradient_equals_the_derivative_of_the_loss_by_a_block_scale() {
    // dL/dα at α = 1, with block b of W scaled by α, is Σ_b dW_eff ⊙ W.
    let mut model = tiny_on::<f64>(5);
    let data = toy_data(8, 3);
    let batch = collate(&data.iter().collect::<Vec<_>>(), 0).unwrap();
    let loss = |m: &BertForSequenceClassification<CpuBackend<f64>>| {
        m.forward_t(
            &batch.inputs,
            batch.labels.as_targets(),
            &ForwardOptions::default(),
        )
        .unwrap()
        .0
    };
    let (_, _, cache) = model
        .forward_t(
            &batch.inputs,
            batch.labels.as_targets(),
            &ForwardOptions::default(),
        )
        .unwrap();
    let mut grads = model.bert.zero_grads().unwrap();
    model.backward(cache, 1.0, &mut grads).unwrap();
    let sel = selection(&model, false, 0.5);
    let t = sel.target(Q0).unwrap();
    let w: Vec<f64> = model.bert.params.get(Q0).unwrap().data().to_vec();
    let g: Vec<f64> = grads.get(Q0).unwrap().data().to_vec();
    let ds = score_gradient(
        &t.blocking,
        &w.iter().map(|&x| x as f32).collect::<Vec<_>>(),
        &g.iter().map(|&x| x as f32).collect::<Vec<_>>(),
    );
    let block_of: Vec<usize> = t.blocking.block_index().collect();
    let h = 1e-5;
    let mut worst: f64 = 0.0;
    for b in [0, 5, 10, 15] {
        let mut at = |a: f64| {
            let scaled: Vec<f64> = w
                .iter()
                .zip(&block_of)
                .map(|(&x, &k)| if k == b { x * a } else { x })
                .collect();
            *model.bert.params.get_mut(Q0).unwrap() = Tensor::new([32, 32], scaled).unwrap();
            loss(&model)
        };
        let fd = (at(1.0 + h) - at(1.0 - h)) / (2.0 * h);
        at(1.0);
        assert!(ds[b].abs() > 1e-9, "block {b} has a gradient");
        worst = worst.max((fd - ds[b]).abs() / ds[b].abs().max(1e-6));
    }
    assert!(worst < 1e-4, "relative error {worst:e}");
}

#[test]
fn regulariser_gradient_matches_finite_differences() {
    let model = tiny(1);
    let mut p = MovementPruner::new(
        &selection(&model, true, 0.1),
        MovementSettings::new(0, 10, 3.0),
    )
    .unwrap();
    let mut rng = Rng::new(9);
    let scores: Vec<Vec<f64>> = p
        .scores()
        .iter()
        .map(|s| s.iter().map(|_| rng.normal()).collect())
        .collect();
    p.set_scores(scores.clone()).unwrap();
    let ratio = 0.7;
    let (value, grads) = p.regulariser(ratio);
    // R = 3 · 0.7 · mean over 8 weights of mean σ(S)
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    let by_hand: f64 = scores
        .iter()
        .map(|s| s.iter().map(|&x| sig(x)).sum::<f64>() / s.len() as f64)
        .sum::<f64>()
        * 3.0
        * 0.7
        / 8.0;
    assert!((value - by_hand).abs() < 1e-12);
    let h = 1e-6;
    for (k, j) in [(0, 0), (3, 7), (7, 15)] {
        let mut s = scores.clone();
        s[k][j] += h;
        p.set_scores(s.clone()).unwrap();
        let up = p.regulariser(ratio).0;
        s[k][j] -= 2.0 * h;
        p.set_scores(s).unwrap();
        let down = p.regulariser(ratio).0;
        let fd = (up - down) / (2.0 * h);
        assert!((fd - grads[k][j]).abs() < 1e-9, "{fd} vs {}", grads[k][j]);
    }
}

/// Runs movement pruning for `steps` and returns the pruner and the model.
fn run(
    soft: bool,
    goal: f64,
    settings: MovementSettings,
    steps: u64,
) -> (MovementPruner, BertForSequenceClassification<CpuBackend>) {
    let data = toy_data(48, 2);
    let mut model = tiny(4);
    let mut pruner = MovementPruner::new(&selection(&model, soft, goal), settings).unwrap();
    let trainer = Trainer::new(train_config(steps), &data, 0).unwrap();
    let (masks, summary) = pruner.compress(trainer, &mut model, false).unwrap();
    assert_eq!(summary.steps, steps);
    assert_eq!(&masks, pruner.masks());
    (pruner, model)
}

#[test]
fn soft_mode_without_regulariser_prunes_nothing() {
    // Adam moves a score by about lr per step, so 60 steps cannot take σ(S) from 0.5 down
    // to the threshold 0.1 without the regulariser's push.
    let (p, model) = run(true, 0.1, MovementSettings::new(5, 30, 0.0), 60);
    assert!(
        p.scores().iter().flatten().any(|&s| s != 0.0),
        "scores trained"
    );
    assert_eq!(p.masks().sparsity(), 0.0);
    assert!(model_mask(&model.bert, Q0).is_none());
    assert_eq!(p.regularisation(), 0.0);
}

#[test]
fn soft_sparsity_rises_with_regular_scale() {
    // The task gradients of the tiny model are small, so small scales already bite; the
    // values seen were [0, 0.06, 0.13, 0.31, 0.88, 1].
    let sparsity: Vec<f64> = [0.0, 1e-4, 3e-4, 1e-3, 1e-2, 0.1]
        .iter()
        .map(|&rs| {
            let settings = MovementSettings {
                score_lr: 0.05,
                ..MovementSettings::new(5, 30, rs)
            };
            run(true, 0.3, settings, 60).0.masks().sparsity()
        })
        .collect();
    assert!(
        sparsity.windows(2).all(|w| w[0] <= w[1]),
        "sparsity by regular_scale: {sparsity:?}"
    );
    assert_eq!(sparsity[0], 0.0);
    assert!(sparsity[5] > 0.9, "{sparsity:?}");
    let mut distinct = sparsity.clone();
    distinct.dedup();
    assert!(distinct.len() >= 5, "a graded response: {sparsity:?}");
}

#[test]
fn hard_mode_follows_the_cubic_ramp_every_step_and_reaches_its_ratio_exactly() {
    let data = toy_data(48, 2);
    let mut model = tiny(4);
    let (warmup, cooldown, steps) = (4, 16, 24);
    let mut pruner = MovementPruner::new(
        &selection(&model, false, 0.5),
        MovementSettings::new(warmup, cooldown, 0.0),
    )
    .unwrap();
    let mut rec = Recorder::new(Q0);
    Trainer::new(train_config(steps), &data, 0)
        .unwrap()
        .with_callback(ByRef(&mut pruner))
        .with_callback(ByRef(&mut rec))
        .run(&mut model, false)
        .unwrap();
    let ramp = Cubic::new(warmup, cooldown).unwrap();
    for (i, zeros) in rec.zeros.iter().enumerate() {
        let t = i as u64 + 1;
        // 16 blocks of 64 elements; ⌊16 · 0.5 · ratio(t)⌋ blocks pruned
        let blocks = (16.0 * 0.5 * ramp.ratio(t)).floor() as usize;
        let expected = (blocks > 0).then_some(blocks * 64);
        assert_eq!(*zeros, expected, "step {t}");
    }
    for t in pruner.targets() {
        let m = pruner.masks().get(&t.param).unwrap();
        assert_eq!(m.pruned_blocks(), 8, "{}", t.param);
        let bias = t.param.replace(".weight", ".bias");
        let alive_rows = m.rows_alive().iter().filter(|a| **a).count();
        let bias_mask = model_mask(&model.bert, &bias);
        match bias_mask {
            Some(b) => assert_eq!(b.iter().filter(|&&x| x == 1.0).count(), alive_rows),
            None => assert_eq!(alive_rows, 32, "bias unmasked only when every row lives"),
        }
    }
    assert_eq!(pruner.masks().sparsity(), 0.5);
}

/// Stops training with an error after optimizer step `.0` (a killed run).
struct StopAt(u64);

impl<B: Backend> Callback<B> for StopAt {
    fn after_step(
        &mut self,
        info: &StepInfo,
        _: &mut BertForSequenceClassification<B>,
        _: &mut Optimizer<B::Tensor>,
    ) -> prune_train::Result<()> {
        if info.step == self.0 {
            return Err(TrainError::Config("stopped".into()));
        }
        Ok(())
    }
}

#[test]
fn a_stopped_run_resumes_to_the_same_scores_masks_and_weights() {
    let data = toy_data(48, 2);
    let root = std::env::temp_dir().join(format!("prune-movement-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let settings = MovementSettings {
        score_lr: 0.05,
        ..MovementSettings::new(3, 12, 0.0)
    };
    let cfg = TrainConfig {
        checkpoint_every: Some(4),
        ..train_config(16)
    };
    let pruner = |model: &BertForSequenceClassification<CpuBackend>, out: &std::path::Path| {
        MovementPruner::new(&selection(model, false, 0.5), settings)
            .unwrap()
            .with_checkpoints(out, Some(4))
            .unwrap()
    };
    let trainer = |out: &std::path::Path| {
        Trainer::new(cfg.clone(), &data, 0)
            .unwrap()
            .with_output_dir(out)
    };
    let (a, b) = (root.join("straight"), root.join("stopped"));
    let mut straight = tiny(4);
    let mut p = pruner(&straight, &a);
    let (masks, _) = p.compress(trainer(&a), &mut straight, false).unwrap();
    assert!(
        masks.sparsity() > 0.0,
        "the goal is in force when the run ends"
    );

    let mut stopped = tiny(4);
    let mut q = pruner(&stopped, &b);
    assert!(
        q.compress(trainer(&b).with_callback(StopAt(10)), &mut stopped, false)
            .is_err()
    );
    let mut resumed = tiny(4);
    let mut r = pruner(&resumed, &b);
    assert_eq!(r.resume().unwrap(), Some(8));
    let (again, summary) = r.compress(trainer(&b), &mut resumed, true).unwrap();
    assert_eq!(summary.resumed_from_step, Some(8));
    assert_eq!(again, masks);
    assert_eq!(r.scores(), p.scores());
    assert_eq!(
        resumed.bert.to_host().unwrap(),
        straight.bert.to_host().unwrap()
    );
    let _ = std::fs::remove_dir_all(&root);
}
