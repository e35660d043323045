//! Metric granularity (NNI's `Scaling`): how a weight is cut into blocks that share one
//! importance value and one mask bit, and the two moves between the element level and the
//! block level: `reduce` (sum a per-element quantity over each block) and `expand` (repeat
//! a per-block value over its elements).

use crate::error::{PrunerError, Result};
use crate::modules::OpType;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The `granularity` of a `config_list` entry.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Granularity {
    /// The op type's default: output channels (rows of a Linear weight, hidden columns of
    /// an Embedding table, elements of a LayerNorm weight).
    #[default]
    Default,
    /// One value per element (unstructured).
    Element,
    /// One value per output channel: a row `[1, I]` of a Linear weight `[O, I]`; a hidden
    /// column `[V, 1]` of an Embedding table `[V, C]` (its output features); an element of
    /// a 1-D weight.
    OutChannel,
    /// One value per input channel: a column `[O, 1]` of a Linear weight; a vocabulary row
    /// `[1, C]` of an Embedding table.
    InChannel,
    /// Blocks of `[rows, cols]` elements; `-1` spans the whole dimension (`[-1, 1]`: one
    /// value per column). A 1-D weight takes a one-number block.
    Block(Vec<i64>),
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Granularity::Default => f.write_str("default"),
            Granularity::Element => f.write_str("element"),
            Granularity::OutChannel => f.write_str("out_channel"),
            Granularity::InChannel => f.write_str("in_channel"),
            Granularity::Block(b) => write!(f, "{b:?}"),
        }
    }
}

impl Granularity {
    /// The block `[rows, cols]` (or `[n]` for a 1-D weight) this granularity cuts the
    /// weight `name` of type `op` and shape `shape` into.
    pub fn blocking(&self, name: &str, op: OpType, shape: &[usize]) -> Result<Blocking> {
        let err = |why: String| PrunerError::Granularity {
            name: name.to_string(),
            shape: shape.to_vec(),
            why,
        };
        // A whole dimension as one block; an empty dimension (a layer left without heads)
        // takes blocks of 1 so that it simply has no blocks.
        let full = |d: usize| shape[d].max(1);
        let block: Vec<usize> = match (shape.len(), self) {
            (1, Granularity::Default | Granularity::Element | Granularity::OutChannel) => {
                vec![1]
            }
            (1, Granularity::InChannel) => {
                return Err(err("a 1-D weight has no input channels".into()));
            }
            (2, Granularity::Element) => vec![1, 1],
            (2, Granularity::Default | Granularity::OutChannel) => match op {
                OpType::Embedding => vec![full(0), 1],
                _ => vec![1, full(1)],
            },
            (2, Granularity::InChannel) => match op {
                OpType::Embedding => vec![1, full(1)],
                _ => vec![full(0), 1],
            },
            (n, Granularity::Block(b)) if b.len() == n => b
                .iter()
                .zip(shape)
                .map(|(&k, &d)| match k {
                    -1 => Ok(d.max(1)),
                    k if k >= 1 && d % (k as usize) == 0 => Ok(k as usize),
                    k => Err(err(format!(
                        "block size {k} does not divide dimension {d} (granularity {self})"
                    ))),
                })
                .collect::<Result<_>>()?,
            (n, Granularity::Block(b)) => {
                return Err(err(format!(
                    "granularity {b:?} has {} numbers, the weight {n} dimensions",
                    b.len()
                )));
            }
            (n, _) => return Err(err(format!("{n}-D weights are not supported"))),
        };
        Blocking::new(shape.to_vec(), block).map_err(err)
    }
}

/// A weight shape cut into equal blocks: the metric (and mask) lives at the block level.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocking {
    /// Shape of the weight, 1-D or 2-D.
    shape: Vec<usize>,
    /// Shape of one block (divides `shape` dimension by dimension).
    block: Vec<usize>,
}

impl Blocking {
    /// Blocks of shape `block` over a weight of shape `shape`; fails unless they have the
    /// same rank (1 or 2) and the block divides the shape.
    pub fn new(shape: Vec<usize>, block: Vec<usize>) -> std::result::Result<Self, String> {
        if shape.len() != block.len() || !(1..=2).contains(&shape.len()) {
            return Err(format!("block {block:?} does not fit shape {shape:?}"));
        }
        if block
            .iter()
            .zip(&shape)
            .any(|(&b, &d)| b == 0 || d % b != 0)
        {
            return Err(format!("block {block:?} does not divide shape {shape:?}"));
        }
        Ok(Blocking { shape, block })
    }

    /// Shape of the weight.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Shape of one block.
    pub fn block(&self) -> &[usize] {
        &self.block
    }

