//! `prune_heads`: removes attention heads physically, as transformers' `prune_heads` does
//! (rows of query/key/value, columns of the attention-output dense), keeping the config's
//! `pruned_heads` in the original head numbering. The full surgery lives in
//! `prune-speedup`; this one serves tests and simple head pruning.

use crate::error::{Error, Result};
use crate::model::BertModel;
use crate::params::Linear;
use prune_tensor::{Backend, Shape};
use std::collections::{BTreeMap, BTreeSet};

/// Keeps `rows` of a `[O, I]` weight or `[O]` bias.
fn keep_rows<B: Backend>(b: &B, t: &B::Tensor, rows: &[usize]) -> Result<B::Tensor> {
    let shape = b.shape(t).clone();
    if shape.rank() == 1 {
        let col = b.reshape(t.clone(), Shape::from([shape.dims()[0], 1]))?;
        let kept = b.gather_rows_fwd(&col, rows)?;
        Ok(b.reshape(kept, Shape::from([rows.len()]))?)
    } else {
        Ok(b.gather_rows_fwd(t, rows)?)
    }
}

/// Keeps `cols` of a `[O, I]` weight.
fn keep_cols<B: Backend>(b: &B, t: &B::Tensor, cols: &[usize]) -> Result<B::Tensor> {
    let tt = b.permute(t, &[1, 0])?;
    let kept = b.gather_rows_fwd(&tt, cols)?;
    Ok(b.permute(&kept, &[1, 0])?)
}

/// Slices the output rows (weight and bias) of a linear layer.
fn slice_out<B: Backend>(b: &B, l: &mut Linear<B::Tensor>, rows: &[usize]) -> Result<()> {
    l.weight = keep_rows(b, &l.weight, rows)?;
    l.bias = keep_rows(b, &l.bias, rows)?;
    Ok(())
}

/// Same for a mask tree entry.
fn slice_out_mask<B: Backend>(
    b: &B,
    l: &mut Linear<Option<B::Tensor>>,
    rows: &[usize],
) -> Result<()> {
    if let Some(w) = &l.weight {
        l.weight = Some(keep_rows(b, w, rows)?);
    }
    if let Some(x) = &l.bias {
        l.bias = Some(keep_rows(b, x, rows)?);
    }
    Ok(())
}

/// Removes `heads` (per layer, original numbering; already removed heads are ignored) from
/// `model`: slices parameters, masks and head mask, and updates `pruned_heads` and the
/// per-layer head counts of the config.
pub fn prune_heads<B: Backend>(
    model: &mut BertModel<B>,
    heads: &BTreeMap<usize, Vec<usize>>,
) -> Result<()> {
    let mut masks = model.masks().cloned();
    let mut head_mask = model.head_mask().cloned();
    let (b, params, config) = model.parts_mut();
    let n_layers = params.layers.len();
    let h0 = config.num_attention_heads;
    let d = config.head_dim();
    for (&l, list) in heads {
        if l >= n_layers {
            return Err(Error::Input(format!(
                "layer {l} does not exist ({n_layers} layers)"
            )));
        }
        if let Some(&h) = list.iter().find(|&&h| h >= h0) {
            return Err(Error::Input(format!("head {h} out of range ({h0} heads)")));
        }
        let already = config.pruned_heads.get(&l).cloned().unwrap_or_default();
        let remaining: Vec<usize> = (0..h0).filter(|h| !already.contains(h)).collect();
        let new: BTreeSet<usize> = list
            .iter()
            .copied()
            .filter(|h| !already.contains(h))
            .collect();
        if new.is_empty() {
            continue;
        }
        // Positions (in the current layout) of the heads that stay.
        let keep: Vec<usize> = remaining
            .iter()
            .enumerate()
            .filter(|(_, h)| !new.contains(h))
            .map(|(pos, _)| pos)
            .collect();
        let rows: Vec<usize> = keep.iter().flat_map(|&p| p * d..(p + 1) * d).collect();
        let layer = &mut params.layers[l];
        let current = b
            .shape(&layer.query.weight)
            .dims()
            .first()
            .copied()
            .unwrap_or(0)
            / d.max(1);
        if current != remaining.len() {
            return Err(Error::Input(format!(
                "layer {l} has {current} heads but its config says {} remain",
                remaining.len()
            )));
        }
        slice_out(b, &mut layer.query, &rows)?;
        slice_out(b, &mut layer.key, &rows)?;
        slice_out(b, &mut layer.value, &rows)?;
        layer.attention_output.weight = keep_cols(b, &layer.attention_output.weight, &rows)?;
        if let Some(m) = masks.as_mut() {
            let ml = m
                .layers
                .get_mut(l)
                .ok_or_else(|| Error::Input(format!("masks have no layer {l}")))?;
            slice_out_mask(b, &mut ml.query, &rows)?;
            slice_out_mask(b, &mut ml.key, &rows)?;
            slice_out_mask(b, &mut ml.value, &rows)?;
            if let Some(w) = &ml.attention_output.weight {
                ml.attention_output.weight = Some(keep_cols(b, w, &rows)?);
            }
        }
        if let Some(hm) = head_mask.as_mut() {
            let row = hm
                .get_mut(l)
                .ok_or_else(|| Error::Input(format!("head mask has no layer {l}")))?;
            if row.len() != remaining.len() {
                return Err(Error::Input(format!(
                    "head mask of layer {l} has {} entries for {} heads",
                    row.len(),
                    remaining.len()
                )));
            }
            *row = keep.iter().map(|&p| row[p]).collect();
        }
        let set = config.pruned_heads.entry(l).or_default();
        set.extend(new);
        let kept = h0 - set.len();
        *config
            .layer_heads
            .get_mut(l)
            .ok_or_else(|| Error::config("prune_layer_heads", format!("has no layer {l}")))? = kept;
    }
    config.validate()?;
    model.set_masks(masks)?;
    model.set_head_mask(head_mask)
}
