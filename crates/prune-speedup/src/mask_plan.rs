//! Between per-element masks and plans. [`plan_from_masks`] derives what masks make
//! structurally removable: heads by NNI v3's rule (a head goes when all its rows are masked
//! in any of Q, K, V, or all its input columns in the attention-output dense; partially
//! masked heads stay whole), FFN neurons and hidden channels when their whole slice is zero
//! in the group's producers (its root), which must agree. A producer whose mask zeroes no
//! whole channel of a group takes no part in that group's decision (a movement mask on the
//! attention output, say, serves its head group, not the hidden width). [`plan_masks`] goes the other
//! way: the masks (and hidden-channel mask) under which the dense model computes exactly
//! what the model cut by the plan computes.

use crate::config::planned_config;
use crate::error::{Result, SpeedupError};
use prune_graph::{Group, GroupKind, PruningPlan, Role, dead_in_any};
use prune_tensor::{Backend, Tensor};
use prune_transformer::groups::model_groups;
use prune_transformer::{BertModel, WeightMasks};
use std::collections::BTreeMap;

/// Whether each channel's slice of a mask is entirely zero. `axis` 0: rows (or a vector's
/// entries), 1: columns; channel `k` owns `[k·unit, (k+1)·unit)` of that axis.
fn dead_channels(mask: &Tensor<f32>, axis: usize, unit: usize, channels: usize) -> Vec<bool> {
    let dims = mask.dims();
    let cols = if dims.len() == 2 { dims[1] } else { 1 };
    let mut alive = vec![false; channels];
    for (i, &v) in mask.data().iter().enumerate() {
        if v != 0.0 {
            let index = if axis == 0 { i / cols } else { i % cols };
            if let Some(a) = alive.get_mut(index / unit.max(1)) {
                *a = true;
            }
        }
    }
    alive.into_iter().map(|a| !a).collect()
}

/// Checks that `masks` mirrors the model's parameters (names, and shapes where given).
fn check_masks<B: Backend>(model: &BertModel<B>, masks: &WeightMasks<B::Tensor>) -> Result<()> {
    let b = model.backend();
    let (p, m) = (model.params.named(), masks.named());
    if p.len() != m.len() {
        return Err(SpeedupError::Input(format!(
            "mask tree has {} entries, the model {} parameters",
            m.len(),
            p.len()
        )));
    }
    for ((name, t), (_, mask)) in p.into_iter().zip(m) {
        if let Some(mask) = mask
            && b.shape(mask) != b.shape(t)
        {
            return Err(SpeedupError::Input(format!(
                "mask of `{name}` has shape {}, the parameter {}",
                b.shape(mask),
                b.shape(t)
            )));
        }
    }
    Ok(())
}

/// The dead channels of `group` according to one source, with the source's name.
type Verdict = (String, Vec<bool>);

/// The dead channels of a head group: NNI v3's rule over its 2-D members (Q/K/V rows,
/// output columns).
fn dead_heads(group: &Group, verdicts: &[(Role, usize, Verdict)]) -> Vec<bool> {
    let matrices = verdicts.iter().filter(|(_, rank, _)| *rank == 2);
    dead_in_any(group.channels, matrices.map(|(_, _, (_, v))| v.as_slice()))
}

/// The dead channels of an FFN or hidden group: those of its producers, which must agree.
fn dead_agreed(group: &Group, roots: &[&Verdict]) -> Result<Vec<bool>> {
    let Some(((first_name, first), rest)) = roots.split_first().map(|(f, r)| (*f, r)) else {
        return Ok(vec![false; group.channels]);
    };
    for (name, v) in rest {
        if let Some(k) = (0..group.channels).find(|&k| v[k] != first[k]) {
            let (dead_in, alive_in) = if first[k] {
                (first_name, name)
            } else {
                (name, first_name)
            };
            return Err(SpeedupError::MaskConflict {
                kind: group.kind,
                channel: k,
                dead_in: dead_in.clone(),
                alive_in: alive_in.clone(),
            });
        }
    }
    Ok(first.clone())
}

