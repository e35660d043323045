//! The whole head-pruning recipe as the CLI composes it, on the tiny model: `config_list`
//! → dry run → movement pruning inside the trainer → masks saved → heads from the masks →
//! per-layer FFN targets → Taylor with AGP on the FFN.

mod common;

use common::{D, H, tiny, toy_data, train_config};
use prune_data::Metric;
use prune_pruners::{
    ConfigList, Growth, HeadRule, Iterative, Masks, MovementPruner, MovementSettings, TaylorPruner,
    ffn_config_list, ffn_sparse_ratios, kept_heads, modules_of, pruned_heads, restore_heads,
};
use prune_train::{Evaluator, Trainer};

#[test]
fn movement_heads_then_taylor_ffn() {
    let train = toy_data(64, 1);
    let dev = toy_data(16, 2);
    let mut model = tiny(8);

    // 1. The v3 tutorial's attention config, with blocks of one head (D × D).
    let config = ConfigList::from_json_str(&format!(
        r#"[{{"op_types": ["Linear"],
              "op_names_re": ["bert\\.encoder\\.layer\\.[0-9]*\\.attention\\.*"],
              "sparse_threshold": 0.1, "granularity": [{D}, {D}]}}]"#
    ))
    .unwrap();
    let listing = config.dry_run(&modules_of(&model.bert)).unwrap();
    assert!(listing.contains("prunes 8 module(s)"), "{listing}");

    // 2. Movement pruning inside the trainer (scores take a few steps to move, so the test
    //    uses a high score learning rate and a strong regulariser).
    let settings = MovementSettings {
        score_lr: 0.1,
        ..MovementSettings::new(4, 20, 1.0)
    };
    let mut movement = MovementPruner::from_config(&config, &model.bert, settings).unwrap();
    let eval = Evaluator::new(dev, &[Metric::Accuracy], 16, 0).unwrap();
    let trainer = Trainer::new(train_config(30), &train, 0)
        .unwrap()
        .with_evaluator(&eval);
    let (masks, summary) = movement.compress(trainer, &mut model, false).unwrap();
    assert!(summary.evaluation.is_some());
    assert!(masks.sparsity() > 0.0, "something was pruned");

    // 3. Masks to disk and back (the speedup may run in another process).
    let path =
        std::env::temp_dir().join(format!("prune-recipe-{}.safetensors", std::process::id()));
    masks.save(&path).unwrap();
    let masks = Masks::load(&path).unwrap();
    let _ = std::fs::remove_file(&path);

    // 4. Heads: NNI v3's rule, partial heads restored whole.
    let cfg = model.bert.config.clone();
    let dead = pruned_heads(&masks, &cfg, HeadRule::QkvO).unwrap();
    let restored = restore_heads(&masks, &cfg, HeadRule::QkvO).unwrap();
    assert_eq!(pruned_heads(&restored, &cfg, HeadRule::QkvO).unwrap(), dead);
    let kept = kept_heads(&cfg, &dead);
    assert!(kept.iter().all(|&k| k <= H));

    // 5. FFN targets per layer, then Taylor with AGP (here 3 updates every 2 steps).
    let ratios = ffn_sparse_ratios(&kept, H);
    let ffn = ffn_config_list(&ratios).unwrap();
    restored.apply(&mut model.bert).unwrap();
    let mut taylor = TaylorPruner::from_config(
        &ffn,
        &model.bert,
        Iterative::new(Growth::Agp, 2, 3).unwrap(),
    )
    .unwrap();
    let trainer = Trainer::new(train_config(6), &train, 0).unwrap();
    let (ffn_masks, _) = taylor.compress(trainer, &mut model).unwrap();
    for (l, r) in ratios.iter().enumerate() {
        if *r < 1.0 {
            let m = ffn_masks
                .get(&format!("encoder.layer.{l}.intermediate.dense.weight"))
                .unwrap();
            let pruned = m.pruned_blocks();
            assert_eq!(pruned, (64.0 * r).floor() as usize, "layer {l}");
        }
    }
    // both sets of masks are on the model: the attention's and the FFN's
    let on_model = model.bert.masks().unwrap();
    assert!(on_model.layers[0].intermediate.weight.is_some());
}
