//! Each step of retraining-free pruning on tiny random models: mask gradients against
//! finite differences, planted importances found by the search, rearrangement that never
//! raises its objective, mask tuning that recovers planted scales, and the whole run within
//! its budget.

use anyhow::Result;
use ndarray::Array2;
use prune_data::synthetic::marker_task;
use prune_data::{LabelledBatch, collate};
use prune_posttrain::head::refit_head;
use prune_posttrain::rearrange::{objective, rearrange};
use prune_posttrain::{
    Budget, CostModel, Costs, LatencyTable, PostTrainConfig, TuneConfig, mask_gradients,
    post_train, search, tune,
};
use prune_tensor::rng::Rng;
use prune_tensor::{CpuBackend, Tensor};
use prune_transformer::{BertConfig, BertForSequenceClassification, BertModel, ForwardOptions};

type Cpu = CpuBackend<f32>;
/// The encoder under test.
type Model = BertModel<Cpu>;

/// Linear costs per head and per neuron.
fn linear(head: f64, neuron: f64) -> Costs {
    Costs {
        head: CostModel::linear(head),
        neuron: CostModel::linear(neuron),
    }
}

/// A tiny classifier (3 layers, hidden 32, 4 heads of 8, FFN 24) with non-trivial weights.
fn tiny(seed: u64) -> BertForSequenceClassification<Cpu> {
    let mut config = BertConfig::new(40, 32, 3, 4, 24).unwrap();
    config.num_labels = Some(2);
    let mut m = BertModel::random(Cpu::new(), config, true, true, seed).unwrap();
    let mut rng = Rng::new(seed + 1);
    for (_, t) in m.params.named_mut() {
        for v in t.data_mut() {
            *v += rng.range(-0.2, 0.2) as f32;
        }
    }
    BertForSequenceClassification::new(m).unwrap()
}

/// `n` batches of 8 labelled examples of the marker task (padded, varied lengths).
fn batches(n: usize, seed: u64) -> Vec<LabelledBatch> {
    let examples = marker_task(8 * n, 40, 7, seed);
    examples
        .chunks(8)
        .map(|c| collate(&c.iter().collect::<Vec<_>>(), 0).unwrap())
        .collect()
}

fn loss(model: &BertForSequenceClassification<Cpu>, b: &LabelledBatch) -> f64 {
    let m = prune_posttrain::fisher::without_dropout(model);
    let opts = ForwardOptions::default();
    m.forward_t(&b.inputs, b.labels.as_targets(), &opts)
        .unwrap()
        .0
}

/// Multiplies columns `from..to` of `w` (`[out, in]`) by `s`.
fn scale_cols(w: &mut Tensor<f32>, from: usize, to: usize, s: f32) {
    let cols = w.dims()[1];
    for row in w.data_mut().chunks_mut(cols) {
        row[from..to].iter_mut().for_each(|v| *v *= s);
    }
}

#[test]
fn mask_gradients_match_finite_differences() -> Result<()> {
    let model = tiny(3);
    let data = batches(2, 11);
    let g = mask_gradients(&model, &data)?;
    assert_eq!(g.heads[0].dim(), (4, 2));
    assert_eq!(g.neurons[2].dim(), (24, 2));
    let eps = 1e-2f32;
    for (l, unit, head) in [(0, 1, true), (2, 3, true), (1, 5, false), (2, 20, false)] {
        let at = |s: f32| {
            let mut m = model.clone();
            let layer = &mut m.bert.params.layers[l];
            if head {
                scale_cols(
                    &mut layer.attention_output.weight,
                    unit * 8,
                    unit * 8 + 8,
                    s,
                );
            } else {
                scale_cols(&mut layer.output.weight, unit, unit + 1, s);
            }
            loss(&m, &data[1])
        };
        let fd = (at(1.0 + eps) - at(1.0 - eps)) / (2.0 * f64::from(eps));
        let an = if head {
            g.heads[l][[unit, 1]]
        } else {
            g.neurons[l][[unit, 1]]
        };
        assert!(
            (fd - an).abs() <= 2e-3 * (1.0 + an.abs()),
            "layer {l} unit {unit} head {head}: finite difference {fd}, gradient {an}"
        );
    }
    Ok(())
}

