//! `Masks`: the pruning result, one keep-bit per metric block of each pruned weight,
//! expanded on use into the per-element `WeightMasks` tree a model takes (a bias entry is
//! alive iff its weight row is), and saved to / loaded from safetensors so a run can stop
//! after pruning and the speedup can run later.

use crate::error::{PrunerError, Result};
use crate::granularity::Blocking;
use prune_tensor::{Backend, Shape, Tensor};
use prune_transformer::model::WeightMasks;
use prune_transformer::weights::{RawTensor, write_safetensors};
use prune_transformer::{BertModel, BertParams, canonical_name};
use safetensors::SafeTensors;
use safetensors::tensor::Dtype;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Metadata key marking a mask file.
const FORMAT_KEY: &str = "format";
/// Value of [`FORMAT_KEY`].
const FORMAT: &str = "prune-masks-v1";
/// Prefix of the metadata key holding each mask's blocking.
const BLOCKING_KEY: &str = "blocking.";

/// The mask of one weight at metric granularity: one flag per block, row-major over the
/// metric shape, `true` keeping the block.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamMask {
    blocking: Blocking,
    keep: Vec<bool>,
}

impl ParamMask {
    /// A mask from its flags; fails unless there is one per block.
    pub fn new(name: &str, blocking: Blocking, keep: Vec<bool>) -> Result<Self> {
        if keep.len() != blocking.metric_numel() {
            return Err(PrunerError::Mask {
                name: name.to_string(),
                why: format!(
                    "{} flags for a metric of shape {:?}",
                    keep.len(),
                    blocking.metric_shape()
                ),
            });
        }
        Ok(ParamMask { blocking, keep })
    }

    /// How the weight is cut into blocks.
    pub fn blocking(&self) -> &Blocking {
        &self.blocking
    }

    /// One flag per block, row-major over the metric shape: `true` keeps the block.
    pub fn keep(&self) -> &[bool] {
        &self.keep
    }

    /// Number of pruned blocks.
    pub fn pruned_blocks(&self) -> usize {
        self.keep.iter().filter(|k| !**k).count()
    }

    /// A mask keeping everything.
    pub fn ones(blocking: Blocking) -> Self {
        let keep = vec![true; blocking.metric_numel()];
        ParamMask { blocking, keep }
    }

    /// Fraction of the weight's elements masked (equal blocks: the fraction of blocks).
    pub fn sparsity(&self) -> f64 {
        self.pruned_blocks() as f64 / self.keep.len().max(1) as f64
    }

    /// Whether every block is kept.
    pub fn all_kept(&self) -> bool {
        self.keep.iter().all(|k| *k)
    }

    /// The per-element mask, `1.0` kept, `0.0` pruned, row-major over the weight's shape.
    pub fn expand(&self) -> Vec<f32> {
        self.blocking
            .expand(&self.keep)
            .into_iter()
            .map(f32::from)
            .collect()
    }

    /// Whether each output row (each element of a 1-D weight) has any kept element: the
    /// mask of the matching bias.
    pub fn rows_alive(&self) -> Vec<bool> {
        let per_element = self.blocking.expand(&self.keep);
        let cols = match self.blocking.shape() {
            [_, c] => *c,
            _ => 1,
        };
        per_element
            .chunks(cols.max(1))
            .map(|row| row.iter().any(|k| *k))
            .collect()
    }

    /// Whether each input column of a 2-D weight has any kept element.
    pub fn cols_alive(&self) -> Vec<bool> {
        let per_element = self.blocking.expand(&self.keep);
        let cols = match self.blocking.shape() {
            [_, c] => *c,
            _ => per_element.len(),
        };
        let mut alive = vec![false; cols];
        for (i, k) in per_element.iter().enumerate() {
            alive[i % cols] |= *k;
        }
        alive
    }
}

/// Masks of pruned weights by canonical parameter name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Masks {
    entries: BTreeMap<String, ParamMask>,
}

