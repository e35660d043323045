//! Masks to plans: NNI v3's head rule (any of Q, K, V losing all rows of a head, or the
//! attention output losing all its columns), partially masked heads kept whole, FFN neurons
//! and hidden channels from their producers (those that remove some channel), and a clear
//! error when those disagree.

mod common;

use anyhow::Result;
use common::{Cpu, tiny};
use prune_graph::GroupKind;
use prune_speedup::{SpeedupError, plan_from_masks};
use prune_tensor::Tensor;
use prune_transformer::{BertModel, WeightMasks};

/// Sets the mask of `name` to ones with `zero(row, col)` entries zeroed.
fn mask(
    model: &BertModel<Cpu>,
    masks: &mut WeightMasks<Tensor<f32>>,
    name: &str,
    zero: impl Fn(usize, usize) -> bool,
) {
    let p = model.params.get(name).unwrap();
    let cols = p.dims().get(1).copied().unwrap_or(1);
    let m = Tensor::from_fn(p.shape().clone(), |i| {
        if zero(i / cols, i % cols) { 0.0 } else { 1.0 }
    });
    *masks.get_mut(name).unwrap() = Some(m);
}

const D: usize = 8; // head dim of the tiny model (32 / 4)

#[test]
fn heads_follow_nni_v3() -> Result<()> {
    let model = tiny(1);
    let mut masks = model.empty_masks();
    let l0 = "encoder.layer.0.attention.";
    // Q loses all rows of head 0; V loses half the rows of head 1 (kept whole); the output
    // dense loses all columns of head 3.
    mask(
        &model,
        &mut masks,
        &format!("{l0}self.query.weight"),
        |r, _| r < D,
    );
    mask(
        &model,
        &mut masks,
        &format!("{l0}self.value.weight"),
        |r, _| (D..D + D / 2).contains(&r),
    );
    mask(
        &model,
        &mut masks,
        &format!("{l0}output.dense.weight"),
        |_, c| c >= 3 * D,
    );
    // Layer 1: K loses one head's worth of rows, spread over heads 0 and 1: no head goes.
    mask(
        &model,
        &mut masks,
        "encoder.layer.1.attention.self.key.weight",
        |r, c| (4..12).contains(&r) && c < 32,
    );
    let plan = plan_from_masks(&model, &masks)?;
    assert_eq!(plan.groups.len(), 1, "{plan:?}");
    let heads = plan.get(GroupKind::Heads { layer: 0 }).unwrap();
    assert_eq!((heads.channels, heads.keep.clone()), (4, vec![1, 2]));
    Ok(())
}

#[test]
fn a_layer_losing_every_head_keeps_the_hidden_width() -> Result<()> {
    let model = tiny(4);
    let mut masks = model.empty_masks();
    // Every head of layer 1 dies: all rows of V, and all input columns of the output dense,
    // which therefore zeroes every hidden row it writes.
    let l1 = "encoder.layer.1.attention.";
    mask(
        &model,
        &mut masks,
        &format!("{l1}self.value.weight"),
        |_, _| true,
    );
    mask(
        &model,
        &mut masks,
        &format!("{l1}output.dense.weight"),
        |_, _| true,
    );
    let plan = plan_from_masks(&model, &masks)?;
    let heads = plan.get(GroupKind::Heads { layer: 1 }).unwrap();
    assert!(heads.keep.is_empty(), "{plan:?}");
    assert!(plan.get(GroupKind::Hidden).is_none(), "{plan:?}");
    assert_eq!(plan.groups.len(), 1, "{plan:?}");
    Ok(())
}

#[test]
fn ffn_and_hidden_from_their_producers() -> Result<()> {
    let model = tiny(2);
    let mut masks = model.empty_masks();
    let ffn = "encoder.layer.1.intermediate.dense";
    mask(&model, &mut masks, &format!("{ffn}.weight"), |r, _| {
        r % 4 == 0
    });
    mask(&model, &mut masks, &format!("{ffn}.bias"), |r, _| {
        r % 4 == 0
    });
    // Consumers do not decide: the output dense losing columns removes nothing by itself;
    // nor does it vote on the hidden width, where it zeroes no whole row.
    mask(
        &model,
        &mut masks,
        "encoder.layer.0.output.dense.weight",
        |_, c| c < 10,
    );
    // A residual writer removing the same hidden channels agrees.
    mask(
        &model,
        &mut masks,
        "encoder.layer.1.attention.output.dense.weight",
        |r, _| r == 5 || r == 7,
    );
    // The hidden width: the three embedding tables agree on columns 5 and 7.
    for t in ["word", "position", "token_type"] {
        let name = format!("embeddings.{t}_embeddings.weight");
        mask(&model, &mut masks, &name, |_, c| c == 5 || c == 7);
    }
    let plan = plan_from_masks(&model, &masks)?;
    let f = plan.get(GroupKind::Ffn { layer: 1 }).unwrap();
    assert_eq!(f.keep.len(), 48);
    assert!(f.keep.iter().all(|k| k % 4 != 0));
    assert!(plan.get(GroupKind::Ffn { layer: 0 }).is_none());
    assert_eq!(plan.get(GroupKind::Hidden).unwrap().removed(), vec![5, 7]);
    Ok(())
}

#[test]
fn disagreeing_masks_are_refused() {
    let model = tiny(3);
    let mut masks = model.empty_masks();
    mask(
        &model,
        &mut masks,
        "embeddings.word_embeddings.weight",
        |_, c| c == 5,
    );
    mask(
        &model,
        &mut masks,
        "embeddings.position_embeddings.weight",
        |_, c| c == 6,
    );
    let e = plan_from_masks(&model, &masks).unwrap_err();
    assert!(
        matches!(e, SpeedupError::MaskConflict { channel: 5, .. }),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "masks of the hidden group disagree on channel 5: it is fully masked in \
         `embeddings.word_embeddings.weight` but not in `embeddings.position_embeddings.weight`"
    );

    let mut masks = model.empty_masks();
    let ffn = "encoder.layer.0.intermediate.dense";
    mask(&model, &mut masks, &format!("{ffn}.weight"), |r, _| r == 3);
    mask(&model, &mut masks, &format!("{ffn}.bias"), |r, _| r == 4);
    let e = plan_from_masks(&model, &masks).unwrap_err();
    assert!(
        e.to_string()
            .contains("ffn of layer 0 group disagree on channel 3"),
        "{e}"
    );

    let mut bad = model.empty_masks();
    *bad.get_mut("pooler.dense.weight").unwrap() = Some(Tensor::zeros([3, 3]));
    let e = plan_from_masks(&model, &bad).unwrap_err();
    assert!(
        e.to_string()
            .contains("mask of `pooler.dense.weight` has shape"),
        "{e}"
    );
}
