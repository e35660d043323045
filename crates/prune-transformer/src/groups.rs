//! The pruning groups of a BERT model: its real forward code traced on a dummy batch with
//! `prune_graph`'s `TraceBackend`, the trace analysed, and the classes named from where each
//! parameter sits ([`place_of`]); nothing here lists layers or parameters.

use crate::batch::Batch;
use crate::config::BertConfig;
use crate::error::Result;
use crate::model::{BertModel, ForwardOptions};
use crate::params::BertParams;
use prune_graph::naming::{Place, groups_from_trace};
use prune_graph::{Group, Member, Role, Trace, TraceBackend};
use prune_tensor::{Backend, Shape};

/// Sequences in the dummy batch.
const DUMMY_BATCH: usize = 2;
/// Tokens per sequence in the dummy batch (fewer when the position table is shorter).
const DUMMY_SEQ: usize = 3;

/// A dummy batch the model accepts: `DUMMY_BATCH` × `DUMMY_SEQ` tokens, both segments.
fn dummy_batch(config: &BertConfig) -> Result<Batch> {
    let seq = DUMMY_SEQ.min(config.max_position_embeddings);
    let n = DUMMY_BATCH * seq;
    let ids = (0..n).map(|i| (i % config.vocab_size) as u32).collect();
    let types = (0..n)
        .map(|i| (i % seq * config.type_vocab_size / seq) as u32)
        .collect();
    Batch::new(DUMMY_BATCH, seq, ids, types, vec![1; n])
}

/// Traces the inference forward pass of a BERT model with parameters of the given shapes
/// (named as in the checkpoint) under `config`.
pub fn trace_bert(config: &BertConfig, shapes: &BertParams<Shape>) -> Result<Trace> {
    let tb = TraceBackend::new();
    let params = shapes.map(|name, shape| tb.param(name, shape.clone()));
    let model = BertModel::from_params(tb.clone(), config.clone(), params)?;
    model.forward(&dummy_batch(config)?, &ForwardOptions::default())?;
    Ok(tb.trace())
}

/// The groups of a model with `config`, with or without pooler and classifier.
pub fn bert_groups(config: &BertConfig, pooler: bool, classifier: bool) -> Result<Vec<Group>> {
    groups_of(config, &BertParams::expected(config, pooler, classifier))
}

/// The groups of `model` as it is now (after any surgery).
pub fn model_groups<B: Backend>(model: &BertModel<B>) -> Result<Vec<Group>> {
    let b = model.backend();
    groups_of(&model.config, &model.params.map(|_, t| b.shape(t).clone()))
}

/// The groups of a model with `config` and parameters of the given shapes.
fn groups_of(config: &BertConfig, shapes: &BertParams<Shape>) -> Result<Vec<Group>> {
    let trace = trace_bert(config, shapes)?;
    let layers = config.num_hidden_layers;
    let family = config.family;
    let place = |name: &str| match family.stores(name) {
        true => place_of(name),
        false => Place::Other,
    };
    let mut groups = groups_from_trace(&trace, layers, place)?;
    // A table the family does not store (DistilBERT's empty token types) is never read, so
    // the trace cannot couple it; its columns still follow the hidden width (the first group).
    for (name, shape) in shapes.named() {
        if !family.stores(&name) && place_of(&name) == Place::Embeddings {
            let hidden = &mut groups[0].members;
            hidden.push(Member {
                param: name,
                axis: shape.rank() - 1,
                role: Role::Producer,
            });
            hidden.sort();
        }
    }
    Ok(groups)
}

/// Where a BERT parameter sits: `embeddings.…`, `embeddings_project.…`,
/// `encoder.layer.N.…`, or elsewhere.
pub fn place_of(name: &str) -> Place {
    if name.starts_with("embeddings.") {
        return Place::Embeddings;
    }
    if name.starts_with("embeddings_project.") {
        return Place::Projection;
    }
    let layer = name
        .strip_prefix("encoder.layer.")
        .and_then(|rest| rest.split('.').next()?.parse().ok());
    layer.map_or(Place::Other, Place::Layer)
}
