//! Masks → heads (NNI v3's rule and the v2 tutorial's), partial heads restored whole, the
//! masked model against the head-pruned model, mask files, bias masks, the level pruner on
//! planted magnitudes, and the pruner's dead heads against the surgery planner's.

mod common;

use common::{C, D, F, H, edit_param, model_mask, tiny, tiny_config};
use prune_pruners::{
    Blocking, ConfigList, HeadRule, LevelPruner, Masks, Norm, ParamMask, ffn_sparse_ratios,
    kept_heads, modules_of, pruned_heads, restore_heads,
};
use prune_tensor::Storage;
use std::collections::BTreeMap;

fn attn(l: usize, w: &str) -> String {
    match w {
        "o" => format!("encoder.layer.{l}.attention.output.dense.weight"),
        q => format!("encoder.layer.{l}.attention.self.{q}.weight"),
    }
}

/// A [32, 32] mask in [8, 8] blocks with the given blocks (row-major over [4, 4]) pruned.
fn blocks_pruned(pruned: &[usize]) -> ParamMask {
    let b = Blocking::new(vec![C, C], vec![D, D]).unwrap();
    let keep = (0..16).map(|i| !pruned.contains(&i)).collect();
    ParamMask::new("w", b, keep).unwrap()
}

/// Q of layer 0 loses head 0 (block row 0) and half of head 1; V of layer 1 loses head 2;
/// O of layer 0 loses the input columns of head 3 (block column 3).
fn planted_masks() -> Masks {
    let mut m = Masks::new();
    m.insert(&attn(0, "query"), blocks_pruned(&[0, 1, 2, 3, 4, 5]));
    m.insert(&attn(1, "value"), blocks_pruned(&[8, 9, 10, 11]));
    m.insert(&attn(0, "o"), blocks_pruned(&[3, 7, 11, 15]));
    m
}

#[test]
fn v3_rule_kills_a_head_dead_in_any_of_q_k_v_o_and_v2_looks_at_v_only() {
    let cfg = tiny_config(0.0);
    let m = planted_masks();
    let v3 = pruned_heads(&m, &cfg, HeadRule::QkvO).unwrap();
    assert_eq!(v3, BTreeMap::from([(0, vec![0, 3]), (1, vec![2])]));
    let v2 = pruned_heads(&m, &cfg, HeadRule::ValueOnly).unwrap();
    assert_eq!(v2, BTreeMap::from([(1, vec![2])]));
    assert_eq!(kept_heads(&cfg, &v3), [2, 3]);
    assert_eq!(ffn_sparse_ratios(&kept_heads(&cfg, &v3), H), [0.75, 0.625]);
    // after surgery removed original head 1 of layer 0, positions map to original numbers
    let mut cut = cfg.clone();
    cut.pruned_heads.insert(0, [1].into());
    cut.layer_heads[0] = 3;
    let mut m3 = Masks::new();
    let b = Blocking::new(vec![3 * D, C], vec![D, C]).unwrap();
    m3.insert(
        &attn(0, "key"),
        ParamMask::new("k", b, vec![true, false, true]).unwrap(),
    );
    let dead = pruned_heads(&m3, &cut, HeadRule::QkvO).unwrap();
    assert_eq!(
        dead,
        BTreeMap::from([(0, vec![2])]),
        "position 1 is original head 2"
    );
}

