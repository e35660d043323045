//! Layer mapping: which teacher hidden state each student hidden state is compared with.
//!
//! Hidden states are numbered as in `BertOutput::hidden_states`: 0 is the embedding output
//! and `l + 1` the output of encoder layer `l`, so a model with L layers has states
//! `0..=L`. Three rules:
//! - [`LayerMapping::Fixed`]: given pairs (NNI's `Adaptive1dLayerwiseDistiller` maps
//!   `i → i`; NNI's v2 stage 3 maps the student's states to the teacher's kept layers).
//! - [`LayerMapping::Dynamic`] (NNI's `DynamicLayerwiseDistiller`): every step, each
//!   student layer output `i` takes the teacher layer output `j ≥ i` with the smallest loss.
//! - [`LayerMapping::Ordered`] (CoFi's layer distillation, version 4): fixed teacher layers
//!   (by default 4 spread as CoFi's `{2, 5, 8, 11}` of 12, scaled to the teacher's depth)
//!   are aligned, from the last one backwards, with the student layer of smallest loss
//!   strictly before the previous choice, so the alignment increases; student layers
//!   without attention heads are skipped as CoFi skips pruned MHA layers.

use crate::error::{DistillError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How student hidden states are paired with teacher hidden states.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum LayerMapping {
    /// Fixed `(student, teacher)` pairs of hidden-state indices.
    Fixed {
        /// The pairs.
        pairs: Vec<(usize, usize)>,
    },
    /// NNI: each student layer output `i` takes, every step, the teacher layer output
    /// `j ≥ i` with the smallest loss.
    Dynamic,
    /// CoFi: the given teacher hidden states, aligned in increasing order with student
    /// layer outputs by smallest loss.
    Ordered {
        /// Teacher hidden-state indices (`1..=L_t`); `None`: [`cofi_teacher_states`] with 4.
        #[serde(default)]
        teacher: Option<Vec<usize>>,
    },
}

/// A student hidden state paired with a teacher hidden state, with the loss of the pair.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerPair {
    /// Student hidden-state index.
    pub student: usize,
    /// Teacher hidden-state index.
    pub teacher: usize,
    /// The hidden-state loss of the pair on the batch (unweighted).
    pub loss: f64,
}

/// The losses of every candidate pair `(student, teacher)` on one batch.
pub type LossTable = BTreeMap<(usize, usize), f64>;

/// `count` teacher hidden states spread as CoFi's `{2, 5, 8, 11}` (layer indices, so
/// states `{3, 6, 9, 12}`) are for 12 layers: state `⌈(k + 1) · L_t / count⌉` for
/// `k < count`, without repeats.
pub fn cofi_teacher_states(teacher_layers: usize, count: usize) -> Vec<usize> {
    let mut out: Vec<usize> = (0..count)
        .map(|k| ((k + 1) * teacher_layers).div_ceil(count.max(1)))
        .filter(|&s| s >= 1)
        .collect();
    out.dedup();
    out
}

impl LayerMapping {
    /// Fixed pairs `i → i` for the layer outputs `1..=layers` (NNI's adaptive distiller).
    pub fn identity(layers: usize) -> Self {
        LayerMapping::Fixed {
            pairs: (1..=layers).map(|i| (i, i)).collect(),
        }
    }

    /// The teacher states of an [`LayerMapping::Ordered`] rule for a teacher of
    /// `teacher_layers` layers.
    fn ordered_teachers(teacher: &Option<Vec<usize>>, teacher_layers: usize) -> Vec<usize> {
        match teacher {
            Some(t) => {
                let mut t = t.clone();
                t.sort_unstable();
                t.dedup();
                t
            }
            None => cofi_teacher_states(teacher_layers, 4),
        }
    }

    /// For each student hidden state that takes part, its candidate teacher states, given
    /// the student's layer count, the teacher's, and the student's heads per layer.
    /// Fails when a given index is out of range or when nothing can be paired.
    pub fn candidates(
        &self,
        student_layers: usize,
        teacher_layers: usize,
        student_heads: &[usize],
    ) -> Result<Vec<(usize, Vec<usize>)>> {
        let err = |why: String| DistillError::mismatch("layer mapping", why);
        let out: Vec<(usize, Vec<usize>)> = match self {
            LayerMapping::Fixed { pairs } => {
                let mut by_student: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
                for &(s, t) in pairs {
                    if s > student_layers || t > teacher_layers {
                        return Err(err(format!(
                            "pair ({s}, {t}) is out of range: the student has hidden states \
                             0..={student_layers}, the teacher 0..={teacher_layers}"
                        )));
                    }
                    by_student.entry(s).or_default().push(t);
                }
                by_student.into_iter().collect()
            }
            LayerMapping::Dynamic => (1..=student_layers.min(teacher_layers))
                .map(|s| (s, (s..=teacher_layers).collect()))
                .collect(),
            LayerMapping::Ordered { teacher } => {
                let t = Self::ordered_teachers(teacher, teacher_layers);
                if let Some(&bad) = t.iter().find(|&&t| t == 0 || t > teacher_layers) {
                    return Err(err(format!(
                        "teacher hidden state {bad} is not a layer output (1..={teacher_layers})"
                    )));
                }
                (1..=student_layers)
                    .filter(|&s| student_heads.get(s - 1).is_none_or(|&h| h > 0))
                    .map(|s| (s, t.clone()))
                    .collect()
            }
        };
        if out.iter().all(|(_, t)| t.is_empty()) {
            return Err(err(format!(
                "no student hidden state can be paired ({self:?}, {student_layers} student and \
                 {teacher_layers} teacher layers)"
            )));
        }
        Ok(out)
    }

