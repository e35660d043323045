//! `BertForSequenceClassification`: the model with pooler and classifier, and its loss
//! (cross-entropy or mean squared error) forward and backward.

use super::{BertCache, BertModel, ForwardOptions, LossForward, OutputGrads};
use crate::batch::Batch;
use crate::config::BertConfig;
use crate::error::{Result, TransformerError};
use crate::params::{BertParams, Linear};
use crate::weights::{load_params, weights_file};
use prune_tensor::rng::Rng;
use prune_tensor::{Backend, Tensor};
use std::path::Path;

/// The targets of a sequence classification or regression batch.
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a> {
    /// One class per example (`[B]`, values in `0..K`; `-100` is ignored as in PyTorch).
    Classes(&'a [i64]),
    /// One real value per example (`[B]`, regression with K = 1).
    Values(&'a [f32]),
}

/// Label value ignored by the cross-entropy.
pub const IGNORE_INDEX: i64 = -100;

/// What the loss's backward needs.
#[derive(Clone, Debug)]
enum LossCache<T> {
    CrossEntropy { probs: T, labels: Vec<i64> },
    Mse { pred: T, target: T },
}

/// Cache of [`BertForSequenceClassification::forward_t`].
#[derive(Clone, Debug)]
pub struct ClassificationCache<T> {
    /// The model's cache.
    pub bert: BertCache<T>,
    loss: LossCache<T>,
}

/// A BERT with pooler and classifier trained with cross-entropy (classification) or mean
/// squared error (regression, one label), as transformers' class of the same name.
#[derive(Clone, Debug)]
pub struct BertForSequenceClassification<B: Backend> {
    /// The model (has a pooler and a classifier).
    pub bert: BertModel<B>,
}

impl<B: Backend> BertForSequenceClassification<B> {
    /// Loads the checkpoint in `dir` for a task with `num_labels` outputs (1: regression).
    /// A classifier of that size in the checkpoint is kept; otherwise a new one is
    /// initialised as transformers does (normal(0, initializer_range) weight, zero bias,
    /// seeded), and so is a missing pooler.
    pub fn from_pretrained(backend: B, dir: &Path, num_labels: usize, seed: u64) -> Result<Self> {
        if num_labels == 0 {
            return Err(TransformerError::Input(
                "a classifier needs at least one label".into(),
            ));
        }
        let mut config = BertConfig::from_file(&dir.join("config.json"))?;
        let mut host = load_params(&weights_file(dir)?, &config)?;
        let (c, c0) = (config.hidden(), config.hidden_size);
        let mut rng = Rng::new(seed);
        let std = config.initializer_range;
        let mut init = |rows: usize, cols: usize| Linear {
            weight: Tensor::from_fn([rows, cols], |_| (rng.normal() * std) as f32),
            bias: Tensor::zeros([rows]),
        };
        if host.pooler.is_none() {
            host.pooler = Some(init(c0, c));
        }
        let fits = host
            .classifier
            .as_ref()
            .is_some_and(|l| l.bias.dims() == [num_labels]);
        if !fits {
            host.classifier = Some(init(num_labels, c0));
            config.id2label = None;
        }
        config.num_labels = Some(num_labels);
        Self::new(BertModel::from_host(backend, config, &host)?)
    }

    /// Wraps `bert`, which must have a pooler and a classifier.
    pub fn new(bert: BertModel<B>) -> Result<Self> {
        if bert.params.pooler.is_none() || bert.params.classifier.is_none() {
            return Err(TransformerError::Input(
                "sequence classification needs a pooler and a classifier".into(),
            ));
        }
        Ok(BertForSequenceClassification { bert })
    }

    /// Logits `[B, K]` in inference mode.
    pub fn logits(&self, batch: &Batch) -> Result<B::Tensor> {
        let out = self
            .bert
            .forward_reading(batch, &ForwardOptions::default(), true)?;
        out.logits
            .ok_or_else(|| TransformerError::Input("model has no classifier".into()))
    }

    /// Training forward and the mean loss over the batch. The loss reads the last layer
    /// at each sequence's first token alone, so unless hidden states are asked for, the
    /// last layer computes only those rows after its self-attention and the outputs'
    /// `last_hidden_state` is `[B, 1, C]` ([`BertModel::forward_t_reading`]).
    pub fn forward_t(
        &self,
        batch: &Batch,
        targets: Targets<'_>,
        opts: &ForwardOptions,
    ) -> Result<LossForward<B::Tensor>> {
        let b = self.bert.backend();
        let first_tokens = !opts.output_hidden_states;
        let (out, bert) = self.bert.forward_t_reading(batch, opts, first_tokens)?;
        let logits = out
            .logits
            .as_ref()
            .ok_or_else(|| TransformerError::Input("model has no classifier".into()))?;
        let k = b.shape(logits).last();
        let (loss, cache) = match targets {
            Targets::Classes(labels) => {
                if labels.len() != batch.batch {
                    return Err(TransformerError::Input(format!(
                        "{} labels for {} examples",
                        labels.len(),
                        batch.batch
                    )));
                }
                let (loss, probs) = b.cross_entropy_fwd(logits, labels, IGNORE_INDEX)?;
                (
                    loss,
                    LossCache::CrossEntropy {
                        probs,
                        labels: labels.to_vec(),
                    },
                )
            }
            Targets::Values(values) => {
                if k != 1 || values.len() != batch.batch {
                    return Err(TransformerError::Input(format!(
                        "regression needs one label (have {k}) and one target per example ({} for {})",
                        values.len(),
                        batch.batch
                    )));
                }
                let target = b.upload(&Tensor::new([values.len(), 1], values.to_vec())?)?;
                let loss = b.mse_fwd(logits, &target)?;
                (
                    loss,
                    LossCache::Mse {
                        pred: logits.clone(),
                        target,
                    },
                )
            }
        };
        Ok((loss, out, ClassificationCache { bert, loss: cache }))
    }

    /// Backward of `dl · loss`: accumulates every parameter gradient into `grads`, returns
    /// the gradient of the input embeddings `[B, T, C]`.
    pub fn backward(
        &self,
        cache: ClassificationCache<B::Tensor>,
        dl: f64,
        grads: &mut BertParams<B::Tensor>,
    ) -> Result<B::Tensor> {
        let b = self.bert.backend();
        let dlogits = match &cache.loss {
            LossCache::CrossEntropy { probs, labels } => {
                b.cross_entropy_bwd(probs, labels, IGNORE_INDEX, dl)?
            }
            LossCache::Mse { pred, target } => b.mse_bwd(pred, target, dl)?,
        };
        let d = OutputGrads {
            logits: Some(dlogits),
            ..OutputGrads::default()
        };
        self.bert.backward(cache.bert, d, grads)
    }
}

/// A classification head `[K, C]` from host tensors named `classifier.weight` and
/// `classifier.bias` (e.g. a separate `head.safetensors`).
pub fn classifier_from_tensors(
    tensors: &std::collections::BTreeMap<String, Tensor<f32>>,
) -> Result<Linear<Tensor<f32>>> {
    let get = |n: &str| {
        tensors
            .get(n)
            .cloned()
            .ok_or_else(|| TransformerError::Input(format!("no tensor `{n}`")))
    };
    Ok(Linear {
        weight: get("classifier.weight")?,
        bias: get("classifier.bias")?,
    })
}
