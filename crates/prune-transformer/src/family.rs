//! The architectures of the BERT family this crate reads, as data rather than copies of the
//! model: each is BERT's parameter tree and forward pass with its own checkpoint names
//! (prefix, classification head) and its own position ids.
//!
//! RoBERTa and XLM-R (`roberta.` prefix) number positions from `pad_token_id + 1`, skipping
//! padding tokens, which sit at `pad_token_id`; their classification head (`classifier.dense`
//! then `tanh` then `classifier.out_proj`, on the first token) is BERT's pooler and
//! classifier under other names, so it is held in those slots of the tree. Their pretrained
//! `roberta.pooler` is not part of that head and is not read.
//!
//! DistilBERT (`distilbert.` prefix) names its layers otherwise (`transformer.layer.N`,
//! `attention.q_lin`, `sa_layer_norm`, `ffn.lin1`, …) and its config keys otherwise (`dim`,
//! `n_layers`, …); it has no token type table (a `[0, C]` table here, never stored), and its
//! head is `relu(pre_classifier(first token))`, the pooler slot with ReLU for tanh.
//!
//! ELECTRA (`electra.` prefix) is BERT with embedding tables of their own width
//! (`embedding_size`) mapped to the hidden width by `embeddings_project` when the two differ,
//! and RoBERTa's head with GELU for tanh. The heads of its pretraining checkpoints
//! (`discriminator_predictions`, `generator_*`) are not read.

use crate::batch::Batch;
use crate::error::{Result, TransformerError};
use serde_json::{Map, Value};

/// An architecture of the BERT family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Family {
    /// BERT (and MiniLM, which is BERT-shaped): `bert.` prefix, positions `0..T`.
    #[default]
    Bert,
    /// RoBERTa: `roberta.` prefix, positions from `pad + 1`, head `classifier.{dense,out_proj}`.
    Roberta,
    /// XLM-RoBERTa: RoBERTa's architecture under its own `model_type` and class names.
    XlmRoberta,
    /// DistilBERT: `distilbert.` prefix, its own layer names and config keys, no token types,
    /// a ReLU head.
    DistilBert,
    /// ELECTRA: `electra.` prefix, `embeddings_project` when `embedding_size` differs from
    /// `hidden_size`, RoBERTa's head with GELU.
    Electra,
}

/// Every family, in the order they are listed to users.
pub const FAMILIES: [Family; 5] = [
    Family::Bert,
    Family::Roberta,
    Family::XlmRoberta,
    Family::DistilBert,
    Family::Electra,
];

/// The activation of the head's dense layer on the first token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadActivation {
    /// BERT's pooler and RoBERTa's head.
    Tanh,
    /// DistilBERT's `pre_classifier`.
    Relu,
    /// ELECTRA's head (the erf form).
    Gelu,
}

/// DistilBERT's names of the tree's names, as (tree, DistilBERT) pieces.
const DISTILBERT_NAMES: [(&str, &str); 10] = [
    ("encoder.layer.", "transformer.layer."),
    ("attention.self.query.", "attention.q_lin."),
    ("attention.self.key.", "attention.k_lin."),
    ("attention.self.value.", "attention.v_lin."),
    ("attention.output.dense.", "attention.out_lin."),
    ("attention.output.LayerNorm.", "sa_layer_norm."),
    ("intermediate.dense.", "ffn.lin1."),
    ("output.dense.", "ffn.lin2."),
    ("output.LayerNorm.", "output_layer_norm."),
    ("pooler.dense.", "pre_classifier."),
];

/// DistilBERT's config keys of BERT's.
const DISTILBERT_KEYS: [(&str, &str); 8] = [
    ("hidden_size", "dim"),
    ("num_hidden_layers", "n_layers"),
    ("num_attention_heads", "n_heads"),
    ("intermediate_size", "hidden_dim"),
    ("hidden_act", "activation"),
    ("hidden_dropout_prob", "dropout"),
    ("attention_probs_dropout_prob", "attention_dropout"),
    ("classifier_dropout", "seq_classif_dropout"),
];

/// The token type table of the parameter tree.
pub const TOKEN_TYPES: &str = "embeddings.token_type_embeddings.weight";

