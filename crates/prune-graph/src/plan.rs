//! `PruningPlan`: which channels of which groups stay. It is plain data (JSON through
//! serde), so a plan derived from masks can be stored, inspected and replayed on the dense
//! checkpoint it was derived from; plans made one after another compose into one plan on
//! the original model.

use crate::error::{GraphError, Result};
use crate::group::GroupKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The kept channels of one group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupPlan {
    /// The group.
    pub kind: GroupKind,
    /// The group's width when the plan was made (heads, neurons, hidden units).
    pub channels: usize,
    /// Kept channels, strictly ascending, numbered `0..channels` as in the model the plan
    /// was made for.
    pub keep: Vec<usize>,
}

impl GroupPlan {
    /// Whether the plan keeps every channel (nothing to cut).
    pub fn is_identity(&self) -> bool {
        self.keep.len() == self.channels
    }

    /// The channels removed, ascending.
    pub fn removed(&self) -> Vec<usize> {
        let mut kept = self.keep.iter().peekable();
        (0..self.channels)
            .filter(|k| {
                if kept.peek() == Some(&k) {
                    kept.next();
                    false
                } else {
                    true
                }
            })
            .collect()
    }

    fn check(&self) -> Result<()> {
        let bad = |why| GraphError::BadKeep {
            kind: self.kind,
            channels: self.channels,
            keep: self.keep.clone(),
            why,
        };
        if self.keep.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad("kept channels must be strictly ascending"));
        }
        if self.keep.last().is_some_and(|&k| k >= self.channels) {
            return Err(bad("a kept channel is out of range"));
        }
        Ok(())
    }
}

/// Per group, the channels that stay. Groups not listed keep everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruningPlan {
    /// One entry per group that the plan touches, in insertion order.
    pub groups: Vec<GroupPlan>,
}

impl PruningPlan {
    /// A plan that keeps everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that group `kind` (of width `channels`) keeps `keep` (sorted and deduplicated
    /// here); fails when a channel is out of range or the group is already planned.
    pub fn keep(&mut self, kind: GroupKind, channels: usize, keep: &[usize]) -> Result<()> {
        if self.get(kind).is_some() {
            return Err(GraphError::DuplicateGroup { kind });
        }
        let mut keep = keep.to_vec();
        keep.sort_unstable();
        keep.dedup();
        let entry = GroupPlan {
            kind,
            channels,
            keep,
        };
        entry.check()?;
        self.groups.push(entry);
        Ok(())
    }

    /// Records that group `kind` (of width `channels`) loses `remove`.
    pub fn remove(&mut self, kind: GroupKind, channels: usize, remove: &[usize]) -> Result<()> {
        if let Some(&k) = remove.iter().find(|&&k| k >= channels) {
            return Err(GraphError::BadKeep {
                kind,
                channels,
                keep: vec![k],
                why: "a removed channel is out of range",
            });
        }
        let keep: Vec<usize> = (0..channels).filter(|k| !remove.contains(k)).collect();
        self.keep(kind, channels, &keep)
    }

    /// The heads each layer loses (positions in the planned model), for the layers that
    /// lose any.
    pub fn removed_heads(&self) -> BTreeMap<usize, Vec<usize>> {
        let heads = self.groups.iter().filter_map(|g| match g.kind {
            GroupKind::Heads { layer } => Some((layer, g.removed())),
            _ => None,
        });
        heads.filter(|(_, removed)| !removed.is_empty()).collect()
    }

    /// The entry of group `kind`, if planned.
    pub fn get(&self, kind: GroupKind) -> Option<&GroupPlan> {
        self.groups.iter().find(|g| g.kind == kind)
    }

    /// Checks every entry (ascending, in range, no group twice): what a plan read from a
    /// file must pass before use.
    pub fn validate(&self) -> Result<()> {
        for (i, g) in self.groups.iter().enumerate() {
            g.check()?;
            if self.groups[..i].iter().any(|h| h.kind == g.kind) {
                return Err(GraphError::DuplicateGroup { kind: g.kind });
            }
        }
        Ok(())
    }

    /// Whether the plan removes nothing.
    pub fn is_identity(&self) -> bool {
        self.groups.iter().all(GroupPlan::is_identity)
    }