#[test]
fn planted_unimportant_units_are_pruned_first() -> Result<()> {
    let mut model = tiny(5);
    // Heads 1 and 3 of layer 0, head 0 of layer 2 and every odd neuron of layer 1 do nothing.
    let dead_heads = [(0, 1), (0, 3), (2, 0)];
    for &(l, h) in &dead_heads {
        scale_cols(
            &mut model.bert.params.layers[l].attention_output.weight,
            h * 8,
            h * 8 + 8,
            0.0,
        );
    }
    for n in (1..24).step_by(2) {
        scale_cols(
            &mut model.bert.params.layers[1].output.weight,
            n,
            n + 1,
            0.0,
        );
    }
    let g = mask_gradients(&model, &batches(3, 2))?;
    let (hf, nf) = (g.head_fisher(), g.neuron_fisher());
    for &(l, h) in &dead_heads {
        assert_eq!(hf[l][h], 0.0);
    }
    // A budget of every live unit: the search keeps exactly those.
    let costs = linear(10.0, 1.0);
    let live_heads = 12 - dead_heads.len();
    let live_neurons = 3 * 24 - 12;
    let s = search(
        &hf,
        &nf,
        costs,
        10.0 * live_heads as f64 + live_neurons as f64,
    );
    assert_eq!(s.heads, vec![vec![0, 2], vec![0, 1, 2, 3], vec![1, 2, 3]]);
    assert_eq!(s.neurons[1], (0..24).step_by(2).collect::<Vec<_>>());
    assert_eq!(s.neurons[0].len() + s.neurons[2].len(), 48);
    Ok(())
}

#[test]
fn the_search_finds_the_best_pair_within_the_budget() {
    let mut rng = Rng::new(9);
    for trial in 0..20 {
        let hf: Vec<Vec<f64>> = (0..2)
            .map(|_| (0..3).map(|_| rng.uniform()).collect())
            .collect();
        let nf: Vec<Vec<f64>> = (0..2)
            .map(|_| (0..5).map(|_| rng.uniform() * 0.3).collect())
            .collect();
        let costs = linear(4.0, 1.0);
        let budget = rng.range(0.0, 34.0);
        let s = search(&hf, &nf, costs, budget);
        let cost = costs.of_selection(&s);
        assert!(cost <= budget, "trial {trial}: cost {cost} over {budget}");
        let score = |sel: &[Vec<usize>], f: &[Vec<f64>]| -> f64 {
            sel.iter()
                .enumerate()
                .map(|(l, k)| k.iter().map(|&u| f[l][u]).sum::<f64>())
                .sum()
        };
        let got = score(&s.heads, &hf) + score(&s.neurons, &nf);
        // Brute force over counts; within a count the largest importances are best.
        let sorted = |f: &[Vec<f64>]| {
            let mut v: Vec<f64> = f.concat();
            v.sort_by(|a, b| b.total_cmp(a));
            v
        };
        let (hs, ns) = (sorted(&hf), sorted(&nf));
        let mut best: f64 = 0.0;
        for h in 0..=6 {
            for n in 0..=10 {
                if (4 * h + n) as f64 <= budget {
                    best = best.max(hs[..h].iter().sum::<f64>() + ns[..n].iter().sum::<f64>());
                }
            }
        }
        assert!(
            (got - best).abs() < 1e-12,
            "trial {trial}: {got} vs best {best}"
        );
    }
}

#[test]
fn rearrangement_never_raises_the_objective() {
    let mut rng = Rng::new(4);
    for trial in 0..30 {
        let (n, batches) = (3 + rng.below(20), 1 + rng.below(8));
        let g = Array2::from_shape_fn((n, batches), |_| rng.normal());
        let pruned = rng.below(n + 1);
        let mut lowest: Vec<usize> = (0..n).collect();
        let fisher: Vec<f64> = g.rows().into_iter().map(|r| r.dot(&r)).collect();
        lowest.sort_by(|&a, &b| fisher[a].total_cmp(&fisher[b]).then(a.cmp(&b)));
        lowest.truncate(pruned);
        let set = rearrange(&g, pruned);
        assert_eq!(set.len(), pruned, "trial {trial}");
        assert!(set.windows(2).all(|w| w[0] < w[1]) && set.iter().all(|&u| u < n));
        assert!(
            objective(&g, &set) <= objective(&g, &lowest) + 1e-9,
            "trial {trial}: {} > {}",
            objective(&g, &set),
            objective(&g, &lowest)
        );
    }
    // Two units that nearly cancel are pruned together rather than the two smallest.
    let g = ndarray::arr2(&[[1.0, 0.0], [-1.0, 0.0], [0.0, 0.9], [0.8, 0.0]]);
    let set = rearrange(&g, 2);
    assert_eq!(set, vec![1, 3]);
    assert!(objective(&g, &set) < 0.05 && objective(&g, &[2, 3]) > 1.4);
}