impl Family {
    /// transformers' `model_type`.
    pub fn model_type(self) -> &'static str {
        match self {
            Family::Bert => "bert",
            Family::Roberta => "roberta",
            Family::XlmRoberta => "xlm-roberta",
            Family::DistilBert => "distilbert",
            Family::Electra => "electra",
        }
    }

    /// The family of a config's `model_type` (BERT when absent), or an error naming it and
    /// listing the supported ones.
    pub fn of_config(m: &Map<String, Value>) -> Result<Family> {
        let Some(t) = m.get("model_type").filter(|t| !t.is_null()) else {
            return Ok(Family::Bert);
        };
        let name = t.as_str().unwrap_or_default();
        if name == "distilbert" && m.get("sinusoidal_pos_embds") == Some(&Value::Bool(true)) {
            return Err(TransformerError::config(
                "sinusoidal_pos_embds",
                "fixed sinusoidal positions are not supported (only learned ones)",
            ));
        }
        FAMILIES
            .into_iter()
            .find(|f| f.model_type() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = FAMILIES.iter().map(|f| f.model_type()).collect();
                TransformerError::config(
                    "model_type",
                    format!("{t} is not supported (supported: {})", names.join(", ")),
                )
            })
    }

    /// transformers' class of the model, with a classification head or without.
    pub fn class_name(self, classifier: bool) -> &'static str {
        match (self, classifier) {
            (Family::Bert, true) => "BertForSequenceClassification",
            (Family::Bert, false) => "BertModel",
            (Family::Roberta, true) => "RobertaForSequenceClassification",
            (Family::Roberta, false) => "RobertaModel",
            (Family::XlmRoberta, true) => "XLMRobertaForSequenceClassification",
            (Family::XlmRoberta, false) => "XLMRobertaModel",
            (Family::DistilBert, true) => "DistilBertForSequenceClassification",
            (Family::DistilBert, false) => "DistilBertModel",
            (Family::Electra, true) => "ElectraForSequenceClassification",
            (Family::Electra, false) => "ElectraModel",
        }
    }

    /// The prefix of encoder parameters in a task model's checkpoint.
    pub fn prefix(self) -> &'static str {
        match self {
            Family::Bert => "bert.",
            Family::Roberta | Family::XlmRoberta => "roberta.",
            Family::DistilBert => "distilbert.",
            Family::Electra => "electra.",
        }
    }

    /// A DistilBERT `config.json` object with BERT's keys (see [`Family::own_keys`]); other
    /// families' configs unchanged. Its layer norms' epsilon is fixed at 1e-12 and it has no
    /// token types.
    pub fn bert_keys(self, mut m: Map<String, Value>) -> Map<String, Value> {
        if self == Family::DistilBert {
            for (bert, own) in DISTILBERT_KEYS {
                if let Some(v) = m.remove(own) {
                    m.insert(bert.to_string(), v);
                }
            }
            m.insert("layer_norm_eps".into(), 1e-12.into());
            m.insert("type_vocab_size".into(), 0.into());
        }
        m
    }

    /// The inverse of [`Family::bert_keys`], for writing a config transformers reads.
    pub fn own_keys(self, mut m: Map<String, Value>) -> Map<String, Value> {
        if self == Family::DistilBert {
            for (bert, own) in DISTILBERT_KEYS {
                if let Some(v) = m.remove(bert) {
                    m.insert(own.to_string(), v);
                }
            }
            for bert_only in [
                "layer_norm_eps",
                "type_vocab_size",
                "position_embedding_type",
            ] {
                m.remove(bert_only);
            }
        }
        m
    }

    /// The activation of the head's dense layer.
    pub fn head_activation(self) -> HeadActivation {
        match self {
            Family::DistilBert => HeadActivation::Relu,
            Family::Electra => HeadActivation::Gelu,
            _ => HeadActivation::Tanh,
        }
    }

    /// The name in the parameter tree (BERT's, without prefix) of a tensor stored as
    /// `stored`, or `None` for a tensor this family does not read (RoBERTa's pretrained
    /// pooler, the heads of ELECTRA's pretraining). Old LayerNorm spellings (`gamma`, `beta`) read as `weight`, `bias`.
    pub fn tree_name(self, stored: &str) -> Option<String> {
        let name = stored.strip_prefix(self.prefix()).unwrap_or(stored);
        let name = match self {
            Family::Bert => name.to_string(),
            Family::DistilBert => renamed(name, DISTILBERT_NAMES.map(|(tree, own)| (own, tree))),
            Family::Roberta | Family::XlmRoberta | Family::Electra => {
                let pretraining = ["pooler.", "discriminator_predictions.", "generator_"];
                if pretraining.iter().any(|p| name.starts_with(p)) {
                    return None;
                } else if let Some(leaf) = name.strip_prefix("classifier.dense.") {
                    format!("pooler.dense.{leaf}")
                } else if let Some(leaf) = name.strip_prefix("classifier.out_proj.") {
                    format!("classifier.{leaf}")
                } else {
                    name.to_string()
                }
            }
        };
        Some(match name.strip_suffix("LayerNorm.gamma") {
            Some(stem) => format!("{stem}LayerNorm.weight"),
            None => match name.strip_suffix("LayerNorm.beta") {
                Some(stem) => format!("{stem}LayerNorm.bias"),
                None => name,
            },
        })
    }

    /// The name under which transformers stores the tree's parameter `name`, in a model with
    /// a classification head (`prefixed`: BERT's encoder names then carry `bert.`) or without;
    /// `None` for a parameter the family does not store (DistilBERT's token types).
    pub fn stored_name(self, name: &str, prefixed: bool) -> Option<String> {
        Some(match self {
            Family::Bert if prefixed && !name.starts_with("classifier.") => {
                format!("{}{name}", self.prefix())
            }
            Family::Bert => name.to_string(),
            Family::DistilBert if name == TOKEN_TYPES => return None,
            Family::DistilBert => {
                let own = renamed(name, DISTILBERT_NAMES);
                match own.starts_with("classifier.") || own.starts_with("pre_classifier.") {
                    true => own,
                    false => format!("{}{own}", self.prefix()),
                }
            }
            Family::Roberta | Family::XlmRoberta | Family::Electra => {
                if let Some(leaf) = name.strip_prefix("pooler.dense.") {
                    format!("classifier.dense.{leaf}")
                } else if let Some(leaf) = name.strip_prefix("classifier.") {
                    format!("classifier.out_proj.{leaf}")
                } else {
                    format!("{}{name}", self.prefix())
                }
            }
        })
    }

    /// Whether the tree's parameter `name` is stored by this family (see
    /// [`Family::stored_name`]); one that is not is an empty table here.
    pub fn stores(self, name: &str) -> bool {
        self.stored_name(name, true).is_some()
    }

    /// Whether the head applies dropout to the first token before its dense layer
    /// (RoBERTa's and ELECTRA's classification heads do; BERT's pooler and DistilBERT's do
    /// not).
    pub fn dropout_before_dense(self) -> bool {
        matches!(self, Family::Roberta | Family::XlmRoberta | Family::Electra)
    }

    /// The position id of every token of `batch`, `[B·T]`: `0..T` for BERT; for RoBERTa,
    /// `pad + 1 + (count of non-padding tokens before it)` and `pad` on padding tokens, as
    /// transformers computes them from the input ids.
    pub fn positions(self, batch: &Batch, pad: usize) -> Vec<usize> {
        match self {
            Family::Bert | Family::DistilBert | Family::Electra => {
                (0..batch.batch).flat_map(|_| 0..batch.seq).collect()
            }
            Family::Roberta | Family::XlmRoberta => {
                let mut out = Vec::with_capacity(batch.tokens());
                for row in batch.input_ids.chunks(batch.seq.max(1)) {
                    let mut count = 0;
                    out.extend(row.iter().map(|&id| match id as usize == pad {
                        true => pad,
                        false => {
                            count += 1;
                            pad + count
                        }
                    }));
                }
                out
            }
        }
    }

    /// The longest sequence a table of `table` positions covers.
    pub fn max_sequence(self, table: usize, pad: usize) -> usize {
        match self {
            Family::Bert | Family::DistilBert | Family::Electra => table,
            Family::Roberta | Family::XlmRoberta => table.saturating_sub(pad + 1),
        }
    }
}