/// The plan that removes what `masks` (per-element weight masks mirroring `model`'s
/// parameters, as pruners produce them) make removable, and for the hidden width also the
/// channels `model`'s hidden-channel mask drops. Groups with nothing to remove are left
/// out. Fails with [`SpeedupError::MaskConflict`] when the producers of an FFN or hidden
/// group that remove channels disagree on one. A residual writer whose mask removes the
/// whole hidden width (a layer that lost every head) does not take part in that decision.
pub fn plan_from_masks<B: Backend>(
    model: &BertModel<B>,
    masks: &WeightMasks<B::Tensor>,
) -> Result<PruningPlan> {
    check_masks(model, masks)?;
    let b = model.backend();
    let mut host: BTreeMap<String, Tensor<f32>> = BTreeMap::new();
    for (name, m) in masks.named() {
        if let Some(m) = m {
            host.insert(name, b.download(m)?);
        }
    }
    let mut plan = PruningPlan::new();
    for group in model_groups(model)? {
        let verdicts: Vec<(Role, usize, Verdict)> = group
            .members
            .iter()
            .filter_map(|m| {
                let mask = host.get(&m.param)?;
                let v = dead_channels(mask, m.axis, group.unit, group.channels);
                Some((m.role, mask.dims().len(), (m.param.clone(), v)))
            })
            .collect();
        let dead = match group.kind {
            GroupKind::Heads { .. } => dead_heads(&group, &verdicts),
            GroupKind::Ffn { .. } | GroupKind::Hidden | GroupKind::Embedding => {
                let hidden = match (group.kind, model.hidden_mask()) {
                    (GroupKind::Hidden, Some(h)) => Some((
                        "the hidden-channel mask".to_string(),
                        h.iter().map(|&v| v == 0.0).collect::<Vec<bool>>(),
                    )),
                    _ => None,
                };
                // A producer that removes every channel of the hidden group is a sub-layer
                // that lost all its heads or neurons: its output is constant, which is no
                // reason to cut the residual stream, so it does not vote.
                let votes = |dead: &[bool]| {
                    dead.contains(&true)
                        && !(group.kind == GroupKind::Hidden && dead.iter().all(|&d| d))
                };
                let roots: Vec<&Verdict> = verdicts
                    .iter()
                    .filter(|(role, _, (_, dead))| *role == Role::Producer && votes(dead))
                    .map(|(_, _, v)| v)
                    .chain(hidden.as_ref())
                    .collect();
                dead_agreed(&group, &roots)?
            }
        };
        if dead.iter().any(|&d| d) {
            let keep: Vec<usize> = (0..group.channels).filter(|&k| !dead[k]).collect();
            plan.keep(group.kind, group.channels, &keep)?;
        }
    }
    Ok(plan)
}

/// What [`plan_masks`] returns: weight masks and the hidden-channel mask.
pub type PlanMasks<T> = (WeightMasks<T>, Option<Vec<f32>>);

