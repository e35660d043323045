//! `BertModel`: embeddings, encoder layers, optional pooler and classifier over any
//! `Backend`, with weight masks, a head mask, inference `forward`, training `forward_t`
//! and `backward` (which reads as the forward pass in reverse).

use crate::batch::Batch;
use crate::config::BertConfig;
use crate::error::{Result, TransformerError};
use crate::layers::classifier::{
    ClassifierCache, PoolerCache, classifier_forward, first_token_rows, pooler_forward,
};
use crate::layers::embeddings::{EmbeddingInput, EmbeddingsCache};
use crate::layers::encoder::{LayerCache, LayerCtx};
use crate::layers::norm::NormSpec;
use crate::layers::projection::{ProjectionCache, projection_forward};
use crate::layers::site_seed;
use crate::params::BertParams;
use crate::weights::{HostParams, load_params, save_config, save_params, weights_file};
use prune_tensor::rng::Rng;
use prune_tensor::{Backend, Shape, Tensor};
use std::path::Path;

mod backward;
mod classification;
mod forward_t;
mod masks;
mod prepare;

use prepare::Prepared;

pub use classification::{
    BertForSequenceClassification, ClassificationCache, IGNORE_INDEX, Targets,
    classifier_from_tensors,
};

/// Additive attention-mask value for padding keys: transformers' `finfo(float32).min`.
/// Added to scaled scores of ordinary size it stays finite, so softmax cannot produce NaN.
pub const MASK_VALUE: f32 = f32::MIN;

/// Per-element weight masks mirroring the parameters (`None`: unmasked).
pub type WeightMasks<T> = BertParams<Option<T>>;

/// Options of one forward pass.
#[derive(Clone, Copy, Debug, Default)]
pub struct ForwardOptions {
    /// Return the hidden state after the embeddings and after every layer.
    pub output_hidden_states: bool,
    /// Seed of the dropout draws (training forward only).
    pub seed: u64,
}

/// What a forward pass returns.
#[derive(Clone, Debug)]
pub struct BertOutput<T> {
    /// Output of the last layer, `[B, T, C]`.
    pub last_hidden_state: T,
    /// Embedding output then each layer's output, `L + 1` × `[B, T, C]`; empty unless
    /// [`ForwardOptions::output_hidden_states`].
    pub hidden_states: Vec<T>,
    /// Pooler output, `[B, C]`, when the model has a pooler.
    pub pooled: Option<T>,
    /// Classifier output, `[B, K]`, when the model has a pooler and a classifier.
    pub logits: Option<T>,
}

/// Upstream gradients of a forward pass's outputs; absent ones count as zero.
#[derive(Clone, Debug)]
pub struct OutputGrads<T> {
    /// `dL/d logits`, `[B, K]`.
    pub logits: Option<T>,
    /// `dL/d pooled`, `[B, C]`.
    pub pooled: Option<T>,
    /// `dL/d last_hidden_state`, `[B, T, C]`.
    pub last_hidden_state: Option<T>,
    /// `dL/d hidden_states[i]`, `[B, T, C]` each (index 0: embedding output); may be
    /// shorter than `L + 1`.
    pub hidden_states: Vec<Option<T>>,
}

impl<T> Default for OutputGrads<T> {
    fn default() -> Self {
        OutputGrads {
            logits: None,
            pooled: None,
            last_hidden_state: None,
            hidden_states: Vec::new(),
        }
    }
}

/// Everything `backward` needs from a training forward pass.
#[derive(Clone, Debug)]
pub struct BertCache<T> {
    batch: usize,
    seq: usize,
    /// Rows per sequence of the last layer's output (1 when it computed first tokens only).
    out_seq: usize,
    seed: u64,
    /// Additive attention mask, `[B, T]`.
    attn_mask: T,
    /// Per-layer head mask expanded over the batch, `[B·H]`.
    head_masks: Vec<Option<T>>,
    /// Kept hidden channels, `[C]`, under a hidden-channel mask.
    hidden_keep: Option<T>,
    /// The same on every row, `[B·T, C]`, when the embeddings are projected.
    projection_keep: Option<T>,
    embeddings: EmbeddingsCache<T>,
    projection: Option<ProjectionCache<T>>,
    layers: Vec<LayerCache<T>>,
    pooler: Option<PoolerCache<T>>,
    classifier: Option<ClassifierCache<T>>,
}

impl<T> BertCache<T> {
    /// The hidden state entering layer `l` (`l = 0`: the embedding output), `[B·T, C]`.
    pub fn hidden_state(&self, l: usize) -> Option<&T> {
        self.layers.get(l).map(|c| &c.x)
    }
}

