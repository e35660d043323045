//! The heads stage as a library call: movement pruning of a fine-tuned model's attention
//! (NNI's v3 recipe: Q/K/V/O in head-sized blocks, soft mode with a regulariser, or one hard
//! ratio over the value projections), then the heads the chosen rule finds dead are
//! removed by speedup surgery, the surviving heads restored whole first.

use crate::error::Result;
use crate::report::REPORT_SEQ;
use prune_graph::PruningPlan;
use prune_pruners::{ConfigList, HeadRule, Masks, MovementPruner, restore_heads};
use prune_speedup::{ModelStats, apply, plan_from_masks};
use prune_tensor::Backend;
use prune_train::{TrainSummary, Trainer};
use prune_transformer::BertForSequenceClassification;

/// The v3 tutorial's attention entry for a model with head dim `d` (soft mode, threshold
/// 0.1), or with `sparse_ratio`, one hard entry over the value projections in whole-head
/// row blocks.
pub fn default_config_list(d: usize, sparse_ratio: Option<f64>) -> Result<ConfigList> {
    let text = match sparse_ratio {
        None => format!(
            r#"[{{"op_types": ["Linear"],
                  "op_names_re": ["bert\\.encoder\\.layer\\.[0-9]*\\.attention\\..*"],
                  "sparse_threshold": 0.1, "granularity": [{d}, {d}]}}]"#
        ),
        Some(r) => format!(
            r#"[{{"op_types": ["Linear"],
                  "op_names_re": ["bert\\.encoder\\.layer\\.[0-9]*\\.attention\\.self\\.value"],
                  "sparse_ratio": {r}, "granularity": [{d}, -1]}}]"#
        ),
    };
    Ok(ConfigList::from_json_str(&text)?)
}

/// What [`prune_heads`] did.
#[derive(Clone, Debug)]
pub struct HeadsOutcome {
    /// The movement pruner's final masks.
    pub masks: Masks,
    /// The surgery applied (the dead heads of each layer).
    pub plan: PruningPlan,
    /// The training run the pruner rode along.
    pub summary: TrainSummary,
    /// The model's statistics before surgery, at [`REPORT_SEQ`] tokens.
    pub before: ModelStats,
    /// And after.
    pub after: ModelStats,
}

/// Trains `model` with `trainer` while `movement` prunes its attention (continuing the
/// newest checkpoint with `resume`, after [`MovementPruner::resume`]), then removes every
/// head `rule` finds dead. The model is left cut and without masks.
pub fn prune_heads<B: Backend>(
    model: &mut BertForSequenceClassification<B>,
    movement: &mut MovementPruner,
    trainer: Trainer<'_, B>,
    rule: HeadRule,
    resume: bool,
) -> Result<HeadsOutcome> {
    let (masks, summary) = movement.compress(trainer, model, resume)?;
    let bert = &mut model.bert;
    let before = ModelStats::of(&bert.config, true, true, REPORT_SEQ);
    restore_heads(&masks, &bert.config, rule)?.apply(bert)?;
    let weight_masks = bert.masks().cloned().unwrap_or_else(|| bert.empty_masks());
    let plan = plan_from_masks(bert, &weight_masks)?;
    apply(bert, &plan, &mut [])?;
    bert.set_masks(None)?;
    let after = ModelStats::of(&bert.config, true, true, REPORT_SEQ);
    Ok(HeadsOutcome {
        masks,
        plan,
        summary,
        before,
        after,
    })
}
