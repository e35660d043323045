//! A stage's output folder: claimed once the inputs are read (apart from them, locked, the
//! same run when resumed; see [`RunDir`]), and finished by dropping what only a resume
//! needs and renaming the folder into place.

use anyhow::{Context, Result};
use prune::train::RunDir;
use std::path::PathBuf;

/// What only a resumed run reads: the trainer's checkpoints, the distiller's and the
/// movement pruner's state.
const RESUME_STATE: [&str; 3] = ["checkpoints", "distill", "movement"];

/// The run is complete: removes its resume state and renames its folder into place.
pub fn finish(run: RunDir) -> Result<PathBuf> {
    for name in RESUME_STATE {
        let dir = run.path().join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
    }
    Ok(run.commit()?)
}