/// What [`BertModel::forward_t`] returns: the outputs and the cache for backward.
pub type TrainForward<T> = (BertOutput<T>, BertCache<T>);

/// What [`BertForSequenceClassification::forward_t`] returns: the mean loss, the outputs
/// and the cache for backward.
pub type LossForward<T> = (f64, BertOutput<T>, ClassificationCache<T>);

/// A BERT encoder with optional pooler and classification head, generic over the backend.
#[derive(Clone, Debug)]
pub struct BertModel<B: Backend> {
    backend: B,
    /// The configuration the parameters follow.
    pub config: BertConfig,
    /// The parameters, named as in transformers.
    pub params: BertParams<B::Tensor>,
    /// Per-element masks: a parameter `p` with mask `m` acts as `p ⊙ m`.
    masks: Option<BertParams<Option<B::Tensor>>>,
    /// Per-layer factors on each head's attention probabilities, `[L][H_l]`.
    head_mask: Option<Vec<Vec<f32>>>,
    /// Hidden channels kept (1) or dropped (0), `[C]`: every LayerNorm normalises over the
    /// kept channels only and outputs 0 at the dropped ones.
    hidden_mask: Option<Vec<f32>>,
}

fn dims_of<B: Backend>(b: &B, t: &B::Tensor) -> Shape {
    b.shape(t).clone()
}

/// Checks a parameter tree's shapes against those `config` implies (with the pooler and
/// classifier the tree has).
fn check_shapes(config: &BertConfig, found: &BertParams<Shape>) -> Result<()> {
    config.validate()?;
    let expected = BertParams::expected(config, found.pooler.is_some(), found.classifier.is_some());
    let found = found.named();
    for ((name, shape), (_, t)) in expected.named().into_iter().zip(&found) {
        if *t != shape {
            return Err(TransformerError::TensorShape {
                name,
                expected: shape.clone(),
                found: (*t).clone(),
            });
        }
    }
    if expected.len() != found.len() {
        return Err(TransformerError::Input(format!(
            "parameter tree has {} tensors, the config implies {}",
            found.len(),
            expected.len()
        )));
    }
    Ok(())
}

impl<B: Backend> BertModel<B> {
    /// A model from host parameters, checked against `config`; the pooler and the
    /// classifier come along when `host` has them.
    pub fn from_host(backend: B, config: BertConfig, host: &HostParams) -> Result<Self> {
        check_shapes(&config, &host.map(|_, t| t.shape().clone()))?;
        let params = host.try_map(|_, t| backend.upload(t).map_err(TransformerError::from))?;
        Self::from_params(backend, config, params)
    }

    /// A model from parameters already on `backend` (for instance the symbolic tensors of
    /// a tracing backend), checked against `config`.
    pub fn from_params(
        backend: B,
        config: BertConfig,
        params: BertParams<B::Tensor>,
    ) -> Result<Self> {
        check_shapes(&config, &params.map(|_, t| backend.shape(t).clone()))?;
        Ok(BertModel {
            backend,
            config,
            params,
            masks: None,
            head_mask: None,
            hidden_mask: None,
        })
    }

    /// Loads `config.json` and the weights ([`weights_file`]: `model.safetensors`, else
    /// `pytorch_model.bin`) from `dir`.
    pub fn load(backend: B, dir: &Path) -> Result<Self> {
        let config = BertConfig::from_file(&dir.join("config.json"))?;
        let host = load_params(&weights_file(dir)?, &config)?;
        Self::from_host(backend, config, &host)
    }