    /// The single plan equivalent to applying `self` and then `next` (whose channel numbers
    /// refer to the model `self` leaves behind): kept indices are mapped back to the model
    /// `self` was made for.
    pub fn then(&self, next: &PruningPlan) -> Result<PruningPlan> {
        self.validate()?;
        next.validate()?;
        let mut out = self.clone();
        for n in &next.groups {
            match out.groups.iter_mut().find(|g| g.kind == n.kind) {
                Some(g) => {
                    if g.keep.len() != n.channels {
                        return Err(GraphError::PlanMismatch {
                            kind: n.kind,
                            why: format!(
                                "the second plan expects {} channels, the first leaves {}",
                                n.channels,
                                g.keep.len()
                            ),
                        });
                    }
                    g.keep = n.keep.iter().map(|&k| g.keep[k]).collect();
                }
                None => out.groups.push(n.clone()),
            }
        }
        Ok(out)
    }

    /// The plan as pretty-printed JSON.
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// A plan from JSON, validated.
    pub fn from_json(text: &str) -> Result<Self> {
        let plan: PruningPlan = serde_json::from_str(text)?;
        plan.validate()?;
        Ok(plan)
    }

    /// Writes the plan as JSON to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_json()?).map_err(|e| GraphError::Io {
            path: path.to_path_buf(),
            cause: e,
        })
    }

    /// Reads and validates a JSON plan from `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| GraphError::Io {
            path: path.to_path_buf(),
            cause: e,
        })?;
        Self::from_json(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_checks() {
        let mut plan = PruningPlan::new();
        plan.remove(GroupKind::Heads { layer: 0 }, 4, &[1, 3])
            .unwrap();
        plan.keep(GroupKind::Ffn { layer: 1 }, 8, &[7, 0, 3, 3])
            .unwrap();
        plan.keep(GroupKind::Hidden, 6, &[0, 1, 2, 3, 4, 5])
            .unwrap();
        let json = plan.to_json().unwrap();
        assert!(json.contains("\"kind\": \"heads\""), "{json}");
        let back = PruningPlan::from_json(&json).unwrap();
        assert_eq!(back, plan);
        assert_eq!(
            back.get(GroupKind::Ffn { layer: 1 }).unwrap().keep,
            vec![0, 3, 7]
        );
        assert_eq!(
            back.get(GroupKind::Heads { layer: 0 }).unwrap().removed(),
            vec![1, 3]
        );
        assert!(back.get(GroupKind::Hidden).unwrap().is_identity());
        assert!(!back.is_identity());

        let e = plan.keep(GroupKind::Hidden, 6, &[0]).unwrap_err();
        assert_eq!(e.to_string(), "plan: group hidden appears twice");
        let e = PruningPlan::new()
            .keep(GroupKind::Ffn { layer: 0 }, 4, &[4])
            .unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        let bad = r#"{"groups":[{"kind":{"kind":"hidden"},"channels":4,"keep":[2,1]}]}"#;
        let e = PruningPlan::from_json(bad).unwrap_err();
        assert!(e.to_string().contains("strictly ascending"), "{e}");
    }

    #[test]
    fn plans_compose() {
        let mut first = PruningPlan::new();
        first
            .keep(GroupKind::Ffn { layer: 0 }, 6, &[1, 2, 4, 5])
            .unwrap();
        let mut second = PruningPlan::new();
        second
            .keep(GroupKind::Ffn { layer: 0 }, 4, &[0, 3])
            .unwrap();
        second
            .remove(GroupKind::Heads { layer: 0 }, 2, &[0])
            .unwrap();
        let both = first.then(&second).unwrap();
        assert_eq!(
            both.get(GroupKind::Ffn { layer: 0 }).unwrap().keep,
            vec![1, 5]
        );
        assert_eq!(
            both.get(GroupKind::Heads { layer: 0 }).unwrap().keep,
            vec![1]
        );
        let mut wrong = PruningPlan::new();
        wrong.keep(GroupKind::Ffn { layer: 0 }, 6, &[0]).unwrap();
        assert!(
            first
                .then(&wrong)
                .unwrap_err()
                .to_string()
                .contains("leaves 4")
        );
    }
}
