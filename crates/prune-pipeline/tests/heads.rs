//! The heads stage from Rust code: movement pruning in hard mode (half the heads of every
//! layer, ranked on the value projections) inside a short training run, then surgery of the
//! dead heads: the model comes out cut, without masks, with the statistics it reports.

use prune_pipeline::heads::{default_config_list, prune_heads};
use prune_pruners::{HeadRule, MovementPruner, MovementSettings};
use prune_tensor::CpuBackend;
use prune_train::{TrainConfig, Trainer};
use prune_transformer::{BertConfig, BertForSequenceClassification, BertModel};

#[test]
fn half_the_heads_of_every_layer_are_cut_after_movement_pruning() {
    let config = BertConfig::new(20, 32, 2, 4, 64).unwrap();
    let bert = BertModel::random(CpuBackend::<f32>::new(), config, true, true, 4).unwrap();
    let mut model = BertForSequenceClassification::new(bert).unwrap();
    let list = default_config_list(8, Some(0.5)).unwrap();
    let mut movement =
        MovementPruner::from_config(&list, &model.bert, MovementSettings::new(1, 4, 0.0)).unwrap();
    let data = prune_data::synthetic::marker_task(48, 20, 7, 3);
    let train = TrainConfig {
        max_steps: Some(6),
        batch_size: 8,
        lr: 3e-3,
        progress_bar: false,
        ..TrainConfig::default()
    };
    let trainer = Trainer::new(train, &data, 0).unwrap();
    let done = prune_heads(
        &mut model,
        &mut movement,
        trainer,
        HeadRule::ValueOnly,
        false,
    )
    .unwrap();
    assert_eq!(done.summary.steps, 6);
    assert_eq!(model.bert.config.layer_heads, vec![2, 2]);
    assert_eq!(
        (done.before.heads.clone(), done.after.heads.clone()),
        (vec![4, 4], vec![2, 2])
    );
    assert!(model.bert.masks().is_none());
    let removed = done.plan.removed_heads();
    assert_eq!(removed.values().map(Vec::len).collect::<Vec<_>>(), [2, 2]);
    assert_eq!(model.bert.num_parameters(), done.after.parameters);
    // The soft entry of NNI's v3 tutorial for another head dim.
    let soft = default_config_list(64, None).unwrap();
    assert_eq!(soft.entries.len(), 1);
}
