//! `BertConfig`: the Hugging Face `config.json` of a BERT checkpoint, plus the per-layer
//! widths that structured pruning leaves behind.
//!
//! Surgery keys (ignored by transformers, written by us when they differ from the defaults):
//! `prune_layer_heads` (heads kept in each layer), `prune_layer_intermediate` (FFN width of
//! each layer), `prune_hidden_size` (hidden width after hidden-dimension pruning) and
//! `attention_head_size` (the head dim D, fixed at `hidden_size / num_attention_heads`).
//! Transformers' own `pruned_heads` (`{"layer": [original head indices]}`) is honoured too.

mod json;
mod validate;

pub use validate::{MAX_LAYERS, MAX_PARAMETERS, MAX_WIDTH};

use crate::error::{Result, TransformerError};
use crate::family::Family;
use prune_tensor::Activation;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use validate::check_limit;

/// What the classification head is trained for (transformers' `problem_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemType {
    /// One real target per example, mean squared error.
    Regression,
    /// One class per example, cross-entropy.
    SingleLabel,
    /// Several independent binary labels (binary cross-entropy; not supported by the loss).
    MultiLabel,
}

impl ProblemType {
    fn key(self) -> &'static str {
        match self {
            ProblemType::Regression => "regression",
            ProblemType::SingleLabel => "single_label_classification",
            ProblemType::MultiLabel => "multi_label_classification",
        }
    }
}

/// A BERT configuration: transformers' fields (same names) and the surgery fields.
#[derive(Clone, Debug, PartialEq)]
pub struct BertConfig {
    /// Hidden width of the original model (`hidden_size`).
    pub hidden_size: usize,
    /// Number of encoder layers L.
    pub num_hidden_layers: usize,
    /// Heads per layer of the original model.
    pub num_attention_heads: usize,
    /// FFN width of the original model.
    pub intermediate_size: usize,
    /// Token vocabulary size V.
    pub vocab_size: usize,
    /// Longest sequence the position table covers.
    pub max_position_embeddings: usize,
    /// Number of token types (segments).
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Dropout on embeddings and on each sub-layer's output.
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities.
    pub attention_probs_dropout_prob: f64,
    /// Dropout before the classifier (`hidden_dropout_prob` when absent).
    pub classifier_dropout: Option<f64>,
    /// Standard deviation of the normal initialisation.
    pub initializer_range: f64,
    /// Id of the padding token (its embedding row is zero at initialisation).
    pub pad_token_id: usize,
    /// Head dim D; every head keeps it through surgery.
    pub attention_head_size: usize,
    /// Heads removed per layer, in the original numbering (transformers' `pruned_heads`).
    pub pruned_heads: BTreeMap<usize, BTreeSet<usize>>,
    /// Heads kept in each layer, `[L]`.
    pub layer_heads: Vec<usize>,
    /// FFN width of each layer, `[L]`.
    pub layer_intermediate: Vec<usize>,
    /// Current hidden width C (≤ `hidden_size`).
    pub kept_hidden_size: usize,
    /// Width of the embedding tables of the original model: ELECTRA's `embedding_size`,
    /// `hidden_size` for every other family. When it differs from `hidden_size`, a linear
    /// layer (`embeddings_project`) maps the embeddings to the hidden width.
    pub embedding_size: usize,
    /// Current width E of the embedding tables under a projection (≤ `embedding_size`);
    /// without one the tables follow the hidden width ([`BertConfig::embedding_width`]).
    pub kept_embedding_size: usize,
    /// Number of labels of the classifier, when set.
    pub num_labels: Option<usize>,
    /// Names of the labels, when set.
    pub id2label: Option<BTreeMap<usize, String>>,
    /// The classifier's problem type, when set.
    pub problem_type: Option<ProblemType>,
    /// The FFN's activation (`hidden_act`).
    pub activation: Activation,
    /// The architecture (`model_type`; BERT when absent).
    pub family: Family,
    /// Keys this crate does not interpret, written back unchanged on save.
    pub extra: Map<String, Value>,
}

