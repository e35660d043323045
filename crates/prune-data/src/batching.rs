//! From tokenized examples to padded batches: seeded shuffling, optional length bucketing,
//! and dynamic padding of each batch to its longest sequence.

use crate::dataset::Label;
use crate::error::{DataError, Result};
use prune_tensor::rng::{Rng, mix64};
use prune_transformer::{Batch, Targets};

/// One example after tokenization: unpadded ids and token types, and its label.
#[derive(Clone, Debug, PartialEq)]
pub struct Encoded {
    /// Token ids, special tokens included, already truncated.
    pub ids: Vec<u32>,
    /// Token type (segment) ids, one per token.
    pub type_ids: Vec<u32>,
    /// The gold label.
    pub label: Label,
}

/// The labels of a batch, in the form its loss wants.
#[derive(Clone, Debug, PartialEq)]
pub enum BatchLabels {
    /// Class indices, for cross-entropy.
    Classes(Vec<i64>),
    /// Scores, for MSE regression.
    Scores(Vec<f32>),
}

impl BatchLabels {
    /// The labels as the model's loss takes them.
    pub fn as_targets(&self) -> Targets<'_> {
        match self {
            BatchLabels::Classes(c) => Targets::Classes(c),
            BatchLabels::Scores(s) => Targets::Values(s),
        }
    }
}

/// A padded batch with its labels.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelledBatch {
    /// Model inputs `[B, T]`.
    pub inputs: Batch,
    /// Gold labels `[B]`.
    pub labels: BatchLabels,
}

/// How examples are grouped into batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchOrder {
    /// Examples per batch.
    pub batch_size: usize,
    /// Shuffle with this seed (combined with the epoch); `None` keeps file order.
    pub shuffle: Option<u64>,
    /// Group examples of similar length (within windows of 50 batches) so that padding is
    /// small; batches are still visited in a shuffled order when shuffling.
    pub bucket_by_length: bool,
}

impl BatchOrder {
    /// Indices of the examples of each batch of `epoch` (the last batch may be smaller).
    /// Deterministic in `(seed, epoch)`, so a resumed run sees the same order.
    pub fn batches(&self, lengths: &[usize], epoch: u64) -> Result<Vec<Vec<usize>>> {
        if self.batch_size == 0 {
            return Err(DataError::Invalid("batch size must be at least 1".into()));
        }
        let mut order: Vec<usize> = (0..lengths.len()).collect();
        let mut rng = self.shuffle.map(|seed| Rng::new(mix64(seed) ^ epoch));
        if let Some(r) = rng.as_mut() {
            r.shuffle(&mut order);
        }
        if self.bucket_by_length {
            for window in order.chunks_mut(self.batch_size * 50) {
                window.sort_by_key(|&i| lengths[i]);
            }
        }
        let mut batches: Vec<Vec<usize>> = order
            .chunks(self.batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        if let (Some(r), true) = (rng.as_mut(), self.bucket_by_length) {
            r.shuffle(&mut batches);
        }
        Ok(batches)
    }
}

/// Pads `examples` to the longest of them with `pad_id` (token type 0, mask 0) and gathers
/// their labels.
pub fn collate(examples: &[&Encoded], pad_id: u32) -> Result<LabelledBatch> {
    let t = examples.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    if examples.is_empty() || t == 0 {
        return Err(DataError::Invalid("cannot collate an empty batch".into()));
    }
    let b = examples.len();
    let mut ids = Vec::with_capacity(b * t);
    let mut types = Vec::with_capacity(b * t);
    let mut mask = Vec::with_capacity(b * t);
    for e in examples {
        let pad = t - e.ids.len();
        ids.extend(
            e.ids
                .iter()
                .copied()
                .chain(std::iter::repeat_n(pad_id, pad)),
        );
        types.extend(
            e.type_ids
                .iter()
                .copied()
                .chain(std::iter::repeat_n(0, pad)),
        );
        mask.extend(std::iter::repeat_n(1, e.ids.len()).chain(std::iter::repeat_n(0, pad)));
    }
    let labels = match examples[0].label {
        Label::Class(_) => BatchLabels::Classes(
            examples
                .iter()
                .map(|e| match e.label {
                    Label::Class(c) => Ok(c as i64),
                    Label::Score(_) => Err(mixed()),
                })
                .collect::<Result<_>>()?,
        ),
        Label::Score(_) => BatchLabels::Scores(
            examples
                .iter()
                .map(|e| match e.label {
                    Label::Score(s) => Ok(s),
                    Label::Class(_) => Err(mixed()),
                })
                .collect::<Result<_>>()?,
        ),
    };
    let inputs =
        Batch::new(b, t, ids, types, mask).map_err(|e| DataError::Invalid(e.to_string()))?;
    Ok(LabelledBatch { inputs, labels })
}

fn mixed() -> DataError {
    DataError::Invalid("a batch mixes class labels and regression scores".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(n: usize, label: Label) -> Encoded {
        Encoded {
            ids: (1..=n as u32).collect(),
            type_ids: vec![0; n],
            label,
        }
    }

    #[test]
    fn pads_each_batch_to_its_longest_sequence() {
        let (a, b) = (enc(3, Label::Class(1)), enc(5, Label::Class(0)));
        let lb = collate(&[&a, &b], 0).unwrap();
        assert_eq!((lb.inputs.batch, lb.inputs.seq), (2, 5));
        assert_eq!(lb.inputs.input_ids[..5], [1, 2, 3, 0, 0]);
        assert_eq!(lb.inputs.attention_mask[..5], [1, 1, 1, 0, 0]);
        assert_eq!(lb.labels, BatchLabels::Classes(vec![1, 0]));
        let s = enc(2, Label::Score(2.5));
        assert_eq!(
            collate(&[&s], 0).unwrap().labels,
            BatchLabels::Scores(vec![2.5])
        );
        assert!(collate(&[&a, &s], 0).is_err());
    }

    #[test]
    fn orders_are_seeded_complete_and_bucketed() {
        let lengths: Vec<usize> = (0..1000).map(|i| (i * 37) % 120 + 2).collect();
        let order = BatchOrder {
            batch_size: 32,
            shuffle: Some(7),
            bucket_by_length: true,
        };
        let e0 = order.batches(&lengths, 0).unwrap();
        assert_eq!(
            e0,
            order.batches(&lengths, 0).unwrap(),
            "same seed and epoch, same order"
        );
        assert_ne!(e0, order.batches(&lengths, 1).unwrap(), "epochs differ");
        let mut all: Vec<usize> = e0.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, (0..1000).collect::<Vec<_>>(), "every example once");
        let padding = |bs: &[Vec<usize>]| -> usize {
            bs.iter()
                .map(|b| {
                    let m = b.iter().map(|&i| lengths[i]).max().unwrap();
                    b.iter().map(|&i| m - lengths[i]).sum::<usize>()
                })
                .sum()
        };
        let plain = BatchOrder {
            bucket_by_length: false,
            ..order
        }
        .batches(&lengths, 0)
        .unwrap();
        assert!(padding(&e0) * 4 < padding(&plain), "bucketing cuts padding");
        let fixed = BatchOrder {
            batch_size: 300,
            shuffle: None,
            bucket_by_length: false,
        };
        assert_eq!(
            fixed.batches(&lengths, 0).unwrap()[3],
            (900..1000).collect::<Vec<_>>()
        );
    }
}