/// `teacher` with every head's and neuron's output scaled by a planted `1/s`, and, with
/// `shift`, every output projection's bias moved by a planted offset.
fn planted_student(teacher: &Model, shift: bool) -> Model {
    let mut student = teacher.clone();
    let mut rng = Rng::new(1);
    for layer in &mut student.params.layers {
        for h in 0..4 {
            let s = rng.range(0.5, 1.5) as f32;
            scale_cols(
                &mut layer.attention_output.weight,
                h * 8,
                h * 8 + 8,
                1.0 / s,
            );
        }
        for n in 0..24 {
            let s = rng.range(0.5, 1.5) as f32;
            scale_cols(&mut layer.output.weight, n, n + 1, 1.0 / s);
        }
        if shift {
            for bias in [&mut layer.attention_output.bias, &mut layer.output.bias] {
                bias.data_mut()
                    .iter_mut()
                    .for_each(|v| *v += rng.range(-0.5, 0.5) as f32);
            }
        }
    }
    student
}

/// The largest difference between the teacher's and the student's output projections.
fn projection_gap(teacher: &Model, student: &Model) -> f32 {
    let mut gap = 0.0f32;
    for (t, s) in teacher.params.layers.iter().zip(&student.params.layers) {
        for (a, b) in [
            (&t.attention_output.weight, &s.attention_output.weight),
            (&t.attention_output.bias, &s.attention_output.bias),
            (&t.output.weight, &s.output.weight),
            (&t.output.bias, &s.output.bias),
        ] {
            (a.data().iter().zip(b.data())).for_each(|(x, y)| gap = gap.max((x - y).abs()));
        }
    }
    gap
}

#[test]
fn mask_tuning_recovers_planted_scales() -> Result<()> {
    let teacher = tiny(8).bert;
    let data: Vec<_> = batches(12, 3).into_iter().map(|b| b.inputs).collect();
    // Plain and norm-aware: the planted scales reproduce the teacher either way.
    for norm in [false, true] {
        let mut student = planted_student(&teacher, false);
        let cfg = TuneConfig {
            damping: 0.0,
            max_scale: 10.0,
            bias: false,
            norm,
        };
        let report = tune(&teacher, &mut student, &data, &cfg)?;
        assert_eq!(report.stopped, None);
        assert_eq!(report.fits.len(), 6);
        for f in &report.fits {
            assert!(f.error_after <= 1e-6 * f.error_before, "norm {norm}: {f:?}");
            assert_eq!(f.bias_shift, 0.0);
        }
        let gap = projection_gap(&teacher, &student);
        assert!(gap < 1e-3, "norm {norm}: weights differ by {gap}");
    }
    let both = TuneConfig {
        bias: true,
        norm: true,
        ..TuneConfig::default()
    };
    let mut student = planted_student(&teacher, false);
    assert!(tune(&teacher, &mut student, &data, &both).is_err());
    // The fits are of tokens the pooler can see: with damping, an ill-posed layer stops.
    let mut broken = teacher.clone();
    scale_cols(
        &mut broken.params.layers[1].attention_output.weight,
        0,
        32,
        0.0,
    );
    let report = tune(&teacher, &mut broken, &data, &TuneConfig::default())?;
    assert!(
        report
            .stopped
            .as_deref()
            .is_some_and(|s| s.starts_with("layer 1 attention")),
        "{report:?}"
    );
    Ok(())
}

#[test]
fn the_head_refit_recovers_a_planted_classifier() -> Result<()> {
    let teacher = tiny(8).bert;
    // 96 examples, more than the 33 unknowns per class.
    let data: Vec<_> = batches(12, 3).into_iter().map(|b| b.inputs).collect();
    let mut planted = teacher.params.classifier.clone().unwrap();
    let mut rng = Rng::new(5);
    for t in [&mut planted.weight, &mut planted.bias] {
        t.data_mut()
            .iter_mut()
            .for_each(|v| *v += rng.range(-0.5, 0.5) as f32);
    }
    let mut student = teacher.clone();
    student.params.classifier = Some(planted.clone());
    let fit = refit_head(&teacher, &mut student, &data, 0.0)?;
    assert!(fit.error[0] > 1.0, "{fit:?}");
    assert!(fit.error[1] <= 1e-6 * fit.error[0], "{fit:?}");
    let (t, s) = (
        teacher.params.classifier.as_ref().unwrap(),
        student.params.classifier.as_ref().unwrap(),
    );
    for (a, b) in [(&t.weight, &s.weight), (&t.bias, &s.bias)] {
        let gap = (a.data().iter().zip(b.data())).fold(0f32, |g, (x, y)| g.max((x - y).abs()));
        assert!(gap < 1e-3, "classifier differs by {gap}");
    }
    // Heavily damped towards the planted classifier, the fit moves only part of the way.
    let mut damped = teacher.clone();
    damped.params.classifier = Some(planted);
    let loose = refit_head(&teacher, &mut damped, &data, 1e3)?;
    assert!(
        loose.error[1] < loose.error[0] && loose.error[1] > 1e3 * fit.error[1],
        "{loose:?}"
    );
    Ok(())
}

