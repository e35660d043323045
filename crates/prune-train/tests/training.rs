//! The training loop on a tiny random BERT: it learns, it resumes bit for bit, and the
//! optimizer follows the recipe (no decay on biases and LayerNorm, clipping, masks).

use prune_data::{Encoded, Metric};
use prune_tensor::{CpuBackend, Tensor};
use prune_train::{
    AdamWConfig, Callback, Evaluator, Optimizer, StepInfo, TrainConfig, TrainError, Trainer,
    clip_grad_norm,
};
use prune_transformer::{BertConfig, BertForSequenceClassification, BertModel, BertParams};
use serde_json::json;

type Model = BertForSequenceClassification<CpuBackend>;

fn tiny(dropout: f64) -> Model {
    let config = BertConfig::from_json(&json!({
        "vocab_size": 20, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 32, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
        "max_position_embeddings": 16, "type_vocab_size": 2, "hidden_dropout_prob": dropout,
        "attention_probs_dropout_prob": dropout, "num_labels": 2
    }))
    .unwrap();
    BertForSequenceClassification::new(
        BertModel::random(CpuBackend::new(), config, true, true, 3).unwrap(),
    )
    .unwrap()
}

/// `n` examples of the synthetic marker task (token 7 present or not).
fn toy_data(n: usize, seed: u64) -> Vec<Encoded> {
    prune_data::synthetic::marker_task(n, 20, 7, seed)
}

fn config(steps: u64) -> TrainConfig {
    TrainConfig {
        max_steps: Some(steps),
        batch_size: 8,
        lr: 3e-3,
        warmup_ratio: 0.1,
        progress_bar: false,
        log_every: 1,
        ..TrainConfig::default()
    }
}

#[test]
fn a_tiny_model_overfits_32_examples() {
    let data = toy_data(32, 1);
    let eval = Evaluator::new(data.clone(), &[Metric::Accuracy], 16, 0).unwrap();
    let mut model = tiny(0.0);
    let before = eval.evaluate(&model).unwrap().main();
    let summary = Trainer::new(config(150), &data, 0)
        .unwrap()
        .with_evaluator(&eval)
        .run(&mut model, false)
        .unwrap();
    let after = summary.evaluation.unwrap();
    assert_eq!(
        after.main(),
        1.0,
        "accuracy before {before}, after {after:?}"
    );
    assert!(
        summary.final_loss < 0.05,
        "final loss {}",
        summary.final_loss
    );
}

/// Stops the run (as a kill would) once `at` steps are done.
struct KillAt(u64);

impl Callback<CpuBackend> for KillAt {
    fn after_backward(
        &mut self,
        info: &StepInfo,
        _: &Model,
        _: &BertParams<Tensor<f32>>,
    ) -> prune_train::Result<()> {
        if info.step > self.0 {
            Err(TrainError::Config("killed".into()))
        } else {
            Ok(())
        }
    }
}

