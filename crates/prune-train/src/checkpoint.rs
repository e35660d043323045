//! Training checkpoints: model, optimizer moments and trainer state in one directory,
//! written under a temporary name and renamed into place, with a `latest` pointer replaced
//! atomically, so a killed run always finds a complete checkpoint.

use crate::error::{Result, TrainError};
use crate::optimizer::{AdamWConfig, Optimizer};
use prune_tensor::Backend;
use prune_transformer::weights::{load_params, save_params, write_atomic};
use prune_transformer::{BertForSequenceClassification, BertModel};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where a run is in its data: enough to continue exactly where it stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Optimizer steps completed.
    pub step: u64,
    /// Current epoch (0-based).
    pub epoch: u64,
    /// Micro-batches of the current epoch already consumed.
    pub batch_in_epoch: usize,
    /// Training examples consumed so far.
    #[serde(default)]
    pub examples: u64,
}

/// The name of the pointer file naming the newest checkpoint directory.
const LATEST: &str = "latest";

/// Saves model, optimizer and progress into `<root>/step-<N>/`, then points `latest` at it
/// and removes older checkpoints.
pub fn save<B: Backend>(
    root: &Path,
    model: &BertForSequenceClassification<B>,
    optimizer: &Optimizer<B::Tensor>,
    progress: Progress,
) -> Result<PathBuf> {
    let b = model.bert.backend();
    let name = format!("step-{}", progress.step);
    let dir = root.join(&name);
    let tmp = root.join(format!(".{name}.tmp"));
    let io = |p: &Path, e: std::io::Error| TrainError::file(p, e);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    model.bert.save(&tmp.join("model"))?;
    let (m, v) = optimizer.to_host(b)?;
    let family = model.bert.config.family;
    save_params(&tmp.join("adam_m.safetensors"), &m, family)?;
    save_params(&tmp.join("adam_v.safetensors"), &v, family)?;
    let state = serde_json::json!({ "progress": progress, "adamw": optimizer.config, "optimizer_step": optimizer.step });
    write_atomic(&tmp.join("state.json"), state.to_string().as_bytes())?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
    }
    std::fs::rename(&tmp, &dir).map_err(|e| io(&dir, e))?;
    write_atomic(&root.join(LATEST), name.as_bytes())?;
    for entry in std::fs::read_dir(root).map_err(|e| io(root, e))?.flatten() {
        let other = entry.file_name().to_string_lossy().into_owned();
        if other.starts_with("step-") && other != name {
            std::fs::remove_dir_all(entry.path()).map_err(|e| io(&entry.path(), e))?;
        }
    }
    Ok(dir)
}

/// A checkpoint read back.
pub struct Restored<B: Backend> {
    /// The model.
    pub model: BertForSequenceClassification<B>,
    /// The optimizer with its moments.
    pub optimizer: Optimizer<B::Tensor>,
    /// Where the run was.
    pub progress: Progress,
}

/// The newest checkpoint under `root`, if any.
pub fn latest(root: &Path) -> Result<Option<PathBuf>> {
    let pointer = root.join(LATEST);
    if !pointer.exists() {
        return Ok(None);
    }
    let name = std::fs::read_to_string(&pointer).map_err(|e| TrainError::file(&pointer, e))?;
    Ok(Some(root.join(name.trim())))
}

/// Loads the checkpoint in `dir` onto `backend`.
pub fn load<B: Backend>(backend: B, dir: &Path) -> Result<Restored<B>> {
    let bert = BertModel::load(backend, &dir.join("model"))?;
    let state_path = dir.join("state.json");
    let text =
        std::fs::read_to_string(&state_path).map_err(|e| TrainError::file(&state_path, e))?;
    #[derive(Deserialize)]
    struct State {
        progress: Progress,
        adamw: AdamWConfig,
        optimizer_step: u64,
    }
    let state: State = serde_json::from_str(&text).map_err(|e| TrainError::file(&state_path, e))?;
    let m = load_params(&dir.join("adam_m.safetensors"), &bert.config)?;
    let v = load_params(&dir.join("adam_v.safetensors"), &bert.config)?;
    let optimizer =
        Optimizer::from_host(bert.backend(), state.adamw, &m, &v, state.optimizer_step)?;
    let model = BertForSequenceClassification::new(bert)?;
    Ok(Restored {
        model,
        optimizer,
        progress: state.progress,
    })
}