/// Keys this crate interprets (everything else goes to [`BertConfig::extra`]).
const KNOWN: &[&str] = &[
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "vocab_size",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "classifier_dropout",
    "initializer_range",
    "pad_token_id",
    "position_embedding_type",
    "pruned_heads",
    "attention_head_size",
    "prune_layer_heads",
    "prune_layer_intermediate",
    "prune_hidden_size",
    "num_labels",
    "id2label",
    "problem_type",
    "model_type",
];

/// Keys only ELECTRA's configuration has, interpreted for it alone.
const ELECTRA_KNOWN: &[&str] = &["embedding_size", "prune_embedding_size"];

fn req<'a>(m: &'a Map<String, Value>, key: &str) -> Result<&'a Value> {
    m.get(key)
        .filter(|v| !v.is_null())
        .ok_or_else(|| TransformerError::config(key, "missing"))
}

fn as_usize(key: &str, v: &Value) -> Result<usize> {
    v.as_u64().map(|x| x as usize).ok_or_else(|| {
        TransformerError::config(key, format!("expected a non-negative integer, got {v}"))
    })
}

fn as_f64(key: &str, v: &Value) -> Result<f64> {
    v.as_f64()
        .filter(|x| x.is_finite())
        .ok_or_else(|| TransformerError::config(key, format!("expected a number, got {v}")))
}

fn usize_key(m: &Map<String, Value>, key: &str) -> Result<usize> {
    as_usize(key, req(m, key)?)
}

fn opt_usize(m: &Map<String, Value>, key: &str) -> Result<Option<usize>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => as_usize(key, v).map(Some),
    }
}

fn opt_f64(m: &Map<String, Value>, key: &str) -> Result<Option<f64>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => as_f64(key, v).map(Some),
    }
}

fn prob(key: &str, p: f64) -> Result<f64> {
    if (0.0..1.0).contains(&p) {
        Ok(p)
    } else {
        Err(TransformerError::config(
            key,
            format!("probability {p} outside [0, 1)"),
        ))
    }
}

fn usize_list(m: &Map<String, Value>, key: &str) -> Result<Option<Vec<usize>>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| as_usize(key, v))
            .collect::<Result<_>>()
            .map(Some),
        Some(v) => Err(TransformerError::config(
            key,
            format!("expected a list of integers, got {v}"),
        )),
    }
}

