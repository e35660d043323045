//! Distillation inside the trainer: a head-pruned student learns from its teacher (the
//! loss falls), the chosen pairs go to the trainer's `metrics.jsonl`, and the distiller's
//! projections are saved at the trainer's checkpoint steps and restored on resume.

mod common;

use common::{Recorder, config, mean, model, toy_data, train_config};
use prune_distill::{DistillConfig, Distiller, ProjectionConfig, ProjectionMode};
use prune_tensor::CpuBackend;
use prune_train::{TrainConfig, Trainer};
use std::collections::BTreeMap;

#[test]
fn a_head_pruned_student_distils_and_logs_its_mapping() {
    let data = toy_data(64, 9);
    let teacher = model::<f32>(config(2, 16, 2, 0.0), 21);
    // A student of its own (a copy of this random teacher is already at the target).
    let mut student = model::<f32>(config(2, 16, 2, 0.1), 23);
    let heads = BTreeMap::from([(0, vec![1]), (1, vec![0])]);
    prune_speedup::prune_heads(&mut student.bert, &heads).unwrap();
    let out = std::env::temp_dir().join(format!("prune-distill-train-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let metrics = out.join("metrics.jsonl");
    let mut distiller = Distiller::new(teacher, DistillConfig::default())
        .unwrap()
        .with_log(&metrics, 5)
        .unwrap();
    let rec = Recorder::default();
    let train = TrainConfig {
        lr: 1e-3,
        ..train_config(30)
    };
    let trainer = Trainer::new(train, &data, 0).unwrap().with_output_dir(&out);
    distiller
        .attach(trainer)
        .with_callback(rec.clone())
        .run(&mut student, false)
        .unwrap();
    let losses = rec.losses();
    assert!(mean(&losses[25..]) < 0.6 * mean(&losses[..5]), "{losses:?}");
    let text = std::fs::read_to_string(&metrics).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["kind"] == "distill")
        .collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0]["step"], 5);
    let counts = lines[0]["pair_counts"].as_array().unwrap();
    let total: u64 = counts.iter().map(|c| c[2].as_u64().unwrap()).sum();
    assert_eq!(
        total,
        5 * 2,
        "two student layers per micro-batch, one micro-batch per step"
    );
    assert!(
        distiller
            .last_stats()
            .unwrap()
            .pairs
            .iter()
            .all(|p| p.teacher >= p.student)
    );
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn projections_are_checkpointed_with_the_trainer_and_restored_on_resume() {
    let data = toy_data(32, 10);
    let out = std::env::temp_dir().join(format!("prune-distill-ckpt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let cfg = DistillConfig {
        projection: ProjectionConfig {
            mode: ProjectionMode::Always,
            ..ProjectionConfig::default()
        },
        ..DistillConfig::default()
    };
    let train = |steps| TrainConfig {
        checkpoint_every: Some(4),
        ..train_config(steps)
    };
    let teacher = model::<f32>(config(2, 16, 2, 0.0), 22);
    let mut student = model::<f32>(config(2, 16, 2, 0.0), 23);
    let mut first = Distiller::new(teacher.clone(), cfg.clone())
        .unwrap()
        .with_checkpoints(&out, Some(4))
        .unwrap();
    first
        .attach(
            Trainer::new(train(8), &data, 0)
                .unwrap()
                .with_output_dir(&out),
        )
        .run(&mut student, false)
        .unwrap();
    let saved = first.projections();
    let mut second = Distiller::new(teacher, cfg)
        .unwrap()
        .with_checkpoints(&out, Some(4))
        .unwrap();
    assert_eq!(second.resume().unwrap(), Some(8));
    let b = CpuBackend::new();
    let restored = second.projections();
    for s in 1..=2 {
        let (a, r) = (saved.get(s).unwrap(), restored.get(s).unwrap());
        assert_eq!(a.linear, r.linear);
        assert_eq!(a.steps(), 8);
        assert_eq!(r.steps(), 8);
        assert_eq!(r.d_in(&b), 16);
    }
    let mut fresh = Distiller::new(
        model::<f32>(config(2, 16, 2, 0.0), 22),
        DistillConfig::default(),
    )
    .unwrap();
    assert!(
        fresh
            .resume()
            .unwrap_err()
            .to_string()
            .contains("with_checkpoints")
    );
    std::fs::remove_dir_all(&out).unwrap();
}
