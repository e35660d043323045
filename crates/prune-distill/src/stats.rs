//! What a distillation step did: the loss and its parts, and the layer pairs the mapping
//! chose ([`DistillStats`]); a running count of the chosen pairs ([`MappingHistogram`]);
//! and a JSON-lines log of both ([`StatsLog`]) that can share the trainer's
//! `metrics.jsonl`.

use crate::error::{DistillError, Result};
use crate::mapping::LayerPair;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The loss of one micro-batch and its parts (unweighted; `None` when its weight is 0).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DistillStats {
    /// `α_ce · ce + α_layer · layer + α_kd · kd`.
    pub loss: f64,
    /// Task loss on the gold labels.
    pub ce: Option<f64>,
    /// Logit distillation loss (with its `T²`).
    pub kd: Option<f64>,
    /// Sum of the hidden-state losses of the chosen pairs.
    pub layer: Option<f64>,
    /// The chosen `(student, teacher)` hidden-state pairs and their losses.
    pub pairs: Vec<LayerPair>,
}

/// How often each `(student, teacher)` pair was chosen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MappingHistogram(BTreeMap<(usize, usize), u64>);

impl MappingHistogram {
    /// Counts the pairs of one micro-batch.
    pub fn add(&mut self, pairs: &[LayerPair]) {
        for p in pairs {
            *self.0.entry((p.student, p.teacher)).or_default() += 1;
        }
    }

    /// `(student, teacher, count)` in pair order.
    pub fn entries(&self) -> Vec<(usize, usize, u64)> {
        self.0.iter().map(|(&(s, t), &n)| (s, t, n)).collect()
    }

    /// The most frequent teacher of each student hidden state (ties: the earlier teacher).
    pub fn modes(&self) -> BTreeMap<usize, usize> {
        let mut best: BTreeMap<usize, (usize, u64)> = BTreeMap::new();
        for (&(s, t), &n) in &self.0 {
            let e = best.entry(s).or_insert((t, n));
            if n > e.1 {
                *e = (t, n);
            }
        }
        best.into_iter().map(|(s, (t, _))| (s, t)).collect()
    }

    /// Forgets every count.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// Appends a `{"kind": "distill", ...}` line every `every` steps to a JSON-lines file.
#[derive(Debug)]
pub struct StatsLog {
    path: PathBuf,
    file: File,
    every: u64,
    /// Pairs chosen since the last line.
    window: MappingHistogram,
}

impl StatsLog {
    /// A log appending to `path` (created if needed; the trainer's `metrics.jsonl` is
    /// fine) every `every` steps.
    pub fn new(path: &Path, every: u64) -> Result<Self> {
        if every == 0 {
            return Err(DistillError::Config("log every 0 steps".into()));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| DistillError::file(dir, e))?;
        }
        let file = File::options()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| DistillError::file(path, e))?;
        Ok(StatsLog {
            path: path.to_path_buf(),
            file,
            every,
            window: MappingHistogram::default(),
        })
    }

    /// Counts the pairs of one micro-batch.
    pub fn add(&mut self, pairs: &[LayerPair]) {
        self.window.add(pairs);
    }

    /// Writes the line of optimizer step `step` if it is due: the last micro-batch's
    /// statistics and the pair counts since the previous line.
    pub fn step(&mut self, step: u64, stats: Option<&DistillStats>) -> Result<()> {
        if step % self.every != 0 {
            return Ok(());
        }
        let line = serde_json::json!({
            "kind": "distill",
            "step": step,
            "last": stats,
            "pair_counts": self.window.entries(),
        });
        writeln!(self.file, "{line}").map_err(|e| DistillError::file(&self.path, e))?;
        self.window.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_counts_and_log_lines() {
        let p = |s, t| LayerPair {
            student: s,
            teacher: t,
            loss: 0.5,
        };
        let mut h = MappingHistogram::default();
        h.add(&[p(1, 1), p(2, 3)]);
        h.add(&[p(1, 2), p(2, 3)]);
        h.add(&[p(1, 2)]);
        assert_eq!(h.entries(), [(1, 1, 1), (1, 2, 2), (2, 3, 2)]);
        assert_eq!(h.modes(), BTreeMap::from([(1, 2), (2, 3)]));
        let path =
            std::env::temp_dir().join(format!("prune-distill-log-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut log = StatsLog::new(&path, 2).unwrap();
        let stats = DistillStats {
            loss: 1.0,
            ce: Some(0.5),
            kd: None,
            layer: Some(1.0),
            pairs: vec![p(1, 2)],
        };
        log.add(&[p(1, 1), p(2, 3)]);
        log.add(&[p(1, 2), p(2, 3)]);
        log.step(1, Some(&stats)).unwrap();
        log.step(2, Some(&stats)).unwrap();
        log.add(&[p(1, 2)]);
        log.step(3, Some(&stats)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["kind"], "distill");
        assert_eq!(v["last"]["pairs"][0]["teacher"], 2);
        assert_eq!(v["pair_counts"][1], serde_json::json!([1, 2, 1]));
        assert_eq!(v["pair_counts"][2], serde_json::json!([2, 3, 2]));
        std::fs::remove_file(&path).unwrap();
    }
}
