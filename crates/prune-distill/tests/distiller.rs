//! The distillation objective on tiny models in f64: its gradient through the student and
//! the projections against central differences, for each mapping rule, token selection
//! and projection kind; a teacher equal to the student maps every layer to itself at zero
//! loss.

mod common;

use common::{batch, config, model};
use prune_data::BatchLabels;
use prune_distill::{
    DistillConfig, Distiller, LayerMapping, ProjectionConfig, ProjectionInit, ProjectionMode,
    TokenSelection,
};
use prune_tensor::CpuBackend;
use prune_tensor::Tensor;
use prune_tensor::gradcheck::GradCheck;
use prune_tensor::rng::Rng;
use prune_train::Objective;
use prune_transformer::BertForSequenceClassification;

type M64 = BertForSequenceClassification<CpuBackend<f64>>;

/// The distillation loss of `student` on `b` with fresh gradients, and the gradients.
fn run(
    d: &mut Distiller<CpuBackend<f64>>,
    student: &M64,
    b: &prune_data::LabelledBatch,
) -> (f64, prune_transformer::BertParams<Tensor<f64>>) {
    let mut grads = student.bert.zero_grads().unwrap();
    let loss = d.accumulate(student, b, 0, 1.0, &mut grads).unwrap();
    (loss, grads)
}

/// Checks the gradient of the distillation loss with respect to the student parameters
/// `names` and, when `projection` names a student state, that projection's parameters.
/// Returns the distiller after its first evaluation's statistics were checked.
fn check(
    teacher: M64,
    student: M64,
    cfg: DistillConfig,
    labels: BatchLabels,
    names: &[&str],
    projection: Option<usize>,
) -> Distiller<CpuBackend<f64>> {
    let b = batch(labels);
    let mut d = Distiller::new(teacher, cfg).unwrap();
    let (loss, grads) = run(&mut d, &student, &b);
    assert!(loss.is_finite() && loss > 0.0);
    let stats = d.last_stats().unwrap();
    assert!(!stats.pairs.is_empty());
    // The projection's accumulator holds this first evaluation's gradient.
    let proj_grad = projection.map(|s| d.projections().get(s).unwrap().grad().clone());
    let mut rng = Rng::new(17);
    let gc = GradCheck {
        samples: 12,
        ..GradCheck::default()
    };
    for name in names {
        let x = student.bert.params.get(name).unwrap().clone();
        let g = grads.get(name).unwrap().clone();
        let mut probe = student.clone();
        gc.run(
            &x,
            &g,
            |x| {
                *probe.bert.params.get_mut(name).unwrap() = x.clone();
                run(&mut d, &probe, &b).0
            },
            &mut rng,
        )
        .unwrap_or_else(|m| panic!("{name}: {m:?}"));
    }
    if let (Some(s), Some(g)) = (projection, proj_grad) {
        let p = d.projections().get(s).unwrap().linear.clone();
        gc.run(
            &p.weight,
            &g.weight,
            |w| {
                d.update_projections(|set| set.get_mut(s).unwrap().linear.weight = w.clone());
                run(&mut d, &student, &b).0
            },
            &mut rng,
        )
        .unwrap_or_else(|m| panic!("projection weight: {m:?}"));
        d.update_projections(|set| set.get_mut(s).unwrap().linear.weight = p.weight.clone());
        gc.run(
            &p.bias,
            &g.bias,
            |bias| {
                d.update_projections(|set| set.get_mut(s).unwrap().linear.bias = bias.clone());
                run(&mut d, &student, &b).0
            },
            &mut rng,
        )
        .unwrap_or_else(|m| panic!("projection bias: {m:?}"));
        d.update_projections(|set| set.get_mut(s).unwrap().linear.bias = p.bias.clone());
    }
    d
}

const PARAMS: [&str; 5] = [
    "embeddings.word_embeddings.weight",
    "encoder.layer.0.attention.self.query.weight",
    "encoder.layer.1.intermediate.dense.weight",
    "encoder.layer.1.output.LayerNorm.bias",
    "classifier.weight",
];

#[test]
fn dynamic_mapping_on_real_tokens() {
    // A deeper teacher than student, equal widths: no projection.
    let teacher = model::<f64>(config(3, 16, 3, 0.0), 1);
    let student = model::<f64>(config(2, 16, 3, 0.0), 2);
    let d = check(
        teacher,
        student,
        DistillConfig::default(),
        BatchLabels::Classes(vec![2, 0]),
        &PARAMS,
        None,
    );
    assert!(d.projections().is_empty());
    let pairs = d.last_stats().unwrap().pairs;
    assert_eq!(pairs.len(), 2);
    assert!(
        pairs
            .iter()
            .all(|p| p.teacher >= p.student && p.teacher <= 3)
    );
}

#[test]
fn ordered_mapping_through_least_squares_projections_of_a_narrower_student() {
    let teacher = model::<f64>(config(3, 16, 3, 0.0), 3);
    let student = model::<f64>(config(2, 12, 3, 0.0), 4);
    let cfg = DistillConfig {
        mapping: LayerMapping::Ordered { teacher: None },
        ..DistillConfig::default()
    };
    let d = check(
        teacher,
        student,
        cfg,
        BatchLabels::Classes(vec![1, 2]),
        &PARAMS,
        Some(2),
    );
    let set = d.projections();
    let p = set.get(1).unwrap();
    let b = CpuBackend::<f64>::new();
    assert_eq!((p.d_in(&b), p.d_out(&b)), (12, 16));
    let pairs = d.last_stats().unwrap().pairs;
    assert!(pairs.windows(2).all(|w| w[0].student <= w[1].student));
}