#[test]
fn bias_correction_recovers_planted_scales_and_biases() -> Result<()> {
    let teacher = tiny(8).bert;
    let data: Vec<_> = batches(12, 3).into_iter().map(|b| b.inputs).collect();
    let cfg = |bias| TuneConfig {
        damping: 0.0,
        max_scale: 10.0,
        bias,
        norm: false,
    };
    let mut student = planted_student(&teacher, true);
    let report = tune(&teacher, &mut student, &data, &cfg(true))?;
    assert_eq!(report.stopped, None);
    for f in &report.fits {
        assert!(f.error_after <= 1e-6 * f.error_before, "{f:?}");
        assert!(f.bias_shift > 0.1, "{f:?}");
    }
    let gap = projection_gap(&teacher, &student);
    assert!(gap < 1e-3, "projections differ by {gap}");
    // Scales alone cannot undo a moved bias.
    let mut scales_only = planted_student(&teacher, true);
    let report = tune(&teacher, &mut scales_only, &data, &cfg(false))?;
    assert!(
        report
            .fits
            .iter()
            .all(|f| f.error_after > 1e-3 * f.error_before),
        "{report:?}"
    );
    Ok(())
}

#[test]
fn the_pruned_model_fits_the_budget_and_every_fit_lowers_its_error() -> Result<()> {
    let model = tiny(12);
    let data = batches(6, 5);
    for tune_it in [false, true] {
        let cfg = PostTrainConfig {
            ratio: 0.5,
            budget: Budget::Flops,
            rearrange: true,
            tune: tune_it.then(TuneConfig::default),
            refit_head: tune_it.then_some(1e-3),
        };
        let (pruned, plan, report) = post_train(&model, &data, &cfg)?;
        assert!(
            report.flops_ratio() <= 0.5 + 1e-12,
            "{}",
            report.flops_ratio()
        );
        assert!(report.flops_ratio() > 0.3, "{}", report.flops_ratio());
        for l in 0..3 {
            assert_eq!(pruned.bert.config.heads(l), report.selection.heads[l].len());
            assert_eq!(
                pruned.bert.config.intermediate(l),
                report.selection.neurons[l].len()
            );
        }
        assert!(!plan.is_identity());
        assert_eq!(
            pruned.bert.config.hidden_dropout_prob,
            model.bert.config.hidden_dropout_prob
        );
        match &report.head {
            Some(h) => assert!(h.error[1] <= h.error[0], "{h:?}"),
            None => assert!(!tune_it),
        }
        match &report.tune {
            Some(t) => {
                assert!(!t.fits.is_empty());
                for f in &t.fits {
                    assert!(f.error_after <= f.error_before, "{f:?}");
                }
            }
            None => assert!(!tune_it),
        }
    }
    let bad = PostTrainConfig {
        ratio: 0.0,
        budget: Budget::Flops,
        rearrange: false,
        tune: None,
        refit_head: None,
    };
    assert!(post_train(&model, &data, &bad).is_err());
    let negative = PostTrainConfig {
        ratio: 0.5,
        refit_head: Some(-1.0),
        ..bad
    };
    assert!(post_train(&model, &data, &negative).is_err());
    Ok(())
}

#[test]
fn a_latency_budget_keeps_every_layers_free_units_and_fits() -> Result<()> {
    let model = tiny(13);
    let data = batches(4, 6);
    // A table with a fixed cost up to 2 heads and 6 neurons, linear beyond.
    let table = LatencyTable {
        batch: 8,
        seq: 40,
        heads: (1..=4usize)
            .map(|h| (h, 1.0 + 0.5 * h.saturating_sub(2) as f64))
            .collect(),
        neurons: (1..=4)
            .map(|i| (6 * i, 0.8 + 0.1 * (6 * i - 6) as f64))
            .collect(),
        seconds: 0.0,
    };
    let cfg = PostTrainConfig {
        ratio: 0.6,
        budget: Budget::Latency(table),
        rearrange: true,
        tune: Some(TuneConfig::default()),
        refit_head: None,
    };
    let (pruned, _, report) = post_train(&model, &data, &cfg)?;
    assert_eq!(report.costs.head.free, 2);
    assert_eq!(report.costs.neuron.free, 6);
    assert!(report.budget_ratio() <= 0.6 + 1e-12, "{report:?}");
    assert!(report.budget_ratio() > 0.4, "{report:?}");
    for l in 0..3 {
        assert!(pruned.bert.config.heads(l) >= 2 && pruned.bert.config.intermediate(l) >= 6);
    }
    Ok(())
}
