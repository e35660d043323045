//! From attention masks to pruned heads, and the FFN targets that follow.
//!
//! NNI v3's rule (`TransformersAttentionReplacer`): a head survives only if some of its
//! output rows are alive in each of Q, K and V and some of its input columns are alive in
//! the attention output projection O (missing masks count as all-alive); the v2 tutorial's
//! rule looks at V alone. Surviving heads are restored whole: their rows and columns are
//! unmasked, and the dead heads' rows and columns masked entirely, so the masked model is
//! the head-pruned model. The tutorial then prunes each layer's FFN to
//! `1 − (kept heads / heads) / 2`.

use crate::config::{ConfigEntry, ConfigList};
use crate::error::{PrunerError, Result};
use crate::granularity::{Blocking, Granularity};
use crate::masks::{Masks, ParamMask};
use crate::modules::OpType;
use prune_graph::dead_in_any;
use prune_transformer::BertConfig;
use std::collections::BTreeMap;

/// Which masks decide that a head is dead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HeadRule {
    /// NNI v3: dead if all its rows are masked in any of Q, K, V, or all its input columns
    /// in the output projection.
    #[default]
    QkvO,
    /// NNI v2 tutorial: dead if all its rows of V are masked.
    ValueOnly,
}

/// The four attention weights of layer `l`: query, key, value, output projection.
fn attention_weights(l: usize) -> [String; 4] {
    let p = format!("encoder.layer.{l}.attention");
    [
        format!("{p}.self.query.weight"),
        format!("{p}.self.key.weight"),
        format!("{p}.self.value.weight"),
        format!("{p}.output.dense.weight"),
    ]
}

/// Current head count of every layer and the head dim, checked against the masks' shapes.
fn head_layout(config: &BertConfig) -> (Vec<usize>, usize) {
    let heads = (0..config.num_hidden_layers)
        .map(|l| config.heads(l))
        .collect();
    (heads, config.head_dim())
}

/// Per-head alive flags of layer `l` (current head positions) under `rule`
/// ([`prune_graph::dead_in_any`] over the consulted matrices' per-head verdicts).
fn alive_heads(
    masks: &Masks,
    l: usize,
    heads: usize,
    d: usize,
    rule: HeadRule,
) -> Result<Vec<bool>> {
    let names = attention_weights(l);
    let used: &[usize] = match rule {
        HeadRule::QkvO => &[0, 1, 2, 3],
        HeadRule::ValueOnly => &[2],
    };
    let mut verdicts = Vec::new();
    for &i in used {
        let Some(m) = masks.get(&names[i]) else {
            continue;
        };
        let flags = if i == 3 {
            m.cols_alive()
        } else {
            m.rows_alive()
        };
        if flags.len() != heads * d {
            return Err(PrunerError::Mask {
                name: names[i].clone(),
                why: format!(
                    "{} attention channels, the layer has {heads} heads of {d}",
                    flags.len()
                ),
            });
        }
        let dead: Vec<bool> = flags.chunks(d.max(1)).map(|h| !h.contains(&true)).collect();
        verdicts.push(dead);
    }
    let dead = dead_in_any(heads, verdicts.iter().map(Vec::as_slice));
    Ok(dead.iter().map(|d| !d).collect())
}

/// The heads the masks kill, per layer, in the original head numbering (as
/// `prune_speedup::prune_heads` and transformers' `prune_heads` take them; heads
/// already removed by earlier surgery are skipped in the numbering). Layers without dead
/// heads are left out.
pub fn pruned_heads(
    masks: &Masks,
    config: &BertConfig,
    rule: HeadRule,
) -> Result<BTreeMap<usize, Vec<usize>>> {
    let (heads, d) = head_layout(config);
    let mut out = BTreeMap::new();
    for (l, &h) in heads.iter().enumerate() {
        let alive = alive_heads(masks, l, h, d, rule)?;
        let already = config.pruned_heads.get(&l).cloned().unwrap_or_default();
        let original: Vec<usize> = (0..config.num_attention_heads)
            .filter(|x| !already.contains(x))
            .collect();
        let dead: Vec<usize> = alive
            .iter()
            .enumerate()
            .filter(|(_, a)| !**a)
            .filter_map(|(p, _)| original.get(p).copied())
            .collect();
        if !dead.is_empty() {
            out.insert(l, dead);
        }
    }
    Ok(out)
}

/// Heads kept per layer once `pruned` (from [`pruned_heads`]) is removed.
pub fn kept_heads(config: &BertConfig, pruned: &BTreeMap<usize, Vec<usize>>) -> Vec<usize> {
    (0..config.num_hidden_layers)
        .map(|l| {
            config
                .heads(l)
                .saturating_sub(pruned.get(&l).map_or(0, Vec::len))
        })
        .collect()
}

/// The masks with the attention of every layer restored to whole heads under `rule`:
/// for layers where any of Q, K, V, O is masked, Q/K/V get one flag per output row and O
/// one per input column, set for the surviving heads and cleared for the dead ones.
pub fn restore_heads(masks: &Masks, config: &BertConfig, rule: HeadRule) -> Result<Masks> {
    let (heads, d) = head_layout(config);
    let c = config.hidden();
    let mut out = masks.clone();
    for (l, &h) in heads.iter().enumerate() {
        let names = attention_weights(l);
        if names.iter().all(|n| masks.get(n).is_none()) {
            continue;
        }
        let alive = alive_heads(masks, l, h, d, rule)?;
        let per_channel: Vec<bool> = alive
            .iter()
            .flat_map(|&a| std::iter::repeat_n(a, d))
            .collect();
        for (i, name) in names.iter().enumerate() {
            let (shape, gran) = if i == 3 {
                (vec![c, h * d], Granularity::InChannel)
            } else {
                (vec![h * d, c], Granularity::OutChannel)
            };
            let blocking: Blocking = gran.blocking(name, OpType::Linear, &shape)?;
            out.insert(name, ParamMask::new(name, blocking, per_channel.clone())?);
        }
    }
    Ok(out)
}

/// The tutorial's FFN target of each layer: `1 − (kept / heads) / 2` (0.5 when every head
/// stays, 1 when none does).
pub fn ffn_sparse_ratios(kept: &[usize], heads: usize) -> Vec<f64> {
    kept.iter()
        .map(|&k| 1.0 - (k as f64 / heads.max(1) as f64) / 2.0)
        .collect()
}

/// A `config_list` pruning each layer's `intermediate.dense` rows to `ratios[l]`; layers
/// whose ratio is not below 1 (every head gone) are left out, for the caller to remove
/// the whole layer as the v2 tutorial does.
pub fn ffn_config_list(ratios: &[f64]) -> Result<ConfigList> {
    let entries = ratios
        .iter()
        .enumerate()
        .filter(|(_, r)| **r < 1.0)
        .map(|(l, &r)| ConfigEntry {
            op_names: vec![format!("bert.encoder.layer.{l}.intermediate.dense")],
            sparse_ratio: Some(r),
            ..ConfigEntry::default()
        })
        .collect();
    ConfigList::new(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ffn_targets_follow_the_tutorial() {
        let r = ffn_sparse_ratios(&[12, 6, 0, 3], 12);
        assert_eq!(r, [0.5, 0.75, 1.0, 0.875]);
        let cl = ffn_config_list(&r).unwrap();
        assert_eq!(cl.entries.len(), 3);
        assert_eq!(
            cl.entries[2].op_names,
            ["bert.encoder.layer.3.intermediate.dense"]
        );
    }
}