    /// The pairs this rule picks from the losses of the candidate pairs.
    pub fn choose(&self, losses: &LossTable) -> Vec<LayerPair> {
        let pair = |(&(student, teacher), &loss): (&(usize, usize), &f64)| LayerPair {
            student,
            teacher,
            loss,
        };
        match self {
            LayerMapping::Fixed { .. } => losses.iter().map(pair).collect(),
            LayerMapping::Dynamic => {
                let mut best: BTreeMap<usize, LayerPair> = BTreeMap::new();
                for p in losses.iter().map(pair) {
                    let e = best.entry(p.student).or_insert(p);
                    if p.loss < e.loss {
                        *e = p;
                    }
                }
                best.into_values().collect()
            }
            LayerMapping::Ordered { .. } => {
                let mut teachers: Vec<usize> = losses.keys().map(|&(_, t)| t).collect();
                teachers.sort_unstable();
                teachers.dedup();
                let mut chosen = Vec::new();
                let mut last: Option<usize> = None;
                for &t in teachers.iter().rev() {
                    let best = losses
                        .iter()
                        .filter(|&(&(s, tt), _)| tt == t && last.is_none_or(|l| s < l))
                        .map(pair)
                        .fold(None::<LayerPair>, |acc, p| match acc {
                            Some(a) if a.loss <= p.loss => Some(a),
                            _ => Some(p),
                        });
                    match (best, last) {
                        (Some(p), _) => {
                            last = Some(p.student);
                            chosen.push(p);
                        }
                        // CoFi keeps the previous alignment when nothing earlier qualifies.
                        (None, Some(s)) => {
                            if let Some(&loss) = losses.get(&(s, t)) {
                                chosen.push(LayerPair {
                                    student: s,
                                    teacher: t,
                                    loss,
                                });
                            }
                        }
                        (None, None) => {}
                    }
                }
                chosen.reverse();
                chosen
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[((usize, usize), f64)]) -> LossTable {
        entries.iter().copied().collect()
    }

    /// The `(student, teacher)` pairs `m` chooses under `losses`.
    fn student_teacher(m: &LayerMapping, losses: &LossTable) -> Vec<(usize, usize)> {
        m.choose(losses)
            .iter()
            .map(|p| (p.student, p.teacher))
            .collect()
    }

    #[test]
    fn cofi_layers_scale_with_depth() {
        assert_eq!(cofi_teacher_states(12, 4), [3, 6, 9, 12]);
        assert_eq!(cofi_teacher_states(6, 4), [2, 3, 5, 6]);
        assert_eq!(cofi_teacher_states(2, 4), [1, 2]);
        assert_eq!(cofi_teacher_states(1, 4), [1]);
    }

    #[test]
    fn dynamic_takes_the_nearest_teacher_at_or_after_each_layer() {
        let m = LayerMapping::Dynamic;
        let c = m.candidates(3, 4, &[1, 1, 1]).unwrap();
        assert_eq!(c[0], (1, vec![1, 2, 3, 4]));
        assert_eq!(c[2], (3, vec![3, 4]));
        let losses = table(&[
            ((1, 1), 0.5),
            ((1, 2), 0.2),
            ((1, 3), 0.2),
            ((2, 2), 0.1),
            ((2, 3), 0.3),
        ]);
        let chosen = student_teacher(&m, &losses);
        // Ties go to the earlier teacher layer; no monotonic constraint.
        assert_eq!(chosen, [(1, 2), (2, 2)]);
    }

    #[test]
    fn ordered_alignment_increases_and_skips_headless_layers() {
        let m = LayerMapping::Ordered {
            teacher: Some(vec![2, 4]),
        };
        let c = m.candidates(4, 4, &[2, 0, 2, 2]).unwrap();
        let students: Vec<usize> = c.iter().map(|(s, _)| *s).collect();
        assert_eq!(students, [1, 3, 4]);
        // Teacher 4 is closest to student 1, teacher 2 to student 3: going backwards, 4
        // takes 1, then 2 has nothing before 1 and keeps the previous choice.
        let losses = table(&[
            ((1, 2), 0.9),
            ((3, 2), 0.1),
            ((4, 2), 0.5),
            ((1, 4), 0.0),
            ((3, 4), 0.4),
            ((4, 4), 0.3),
        ]);
        let chosen = student_teacher(&m, &losses);
        assert_eq!(chosen, [(1, 2), (1, 4)]);
        let losses = table(&[
            ((1, 2), 0.9),
            ((3, 2), 0.1),
            ((4, 2), 0.5),
            ((1, 4), 0.6),
            ((3, 4), 0.4),
            ((4, 4), 0.3),
        ]);
        let chosen = student_teacher(&m, &losses);
        assert_eq!(chosen, [(3, 2), (4, 4)]);
    }

    #[test]
    fn checks_indices_and_round_trips() {
        let e = LayerMapping::Fixed {
            pairs: vec![(0, 0), (3, 1)],
        }
        .candidates(2, 2, &[1, 1])
        .unwrap_err();
        assert!(e.to_string().contains("(3, 1) is out of range"), "{e}");
        let e = LayerMapping::Ordered {
            teacher: Some(vec![0]),
        }
        .candidates(2, 2, &[1, 1])
        .unwrap_err();
        assert!(e.to_string().contains("not a layer output"), "{e}");
        assert!(
            LayerMapping::Ordered { teacher: None }
                .candidates(2, 2, &[0, 0])
                .is_err()
        );
        for m in [
            LayerMapping::identity(2),
            LayerMapping::Dynamic,
            LayerMapping::Ordered { teacher: None },
        ] {
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(serde_json::from_str::<LayerMapping>(&json).unwrap(), m);
        }
        let m: LayerMapping = serde_json::from_str(r#"{"rule": "ordered"}"#).unwrap();
        assert_eq!(m, LayerMapping::Ordered { teacher: None });
    }
}