    /// A randomly initialised model as transformers does it: normal(0, initializer_range)
    /// weights and embeddings (padding row zero), zero biases, LayerNorm γ = 1, β = 0.
    pub fn random(
        backend: B,
        config: BertConfig,
        pooler: bool,
        classifier: bool,
        seed: u64,
    ) -> Result<Self> {
        config.validate()?;
        let mut rng = Rng::new(seed);
        let std = config.initializer_range;
        let pad = config.pad_token_id;
        let shapes = BertParams::expected(&config, pooler, classifier);
        let host = shapes.map(|name, shape| {
            if name.ends_with("LayerNorm.weight") {
                Tensor::full(shape.clone(), 1.0f32)
            } else if name.ends_with("bias") {
                Tensor::zeros(shape.clone())
            } else {
                let c = shape.last();
                Tensor::from_fn(shape.clone(), |i| {
                    let v = (rng.normal() * std) as f32;
                    if name == "embeddings.word_embeddings.weight" && i / c.max(1) == pad {
                        0.0
                    } else {
                        v
                    }
                })
            }
        });
        Self::from_host(backend, config, &host)
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, the parameters and the config, borrowed together (for surgery).
    pub fn parts_mut(&mut self) -> (&B, &mut BertParams<B::Tensor>, &mut BertConfig) {
        (&self.backend, &mut self.params, &mut self.config)
    }

    /// The parameters (mutably) and the weight masks, borrowed together (for optimizer
    /// updates that re-apply the masks).
    pub fn params_and_masks_mut(
        &mut self,
    ) -> (&mut BertParams<B::Tensor>, Option<&WeightMasks<B::Tensor>>) {
        (&mut self.params, self.masks.as_ref())
    }

    /// The parameters copied to the host in f32.
    pub fn to_host(&self) -> Result<HostParams> {
        self.params
            .try_map(|_, t| self.backend.download(t).map_err(TransformerError::from))
    }

    /// Writes `config.json` and `model.safetensors` into `dir` (created if needed), each
    /// atomically. Masks are not applied: save the masked product explicitly if wanted.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| TransformerError::io(dir, e))?;
        save_params(
            &dir.join("model.safetensors"),
            &self.to_host()?,
            self.config.family,
        )?;
        let classifier = self.params.classifier.is_some();
        save_config(&dir.join("config.json"), &self.config, classifier)
    }

    /// A zero gradient tree mirroring the parameters.
    pub fn zero_grads(&self) -> Result<BertParams<B::Tensor>> {
        self.params.try_map(|_, t| {
            self.backend
                .zeros(self.backend.shape(t))
                .map_err(TransformerError::from)
        })
    }

    /// Total number of parameter elements.
    pub fn num_parameters(&self) -> usize {
        self.params
            .named()
            .iter()
            .map(|(_, t)| self.backend.shape(t).numel())
            .sum()
    }