    /// Shape of the metric: the number of blocks along each dimension.
    pub fn metric_shape(&self) -> Vec<usize> {
        self.shape
            .iter()
            .zip(&self.block)
            .map(|(d, b)| d / b)
            .collect()
    }

    /// Number of blocks.
    pub fn metric_numel(&self) -> usize {
        self.metric_shape().iter().product()
    }

    /// Number of weight elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Elements per block (NNI's grain size).
    pub fn grain(&self) -> usize {
        self.block.iter().product()
    }

    /// `(rows, cols)` of the weight and of a block, 1-D weights seen as one row.
    fn dims2(&self) -> ((usize, usize), (usize, usize)) {
        match (self.shape.as_slice(), self.block.as_slice()) {
            ([r, c], [br, bc]) => ((*r, *c), (*br, *bc)),
            ([c], [bc]) => ((1, *c), (1, *bc)),
            _ => ((1, self.numel()), (1, self.grain())),
        }
    }

    /// The block holding each element, in row-major element order.
    pub fn block_index(&self) -> impl Iterator<Item = usize> + '_ {
        let ((rows, cols), (br, bc)) = self.dims2();
        let blocks_per_row = cols / bc;
        (0..rows).flat_map(move |r| (0..cols).map(move |c| (r / br) * blocks_per_row + c / bc))
    }

    /// `Σ_{e ∈ block} f(e)` for every block, where `f` maps the element index to a value.
    pub fn reduce(&self, mut f: impl FnMut(usize) -> f64) -> Vec<f64> {
        let mut out = vec![0.0; self.metric_numel()];
        for (i, b) in self.block_index().enumerate() {
            out[b] += f(i);
        }
        out
    }

    /// The per-element values of a per-block vector (each block's value repeated).
    pub fn expand<T: Copy>(&self, per_block: &[T]) -> Vec<T> {
        self.block_index().map(|b| per_block[b]).collect()
    }

    /// Checks that `len` is this weight's element count.
    pub fn check_len(&self, name: &str, len: usize) -> Result<()> {
        if len != self.numel() {
            return Err(PrunerError::Granularity {
                name: name.to_string(),
                shape: self.shape.clone(),
                why: format!("got {len} elements, expected {}", self.numel()),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_follow_nni_scaling() {
        let g = |gr: Granularity, op, shape: &[usize]| {
            gr.blocking("w", op, shape).map(|b| b.metric_shape())
        };
        let b = |v: &[i64]| Granularity::Block(v.to_vec());
        assert_eq!(
            g(b(&[64, 64]), OpType::Linear, &[768, 768]).unwrap(),
            [12, 12]
        );
        assert_eq!(
            g(b(&[32, 32]), OpType::Linear, &[384, 384]).unwrap(),
            [12, 12]
        );
        assert_eq!(
            g(Granularity::OutChannel, OpType::Linear, &[6, 4]).unwrap(),
            [6, 1]
        );
        assert_eq!(
            g(Granularity::InChannel, OpType::Linear, &[6, 4]).unwrap(),
            [1, 4]
        );
        assert_eq!(
            g(Granularity::Default, OpType::Embedding, &[50, 8]).unwrap(),
            [1, 8]
        );
        assert_eq!(g(b(&[-1, 1]), OpType::Embedding, &[50, 8]).unwrap(), [1, 8]);
        assert_eq!(
            g(Granularity::Default, OpType::LayerNorm, &[8]).unwrap(),
            [8]
        );
        // a layer surgery left without heads: no blocks, no error
        assert_eq!(
            g(Granularity::OutChannel, OpType::Linear, &[32, 0]).unwrap(),
            [32, 0]
        );
        assert!(g(b(&[5, 5]), OpType::Linear, &[16, 16]).is_err());
        assert!(g(b(&[4]), OpType::Linear, &[16, 16]).is_err());
        assert!(g(Granularity::InChannel, OpType::LayerNorm, &[16]).is_err());
    }

    #[test]
    fn reduce_sums_blocks_and_expand_repeats_them() {
        let bl = Blocking::new(vec![4, 6], vec![2, 3]).unwrap();
        let x: Vec<f64> = (0..24).map(f64::from).collect();
        let s = bl.reduce(|i| x[i]);
        // block (0,0): rows 0-1, cols 0-2 = 0+1+2+6+7+8
        assert_eq!(s, vec![24.0, 42.0, 96.0, 114.0]);
        let e = bl.expand(&[1, 2, 3, 4]);
        assert_eq!(&e[..6], &[1, 1, 1, 2, 2, 2]);
        assert_eq!(&e[18..], &[3, 3, 3, 4, 4, 4]);
        assert_eq!(bl.grain(), 6);
    }
}
