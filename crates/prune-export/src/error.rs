//! `ExportError`: what can go wrong while exporting a checkpoint.

use std::path::PathBuf;

/// Errors of the ONNX and transformers exports.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The checkpoint could not be read or written.
    #[error(transparent)]
    Model(#[from] prune_transformer::TransformerError),
    /// The checkpoint has no classification head (pooler and classifier).
    #[error(
        "the checkpoint has no classification head (pooler and classifier): export a fine-tuned model"
    )]
    NoHead,
    /// The shape cannot be written in the requested format.
    #[error("{0}")]
    Unsupported(String),
    /// A file could not be written.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        cause: std::io::Error,
    },
}

/// Result of exports.
pub type Result<T> = std::result::Result<T, ExportError>;
