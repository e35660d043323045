//! Taylor pruning: the importance of a weight row against a finite-difference computation
//! on a 2-layer model, planted unimportant rows and columns, dependency-aware masks shared
//! across traced groups (heads, hidden width), AGP inside the trainer.

mod common;

use common::{D, H, Recorder, edit_param, model_mask, tiny, tiny_on, toy_data, train_config};
use prune_train::TrainConfig;

/// Statistics only: the weights stay as planted (Adam would move a planted weight by
/// about the learning rate per step, whatever its scale).
fn frozen(steps: u64) -> TrainConfig {
    TrainConfig {
        lr: 0.0,
        ..train_config(steps)
    }
}
use prune_data::collate;
use prune_pruners::{
    ConfigList, Growth, HeadRule, Iterative, Selection, TaylorPruner, modules_of, pruned_heads,
};
use prune_tensor::{CpuBackend, Tensor};
use prune_train::ByRef;
use prune_train::Trainer;
use prune_transformer::groups::bert_groups;
use prune_transformer::{BertForSequenceClassification, ForwardOptions};

const FFN1: &str = "encoder.layer.1.intermediate.dense.weight";

fn select<B: prune_tensor::Backend>(
    model: &BertForSequenceClassification<B>,
    json: &str,
) -> Selection {
    ConfigList::from_json_str(json)
        .unwrap()
        .select(&modules_of(&model.bert))
        .unwrap()
}

#[test]
fn importance_of_a_row_is_the_sum_of_squared_weight_times_gradient() {
    let mut model = tiny_on::<f64>(7);
    // mask row 7 entirely and half of row 5: masked weights must not count
    let mask: Vec<f64> = (0..64 * 32)
        .map(|i| {
            let (r, c) = (i / 32, i % 32);
            if r == 7 || (r == 5 && c < 16) {
                0.0
            } else {
                1.0
            }
        })
        .collect();
    let mut masks = model.bert.empty_masks();
    masks.layers[1].intermediate.weight = Some(Tensor::new([64, 32], mask.clone()).unwrap());
    model.bert.set_masks(Some(masks)).unwrap();
    let data = toy_data(8, 4);
    let batch = collate(&data.iter().collect::<Vec<_>>(), 0).unwrap();
    let opts = ForwardOptions::default();
    let (_, _, cache) = model
        .forward_t(&batch.inputs, batch.labels.as_targets(), &opts)
        .unwrap();
    let mut grads = model.bert.zero_grads().unwrap();
    model.backward(cache, 1.0, &mut grads).unwrap();

    let sel = select(
        &model,
        r#"[{"op_names": ["bert.encoder.layer.1.intermediate.dense"], "sparse_ratio": 0.5}]"#,
    );
    let mut pruner = TaylorPruner::new(&sel, Iterative::once(1).unwrap()).unwrap();
    pruner.accumulate(&model.bert, &grads).unwrap();
    pruner.accumulate(&model.bert, &grads).unwrap();
    assert_eq!(pruner.passes(), 2);
    let metric = &pruner.metrics()[0];
    assert_eq!(metric.len(), 64, "one value per output row");

    // By hand: g = ∂L/∂w of the raw weight by central differences, Σ_c (w·g)².
    let w: Vec<f64> = model.bert.params.get(FFN1).unwrap().data().to_vec();
    let loss = |m: &BertForSequenceClassification<CpuBackend<f64>>| {
        m.forward_t(&batch.inputs, batch.labels.as_targets(), &opts)
            .unwrap()
            .0
    };
    let h = 1e-4;
    for row in [0, 5, 7, 40] {
        let mut by_hand = 0.0;
        for c in 0..32 {
            let i = row * 32 + c;
            let mut at = |x: f64| {
                let mut v = w.clone();
                v[i] = x;
                *model.bert.params.get_mut(FFN1).unwrap() = Tensor::new([64, 32], v).unwrap();
                loss(&model)
            };
            let g = (at(w[i] + h) - at(w[i] - h)) / (2.0 * h);
            at(w[i]);
            by_hand += (w[i] * g).powi(2);
        }
        if row == 7 {
            assert_eq!(metric[row], 0.0, "a masked row scores 0");
        } else {
            let rel = (metric[row] - by_hand).abs() / by_hand;
            assert!(
                rel < 1e-4,
                "row {row}: {} vs {by_hand} ({rel:e})",
                metric[row]
            );
        }
    }
}