    /// How every LayerNorm normalises, given the uploaded hidden-channel mask.
    fn norm<'a>(&self, hidden_keep: Option<&'a B::Tensor>) -> NormSpec<'a, B::Tensor> {
        NormSpec {
            eps: self.config.layer_norm_eps,
            keep: hidden_keep,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn layer_ctx<'a>(
        &'a self,
        l: usize,
        batch: usize,
        seq: usize,
        attn_mask: &'a B::Tensor,
        head_mask: Option<&'a B::Tensor>,
        hidden_keep: Option<&'a B::Tensor>,
        seed: u64,
    ) -> LayerCtx<'a, B::Tensor> {
        LayerCtx {
            batch,
            seq,
            head_dim: self.config.head_dim(),
            norm: self.norm(hidden_keep),
            attn_mask,
            head_mask,
            activation: self.config.activation,
            hidden_dropout: self.config.hidden_dropout_prob,
            attention_dropout: self.config.attention_probs_dropout_prob,
            seed: site_seed(seed, l as u64 + 1, 0),
            masks: self.masks.as_ref().map(|m| &m.layers[l]),
        }
    }

    /// Layer `l`'s settings in a forward pass over `prep`, and the rows of its output the
    /// pass computes: all (`None`) but in the last layer when the output keeps `out_seq` = 1
    /// row per sequence, each sequence's first token.
    fn layer_pass<'a>(
        &'a self,
        l: usize,
        batch: &Batch,
        prep: &'a Prepared<B::Tensor>,
        seed: u64,
        out_seq: usize,
    ) -> (LayerCtx<'a, B::Tensor>, Option<Vec<usize>>) {
        let ctx = self.layer_ctx(
            l,
            batch.batch,
            batch.seq,
            &prep.attn_mask,
            prep.head_masks[l].as_ref(),
            prep.hidden_keep.as_ref(),
            seed,
        );
        let last = l + 1 == self.params.layers.len();
        let rows = (out_seq < batch.seq && last).then(|| first_token_rows(batch.batch, batch.seq));
        (ctx, rows)
    }

    /// How the embeddings' LayerNorm normalises: over the kept hidden channels, unless a
    /// projection separates the embeddings' width from the hidden width.
    fn embeddings_norm<'a>(&self, hidden_keep: Option<&'a B::Tensor>) -> NormSpec<'a, B::Tensor> {
        match self.params.embeddings_project {
            Some(_) => self.norm(None),
            None => self.norm(hidden_keep),
        }
    }

    /// Rows per sequence of the last layer's output: 1 when only the first tokens are read
    /// (refused with hidden states, which need every row), else `seq`.
    fn rows_read(&self, first_tokens: bool, opts: &ForwardOptions, seq: usize) -> Result<usize> {
        if first_tokens && opts.output_hidden_states {
            return Err(TransformerError::Input(
                "hidden states are not computed when only the first tokens are read".into(),
            ));
        }
        Ok(match first_tokens && !self.params.layers.is_empty() {
            true => 1,
            false => seq,
        })
    }

    /// `[B·T, C]` → `[B, T, C]`.
    fn unflatten(&self, t: B::Tensor, batch: usize, seq: usize) -> Result<B::Tensor> {
        let c = self.backend.shape(&t).last();
        Ok(self.backend.reshape(t, Shape::from([batch, seq, c]))?)
    }

    /// `[.., C]` → `[rows, C]`, checking the element count.
    fn flatten(&self, t: B::Tensor, rows: usize, what: &str) -> Result<B::Tensor> {
        let shape = self.backend.shape(&t).clone();
        let c = self.config.hidden();
        if shape.numel() != rows * c {
            return Err(TransformerError::Input(format!(
                "{what} has shape {shape}, expected [B, T, C] with B·T = {rows}, C = {c}"
            )));
        }
        Ok(self.backend.reshape(t, Shape::from([rows, c]))?)
    }

    /// The hidden state entering the first layer, `[B·T, C]`, in inference mode: the
    /// embeddings of `batch` (checked against the model), projected to the hidden width
    /// when the model projects them, under the model's masks.
    pub fn embed(&self, batch: &Batch) -> Result<B::Tensor> {
        let prep = self.prepare(batch)?;
        self.embed_prepared(&prep)
    }

    /// [`BertModel::embed`] of inputs already prepared.
    fn embed_prepared(&self, prep: &Prepared<B::Tensor>) -> Result<B::Tensor> {
        let b = &self.backend;
        let masks = self.masks.as_ref();
        let input = EmbeddingInput {
            ids: &prep.ids,
            type_ids: &prep.type_ids,
            positions: &prep.positions,
        };
        let x = self.params.embeddings.forward(
            b,
            &input,
            self.embeddings_norm(prep.hidden_keep.as_ref()),
            masks.map(|m| &m.embeddings),
        )?;
        match &self.params.embeddings_project {
            Some(p) => projection_forward(
                b,
                p,
                &x,
                prep.projection_keep.as_ref(),
                masks.and_then(|m| m.embeddings_project.as_ref()),
            ),
            None => Ok(x),
        }
    }

    /// Inference (no dropout, nothing kept).
    pub fn forward(&self, batch: &Batch, opts: &ForwardOptions) -> Result<BertOutput<B::Tensor>> {
        self.forward_reading(batch, opts, false)
    }

    /// [`BertModel::forward`]; with `first_tokens`, for a caller that reads nothing of the
    /// last layer but each sequence's first token, as [`BertModel::forward_t_reading`].
    pub fn forward_reading(
        &self,
        batch: &Batch,
        opts: &ForwardOptions,
        first_tokens: bool,
    ) -> Result<BertOutput<B::Tensor>> {
        let out_seq = self.rows_read(first_tokens, opts, batch.seq)?;
        let b = &self.backend;
        let prep = self.prepare(batch)?;
        let masks = self.masks.as_ref();
        let mut x = self.embed_prepared(&prep)?;
        let mut states = Vec::new();
        for (l, layer) in self.params.layers.iter().enumerate() {
            let (ctx, rows) = self.layer_pass(l, batch, &prep, opts.seed, out_seq);
            let h1 = layer.attention_sublayer(b, &x, &ctx, rows.as_deref())?;
            let y = layer.ffn_sublayer(b, &h1, &ctx)?;
            if opts.output_hidden_states {
                states.push(std::mem::replace(&mut x, y));
            } else {
                x = y;
            }
        }
        let pooled = match &self.params.pooler {
            Some(p) => Some(pooler_forward(
                b,
                p,
                self.config.family.head_activation(),
                &x,
                batch.batch,
                out_seq,
                masks.and_then(|m| m.pooler.as_ref()),
            )?),
            None => None,
        };
        let logits = match (&self.params.classifier, &pooled) {
            (Some(c), Some(p)) => Some(classifier_forward(
                b,
                c,
                p,
                masks.and_then(|m| m.classifier.as_ref()),
            )?),
            _ => None,
        };
        if opts.output_hidden_states {
            states.push(x.clone());
        }
        let hidden_states = states
            .into_iter()
            .map(|s| self.unflatten(s, batch.batch, batch.seq))
            .collect::<Result<_>>()?;
        Ok(BertOutput {
            last_hidden_state: self.unflatten(x, batch.batch, out_seq)?,
            hidden_states,
            pooled,
            logits,
        })
    }
}