#[test]
fn a_killed_run_resumes_to_the_same_parameters_as_an_uninterrupted_one() {
    let data = toy_data(40, 2);
    let root = std::env::temp_dir().join(format!("prune-train-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let cfg = TrainConfig {
        checkpoint_every: Some(3),
        grad_accum: 2,
        ..config(7)
    };

    let mut straight = tiny(0.1);
    Trainer::new(cfg.clone(), &data, 0)
        .unwrap()
        .run(&mut straight, false)
        .unwrap();

    let mut first = tiny(0.1);
    let killed = Trainer::new(cfg.clone(), &data, 0)
        .unwrap()
        .with_callback(KillAt(4))
        .with_output_dir(&root)
        .run(&mut first, false);
    assert!(killed.is_err(), "the run was stopped at step 5");
    let mut resumed = tiny(0.1);
    let s = Trainer::new(cfg, &data, 0)
        .unwrap()
        .with_output_dir(&root)
        .run(&mut resumed, true)
        .unwrap();
    assert_eq!(s.resumed_from_step, Some(3), "the step-3 checkpoint");
    assert_eq!(
        (s.steps, s.examples),
        (7, 7 * 2 * 8),
        "the whole run is reported"
    );
    assert_eq!(
        resumed.bert.to_host().unwrap(),
        straight.bert.to_host().unwrap()
    );
    let log = std::fs::read_to_string(root.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=7).collect::<Vec<_>>(), "each step logged once");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn no_weight_decay_on_biases_and_layer_norms_and_masked_weights_keep_raw_values() {
    let mut model = tiny(0.0);
    let b = CpuBackend::new();
    let before = model.bert.to_host().unwrap();
    let grads = model.bert.zero_grads().unwrap();
    let mut masks = model.bert.empty_masks();
    masks.layers[0].intermediate.weight =
        Some(Tensor::from_fn(
            [32, 16],
            |i| if i < 16 { 0.0 } else { 1.0 },
        ));
    model.bert.set_masks(Some(masks)).unwrap();
    let cfg = AdamWConfig {
        weight_decay: 0.5,
        ..AdamWConfig::default()
    };
    let mut opt = Optimizer::new(&b, &model.bert.params, cfg).unwrap();
    let (params, masks) = model.bert.params_and_masks_mut();
    opt.step(&b, params, &grads, masks, 0.1).unwrap();
    let after = model.bert.to_host().unwrap();
    for ((name, x), (_, y)) in before.named().into_iter().zip(after.named()) {
        if name.ends_with("bias") || name.contains("LayerNorm") {
            assert_eq!(x, y, "{name} must not decay");
        } else if name != "encoder.layer.0.intermediate.dense.weight" {
            let expected = x.data().iter().map(|v| v * 0.95).collect::<Vec<_>>();
            assert_eq!(y.data(), &expected[..], "{name} decays by lr·wd");
        }
    }
    let (w0, w1) = (
        before.layers[0].intermediate.weight.data(),
        after.layers[0].intermediate.weight.data(),
    );
    assert!(
        w0.iter().zip(w1).all(|(a, b)| *b == a * 0.95),
        "zero gradient, masked or not: decay only"
    );
}

#[test]
fn clipping_caps_the_global_norm_and_rejects_nan() {
    let b = CpuBackend::new();
    let model = tiny(0.0);
    let mut grads = model.bert.params.clone();
    let norm = clip_grad_norm(&b, &mut grads, 1.0).unwrap();
    assert!(norm > 1.0);
    let mut sq = 0.0;
    for (_, g) in grads.named() {
        sq += g.data().iter().map(|v| f64::from(*v).powi(2)).sum::<f64>();
    }
    assert!((sq.sqrt() - 1.0).abs() < 1e-3, "clipped norm {}", sq.sqrt());
    grads.embeddings.word.data_mut()[0] = f32::NAN;
    assert!(matches!(
        clip_grad_norm(&b, &mut grads, 1.0),
        Err(TrainError::NonFinite(_))
    ));
}

#[test]
fn bad_settings_are_refused() {
    let data = toy_data(4, 3);
    for cfg in [
        TrainConfig {
            batch_size: 0,
            ..TrainConfig::default()
        },
        TrainConfig {
            lr: f64::NAN,
            ..TrainConfig::default()
        },
        TrainConfig {
            warmup_ratio: 1.5,
            ..TrainConfig::default()
        },
    ] {
        assert!(matches!(
            Trainer::<CpuBackend>::new(cfg, &data, 0),
            Err(TrainError::Config(_))
        ));
    }
    assert!(Trainer::<CpuBackend>::new(TrainConfig::default(), &[], 0).is_err());
}

#[test]
fn a_checkpoint_from_elsewhere_is_refused_before_training() {
    let data = toy_data(40, 2);
    let root = std::env::temp_dir().join(format!("prune-train-bogus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let cfg = TrainConfig {
        checkpoint_every: Some(2),
        ..config(2)
    };
    let mut model = tiny(0.1);
    Trainer::new(cfg.clone(), &data, 0)
        .unwrap()
        .with_output_dir(&root)
        .run(&mut model, false)
        .unwrap();
    let state = root.join("checkpoints/step-2/state.json");
    let text = std::fs::read_to_string(&state).unwrap();
    std::fs::write(
        &state,
        text.replace("\"batch_in_epoch\":2", "\"batch_in_epoch\":999"),
    )
    .unwrap();
    let e = Trainer::new(config(4), &data, 0)
        .unwrap()
        .with_output_dir(&root)
        .run(&mut tiny(0.1), true)
        .expect_err("a bogus position is an error")
        .to_string();
    assert!(
        e.contains("batch 999 of epoch 0") && e.contains("other data"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn settings_that_cannot_work_are_refused() {
    for (cfg, why) in [
        (
            TrainConfig {
                checkpoint_every: Some(0),
                ..config(2)
            },
            "checkpoint_every",
        ),
        (
            TrainConfig {
                eval_every: Some(0),
                ..config(2)
            },
            "eval_every",
        ),
        (
            TrainConfig {
                adamw: AdamWConfig {
                    weight_decay: f64::NAN,
                    ..AdamWConfig::default()
                },
                ..config(2)
            },
            "weight decay",
        ),
        (
            TrainConfig {
                adamw: AdamWConfig {
                    weight_decay: -0.1,
                    ..AdamWConfig::default()
                },
                ..config(2)
            },
            "weight decay",
        ),
    ] {
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains(why), "{e}");
    }
}

#[test]
fn a_non_finite_loss_stops_training_naming_the_step_and_saves_nothing() {
    let data = toy_data(16, 3);
    let root = std::env::temp_dir().join(format!("prune-train-nan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut model = tiny(0.0);
    model.bert.params.embeddings.word.data_mut().fill(f32::NAN);
    let e = Trainer::new(config(3), &data, 0)
        .unwrap()
        .with_output_dir(&root)
        .run(&mut model, false)
        .expect_err("NaN weights give a NaN loss");
    assert!(matches!(e, TrainError::NonFinite(_)), "{e}");
    assert!(e.to_string().contains("at step 1"), "{e}");
    assert!(
        !root.join("checkpoints").exists(),
        "no checkpoint of a NaN model"
    );
    let _ = std::fs::remove_dir_all(&root);
}