#[test]
fn partial_heads_are_restored_whole_and_dead_heads_masked_whole() {
    let cfg = tiny_config(0.0);
    let restored = restore_heads(&planted_masks(), &cfg, HeadRule::QkvO).unwrap();
    // layer 0: heads 0 and 3 dead, head 1 (half masked in Q) restored
    let rows: Vec<bool> = (0..H).flat_map(|h| vec![h == 1 || h == 2; D]).collect();
    for w in ["query", "key", "value"] {
        assert_eq!(restored.get(&attn(0, w)).unwrap().rows_alive(), rows, "{w}");
        assert!(
            restored
                .get(&attn(0, w))
                .unwrap()
                .cols_alive()
                .iter()
                .all(|a| *a)
        );
    }
    let o = restored.get(&attn(0, "o")).unwrap();
    assert_eq!(o.cols_alive(), rows);
    assert!(o.rows_alive().iter().all(|a| *a));
    // layer 1: only head 2 dead, in all four
    let rows1: Vec<bool> = (0..H).flat_map(|h| vec![h != 2; D]).collect();
    assert_eq!(restored.get(&attn(1, "query")).unwrap().rows_alive(), rows1);
    assert_eq!(restored.get(&attn(1, "o")).unwrap().cols_alive(), rows1);
    // restoring is idempotent and keeps the same dead heads
    let again = restore_heads(&restored, &cfg, HeadRule::QkvO).unwrap();
    assert_eq!(again, restored);
}

#[test]
fn the_restored_masked_model_computes_what_the_model_without_those_heads_does() {
    let data = common::toy_data(8, 5);
    let batch = prune_data::collate(&data.iter().collect::<Vec<_>>(), 0).unwrap();
    let mut masked = tiny(11);
    let mut cut = masked.clone();
    let cfg = masked.bert.config.clone();
    let restored = restore_heads(&planted_masks(), &cfg, HeadRule::QkvO).unwrap();
    restored.apply(&mut masked.bert).unwrap();
    let dead = pruned_heads(&restored, &cfg, HeadRule::QkvO).unwrap();
    // a head mask of 0 removes a head's contribution exactly, as surgery does
    let head_mask: Vec<Vec<f32>> = (0..2)
        .map(|l| {
            (0..H)
                .map(|h| f32::from(!dead.get(&l).is_some_and(|d| d.contains(&h))))
                .collect()
        })
        .collect();
    cut.bert.set_head_mask(Some(head_mask)).unwrap();
    let b = *masked.bert.backend();
    let a = b.download(&masked.logits(&batch.inputs).unwrap()).unwrap();
    let c = b.download(&cut.logits(&batch.inputs).unwrap()).unwrap();
    assert!(a.max_abs_diff(&c) < 1e-5, "max |Δ| {}", a.max_abs_diff(&c));
    let dense = tiny(11);
    let d = b.download(&dense.logits(&batch.inputs).unwrap()).unwrap();
    assert!(a.max_abs_diff(&d) > 1e-4, "pruning changed something");
}

