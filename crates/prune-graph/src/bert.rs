//! The groups of a BERT model, found by tracing its real forward code on a dummy batch with
//! the [`TraceBackend`] and analysing the trace ([`crate::deps`]); nothing here lists
//! layers or parameters. The analysis finds classes of coupled parameter axes; this module
//! only names them: the class holding the embedding tables is the hidden width, a class
//! inside one encoder layer whose axes are blocks of a split (heads of D elements) is that
//! layer's heads, and an unsplit one is its FFN. The pooler's output (the classifier's
//! input) and the classifier's output are classes too, but their widths are fixed by the
//! checkpoint format (the original `hidden_size`, the label count), so they are no groups.

use crate::deps::{ChannelClass, analyze};
use crate::error::{GraphError, Result};
use crate::group::{Group, GroupKind, Member};
use crate::trace::{Trace, TraceBackend};
use prune_tensor::{Backend, Shape};
use prune_transformer::{Batch, BertConfig, BertModel, BertParams, ForwardOptions};

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
    Ok(Batch::new(DUMMY_BATCH, seq, ids, types, vec![1; n])?)
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
    let shapes = BertParams::expected(config, pooler, classifier);
    groups_from_trace(&trace_bert(config, &shapes)?, config.num_hidden_layers)
}

/// The groups of `model` as it is now (after any surgery).
pub fn model_groups<B: Backend>(model: &BertModel<B>) -> Result<Vec<Group>> {
    let b = model.backend();
    let shapes = model.params.map(|_, t| b.shape(t).clone());
    groups_from_trace(
        &trace_bert(&model.config, &shapes)?,
        model.config.num_hidden_layers,
    )
}

/// The encoder layer a parameter belongs to, if any.
fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("encoder.layer.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// Names the classes of a BERT trace, checking that there is one hidden group and one head
/// and one FFN group per layer. Groups come out as: hidden, then heads and FFN per layer.
pub fn groups_from_trace(trace: &Trace, layers: usize) -> Result<Vec<Group>> {
    let mut hidden = None;
    let mut heads = vec![None; layers];
    let mut ffn = vec![None; layers];
    for class in analyze(trace)? {
        let kind = if class
            .members
            .iter()
            .any(|m| m.param.starts_with("embeddings."))
        {
            GroupKind::Hidden
        } else {
            let mut ls = class.members.iter().map(|m| layer_of(&m.param));
            let Some(Some(layer)) = ls.next() else {
                continue;
            };
            if !ls.all(|l| l == Some(layer)) || layer >= layers {
                continue;
            }
            if class.members.iter().all(|m| m.blocked) {
                GroupKind::Heads { layer }
            } else {
                GroupKind::Ffn { layer }
            }
        };
        let slot = match kind {
            GroupKind::Hidden => &mut hidden,
            GroupKind::Heads { layer } => &mut heads[layer],
            GroupKind::Ffn { layer } => &mut ffn[layer],
        };
        if slot.is_some() {
            return Err(GraphError::Analysis(format!(
                "two classes of coupled channels look like the {kind} group"
            )));
        }
        *slot = Some(to_group(kind, class)?);
    }
    let missing = |kind: GroupKind| GraphError::Analysis(format!("no {kind} group in the trace"));
    let mut out = vec![hidden.ok_or_else(|| missing(GroupKind::Hidden))?];
    for (layer, (h, f)) in heads.into_iter().zip(ffn).enumerate() {
        out.push(h.ok_or_else(|| missing(GroupKind::Heads { layer }))?);
        out.push(f.ok_or_else(|| missing(GroupKind::Ffn { layer }))?);
    }
    Ok(out)
}

fn to_group(kind: GroupKind, class: ChannelClass) -> Result<Group> {
    let unit = class.members.first().map_or(1, |m| m.unit);
    if let Some(m) = class.members.iter().find(|m| m.unit != unit) {
        return Err(GraphError::Analysis(format!(
            "{kind}: {} axis {} has {} elements per channel, other members {unit}",
            m.param, m.axis, m.unit
        )));
    }
    Ok(Group {
        kind,
        channels: class.channels,
        unit,
        members: class
            .members
            .into_iter()
            .map(|m| Member {
                param: m.param,
                axis: m.axis,
                role: m.role,
            })
            .collect(),
    })
}
