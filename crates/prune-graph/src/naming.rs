//! Names the classes of coupled channels that the analysis ([`crate::deps`]) finds in a
//! trace, from where the model says each parameter sits ([`Place`]): the class holding an
//! embedding table is the hidden width, unless it ends at a projection to the hidden width
//! (then it is the embedding width, and the class the projection writes is the hidden
//! width); a class inside one encoder layer whose axes are
//! blocks of a split (heads of D elements) is that layer's heads, and an unsplit one is its
//! FFN. Other classes (a pooler's output, a classifier's labels) have widths fixed by the
//! checkpoint format, so they are no groups. Nothing here knows a model.

use crate::deps::{ChannelClass, analyze};
use crate::error::{GraphError, Result};
use crate::group::{Group, GroupKind, Member};
use crate::trace::Trace;

/// Where a parameter sits, as the model names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// An embedding table or the embeddings' LayerNorm: it carries the hidden width, or
    /// the embedding width under a projection.
    Embeddings,
    /// The linear layer that maps the embeddings to the hidden width, when they have a
    /// width of their own (ELECTRA's `embeddings_project`).
    Projection,
    /// Inside encoder layer `l`.
    Layer(usize),
    /// Elsewhere (pooler, classifier).
    Other,
}

/// Names the classes of a trace of a model with `layers` encoder layers, where `place` says
/// where each parameter sits; checks that there is one hidden group and one head and one
/// FFN group per layer. Groups come out as: hidden, then heads and FFN per layer, then the
/// embedding width when a projection gives the embeddings one.
pub fn groups_from_trace(
    trace: &Trace,
    layers: usize,
    place: impl Fn(&str) -> Place,
) -> Result<Vec<Group>> {
    let mut hidden = None;
    let mut embedding = None;
    let mut heads = vec![None; layers];
    let mut ffn = vec![None; layers];
    for class in analyze(trace)? {
        let layer_of = |name: &str| match place(name) {
            Place::Layer(l) => Some(l),
            _ => None,
        };
        let at = |p: Place| class.members.iter().any(|m| place(&m.param) == p);
        let (tables, projection) = (at(Place::Embeddings), at(Place::Projection));
        let kind = if tables && projection {
            GroupKind::Embedding
        } else if tables || projection {
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
            GroupKind::Embedding => &mut embedding,
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
    out.extend(embedding);
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
