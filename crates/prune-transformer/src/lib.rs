//! A minimal BERT written over the `Backend` trait of `prune-tensor`: [`BertConfig`] read
//! from Hugging Face `config.json` (with per-layer widths after surgery), parameters named
//! as in the checkpoint ([`BertParams`]), safetensors load/save, the [`Tokenizer`], and
//! layers with `forward` / `forward_t` / `backward` assembled into [`BertModel`] and
//! [`BertForSequenceClassification`]. The backward maths is derived in
//! `docs/bert-backward.md`.

pub mod batch;
pub mod config;
pub mod error;
pub mod family;
pub mod fixtures;
pub mod groups;
pub mod layers;
pub mod model;
pub mod params;
pub mod paths;
mod tensor_file;
pub mod tokenizer;
mod torch_file;
mod torch_pickle;
pub mod weights;

pub use batch::Batch;
pub use config::{BertConfig, ProblemType};
pub use error::{Result, TransformerError, one_line};
pub use family::{FAMILIES, Family, HeadActivation};
pub use model::{
    BertCache, BertForSequenceClassification, BertModel, BertOutput, ClassificationCache,
    ForwardOptions, IGNORE_INDEX, LossForward, MASK_VALUE, OutputGrads, Targets, TrainForward,
    WeightMasks, classifier_from_tensors,
};
pub use params::{BertParams, Embeddings, Layer, LayerNorm, Linear, canonical_name};
pub use tokenizer::{Padding, Tokenizer};
pub use weights::{HostParams, load_params, read_float_tensors, save_config, save_params};
