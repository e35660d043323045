//! The iterative loop on a tiny model: FFN neurons (and hidden channels) are cut out of
//! the live student between distillation steps, the optimizer moments follow, training
//! goes on with a decreasing loss, and a run killed between rounds resumes to the same
//! model as one that never stopped.

mod common;

use common::{Recorder, config, mean, model, toy_data, train_config};
use prune_distill::{DistillConfig, Distiller, IterativeConfig, IterativePruning, MomentPolicy};
use prune_speedup::GroupKind;
use prune_tensor::{Backend, CpuBackend};
use prune_train::{Callback, Optimizer, StepInfo, TrainError, Trainer};
use prune_transformer::{BertForSequenceClassification, BertParams};
use std::collections::BTreeMap;

type Model = BertForSequenceClassification<CpuBackend>;

/// A teacher and a student that is the teacher without head 1 of layer 0.
fn pair() -> (Model, Model) {
    let teacher = model::<f32>(config(2, 16, 2, 0.0), 11);
    let mut student = teacher.clone();
    prune_speedup::prune_heads(&mut student.bert, &BTreeMap::from([(0, vec![1])])).unwrap();
    (teacher, student)
}

/// Checks after every step that the optimizer's moments have the parameters' shapes.
struct ShapesAgree;

impl<B: Backend> Callback<B> for ShapesAgree {
    fn after_step(
        &mut self,
        _info: &StepInfo,
        model: &mut BertForSequenceClassification<B>,
        optimizer: &mut Optimizer<B::Tensor>,
    ) -> prune_train::Result<()> {
        let b = model.bert.backend();
        let params = model.bert.params.named();
        for ((name, p), ((_, m), (_, v))) in params
            .iter()
            .zip(optimizer.m.named().iter().zip(optimizer.v.named()))
        {
            assert_eq!(b.shape(p), b.shape(m), "first moment of {name}");
            assert_eq!(b.shape(p), b.shape(v), "second moment of {name}");
        }
        Ok(())
    }
}

/// Fails the run after step `0`, as a killed process would stop it.
struct Crash(u64);

impl<B: Backend> Callback<B> for Crash {
    fn after_step(
        &mut self,
        info: &StepInfo,
        _model: &mut BertForSequenceClassification<B>,
        _optimizer: &mut Optimizer<B::Tensor>,
    ) -> prune_train::Result<()> {
        if info.step == self.0 {
            return Err(TrainError::Config("killed".into()));
        }
        Ok(())
    }
}

fn loop_config(hidden: Option<f64>, moments: MomentPolicy) -> IterativeConfig {
    IterativeConfig {
        interval: 5,
        rounds: 3,
        ffn: vec![0.5],
        hidden,
        moments,
        ..IterativeConfig::default()
    }
}

#[test]
fn ffn_rounds_cut_the_live_student_and_its_moments_and_the_loss_keeps_falling() {
    let data = toy_data(64, 3);
    let (teacher, mut student) = pair();
    let params_before = student.bert.num_parameters();
    let distiller = Distiller::new(teacher, DistillConfig::default()).unwrap();
    let mut it =
        IterativePruning::new(distiller, loop_config(None, MomentPolicy::Slice), &student).unwrap();
    let rec = Recorder::default();
    let trainer = Trainer::new(train_config(40), &data, 0).unwrap();
    it.attach(trainer)
        .with_callback(ShapesAgree)
        .with_callback(rec.clone())
        .run(&mut student, false)
        .unwrap();
    let rounds = it.rounds();
    let steps: Vec<u64> = rounds.iter().map(|r| r.step).collect();
    assert_eq!(steps, [5, 10, 15]);
    // AGP towards half of 32: 32 − ⌊16 · (1 − (1 − k/3)³)⌋.
    let widths: Vec<Vec<usize>> = rounds.iter().map(|r| r.ffn.clone()).collect();
    assert_eq!(widths, [vec![21, 21], vec![17, 17], vec![16, 16]]);
    assert_eq!(student.bert.config.intermediate(0), 16);
    assert_eq!(student.bert.params.layers[1].output.weight.dims(), [16, 16]);
    assert!(rounds.windows(2).all(|w| w[1].parameters < w[0].parameters));
    assert!(rounds[0].parameters < params_before);
    let plan = it.plan().unwrap();
    let ffn0 = plan.get(GroupKind::Ffn { layer: 0 }).unwrap();
    assert_eq!((ffn0.channels, ffn0.keep.len()), (32, 16));
    let losses = rec.losses();
    assert_eq!(losses.len(), 40);
    assert!(
        mean(&losses[35..]) < mean(&losses[15..20]),
        "loss after the last round did not fall: {losses:?}"
    );
    assert!(mean(&losses[35..]) < mean(&losses[..5]), "{losses:?}");
    assert!(
        it.distiller()
            .mapping_histogram()
            .entries()
            .iter()
            .all(|(s, t, _)| t >= s)
    );
}

