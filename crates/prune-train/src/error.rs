//! `TrainError`: what went wrong while training, evaluating or checkpointing.

use std::path::PathBuf;

/// Errors of training, evaluation and checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A tensor op failed.
    #[error(transparent)]
    Tensor(#[from] prune_tensor::TensorError),
    /// The model failed (shapes, inputs, checkpoint files).
    #[error(transparent)]
    Model(#[from] prune_transformer::TransformerError),
    /// The data failed.
    #[error(transparent)]
    Data(#[from] prune_data::DataError),
    /// A loss or gradient norm became NaN or infinite.
    #[error("training diverged: {0}")]
    NonFinite(String),
    /// Settings that cannot work.
    #[error("invalid training settings: {0}")]
    Config(String),
    /// An output folder that a run may not use (it overlaps an input, holds a finished or
    /// another run, or belongs to a different run than the one resuming it).
    #[error("{0}")]
    Output(String),
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl TrainError {
    /// A file error naming `path`.
    pub fn file(path: &std::path::Path, message: impl std::fmt::Display) -> Self {
        TrainError::File {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}

/// Result of training operations.
pub type Result<T> = std::result::Result<T, TrainError>;