impl BertConfig {
    /// Reads and validates `config.json` (a UTF-8 byte-order mark is allowed).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TransformerError::io(path, e))?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let value: Value = serde_json::from_str(text).map_err(|cause| TransformerError::Json {
            path: path.to_path_buf(),
            cause,
        })?;
        Self::from_json(&value).map_err(|e| match e {
            TransformerError::Config { key, why } => TransformerError::Config {
                key,
                why: format!("{why} (in {})", path.display()),
            },
            e => e,
        })
    }

    /// Parses and validates a `config.json` value.
    pub fn from_json(value: &Value) -> Result<Self> {
        let m = value.as_object().ok_or_else(|| {
            TransformerError::config("<root>", "config.json must be a JSON object")
        })?;
        // Checked first: another family's config would fail later on a key it spells
        // differently, with a message that sends the user the wrong way.
        let family = Family::of_config(m)?;
        let m = &family.bert_keys(m.clone());
        let hidden_size = usize_key(m, "hidden_size")?;
        let num_hidden_layers = usize_key(m, "num_hidden_layers")?;
        // Per-layer lists are built below: bound their length first.
        check_limit("num_hidden_layers", num_hidden_layers, MAX_LAYERS)?;
        let num_attention_heads = usize_key(m, "num_attention_heads")?;
        let intermediate_size = usize_key(m, "intermediate_size")?;
        let vocab_size = usize_key(m, "vocab_size")?;
        let max_position_embeddings = usize_key(m, "max_position_embeddings")?;
        let type_vocab_size = usize_key(m, "type_vocab_size")?;
        let activation = req(m, "hidden_act")?;
        let activation = (activation.as_str())
            .and_then(Activation::from_name)
            .ok_or_else(|| {
                TransformerError::config(
                    "hidden_act",
                    format!(
                        "{activation} is not supported (supported: gelu, gelu_new, \
                         gelu_pytorch_tanh, relu)"
                    ),
                )
            })?;
        if let Some(v) = m.get("position_embedding_type").filter(|v| !v.is_null())
            && v.as_str() != Some("absolute")
        {
            return Err(TransformerError::config(
                "position_embedding_type",
                format!("only \"absolute\" is supported, got {v}"),
            ));
        }
        let layer_norm_eps = as_f64("layer_norm_eps", req(m, "layer_norm_eps")?)?;
        let hidden_dropout_prob = prob(
            "hidden_dropout_prob",
            as_f64("hidden_dropout_prob", req(m, "hidden_dropout_prob")?)?,
        )?;
        let attention_probs_dropout_prob = prob(
            "attention_probs_dropout_prob",
            as_f64(
                "attention_probs_dropout_prob",
                req(m, "attention_probs_dropout_prob")?,
            )?,
        )?;
        let classifier_dropout = opt_f64(m, "classifier_dropout")?
            .map(|p| prob("classifier_dropout", p))
            .transpose()?;
        let initializer_range = opt_f64(m, "initializer_range")?.unwrap_or(0.02);
        let pad_token_id = opt_usize(m, "pad_token_id")?.unwrap_or(0);
        if num_attention_heads == 0 {
            return Err(TransformerError::config(
                "num_attention_heads",
                "must be at least 1",
            ));
        }
        let attention_head_size = match opt_usize(m, "attention_head_size")? {
            Some(d) => d,
            None => {
                if hidden_size % num_attention_heads != 0 {
                    return Err(TransformerError::config(
                        "hidden_size",
                        format!(
                            "{hidden_size} is not divisible by num_attention_heads = {num_attention_heads}"
                        ),
                    ));
                }
                hidden_size / num_attention_heads
            }
        };

        let mut pruned_heads = BTreeMap::new();
        match m.get("pruned_heads") {
            None | Some(Value::Null) => {}
            Some(Value::Object(p)) => {
                for (layer, heads) in p {
                    let l: usize = layer.parse().map_err(|_| {
                        TransformerError::config(
                            "pruned_heads",
                            format!("layer key {layer:?} is not an integer"),
                        )
                    })?;
                    let list = heads.as_array().ok_or_else(|| {
                        TransformerError::config(
                            "pruned_heads",
                            format!("layer {l}: expected a list of heads"),
                        )
                    })?;
                    let set = list
                        .iter()
                        .map(|h| as_usize("pruned_heads", h))
                        .collect::<Result<BTreeSet<usize>>>()?;
                    if !set.is_empty() {
                        pruned_heads.insert(l, set);
                    }
                }
            }
            Some(v) => {
                return Err(TransformerError::config(
                    "pruned_heads",
                    format!("expected an object {{layer: [heads]}}, got {v}"),
                ));
            }
        }

        let layer_heads = usize_list(m, "prune_layer_heads")?;
        let layer_intermediate = usize_list(m, "prune_layer_intermediate")?
            .unwrap_or_else(|| vec![intermediate_size; num_hidden_layers]);
        let kept_hidden_size = opt_usize(m, "prune_hidden_size")?.unwrap_or(hidden_size);
        // transformers' ELECTRA defaults `embedding_size` to 128.
        let (embedding_size, kept_embedding_size) = match family {
            Family::Electra => {
                let e = opt_usize(m, "embedding_size")?.unwrap_or(128);
                (e, opt_usize(m, "prune_embedding_size")?.unwrap_or(e))
            }
            _ => (hidden_size, hidden_size),
        };

        let num_labels = opt_usize(m, "num_labels")?;
        let id2label = match m.get("id2label") {
            None | Some(Value::Null) => None,
            Some(Value::Object(o)) => {
                let mut labels = BTreeMap::new();
                for (k, v) in o {
                    let i: usize = k.parse().map_err(|_| {
                        TransformerError::config("id2label", format!("key {k:?} is not an integer"))
                    })?;
                    let name = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    labels.insert(i, name);
                }
                Some(labels)
            }
            Some(v) => {
                return Err(TransformerError::config(
                    "id2label",
                    format!("expected an object, got {v}"),
                ));
            }
        };
        let problem_type = match m.get("problem_type") {
            None | Some(Value::Null) => None,
            Some(v) => Some(match v.as_str() {
                Some("regression") => ProblemType::Regression,
                Some("single_label_classification") => ProblemType::SingleLabel,
                Some("multi_label_classification") => ProblemType::MultiLabel,
                _ => {
                    return Err(TransformerError::config(
                        "problem_type",
                        format!("unknown value {v}"),
                    ));
                }
            }),
        };

        let extra = m
            .iter()
            .filter(|(k, _)| !KNOWN.contains(&k.as_str()))
            .filter(|(k, _)| family != Family::Electra || !ELECTRA_KNOWN.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let layer_heads = match layer_heads {
            Some(h) => h,
            None => (0..num_hidden_layers)
                .map(|l| {
                    let removed = pruned_heads
                        .get(&l)
                        .map_or(0, |s: &BTreeSet<usize>| s.len());
                    num_attention_heads.saturating_sub(removed)
                })
                .collect(),
        };
        let config = BertConfig {
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            intermediate_size,
            vocab_size,
            max_position_embeddings,
            type_vocab_size,
            layer_norm_eps,
            hidden_dropout_prob,
            attention_probs_dropout_prob,
            classifier_dropout,
            initializer_range,
            pad_token_id,
            attention_head_size,
            pruned_heads,
            layer_heads,
            layer_intermediate,
            kept_hidden_size,
            embedding_size,
            kept_embedding_size,
            num_labels,
            id2label,
            problem_type,
            activation,
            family,
            extra,
        };
        config.validate()?;
        Ok(config)
    }

    /// A configuration with transformers' defaults for everything but the sizes given
    /// (no pruning, dropout 0.1, eps 1e-12, 512 positions, 2 token types).
    pub fn new(
        vocab_size: usize,
        hidden_size: usize,
        num_hidden_layers: usize,
        num_attention_heads: usize,
        intermediate_size: usize,
    ) -> Result<Self> {
        let v = serde_json::json!({
            "vocab_size": vocab_size,
            "hidden_size": hidden_size,
            "num_hidden_layers": num_hidden_layers,
            "num_attention_heads": num_attention_heads,
            "intermediate_size": intermediate_size,
            "hidden_act": "gelu",
            "layer_norm_eps": 1e-12,
            "max_position_embeddings": 512,
            "type_vocab_size": 2,
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
            "model_type": "bert",
        });
        Self::from_json(&v)
    }

    /// The longest input the position table covers ([`Family::max_sequence`]).
    pub fn max_tokens(&self) -> usize {
        (self.family).max_sequence(self.max_position_embeddings, self.pad_token_id)
    }

    /// Current hidden width C.
    pub fn hidden(&self) -> usize {
        self.kept_hidden_size
    }

    /// Whether a linear layer (`embeddings_project`) maps the embeddings to the hidden
    /// width (the tables' width differs from it in the original model).
    pub fn projects_embeddings(&self) -> bool {
        self.embedding_size != self.hidden_size
    }

    /// Current width of the embedding tables: E under a projection, else the hidden width C.
    pub fn embedding_width(&self) -> usize {
        match self.projects_embeddings() {
            true => self.kept_embedding_size,
            false => self.hidden(),
        }
    }

    /// Head dim D.
    pub fn head_dim(&self) -> usize {
        self.attention_head_size
    }

    /// Heads kept in `layer`.
    pub fn heads(&self, layer: usize) -> usize {
        self.layer_heads.get(layer).copied().unwrap_or(0)
    }

    /// FFN width of `layer`.
    pub fn intermediate(&self, layer: usize) -> usize {
        self.layer_intermediate.get(layer).copied().unwrap_or(0)
    }

    /// Number of classifier outputs K: `num_labels`, else the size of `id2label`, else 2
    /// (transformers' default).
    pub fn labels(&self) -> usize {
        self.num_labels
            .or(self.id2label.as_ref().map(BTreeMap::len))
            .unwrap_or(2)
    }

    /// The classifier's problem: the explicit `problem_type`, else regression when there is
    /// one label and single-label classification otherwise.
    pub fn problem(&self) -> ProblemType {
        self.problem_type.unwrap_or(if self.labels() == 1 {
            ProblemType::Regression
        } else {
            ProblemType::SingleLabel
        })
    }

    /// Dropout before the classifier.
    pub fn classifier_dropout_prob(&self) -> f64 {
        self.classifier_dropout.unwrap_or(self.hidden_dropout_prob)
    }
}

#[cfg(test)]
mod tests;