#[test]
fn masks_expand_with_bias_rows_and_round_trip_through_safetensors() {
    let mut model = tiny(2);
    let masks = planted_masks();
    masks.apply(&mut model.bert).unwrap();
    let w = model_mask(&model.bert, &attn(0, "query")).unwrap();
    assert_eq!(w.iter().filter(|&&x| x == 0.0).count(), 6 * 64);
    let bias = model_mask(&model.bert, "encoder.layer.0.attention.self.query.bias").unwrap();
    let expected: Vec<f32> = (0..C).map(|r| f32::from(r >= D)).collect();
    assert_eq!(bias, expected, "a bias lives iff some of its row does");
    let o_bias = model_mask(&model.bert, "encoder.layer.0.attention.output.dense.bias");
    assert!(o_bias.is_none(), "every row of O keeps some columns");
    assert!(model_mask(&model.bert, &attn(0, "key")).is_none());

    let dir = std::env::temp_dir().join(format!("prune-masks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("masks.safetensors");
    masks.save(&path).unwrap();
    let back = Masks::load(&path).unwrap();
    assert_eq!(back, masks);
    let other = dir.join("params.safetensors");
    prune_transformer::save_params(
        &other,
        &model.bert.to_host().unwrap(),
        model.bert.config.family,
    )
    .unwrap();
    let msg = Masks::load(&other).unwrap_err().to_string();
    assert!(msg.contains("not a mask file"), "{msg}");
    let _ = std::fs::remove_dir_all(&dir);

    // a mask made for another shape is refused
    let mut wrong = Masks::new();
    wrong.insert(
        &attn(0, "query"),
        ParamMask::ones(Blocking::new(vec![8, 8], vec![1, 1]).unwrap()),
    );
    assert!(wrong.apply(&mut model.bert).is_err());
}

#[test]
fn level_pruner_removes_the_planted_small_rows_heads_and_columns() {
    let mut model = tiny(6);
    // FFN rows 10..20 of layer 1, head 2 of layer 0's value, word-embedding columns 0..4
    edit_param(
        &mut model.bert,
        "encoder.layer.1.intermediate.dense.weight",
        |i, x| {
            if (10..20).contains(&(i / C)) {
                x * 0.01
            } else {
                x
            }
        },
    );
    edit_param(&mut model.bert, &attn(0, "value"), |i, x| {
        if i / C / D == 2 { x * 0.01 } else { x }
    });
    edit_param(
        &mut model.bert,
        "embeddings.word_embeddings.weight",
        |i, x| {
            if i % C < 4 { x * 0.01 } else { x }
        },
    );
    let cl = ConfigList::from_json_str(
        r#"[{"op_names": ["encoder.layer.1.intermediate.dense"], "sparse_ratio": 0.15625},
            {"op_names": ["encoder.layer.0.attention.self.value"], "sparse_ratio": 0.25,
             "granularity": [8, -1]},
            {"op_names": ["embeddings.word_embeddings"], "sparse_ratio": 0.125}]"#,
    )
    .unwrap();
    for norm in [Norm::L1, Norm::L2] {
        let masks = LevelPruner::from_config(&cl, &model.bert, norm)
            .unwrap()
            .compress(&model.bert)
            .unwrap();
        let ffn = &masks
            .get("encoder.layer.1.intermediate.dense.weight")
            .unwrap()
            .keep();
        assert_eq!(ffn.len(), F);
        assert_eq!(
            *ffn,
            (0..F).map(|r| !(10..20).contains(&r)).collect::<Vec<_>>()
        );
        let v = &masks.get(&attn(0, "value")).unwrap().keep();
        assert_eq!(*v, [true, true, false, true]);
        let word = &masks
            .get("embeddings.word_embeddings.weight")
            .unwrap()
            .keep();
        assert_eq!(*word, (0..C).map(|c| c >= 4).collect::<Vec<_>>());
        let dead = pruned_heads(&masks, &model.bert.config, HeadRule::ValueOnly).unwrap();
        assert_eq!(dead, BTreeMap::from([(0, vec![2])]));
    }
    assert_eq!(modules_of(&model.bert).len(), 4 + 2 * 8 + 2);
}

#[test]
fn the_pruner_and_the_surgery_planner_agree_on_dead_heads_for_random_masks() {
    use prune_tensor::rng::Rng;
    let model = tiny(3);
    let mut rng = Rng::new(11);
    let mut seen_dead = 0;
    for trial in 0..40 {
        let mut masks = Masks::new();
        for l in 0..2 {
            for w in ["query", "key", "value", "o"] {
                if rng.uniform() < 0.3 {
                    continue;
                }
                // Q, K, V in blocks of half a head's rows; O in blocks of half a head's
                // columns; some blocks kept at random.
                let (shape, (rows, cols)) =
                    (vec![C, C], if w == "o" { (C, D / 2) } else { (D / 2, C) });
                let b = Blocking::new(shape, vec![rows, cols]).unwrap();
                let keep = (0..(C / rows) * (C / cols))
                    .map(|_| rng.uniform() > 0.35)
                    .collect();
                masks.insert(&attn(l, w), ParamMask::new("w", b, keep).unwrap());
            }
        }
        let by_pruner = pruned_heads(&masks, &model.bert.config, HeadRule::QkvO).unwrap();
        let tree = masks.to_model(&model.bert).unwrap();
        let plan = prune_speedup::plan_from_masks(&model.bert, &tree).unwrap();
        let by_planner = plan.removed_heads();
        assert_eq!(by_pruner, by_planner, "trial {trial}");
        seen_dead += by_pruner.values().map(Vec::len).sum::<usize>();
    }
    assert!(seen_dead > 10, "the draws kill too few heads ({seen_dead})");
}
