//! `Group`: a set of coupled channels. Removing channel `k` of a group removes the same
//! slice of every member parameter, so that the model still composes; pruning decisions are
//! taken per group, never per parameter.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::Range;

/// Which width of the model a group's channels are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GroupKind {
    /// The hidden width C shared by the embeddings and the residual stream of every layer.
    Hidden,
    /// The attention heads of one encoder layer (one channel per head).
    Heads {
        /// Encoder layer index.
        layer: usize,
    },
    /// The feed-forward (intermediate) neurons of one encoder layer.
    Ffn {
        /// Encoder layer index.
        layer: usize,
    },
    /// The width E of the embedding tables, when a projection maps them to the hidden
    /// width (ELECTRA's `embeddings_project`).
    Embedding,
}

impl fmt::Display for GroupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupKind::Hidden => write!(f, "hidden"),
            GroupKind::Heads { layer } => write!(f, "heads of layer {layer}"),
            GroupKind::Ffn { layer } => write!(f, "ffn of layer {layer}"),
            GroupKind::Embedding => write!(f, "embedding"),
        }
    }
}

/// How a member parameter meets the group's channels in the forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Writes the channels: output rows of a linear weight, its bias, embedding columns.
    /// The producers are a group's root: a channel is dead when every producer's slice of
    /// it is zero.
    Producer,
    /// Reads the channels: input columns of a linear weight (the contracted axis).
    Consumer,
    /// Scales or shifts each channel of a normalised value: LayerNorm γ and β.
    Norm,
}

/// One parameter axis of a group: channel `k` of the group is the slice
/// `[k·unit, (k+1)·unit)` of `param` along `axis` (`unit` is the group's).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Member {
    /// Canonical Hugging Face name, e.g. `encoder.layer.0.attention.self.query.weight`.
    pub param: String,
    /// 0 = rows (output side of a `[O, I]` weight, or the only axis of a 1-D parameter),
    /// 1 = columns (input side).
    pub axis: usize,
    /// How the parameter meets the channels.
    pub role: Role,
}

/// A set of coupled channels: every member's `axis` has `channels · unit` entries, channel
/// `k` owning `[k·unit, (k+1)·unit)` of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Which width of the model this is.
    pub kind: GroupKind,
    /// Number of channels (heads, neurons, hidden units).
    pub channels: usize,
    /// Elements per channel along each member's axis: the head dim D for heads, 1 otherwise.
    pub unit: usize,
    /// The coupled parameter axes, sorted by parameter name then axis.
    pub members: Vec<Member>,
}

impl Group {
    /// The element range of channel `k` along any member's axis.
    pub fn range(&self, k: usize) -> Range<usize> {
        k * self.unit..(k + 1) * self.unit
    }

    /// Element indices (ascending when `keep` is) along any member's axis covered by the
    /// channels `keep`.
    pub fn element_indices(&self, keep: &[usize]) -> Vec<usize> {
        keep.iter().flat_map(|&k| self.range(k)).collect()
    }

    /// Length of every member's axis: `channels · unit`.
    pub fn width(&self) -> usize {
        self.channels * self.unit
    }

    /// The members with a given role.
    pub fn with_role(&self, role: Role) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(move |m| m.role == role)
    }

    /// The member for `param` along `axis`, if any.
    pub fn member(&self, param: &str, axis: usize) -> Option<&Member> {
        self.members
            .iter()
            .find(|m| m.param == param && m.axis == axis)
    }
}

/// NNI's dead-head rule, the one place it is decided: a head is dead when it is dead in any
/// of the matrices consulted (v3: the Q, K and V rows and the output projection's columns;
/// the v2 tutorial consults V alone). `verdicts` holds one per-head dead list per matrix;
/// with none, no head is dead.
pub fn dead_in_any<'a>(heads: usize, verdicts: impl IntoIterator<Item = &'a [bool]>) -> Vec<bool> {
    let mut dead = vec![false; heads];
    for v in verdicts {
        dead.iter_mut().zip(v).for_each(|(d, &x)| *d |= x);
    }
    dead
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_map_to_unit_blocks() {
        let g = Group {
            kind: GroupKind::Heads { layer: 1 },
            channels: 3,
            unit: 4,
            members: vec![Member {
                param: "encoder.layer.1.attention.self.query.weight".into(),
                axis: 0,
                role: Role::Producer,
            }],
        };
        assert_eq!(g.range(1), 4..8);
        assert_eq!(g.element_indices(&[0, 2]), vec![0, 1, 2, 3, 8, 9, 10, 11]);
        assert_eq!(g.width(), 12);
        assert_eq!(g.with_role(Role::Producer).count(), 1);
        assert!(
            g.member("encoder.layer.1.attention.self.query.weight", 1)
                .is_none()
        );
        assert_eq!(g.kind.to_string(), "heads of layer 1");
    }
}