#[test]
fn fixed_pairs_with_a_shared_random_projection_on_every_token_for_regression() {
    let teacher = model::<f64>(config(2, 16, 1, 0.0), 5);
    let student = model::<f64>(config(2, 16, 1, 0.0), 6);
    let cfg = DistillConfig {
        mapping: LayerMapping::Fixed {
            pairs: vec![(0, 0), (1, 2), (2, 2)],
        },
        tokens: TokenSelection::All,
        projection: ProjectionConfig {
            mode: ProjectionMode::Always,
            init: ProjectionInit::Random,
            shared: true,
            ..ProjectionConfig::default()
        },
        ..DistillConfig::default()
    };
    let d = check(
        teacher,
        student,
        cfg,
        BatchLabels::Scores(vec![0.5, -1.0]),
        &PARAMS,
        Some(0),
    );
    let stats = d.last_stats().unwrap();
    assert_eq!(stats.pairs.len(), 3);
    assert!(stats.kd.unwrap() > 0.0 && stats.ce.unwrap() > 0.0);
}

#[test]
fn a_teacher_equal_to_the_student_maps_every_layer_to_itself_at_zero_loss() {
    let student = model::<f64>(config(2, 16, 3, 0.0), 7);
    for mapping in [
        LayerMapping::Dynamic,
        LayerMapping::Ordered { teacher: None },
    ] {
        let cfg = DistillConfig {
            mapping,
            ..DistillConfig::default()
        };
        let mut d = Distiller::new(student.clone(), cfg).unwrap();
        let b = batch(BatchLabels::Classes(vec![0, 1]));
        let (_, grads) = run(&mut d, &student, &b);
        let stats = d.last_stats().unwrap();
        let chosen: Vec<(usize, usize)> =
            stats.pairs.iter().map(|p| (p.student, p.teacher)).collect();
        assert_eq!(chosen, [(1, 1), (2, 2)]);
        assert!(stats.layer.unwrap() < 1e-24, "{:?}", stats.layer);
        assert!(stats.kd.unwrap() < 1e-24, "{:?}", stats.kd);
        // Only the task loss is left to learn from.
        assert!(grads.classifier.unwrap().weight.max_abs() > 0.0);
    }
    let mut hist = Distiller::new(student.clone(), DistillConfig::default()).unwrap();
    run(
        &mut hist,
        &student,
        &batch(BatchLabels::Classes(vec![0, 1])),
    );
    assert_eq!(hist.mapping_histogram().entries(), [(1, 1, 1), (2, 2, 1)]);
}

#[test]
fn mismatched_models_and_settings_are_errors_not_panics() {
    let teacher = model::<f64>(config(2, 16, 3, 0.0), 1);
    let narrow = model::<f64>(config(2, 12, 3, 0.0), 2);
    let b = batch(BatchLabels::Classes(vec![0, 1]));
    let off = DistillConfig {
        projection: ProjectionConfig {
            mode: ProjectionMode::Off,
            ..ProjectionConfig::default()
        },
        ..DistillConfig::default()
    };
    let mut d = Distiller::new(teacher.clone(), off).unwrap();
    let mut grads = narrow.bert.zero_grads().unwrap();
    let e = d.accumulate(&narrow, &b, 0, 1.0, &mut grads).unwrap_err();
    assert!(e.to_string().contains("projections are off"), "{e}");
    let two_labels = model::<f64>(config(2, 16, 2, 0.0), 3);
    let mut d = Distiller::new(teacher.clone(), DistillConfig::default()).unwrap();
    let e = d
        .accumulate(&two_labels, &b, 0, 1.0, &mut grads)
        .unwrap_err();
    assert!(e.to_string().contains("logit"), "{e}");
    let bad = DistillConfig {
        mapping: LayerMapping::Fixed {
            pairs: vec![(5, 1)],
        },
        ..DistillConfig::default()
    };
    let mut d = Distiller::new(teacher.clone(), bad).unwrap();
    let student = model::<f64>(config(2, 16, 3, 0.0), 4);
    let mut grads = student.bert.zero_grads().unwrap();
    let e = d.accumulate(&student, &b, 0, 1.0, &mut grads).unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
    let e = Distiller::new(
        teacher,
        DistillConfig {
            temperature: -1.0,
            ..DistillConfig::default()
        },
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("temperature"), "{e}");
}

#[test]
fn least_squares_projections_start_closer_than_random_ones() {
    let teacher = model::<f64>(config(2, 16, 3, 0.0), 8);
    let mut student = teacher.clone();
    let mut plan = prune_speedup::PruningPlan::new();
    plan.keep(
        prune_speedup::GroupKind::Hidden,
        16,
        &[0, 2, 3, 5, 7, 8, 9, 11, 12, 14, 15],
    )
    .unwrap();
    prune_speedup::apply(&mut student.bert, &plan, &mut []).unwrap();
    let b = batch(BatchLabels::Classes(vec![0, 1]));
    let first = |init| {
        let cfg = DistillConfig {
            projection: ProjectionConfig {
                init,
                ..ProjectionConfig::default()
            },
            ..DistillConfig::default()
        };
        let mut d = Distiller::new(teacher.clone(), cfg).unwrap();
        run(&mut d, &student, &b);
        d.last_stats().unwrap().layer.unwrap()
    };
    let (ls, random) = (
        first(ProjectionInit::LeastSquares),
        first(ProjectionInit::Random),
    );
    assert!(ls < 0.1 * random, "least squares {ls}, random {random}");
}