/// The masks that simulate `plan` on the dense `model`: zeros on every removed slice of
/// every member of every planned group, and a hidden-channel mask when the hidden width
/// shrinks. With them (and no other masks) the dense model computes what the model cut by
/// `plan` computes, up to rounding.
pub fn plan_masks<B: Backend>(
    model: &BertModel<B>,
    plan: &PruningPlan,
) -> Result<PlanMasks<B::Tensor>> {
    planned_config(&model.config, plan)?;
    let b = model.backend();
    let groups = model_groups(model)?;
    let shapes: BTreeMap<String, _> = model
        .params
        .named()
        .into_iter()
        .map(|(n, t)| (n, b.shape(t).clone()))
        .collect();
    let mut host: BTreeMap<String, Tensor<f32>> = BTreeMap::new();
    let mut hidden = None;
    for entry in plan.groups.iter().filter(|g| !g.is_identity()) {
        let Some(group) = groups.iter().find(|g| g.kind == entry.kind) else {
            return Err(SpeedupError::PlanMismatch {
                kind: entry.kind,
                why: "the model has no such group".into(),
            });
        };
        if entry.kind == GroupKind::Embedding {
            // No mask makes the embeddings' LayerNorm normalise over fewer channels.
            return Err(SpeedupError::PlanMismatch {
                kind: entry.kind,
                why: "masks cannot simulate a narrower embedding width (its LayerNorm \
                      normalises over every channel); apply the plan with surgery"
                    .into(),
            });
        }
        let removed = group.element_indices(&entry.removed());
        for m in &group.members {
            let mask = host
                .entry(m.param.clone())
                .or_insert_with(|| Tensor::full(shapes[&m.param].clone(), 1.0));
            let cols = mask.dims().get(1).copied().unwrap_or(1);
            let rows = mask.dims()[0];
            let data = mask.data_mut();
            for &i in &removed {
                if m.axis == 0 {
                    data[i * cols..(i + 1) * cols].fill(0.0);
                } else {
                    (0..rows).for_each(|r| data[r * cols + i] = 0.0);
                }
            }
        }
        if entry.kind == GroupKind::Hidden {
            let mut keep = vec![0.0; entry.channels];
            entry.keep.iter().for_each(|&k| keep[k] = 1.0);
            hidden = Some(keep);
        }
    }
    let masks = model.params.try_map(|name, _| {
        host.get(name)
            .map(|m| b.upload(m))
            .transpose()
            .map_err(SpeedupError::from)
    })?;
    Ok((masks, hidden))
}

/// How many weights `masks` zero that `plan` keeps: what surgery cannot remove because it
/// is not a whole head, neuron or hidden channel (surgery leaves those weights dense).
pub fn masked_but_kept<B: Backend>(
    model: &BertModel<B>,
    masks: &WeightMasks<B::Tensor>,
    plan: &PruningPlan,
) -> Result<usize> {
    let b = model.backend();
    let (planned, _) = plan_masks(model, plan)?;
    let mut count = 0;
    for ((_, mask), (_, cut)) in masks.named().into_iter().zip(planned.named()) {
        let Some(mask) = mask else { continue };
        let mask = b.download(mask)?;
        let cut = cut.as_ref().map(|c| b.download(c)).transpose()?;
        count += mask
            .data()
            .iter()
            .enumerate()
            .filter(|&(i, &m)| m == 0.0 && cut.as_ref().is_none_or(|c| c.data()[i] != 0.0))
            .count();
    }
    Ok(count)
}

/// Puts `plan` on `model` as masks: [`plan_masks`] multiplied into the model's own weight
/// and hidden-channel masks. The model keeps its shapes and computes what the cut model
/// would.
pub fn mask_model<B: Backend>(model: &mut BertModel<B>, plan: &PruningPlan) -> Result<()> {
    let (masks, hidden) = plan_masks(model, plan)?;
    let b = model.backend().clone();
    let combined = match model.masks() {
        None => masks,
        Some(old) => {
            let old = old.named();
            let mut i = 0;
            masks.try_map(|_, new| {
                let prev = old[i].1;
                i += 1;
                Ok::<_, SpeedupError>(match (prev, new) {
                    (Some(p), Some(n)) => Some(b.mul_fwd(p, n)?),
                    (p, n) => n.clone().or_else(|| p.clone()),
                })
            })?
        }
    };
    let hidden = match (model.hidden_mask(), hidden) {
        (Some(old), Some(new)) => Some(old.iter().zip(&new).map(|(a, b)| a * b).collect()),
        (old, new) => new.or_else(|| old.cloned()),
    };
    model.set_masks(Some(combined))?;
    model.set_hidden_mask(hidden)?;
    Ok(())
}