#[test]
fn planted_unimportant_rows_are_the_ones_pruned() {
    let data = toy_data(48, 2);
    let mut model = tiny(3);
    // rows 0..16 of layer 0's FFN input projection barely matter
    edit_param(
        &mut model.bert,
        "encoder.layer.0.intermediate.dense.weight",
        |i, x| {
            if i / 32 < 16 { x * 1e-3 } else { x }
        },
    );
    let sel = select(
        &model,
        r#"[{"op_names": ["encoder.layer.0.intermediate.dense"], "sparse_ratio": 0.25}]"#,
    );
    let mut pruner = TaylorPruner::new(&sel, Iterative::once(4).unwrap()).unwrap();
    let trainer = Trainer::new(frozen(4), &data, 0).unwrap();
    let (masks, _) = pruner.compress(trainer, &mut model).unwrap();
    let keep = &masks
        .get("encoder.layer.0.intermediate.dense.weight")
        .unwrap()
        .keep();
    let expected: Vec<bool> = (0..64).map(|r| r >= 16).collect();
    assert_eq!(keep, &expected);
    let bias = model_mask(&model.bert, "encoder.layer.0.intermediate.dense.bias").unwrap();
    assert_eq!(
        bias,
        expected.iter().map(|&k| f32::from(k)).collect::<Vec<_>>()
    );
}

#[test]
fn traced_head_groups_give_q_k_v_and_o_one_mask_and_planted_heads_go() {
    let data = toy_data(48, 2);
    let mut model = tiny(3);
    for (name, rows) in [
        ("query", true),
        ("key", true),
        ("value", true),
        ("output.dense", false),
    ] {
        let p = if rows {
            format!("encoder.layer.0.attention.self.{name}.weight")
        } else {
            format!("encoder.layer.0.attention.{name}.weight")
        };
        // head 1 = rows 8..16 of Q/K/V, columns 8..16 of O
        edit_param(&mut model.bert, &p, |i, x| {
            let ch = if rows { i / 32 } else { i % 32 };
            if (D..2 * D).contains(&ch) {
                x * 1e-3
            } else {
                x
            }
        });
    }
    let sel = select(
        &model,
        r#"[{"op_names_re": ["bert\\.encoder\\.layer\\.[0-9]+\\.attention\\.self\\..*"],
             "sparse_ratio": 0.5, "granularity": "out_channel"},
            {"op_partial_names": ["attention.output.dense"], "sparse_ratio": 0.5,
             "granularity": "in_channel"}]"#,
    );
    let groups = bert_groups(&model.bert.config, true, true).unwrap();
    let sel = sel.with_groups(&groups).unwrap();
    assert!(sel.targets.iter().all(|t| t.dependency_group.is_some()));
    let mut pruner = TaylorPruner::new(&sel, Iterative::once(4).unwrap()).unwrap();
    let trainer = Trainer::new(frozen(4), &data, 0).unwrap();
    let (masks, _) = pruner.compress(trainer, &mut model).unwrap();
    for l in 0..2 {
        let pre = format!("encoder.layer.{l}.attention");
        let q = masks.get(&format!("{pre}.self.query.weight")).unwrap();
        let per_head = |flags: Vec<bool>| -> Vec<bool> {
            flags
                .chunks(D)
                .map(|c| {
                    assert!(c.iter().all(|x| *x == c[0]), "whole heads only");
                    c[0]
                })
                .collect()
        };
        let heads = per_head(q.rows_alive());
        assert_eq!(heads.iter().filter(|a| !**a).count(), H / 2);
        for n in ["self.key", "self.value"] {
            let m = masks.get(&format!("{pre}.{n}.weight")).unwrap();
            assert_eq!(per_head(m.rows_alive()), heads, "{n} of layer {l}");
        }
        let o = masks.get(&format!("{pre}.output.dense.weight")).unwrap();
        assert_eq!(per_head(o.cols_alive()), heads, "O of layer {l}");
        if l == 0 {
            assert!(!heads[1], "the planted head goes");
        }
    }
    let dead = pruned_heads(&masks, &model.bert.config, HeadRule::QkvO).unwrap();
    assert_eq!(dead.values().map(Vec::len).collect::<Vec<_>>(), [2, 2]);
    assert!(dead[&0].contains(&1));
}

