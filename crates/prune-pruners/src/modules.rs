//! The parameter-owning modules of a BERT model as NNI sees them: each module's Hugging
//! Face name (`bert.encoder.layer.0.attention.self.query`), its op type (`Linear`,
//! `Embedding`, `LayerNorm`) and the shapes of its weight and bias.

use prune_tensor::{Backend, Shape};
use prune_transformer::{BertModel, BertParams, params::BERT_PREFIX};
use std::fmt;
use std::str::FromStr;

/// The PyTorch module type owning a parameter (NNI's `op_types`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpType {
    /// `torch.nn.Linear`: query, key, value, the dense layers, pooler and classifier.
    Linear,
    /// `torch.nn.Embedding`: word, position and token-type tables.
    Embedding,
    /// `torch.nn.LayerNorm`.
    LayerNorm,
}

impl OpType {
    /// Every op type, in a fixed order.
    pub const ALL: [OpType; 3] = [OpType::Linear, OpType::Embedding, OpType::LayerNorm];

    /// The PyTorch class name.
    pub fn name(self) -> &'static str {
        match self {
            OpType::Linear => "Linear",
            OpType::Embedding => "Embedding",
            OpType::LayerNorm => "LayerNorm",
        }
    }
}

impl fmt::Display for OpType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for OpType {
    type Err = String;

    /// Parses a PyTorch class name, with or without the `torch.nn.` path.
    fn from_str(s: &str) -> Result<Self, String> {
        let short = s.rsplit('.').next().unwrap_or(s);
        OpType::ALL
            .into_iter()
            .find(|t| t.name() == short)
            .ok_or_else(|| {
                format!(
                    "unknown op type `{}` (BERT has {})",
                    prune_transformer::one_line(s),
                    OpType::ALL.map(OpType::name).join(", ")
                )
            })
    }
}

/// A module that owns a weight (and maybe a bias), named as in transformers.
#[derive(Clone, Debug, PartialEq)]
pub struct Module {
    /// Canonical module name, without the `bert.` prefix
    /// (`encoder.layer.0.attention.self.query`, `classifier`).
    pub name: String,
    /// The module type.
    pub op_type: OpType,
    /// Shape of `<name>.weight`.
    pub weight: Shape,
    /// Shape of `<name>.bias`, when the module has one.
    pub bias: Option<Shape>,
}

impl Module {
    /// The name in transformers' `BertForSequenceClassification`: `bert.<name>` except for
    /// the classifier, which sits beside `bert`.
    pub fn full_name(&self) -> String {
        if self.name == "classifier" || self.name.starts_with("classifier.") {
            self.name.clone()
        } else {
            format!("{BERT_PREFIX}{}", self.name)
        }
    }

    /// Canonical name of the weight.
    pub fn weight_name(&self) -> String {
        format!("{}.weight", self.name)
    }

    /// Canonical name of the bias, when there is one.
    pub fn bias_name(&self) -> Option<String> {
        self.bias.as_ref().map(|_| format!("{}.bias", self.name))
    }
}

/// The op type of the module called `name` (canonical, without `.weight`).
fn op_type_of(name: &str) -> OpType {
    if name.ends_with("LayerNorm") {
        OpType::LayerNorm
    } else if name.starts_with("embeddings.") {
        OpType::Embedding
    } else {
        OpType::Linear
    }
}

/// Every parameter-owning module of a parameter tree, in the tree's order.
pub fn modules(shapes: &BertParams<Shape>) -> Vec<Module> {
    let named = shapes.named();
    let mut out: Vec<Module> = Vec::new();
    for (name, shape) in &named {
        if let Some(module) = name.strip_suffix(".weight") {
            out.push(Module {
                name: module.to_string(),
                op_type: op_type_of(module),
                weight: (*shape).clone(),
                bias: None,
            });
        }
    }
    for (name, shape) in &named {
        if let Some(module) = name.strip_suffix(".bias")
            && let Some(m) = out.iter_mut().find(|m| m.name == module)
        {
            m.bias = Some((*shape).clone());
        }
    }
    out
}

/// The shapes of a model's parameters.
pub fn shapes_of<B: Backend>(model: &BertModel<B>) -> BertParams<Shape> {
    let b = model.backend();
    model.params.map(|_, t| b.shape(t).clone())
}

/// Every parameter-owning module of `model`.
pub fn modules_of<B: Backend>(model: &BertModel<B>) -> Vec<Module> {
    modules(&shapes_of(model))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prune_transformer::BertConfig;

    #[test]
    fn lists_modules_with_types_and_hf_names() {
        let cfg = BertConfig::new(50, 32, 2, 4, 64).unwrap();
        let ms = modules(&BertParams::expected(&cfg, true, true));
        // 3 embeddings + LN, 8 per layer, pooler, classifier
        assert_eq!(ms.len(), 4 + 2 * 8 + 2);
        let q = ms
            .iter()
            .find(|m| m.name == "encoder.layer.1.attention.self.query")
            .unwrap();
        assert_eq!(q.op_type, OpType::Linear);
        assert_eq!(q.full_name(), "bert.encoder.layer.1.attention.self.query");
        assert_eq!(q.bias, Some(Shape::from([32])));
        let word = &ms[0];
        assert_eq!(word.name, "embeddings.word_embeddings");
        assert_eq!(word.op_type, OpType::Embedding);
        assert_eq!(word.bias, None);
        assert_eq!(ms[3].op_type, OpType::LayerNorm);
        assert_eq!(ms.last().unwrap().full_name(), "classifier");
        assert_eq!(
            "torch.nn.Embedding".parse::<OpType>(),
            Ok(OpType::Embedding)
        );
        assert!("Conv2d".parse::<OpType>().is_err());
    }
}
