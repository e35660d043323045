//! Writing a [`BertConfig`] back as the `config.json` transformers reads.

use super::BertConfig;
use crate::family::Family;
use serde_json::{Map, Value};
use std::collections::BTreeSet;

impl BertConfig {
    /// The configuration as a `config.json` object (unknown keys included, surgery keys only
    /// when they differ from the defaults).
    pub fn to_json(&self) -> Value {
        let mut m = self.extra.clone();
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_string(), v);
        };
        put("model_type", self.family.model_type().into());
        put("hidden_size", self.hidden_size.into());
        put("num_hidden_layers", self.num_hidden_layers.into());
        put("num_attention_heads", self.num_attention_heads.into());
        // transformers holds one FFN width for every layer: when the layers agree, that
        // width is `intermediate_size`; otherwise the original width stays and the layers'
        // widths go to a key of ours.
        let first = self.layer_intermediate.first().copied();
        let uniform = first.filter(|&f| self.layer_intermediate.iter().all(|&g| g == f));
        put(
            "intermediate_size",
            uniform.unwrap_or(self.intermediate_size).into(),
        );
        if uniform.is_none() {
            put(
                "prune_layer_intermediate",
                self.layer_intermediate.clone().into(),
            );
        }
        put("hidden_act", self.activation.name().into());
        put("vocab_size", self.vocab_size.into());
        put(
            "max_position_embeddings",
            self.max_position_embeddings.into(),
        );
        put("type_vocab_size", self.type_vocab_size.into());
        put("layer_norm_eps", self.layer_norm_eps.into());
        put("hidden_dropout_prob", self.hidden_dropout_prob.into());
        put(
            "attention_probs_dropout_prob",
            self.attention_probs_dropout_prob.into(),
        );
        put(
            "classifier_dropout",
            self.classifier_dropout.map_or(Value::Null, Value::from),
        );
        put("initializer_range", self.initializer_range.into());
        put("pad_token_id", self.pad_token_id.into());
        put("position_embedding_type", "absolute".into());
        let pruned: Map<String, Value> = self
            .pruned_heads
            .iter()
            .map(|(l, h)| (l.to_string(), h.iter().copied().collect::<Vec<_>>().into()))
            .collect();
        put("pruned_heads", Value::Object(pruned));
        let default_d = self.hidden_size / self.num_attention_heads;
        if self.attention_head_size != default_d || self.hidden_size % self.num_attention_heads != 0
        {
            put("attention_head_size", self.attention_head_size.into());
        }
        let default_heads: Vec<usize> = (0..self.num_hidden_layers)
            .map(|l| self.num_attention_heads - self.pruned_heads.get(&l).map_or(0, BTreeSet::len))
            .collect();
        if self.layer_heads != default_heads {
            put("prune_layer_heads", self.layer_heads.clone().into());
        }
        if self.kept_hidden_size != self.hidden_size {
            put("prune_hidden_size", self.kept_hidden_size.into());
        }
        if self.family == Family::Electra {
            put("embedding_size", self.embedding_size.into());
            if self.kept_embedding_size != self.embedding_size {
                put("prune_embedding_size", self.kept_embedding_size.into());
            }
        }
        if let Some(n) = self.num_labels {
            put("num_labels", n.into());
        }
        if let Some(names) = &self.id2label {
            let o: Map<String, Value> = names
                .iter()
                .map(|(i, n)| (i.to_string(), Value::from(n.as_str())))
                .collect();
            put("id2label", Value::Object(o));
        }
        if let Some(p) = self.problem_type {
            put("problem_type", p.key().into());
        }
        Value::Object(self.family.own_keys(m))
    }

    /// The `config.json` of a checkpoint, as transformers reads it: [`BertConfig::to_json`]
    /// with `architectures` naming the family's class saved (its sequence classification
    /// class when the parameters include a `classifier`, else its base model) and, with a
    /// classifier, `id2label` and `label2id` for each of its outputs, so that transformers
    /// builds a head of the same size.
    pub fn checkpoint_json(&self, classifier: bool) -> Value {
        let mut v = self.to_json();
        v["architectures"] = Value::from(vec![self.family.class_name(classifier)]);
        if classifier {
            let names: Vec<String> = (0..self.labels())
                .map(|i| {
                    let given = self.id2label.as_ref().and_then(|n| n.get(&i));
                    given.cloned().unwrap_or_else(|| format!("LABEL_{i}"))
                })
                .collect();
            let id2label: Map<String, Value> = names
                .iter()
                .enumerate()
                .map(|(i, n)| (i.to_string(), Value::from(n.as_str())))
                .collect();
            let label2id: Map<String, Value> = names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), Value::from(i)))
                .collect();
            v["id2label"] = Value::Object(id2label);
            v["label2id"] = Value::Object(label2id);
        }
        v
    }
}
