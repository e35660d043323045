//! Surgery: a [`PruningPlan`] applied to a [`BertModel`]. Every member of every planned
//! group (weights, biases, LayerNorm parameters, embedding tables, as the trace of the
//! model found them) keeps the planned slices of its axis; the config records the new
//! widths; weight masks, head mask and hidden-channel mask, and any tree mirroring the
//! parameters (gradients, optimizer moments), are cut the same way.
//!
//! The kept weights are the raw parameters: masks inside kept channels (a partially masked
//! head, say) are sliced along and stay in force, never baked in.

use crate::config::planned_config;
use crate::error::{Result, SpeedupError};
use crate::slice::keep_along;
use prune_graph::{GroupKind, PruningPlan};
use prune_tensor::{Backend, Shape};
use prune_transformer::groups::model_groups;
use prune_transformer::{BertModel, BertParams, WeightMasks};
use std::collections::{BTreeMap, HashMap};

/// The slices to keep, per parameter: `(axis, kept element indices)`.
#[derive(Default)]
struct Cuts(HashMap<String, Vec<(usize, Vec<usize>)>>);

impl Cuts {
    /// `t` (the leaf called `name`) after its cuts, or `None` when it has none.
    fn cut<B: Backend>(&self, b: &B, name: &str, t: &B::Tensor) -> Result<Option<B::Tensor>> {
        let Some(list) = self.0.get(name) else {
            return Ok(None);
        };
        let mut out: Option<B::Tensor> = None;
        for (axis, keep) in list {
            let next = keep_along(b, out.as_ref().unwrap_or(t), *axis, keep)
                .map_err(|e| SpeedupError::Input(format!("cutting `{name}`: {e}")))?;
            out = Some(next);
        }
        Ok(out)
    }

    /// The new leaves of a parameter-shaped tree.
    fn tree<B: Backend>(
        &self,
        b: &B,
        tree: &BertParams<B::Tensor>,
    ) -> Result<BTreeMap<String, B::Tensor>> {
        let mut out = BTreeMap::new();
        for (name, t) in tree.named() {
            if let Some(n) = self.cut(b, &name, t)? {
                out.insert(name, n);
            }
        }
        Ok(out)
    }

    /// The new leaves of a mask tree (absent masks stay absent).
    fn masks<B: Backend>(
        &self,
        b: &B,
        tree: &WeightMasks<B::Tensor>,
    ) -> Result<BTreeMap<String, B::Tensor>> {
        let mut out = BTreeMap::new();
        for (name, t) in tree.named() {
            if let Some(t) = t
                && let Some(n) = self.cut(b, &name, t)?
            {
                out.insert(name, n);
            }
        }
        Ok(out)
    }
}

/// Replaces the leaves of `tree` named in `new`.
fn commit<T>(tree: &mut BertParams<T>, mut new: BTreeMap<String, T>) {
    for (name, slot) in tree.named_mut() {
        if let Some(t) = new.remove(&name) {
            *slot = t;
        }
    }
}

/// Checks that `tree` mirrors `params` leaf for leaf (names and shapes).
fn check_mirror<B: Backend>(
    b: &B,
    params: &BertParams<B::Tensor>,
    tree: &BertParams<B::Tensor>,
    which: usize,
) -> Result<()> {
    let (p, t) = (params.named(), tree.named());
    if p.len() != t.len() {
        return Err(SpeedupError::Input(format!(
            "extra tree {which} has {} leaves, the model {}",
            t.len(),
            p.len()
        )));
    }
    for ((pn, pt), (tn, tt)) in p.into_iter().zip(t) {
        if pn != tn || b.shape(pt) != b.shape(tt) {
            return Err(SpeedupError::Input(format!(
                "extra tree {which}: `{tn}` {} does not mirror parameter `{pn}` {}",
                b.shape(tt),
                b.shape(pt)
            )));
        }
    }
    Ok(())
}

/// Keeps the entries `keep` of a host vector.
fn pick(v: &[f32], keep: &[usize]) -> Vec<f32> {
    keep.iter().map(|&k| v[k]).collect()
}