/// Makes hidden channels 0..8 unimportant: embedding columns and the rows of the dense
/// layers writing the residual stream.
fn plant_hidden(model: &mut BertForSequenceClassification<CpuBackend>) {
    let mut names: Vec<(String, bool)> = ["word", "position", "token_type"]
        .iter()
        .map(|t| (format!("embeddings.{t}_embeddings.weight"), true))
        .collect();
    for l in 0..2 {
        for d in ["attention.output.dense", "output.dense"] {
            names.push((format!("encoder.layer.{l}.{d}.weight"), false));
        }
    }
    for (name, columns) in names {
        let width = if name.ends_with("output.dense.weight") && !name.contains("attention") {
            64
        } else {
            32
        };
        edit_param(&mut model.bert, &name, |i, x| {
            let ch = if columns { i % 32 } else { i / width };
            if ch < 8 { x * 1e-3 } else { x }
        });
    }
}

#[test]
fn traced_hidden_group_prunes_the_same_columns_of_embeddings_and_rows_of_residual_writers() {
    let data = toy_data(48, 2);
    let json = r#"[{"op_types": ["Embedding"], "op_names_re": ["bert\\.embeddings.*"],
                    "sparse_ratio": 0.25, "granularity": [-1, 1]},
                   {"op_names_re": [".*output\\.dense"], "sparse_ratio": 0.25}]"#;
    let mut model = tiny(3);
    plant_hidden(&mut model);
    let groups = bert_groups(&model.bert.config, true, true).unwrap();
    let sel = select(&model, json).with_groups(&groups).unwrap();
    assert_eq!(sel.targets.len(), 3 + 4);
    let mut pruner = TaylorPruner::new(&sel, Iterative::once(3).unwrap()).unwrap();
    let trainer = Trainer::new(frozen(3), &data, 0).unwrap();
    let (masks, _) = pruner.compress(trainer, &mut model).unwrap();
    let word = masks.get("embeddings.word_embeddings.weight").unwrap();
    let expected: Vec<bool> = (0..32).map(|c| c >= 8).collect();
    assert_eq!(word.keep(), expected, "planted columns go");
    for t in ["position", "token_type"] {
        let m = masks
            .get(&format!("embeddings.{t}_embeddings.weight"))
            .unwrap();
        assert_eq!(m.keep(), word.keep(), "{t} shares the mask");
    }
    for l in 0..2 {
        for d in ["attention.output.dense", "output.dense"] {
            let m = masks.get(&format!("encoder.layer.{l}.{d}.weight")).unwrap();
            assert_eq!(m.rows_alive(), expected, "rows of {d} in layer {l}");
        }
    }
    // the config-level dependency group (NNI's dependency_group_id) gives the same masks
    let json_dep = json.replace(
        "\"sparse_ratio\"",
        "\"dependency_group_id\": 1, \"sparse_ratio\"",
    );
    let mut model2 = tiny(3);
    plant_hidden(&mut model2);
    let mut p2 =
        TaylorPruner::new(&select(&model2, &json_dep), Iterative::once(3).unwrap()).unwrap();
    let (masks2, _) = p2
        .compress(Trainer::new(frozen(3), &data, 0).unwrap(), &mut model2)
        .unwrap();
    assert_eq!(masks2, masks);
}

#[test]
fn agp_raises_the_ratio_at_every_interval_inside_the_trainer() {
    let data = toy_data(48, 2);
    let mut model = tiny(3);
    let sel = select(
        &model,
        &format!(
            r#"[{{"op_names": ["{}"], "sparse_ratio": 0.5}}]"#,
            &FFN1[..FFN1.len() - 7]
        ),
    );
    let schedule = Iterative::new(Growth::Agp, 2, 4).unwrap();
    let mut pruner = TaylorPruner::new(&sel, schedule).unwrap();
    let mut rec = Recorder::new(FFN1);
    Trainer::new(train_config(11), &data, 0)
        .unwrap()
        .with_callback(ByRef(&mut pruner))
        .with_callback(ByRef(&mut rec))
        .run(&mut model, false)
        .unwrap();
    assert_eq!(pruner.updates(), 4);
    // goal 0.5 of 64 rows: ⌊32 · agp(k)⌋ = 18, 28, 31, 32 rows of 32 elements at 2, 4, 6, 8
    let rows = |z: Option<usize>| z.map_or(0, |z| z / 32);
    let seen: Vec<usize> = rec.zeros.iter().map(|&z| rows(z)).collect();
    assert_eq!(seen, [0, 18, 18, 28, 28, 31, 31, 32, 32, 32, 32]);
    assert_eq!(pruner.masks().sparsity(), 0.5);
}
