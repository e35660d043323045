//! The configuration a plan leaves behind: per-layer head counts (with transformers'
//! `pruned_heads` kept in the original head numbering), per-layer FFN widths, hidden width,
//! and the embeddings' own width under a projection.

use crate::error::{Result, SpeedupError};
use prune_graph::{GroupKind, PruningPlan};
use prune_transformer::BertConfig;

/// The current width of group `kind` under `config`.
pub fn width(config: &BertConfig, kind: GroupKind) -> Result<usize> {
    let layers = config.num_hidden_layers;
    match kind {
        GroupKind::Hidden => Ok(config.hidden()),
        GroupKind::Embedding => Ok(config.embedding_width()),
        GroupKind::Heads { layer } | GroupKind::Ffn { layer } if layer >= layers => {
            Err(SpeedupError::PlanMismatch {
                kind,
                why: format!("the model has {layers} layers"),
            })
        }
        GroupKind::Heads { layer } => Ok(config.heads(layer)),
        GroupKind::Ffn { layer } => Ok(config.intermediate(layer)),
    }
}

/// `config` after `plan`: every planned group narrowed to its kept channels. Fails when an
/// entry was made for a different width, or when the result is not a valid config (no
/// hidden channel left).
pub fn planned_config(config: &BertConfig, plan: &PruningPlan) -> Result<BertConfig> {
    plan.validate()?;
    let mut out = config.clone();
    for g in &plan.groups {
        let now = width(config, g.kind)?;
        if now != g.channels {
            return Err(SpeedupError::PlanMismatch {
                kind: g.kind,
                why: format!(
                    "the plan was made for {} channels, the model has {now}",
                    g.channels
                ),
            });
        }
        let kept = g.keep.len();
        match g.kind {
            GroupKind::Hidden => {
                if kept == 0 {
                    return Err(SpeedupError::PlanMismatch {
                        kind: g.kind,
                        why: "every hidden channel would be removed".into(),
                    });
                }
                out.kept_hidden_size = kept;
            }
            GroupKind::Embedding => {
                if !config.projects_embeddings() {
                    return Err(SpeedupError::PlanMismatch {
                        kind: g.kind,
                        why: "the embeddings have the hidden width (no projection)".into(),
                    });
                }
                out.kept_embedding_size = kept;
            }
            GroupKind::Ffn { layer } => out.layer_intermediate[layer] = kept,
            GroupKind::Heads { layer } => {
                // The heads present now, in the original numbering (transformers keeps
                // `pruned_heads` that way). Only known when the config's bookkeeping is
                // complete; a config that sets head counts alone keeps its counts only.
                let gone = config.pruned_heads.get(&layer);
                let original: Vec<usize> = (0..config.num_attention_heads)
                    .filter(|h| gone.is_none_or(|s| !s.contains(h)))
                    .collect();
                if original.len() == g.channels {
                    let removed = g.removed().into_iter().map(|p| original[p]);
                    out.pruned_heads.entry(layer).or_default().extend(removed);
                    out.pruned_heads.retain(|_, s| !s.is_empty());
                }
                out.layer_heads[layer] = kept;
            }
        }
    }
    out.validate()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn heads_are_booked_in_the_original_numbering() {
        let mut config = BertConfig::new(50, 32, 2, 4, 64).unwrap();
        config.pruned_heads.insert(1, BTreeSet::from([0]));
        config.layer_heads = vec![4, 3];
        let mut plan = PruningPlan::new();
        // Layer 1 now holds original heads 1, 2, 3; dropping positions 0 and 2 drops 1, 3.
        plan.remove(GroupKind::Heads { layer: 1 }, 3, &[0, 2])
            .unwrap();
        plan.keep(GroupKind::Ffn { layer: 0 }, 64, &[1, 5]).unwrap();
        plan.remove(GroupKind::Hidden, 32, &[0]).unwrap();
        let out = planned_config(&config, &plan).unwrap();
        assert_eq!(out.pruned_heads[&1], BTreeSet::from([0, 1, 3]));
        assert_eq!(out.layer_heads, vec![4, 1]);
        assert_eq!(out.layer_intermediate, vec![2, 64]);
        assert_eq!(out.hidden(), 31);

        let e = planned_config(&out, &plan).unwrap_err();
        assert!(
            e.to_string()
                .contains("made for 3 channels, the model has 1"),
            "{e}"
        );
        let mut all = PruningPlan::new();
        all.keep(GroupKind::Hidden, 32, &[]).unwrap();
        let e = planned_config(&config, &all).unwrap_err();
        assert!(e.to_string().contains("every hidden channel"), "{e}");
        let mut far = PruningPlan::new();
        far.keep(GroupKind::Ffn { layer: 2 }, 64, &[]).unwrap();
        assert!(
            planned_config(&config, &far)
                .unwrap_err()
                .to_string()
                .contains("2 layers")
        );
    }
}