/// Applies `plan` to `model` and to every tree in `extra` (each must mirror the model's
/// parameters, e.g. AdamW's first and second moments). Nothing changes when it fails.
pub fn apply<B: Backend>(
    model: &mut BertModel<B>,
    plan: &PruningPlan,
    extra: &mut [&mut BertParams<B::Tensor>],
) -> Result<()> {
    let config = planned_config(&model.config, plan)?;
    let groups = model_groups(model)?;
    let b = model.backend().clone();
    let mut cuts = Cuts::default();
    for entry in plan.groups.iter().filter(|g| !g.is_identity()) {
        let group = groups
            .iter()
            .find(|g| g.kind == entry.kind)
            .ok_or_else(|| SpeedupError::PlanMismatch {
                kind: entry.kind,
                why: "the model has no such group".into(),
            })?;
        if group.channels != entry.channels {
            return Err(SpeedupError::PlanMismatch {
                kind: entry.kind,
                why: format!(
                    "the plan was made for {} channels, the traced model has {}",
                    entry.channels, group.channels
                ),
            });
        }
        let keep = group.element_indices(&entry.keep);
        for m in &group.members {
            cuts.0
                .entry(m.param.clone())
                .or_default()
                .push((m.axis, keep.clone()));
        }
    }
    for (i, tree) in extra.iter().enumerate() {
        check_mirror(&b, &model.params, tree, i)?;
    }

    // Everything new is computed before anything changes.
    let params = cuts.tree(&b, &model.params)?;
    let extras = extra
        .iter()
        .map(|t| cuts.tree(&b, t))
        .collect::<Result<Vec<_>>>()?;
    let masks = model
        .masks()
        .map(|m| Ok::<_, SpeedupError>((m.clone(), cuts.masks(&b, m)?)))
        .transpose()?;
    let head_mask = model
        .head_mask()
        .map(|hm| {
            let mut hm = hm.clone();
            for entry in &plan.groups {
                if let GroupKind::Heads { layer } = entry.kind {
                    let row = &mut hm[layer];
                    if row.len() != entry.channels {
                        return Err(SpeedupError::Input(format!(
                            "head mask of layer {layer} has {} entries, the plan {}",
                            row.len(),
                            entry.channels
                        )));
                    }
                    *row = pick(row, &entry.keep);
                }
            }
            Ok(hm)
        })
        .transpose()?;
    let hidden_mask = match (model.hidden_mask(), plan.get(GroupKind::Hidden)) {
        (Some(m), Some(entry)) => Some(pick(m, &entry.keep)),
        (m, _) => m.cloned(),
    }
    .filter(|m| m.iter().any(|&v| v != 1.0));
    let expected = BertParams::<Shape>::expected(
        &config,
        model.params.pooler.is_some(),
        model.params.classifier.is_some(),
    );
    for (name, t) in model.params.named() {
        let shape = params.get(&name).map_or(b.shape(t), |n| b.shape(n));
        if Some(shape) != expected.get(&name) {
            return Err(SpeedupError::Input(format!(
                "after surgery `{name}` would be {shape}, the new config implies {:?}",
                expected.get(&name)
            )));
        }
    }

    model.set_masks(None)?;
    model.set_head_mask(None)?;
    model.set_hidden_mask(None)?;
    let (_, p, c) = model.parts_mut();
    commit(p, params);
    *c = config;
    for (tree, new) in extra.iter_mut().zip(extras) {
        commit(tree, new);
    }
    if let Some((mut tree, new)) = masks {
        commit(
            &mut tree,
            new.into_iter().map(|(n, t)| (n, Some(t))).collect(),
        );
        model.set_masks(Some(tree))?;
    }
    model.set_head_mask(head_mask)?;
    model.set_hidden_mask(hidden_mask)?;
    Ok(())
}

/// Removes attention heads as transformers' `prune_heads` does: `heads` maps a layer to
/// heads in the original numbering; heads already removed are skipped. Q/K/V rows and
/// biases and the attention-output columns of each head go, `pruned_heads` records them.
pub fn prune_heads<B: Backend>(
    model: &mut BertModel<B>,
    heads: &BTreeMap<usize, Vec<usize>>,
) -> Result<()> {
    let config = &model.config;
    let h0 = config.num_attention_heads;
    let mut plan = PruningPlan::new();
    for (&layer, list) in heads {
        let kind = GroupKind::Heads { layer };
        if layer >= config.num_hidden_layers {
            return Err(SpeedupError::PlanMismatch {
                kind,
                why: format!("the model has {} layers", config.num_hidden_layers),
            });
        }
        if let Some(&h) = list.iter().find(|&&h| h >= h0) {
            return Err(SpeedupError::PlanMismatch {
                kind,
                why: format!("head {h} out of range ({h0} heads)"),
            });
        }
        let gone = config.pruned_heads.get(&layer);
        let present: Vec<usize> = (0..h0)
            .filter(|h| gone.is_none_or(|s| !s.contains(h)))
            .collect();
        if present.len() != config.heads(layer) {
            return Err(SpeedupError::PlanMismatch {
                kind,
                why: format!(
                    "the config keeps {} heads but `pruned_heads` accounts for {}; original \
                     head numbers are unknown",
                    config.heads(layer),
                    present.len()
                ),
            });
        }
        let keep: Vec<usize> = (0..present.len())
            .filter(|&p| !list.contains(&present[p]))
            .collect();
        plan.keep(kind, present.len(), &keep)?;
    }
    apply(model, &plan, &mut [])
}