impl Masks {
    /// No masks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the mask of weight `name` (canonical or with `bert.`).
    pub fn insert(&mut self, name: &str, mask: ParamMask) {
        self.entries.insert(canonical_name(name).to_string(), mask);
    }

    /// The mask of weight `name`.
    pub fn get(&self, name: &str) -> Option<&ParamMask> {
        self.entries.get(canonical_name(name))
    }

    /// Masks in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &ParamMask)> {
        self.entries.iter()
    }

    /// Number of masked weights.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no mask.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds every mask of `other`, replacing masks of the same weight.
    pub fn extend(&mut self, other: Masks) {
        self.entries.extend(other.entries);
    }

    /// Fraction of all masked weights' elements that are pruned.
    pub fn sparsity(&self) -> f64 {
        let (pruned, total) = self.entries.values().fold((0.0, 0usize), |(p, t), m| {
            let n = m.blocking.numel();
            (p + m.sparsity() * n as f64, t + n)
        });
        pruned / total.max(1) as f64
    }

    /// Per-element host masks for a model whose parameters have `shapes`: each masked
    /// weight gets its expanded mask and its bias (if any) the alive flags of its rows.
    /// Fully kept weights and biases whose rows all live get no mask.
    pub fn to_host(&self, shapes: &BertParams<Shape>) -> Result<BertParams<Option<Tensor<f32>>>> {
        let mut out = shapes.map(|_, _| None);
        let mut slots: HashMap<String, &mut Option<Tensor<f32>>> =
            out.named_mut().into_iter().collect();
        for (name, mask) in &self.entries {
            let shape = shapes
                .get(name)
                .ok_or_else(|| PrunerError::MissingParameter(name.clone()))?;
            if shape.dims() != mask.blocking.shape() {
                return Err(PrunerError::Mask {
                    name: name.clone(),
                    why: format!(
                        "made for shape {:?}, the parameter has {shape}",
                        mask.blocking.shape()
                    ),
                });
            }
            let kept = mask.all_kept();
            if let Some(slot) = slots.get_mut(name.as_str()) {
                **slot = (!kept)
                    .then(|| Tensor::new(shape.clone(), mask.expand()))
                    .transpose()?;
            }
            let bias = name
                .strip_suffix(".weight")
                .map(|m| format!("{m}.bias"))
                .unwrap_or_default();
            if let (Some(slot), Some(bshape)) = (slots.get_mut(bias.as_str()), shapes.get(&bias)) {
                let alive: Vec<f32> = mask.rows_alive().into_iter().map(f32::from).collect();
                if alive.len() != bshape.numel() {
                    return Err(PrunerError::Mask {
                        name: bias,
                        why: format!("{} weight rows for a bias of shape {bshape}", alive.len()),
                    });
                }
                let all_alive = alive.iter().all(|&a| a == 1.0);
                **slot = (!all_alive)
                    .then(|| Tensor::new(bshape.clone(), alive))
                    .transpose()?;
            }
        }
        Ok(out)
    }

    /// The model's mask tree with the entries of these weights (and their biases) replaced
    /// by these masks, uploaded to the model's backend; other entries stay as they are.
    pub fn to_model<B: Backend>(&self, model: &BertModel<B>) -> Result<WeightMasks<B::Tensor>> {
        let b = model.backend();
        let shapes = model.params.map(|_, t| b.shape(t).clone());
        let host = self.to_host(&shapes)?;
        let mut merged = match model.masks() {
            Some(m) => m.clone(),
            None => model.empty_masks(),
        };
        let owned: Vec<String> = self
            .entries
            .keys()
            .flat_map(|w| {
                let bias = w.strip_suffix(".weight").map(|m| format!("{m}.bias"));
                std::iter::once(w.clone()).chain(bias)
            })
            .collect();
        for ((name, slot), (_, h)) in merged.named_mut().into_iter().zip(host.named()) {
            if owned.contains(&name) {
                *slot = h.as_ref().map(|t| b.upload(t)).transpose()?;
            }
        }
        Ok(merged)
    }

    /// Sets these masks on `model` (see [`Masks::to_model`]).
    pub fn apply<B: Backend>(&self, model: &mut BertModel<B>) -> Result<()> {
        let merged = self.to_model(model)?;
        let any = merged.named().iter().any(|(_, m)| m.is_some());
        model.set_masks(any.then_some(merged))?;
        Ok(())
    }

    /// Writes the masks to a safetensors file (one `u8` tensor of metric shape per weight,
    /// the blocking in the metadata), atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut metadata = HashMap::from([(FORMAT_KEY.to_string(), FORMAT.to_string())]);
        let mut raw = Vec::with_capacity(self.entries.len());
        for (name, m) in &self.entries {
            let blocking =
                serde_json::to_string(&m.blocking).map_err(|e| PrunerError::file(path, e))?;
            metadata.insert(format!("{BLOCKING_KEY}{name}"), blocking);
            raw.push(RawTensor {
                name: name.as_str(),
                dtype: Dtype::U8,
                shape: m.blocking.metric_shape(),
                bytes: m.keep.iter().map(|&k| u8::from(k)).collect(),
            });
        }
        Ok(write_safetensors(path, &raw, metadata)?)
    }

    /// Reads masks written by [`Masks::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| PrunerError::file(path, e))?;
        let (_, header) =
            SafeTensors::read_metadata(&bytes).map_err(|e| PrunerError::file(path, e))?;
        let meta = header.metadata().clone().unwrap_or_default();
        if meta.get(FORMAT_KEY).map(String::as_str) != Some(FORMAT) {
            return Err(PrunerError::file(
                path,
                format!("not a mask file (metadata `{FORMAT_KEY}` is not `{FORMAT}`)"),
            ));
        }
        let st = SafeTensors::deserialize(&bytes).map_err(|e| PrunerError::file(path, e))?;
        let mut masks = Masks::new();
        for (name, view) in st.tensors() {
            let bad = |why: String| PrunerError::Mask {
                name: name.clone(),
                why: format!("{}: {why}", path.display()),
            };
            let text = meta
                .get(&format!("{BLOCKING_KEY}{name}"))
                .ok_or_else(|| bad("no blocking in the metadata".into()))?;
            let blocking: Blocking =
                serde_json::from_str(text).map_err(|e| bad(format!("bad blocking: {e}")))?;
            let blocking =
                Blocking::new(blocking.shape().to_vec(), blocking.block().to_vec()).map_err(bad)?;
            if view.dtype() != Dtype::U8 || view.shape() != blocking.metric_shape() {
                return Err(bad(format!(
                    "stored as {:?} {:?}, expected U8 {:?}",
                    view.dtype(),
                    view.shape(),
                    blocking.metric_shape()
                )));
            }
            let keep = view.data().iter().map(|&b| b != 0).collect();
            masks.insert(&name, ParamMask::new(&name, blocking, keep)?);
        }
        Ok(masks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocking(shape: &[usize], block: &[usize]) -> Blocking {
        Blocking::new(shape.to_vec(), block.to_vec()).unwrap()
    }

    #[test]
    fn rows_and_columns_alive() {
        // [4, 4] weight, [2, 2] blocks; only the top-right block is kept.
        let m = ParamMask::new(
            "w",
            blocking(&[4, 4], &[2, 2]),
            vec![false, true, false, false],
        )
        .unwrap();
        assert_eq!(m.rows_alive(), [true, true, false, false]);
        assert_eq!(m.cols_alive(), [false, false, true, true]);
        assert_eq!(m.sparsity(), 0.75);
        assert_eq!(&m.expand()[..4], &[0.0, 0.0, 1.0, 1.0]);
    }
}