#[test]
fn hidden_rounds_cut_the_projections_too_and_reset_moments_on_request() {
    let data = toy_data(64, 4);
    let (teacher, mut student) = pair();
    let distiller = Distiller::new(teacher, DistillConfig::default()).unwrap();
    let mut it = IterativePruning::new(
        distiller,
        loop_config(Some(0.25), MomentPolicy::Reset),
        &student,
    )
    .unwrap();
    let rec = Recorder::default();
    let trainer = Trainer::new(train_config(30), &data, 0).unwrap();
    it.attach(trainer)
        .with_callback(ShapesAgree)
        .with_callback(rec.clone())
        .run(&mut student, false)
        .unwrap();
    let hidden: Vec<usize> = it.rounds().iter().map(|r| r.hidden).collect();
    // 16 − ⌊4 · (1 − (1 − k/3)³)⌋
    assert_eq!(hidden, [14, 13, 12]);
    assert_eq!(student.bert.config.hidden(), 12);
    let b = CpuBackend::new();
    let set = it.distiller().projections();
    for s in 1..=2 {
        let p = set.get(s).unwrap();
        assert_eq!((p.d_in(&b), p.d_out(&b)), (12, 16));
        assert!(p.steps() > 0);
    }
    let plan = it.plan().unwrap();
    assert_eq!(plan.get(GroupKind::Hidden).unwrap().keep.len(), 12);
    let losses = rec.losses();
    assert!(mean(&losses[25..]) < mean(&losses[15..20]), "{losses:?}");
}

#[test]
fn a_run_killed_between_rounds_resumes_to_the_same_model() {
    let data = toy_data(64, 5);
    let cfg = || prune_train::TrainConfig {
        checkpoint_every: Some(5),
        ..train_config(20)
    };
    let run = |out: &std::path::Path, crash: Option<u64>, resume: bool| {
        let (teacher, mut student) = pair();
        let distiller = Distiller::new(teacher, DistillConfig::default())
            .unwrap()
            .with_checkpoints(out, Some(5))
            .unwrap();
        let mut it = IterativePruning::new(
            distiller,
            loop_config(Some(0.25), MomentPolicy::Slice),
            &student,
        )
        .unwrap()
        .with_checkpoints(out, Some(5))
        .unwrap();
        if resume {
            assert_eq!(it.resume().unwrap(), Some(10));
        }
        let mut trainer = it.attach(Trainer::new(cfg(), &data, 0).unwrap().with_output_dir(out));
        if let Some(at) = crash {
            trainer = trainer.with_callback(Crash(at));
        }
        let result = trainer.run(&mut student, resume).map(|_| ());
        drop(trainer);
        (result, student, it.rounds().to_vec())
    };
    let root = std::env::temp_dir().join(format!("prune-distill-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (whole, crashed) = (root.join("whole"), root.join("crashed"));
    let (ok, reference, rounds) = run(&whole, None, false);
    ok.unwrap();
    let (killed, _, _) = run(&crashed, Some(12), false);
    assert!(killed.unwrap_err().to_string().contains("killed"));
    let (ok, resumed, resumed_rounds) = run(&crashed, None, true);
    ok.unwrap();
    assert_eq!(resumed_rounds, rounds);
    // The resumed model was read back from a checkpoint, whose config.json names the
    // architecture and labels: the shapes are what must agree.
    let shapes = |m: &BertForSequenceClassification<CpuBackend>| {
        BertParams::expected(&m.bert.config, true, true)
    };
    assert_eq!(shapes(&resumed), shapes(&reference));
    assert_eq!(
        resumed.bert.config.pruned_heads,
        reference.bert.config.pruned_heads
    );
    assert_eq!(
        resumed.bert.to_host().unwrap(),
        reference.bert.to_host().unwrap()
    );
    std::fs::remove_dir_all(&root).unwrap();
}
