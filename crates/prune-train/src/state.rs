//! Where step callbacks keep the state the trainer's checkpoints do not hold (movement
//! scores, distillation projections and their moments, the history of pruning plans): one
//! directory per trainer checkpoint step, `<out>/<name>/step-<N>/`, written at the steps
//! the trainer checkpoints, so that a resumed run finds the state that matches the restored
//! model. The two newest directories are kept: if a run dies after this state is written
//! but before the trainer's checkpoint of the same step, the previous one still matches.

use crate::checkpoint::{self, Progress};
use crate::error::{Result, TrainError};
use prune_tensor::Tensor;
use prune_transformer::weights::{read_float_tensors, save_tensors, write_atomic};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How many step directories stay on disk.
const KEEP: usize = 2;

/// The state directories of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateDir {
    /// `<out>/<name>`
    root: PathBuf,
    /// Save every this many steps (the trainer's `checkpoint_every`), and at the last step.
    every: Option<u64>,
}

impl StateDir {
    /// The state `name` of the run writing its trainer output to `out_dir`, saved every
    /// `every` steps (pass the trainer's `checkpoint_every`) and at the last step.
    pub fn new(out_dir: &Path, name: &str, every: Option<u64>) -> Result<Self> {
        if every == Some(0) {
            return Err(TrainError::Config(
                "state checkpoints need an interval of at least 1 step".into(),
            ));
        }
        Ok(StateDir {
            root: out_dir.join(name),
            every,
        })
    }

    /// The trainer's output directory this state belongs to.
    pub fn out_dir(&self) -> &Path {
        self.root.parent().unwrap_or(&self.root)
    }

    /// Whether the trainer saves a checkpoint after optimizer step `step` of `total`.
    pub fn due(&self, step: u64, total: u64) -> bool {
        step == total || self.every.is_some_and(|e| step % e == 0)
    }

    /// The directory of step `step`.
    pub fn step_dir(&self, step: u64) -> PathBuf {
        self.root.join(format!("step-{step}"))
    }

    /// Creates the directory of step `step` and removes those of later steps (left by a
    /// run that was resumed from an earlier checkpoint) and all but the newest earlier ones.
    pub fn create(&self, step: u64) -> Result<PathBuf> {
        let dir = self.step_dir(step);
        std::fs::create_dir_all(&dir).map_err(|e| TrainError::file(&dir, e))?;
        let mut older = Vec::new();
        for entry in std::fs::read_dir(&self.root)
            .map_err(|e| TrainError::file(&self.root, e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(n) = name
                .strip_prefix("step-")
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if n > step {
                remove(&entry.path())?;
            } else if n < step {
                older.push(n);
            }
        }
        older.sort_unstable();
        let excess = older.len().saturating_sub(KEEP - 1);
        for n in &older[..excess] {
            remove(&self.step_dir(*n))?;
        }
        Ok(dir)
    }

    /// The step of the trainer checkpoint a resumed run starts from (`None`: no
    /// checkpoint, a fresh start).
    pub fn trainer_step(&self) -> Result<Option<u64>> {
        let Some(dir) = checkpoint::latest(&self.out_dir().join("checkpoints"))? else {
            return Ok(None);
        };
        #[derive(serde::Deserialize)]
        struct State {
            progress: Progress,
        }
        let state: State = read_json(&dir.join("state.json"))?;
        Ok(Some(state.progress.step))
    }
}

fn remove(dir: &Path) -> Result<()> {
    std::fs::remove_dir_all(dir).map_err(|e| TrainError::file(dir, e))
}

/// Writes `value` as pretty JSON to `path`, atomically.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| TrainError::file(path, e))?;
    Ok(write_atomic(path, text.as_bytes())?)
}

/// Reads JSON from `path`.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::file(path, e))?;
    serde_json::from_str(&text).map_err(|e| TrainError::file(path, e))
}

/// Writes named f32 tensors to a safetensors file, atomically; NaN or infinity is refused.
pub fn write_tensors(path: &Path, tensors: &[(String, Tensor<f32>)]) -> Result<()> {
    let named: Vec<(String, &Tensor<f32>)> = tensors.iter().map(|(n, t)| (n.clone(), t)).collect();
    Ok(save_tensors(path, &named)?)
}

/// Reads every f32 tensor of a safetensors file.
pub fn read_tensors(path: &Path) -> Result<BTreeMap<String, Tensor<f32>>> {
    Ok(read_float_tensors(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_two_newest_steps_and_drops_later_ones() {
        let tmp = std::env::temp_dir().join(format!("prune-train-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let s = StateDir::new(&tmp, "distill", Some(10)).unwrap();
        assert!(s.due(20, 35) && s.due(35, 35) && !s.due(21, 35));
        for step in [10, 20, 30] {
            s.create(step).unwrap();
        }
        let listed = |s: &StateDir| {
            let mut v: Vec<String> = std::fs::read_dir(&s.root)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(listed(&s), ["step-20", "step-30"]);
        s.create(20).unwrap();
        assert_eq!(listed(&s), ["step-20"]);
        let t = vec![(
            "a.weight".to_string(),
            Tensor::from_fn([2, 3], |i| i as f32),
        )];
        let path = s.step_dir(20).join("t.safetensors");
        write_tensors(&path, &t).unwrap();
        assert_eq!(read_tensors(&path).unwrap()["a.weight"], t[0].1);
        assert_eq!(s.trainer_step().unwrap(), None);
        assert!(StateDir::new(&tmp, "distill", Some(0)).is_err());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