/// `name` with the first occurrence of each `from` piece replaced by its `to`, in order.
fn renamed(name: &str, pieces: [(&str, &str); 10]) -> String {
    let mut out = name.to_string();
    for (from, to) in pieces {
        if let Some(i) = out.find(from) {
            out.replace_range(i..i + from.len(), to);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roberta_positions_start_after_the_pad_id_and_skip_padding() {
        let batch = Batch::new(2, 4, vec![0, 5, 2, 1, 0, 2, 1, 1], vec![0; 8], vec![1; 8]).unwrap();
        assert_eq!(
            Family::Roberta.positions(&batch, 1),
            vec![2, 3, 4, 1, 2, 3, 1, 1]
        );
        assert_eq!(
            Family::Bert.positions(&batch, 1),
            vec![0, 1, 2, 3, 0, 1, 2, 3]
        );
        assert_eq!(Family::Roberta.max_sequence(514, 1), 512);
    }

    #[test]
    fn names_round_trip_and_the_pretrained_roberta_pooler_is_not_read() {
        for f in FAMILIES {
            for name in [
                "embeddings.word_embeddings.weight",
                "encoder.layer.0.output.LayerNorm.bias",
                "embeddings_project.weight",
                "pooler.dense.weight",
                "classifier.bias",
            ] {
                for prefixed in [true, false] {
                    let stored = f.stored_name(name, prefixed).unwrap();
                    assert_eq!(
                        f.tree_name(&stored).as_deref(),
                        Some(name),
                        "{f:?} {stored}"
                    );
                }
            }
        }
        assert_eq!(
            Family::Roberta.stored_name("classifier.weight", true),
            Some("classifier.out_proj.weight".into())
        );
        assert_eq!(
            Family::DistilBert.stored_name("encoder.layer.1.output.dense.bias", true),
            Some("distilbert.transformer.layer.1.ffn.lin2.bias".into())
        );
        assert_eq!(
            Family::DistilBert.stored_name("pooler.dense.weight", true),
            Some("pre_classifier.weight".into())
        );
        assert_eq!(Family::DistilBert.stored_name(TOKEN_TYPES, true), None);
        assert_eq!(
            Family::Roberta.tree_name("roberta.pooler.dense.weight"),
            None
        );
        assert_eq!(
            Family::Electra.tree_name("discriminator_predictions.dense.weight"),
            None
        );
        assert_eq!(
            Family::Electra.stored_name("embeddings_project.bias", true),
            Some("electra.embeddings_project.bias".into())
        );
        assert_eq!(
            Family::Bert
                .tree_name("bert.embeddings.LayerNorm.gamma")
                .as_deref(),
            Some("embeddings.LayerNorm.weight")
        );
    }
}
