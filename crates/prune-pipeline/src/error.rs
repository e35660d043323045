//! `PipelineError`: what can go wrong running a stage, or measuring, exporting and
//! reporting a run.

use prune_export::ExportError;
use prune_pruners::PrunerError;
use prune_speedup::SpeedupError;
use prune_tensor::TensorError;
use prune_train::TrainError;
use prune_transformer::TransformerError;
use std::path::{Path, PathBuf};

/// An error of this crate.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Loading, running or saving a model failed.
    #[error(transparent)]
    Transformer(#[from] TransformerError),
    /// A backend operation failed.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// A pruner failed.
    #[error(transparent)]
    Pruner(#[from] PrunerError),
    /// Surgery failed.
    #[error(transparent)]
    Speedup(#[from] SpeedupError),
    /// Training failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// An export failed.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// The report could not be serialised.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A model the report cannot describe.
    #[error("{0}")]
    Input(String),
    /// The report's figure could not be drawn.
    #[error("drawing the report's figure: {0}")]
    Plot(String),
}

impl PipelineError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        PipelineError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// This crate's result.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;
