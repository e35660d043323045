//! Reading named parameters, gradients and masks of a model back to the host, where the
//! pruners compute their metrics (scores and statistics are small; the weights are read
//! once per step).

use crate::error::{PrunerError, Result};
use prune_tensor::Backend;
use prune_transformer::BertParams;
use std::collections::HashMap;

/// The leaves of `tree` called `names` (canonical), in that order.
pub(crate) fn leaves<'a, L>(tree: &'a BertParams<L>, names: &[String]) -> Result<Vec<&'a L>> {
    let index: HashMap<String, &L> = tree.named().into_iter().collect();
    names
        .iter()
        .map(|n| {
            index
                .get(n)
                .copied()
                .ok_or_else(|| PrunerError::MissingParameter(n.clone()))
        })
        .collect()
}

/// Host copies of the tensors of `tree` called `names`.
pub(crate) fn download<B: Backend>(
    b: &B,
    tree: &BertParams<B::Tensor>,
    names: &[String],
) -> Result<Vec<Vec<f32>>> {
    leaves(tree, names)?
        .into_iter()
        .map(|t| Ok(b.download(t)?.into_data()))
        .collect()
}

/// Host copies of the masks of `names` in a model's mask tree (`None`: unmasked).
pub(crate) fn download_masks<B: Backend>(
    b: &B,
    masks: Option<&BertParams<Option<B::Tensor>>>,
    names: &[String],
) -> Result<Vec<Option<Vec<f32>>>> {
    match masks {
        None => Ok(vec![None; names.len()]),
        Some(tree) => leaves(tree, names)?
            .into_iter()
            .map(|m| {
                m.as_ref()
                    .map(|t| Ok(b.download(t)?.into_data()))
                    .transpose()
            })
            .collect(),
    }
}
