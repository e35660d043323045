//! A stage's output folder: claimed once the inputs are read (apart from them, locked, the
//! same run when resumed; see [`RunDir`]), written (the model with its tokenizer, the
//! training summary), and finished by dropping what only a resume needs and renaming the
//! folder into place.

use crate::error::{PipelineError, Result};
use crate::exports::copy_tokenizer;
use prune_tensor::Backend;
use prune_train::state::write_json;
use prune_train::{Evaluation, RunDir, TrainSummary};
use prune_transformer::BertForSequenceClassification;
use std::path::{Path, PathBuf};

/// What only a resumed run reads: the trainer's checkpoints, the distiller's and the
/// movement pruner's state.
const RESUME_STATE: [&str; 3] = ["checkpoints", "distill", "movement"];

/// The run is complete: removes its resume state and renames its folder into place.
pub fn finish(run: RunDir) -> Result<PathBuf> {
    for name in RESUME_STATE {
        let dir = run.path().join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| PipelineError::io(&dir, e))?;
        }
    }
    Ok(run.commit()?)
}

/// Saves `model` as `<out>/model` with the tokenizer of `source_dir`; returns the path.
pub fn save_model<B: Backend>(
    model: &BertForSequenceClassification<B>,
    source_dir: &Path,
    out: &Path,
) -> Result<PathBuf> {
    let dir = out.join("model");
    model.bert.save(&dir)?;
    copy_tokenizer(source_dir, &dir)?;
    Ok(dir)
}

/// Writes `summary.json` under `out`.
pub fn write_summary(out: &Path, summary: &TrainSummary) -> Result<()> {
    Ok(write_json(&out.join("summary.json"), summary)?)
}

/// `accuracy 0.8739, …` (or `n/a`).
pub fn metrics_line(e: Option<&Evaluation>) -> String {
    e.map_or(String::from("n/a"), |e| {
        let parts: Vec<String> = e
            .metrics
            .iter()
            .map(|(m, v)| format!("{m} {v:.4}"))
            .collect();
        parts.join(", ")
    })
}
