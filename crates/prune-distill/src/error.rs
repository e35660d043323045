//! `DistillError`: what can go wrong while distilling, fitting projections, pruning between
//! rounds or checkpointing the distiller's state, with the context of each failure.

use std::path::{Path, PathBuf};

/// Errors of distillation and of the iterative prune-while-distilling loop.
#[derive(Debug, thiserror::Error)]
pub enum DistillError {
    /// A tensor op failed.
    #[error(transparent)]
    Tensor(#[from] prune_tensor::TensorError),
    /// The student or the teacher refused an input, or a model file failed.
    #[error(transparent)]
    Model(#[from] prune_transformer::TransformerError),
    /// Training, the optimizer or a trainer checkpoint failed.
    #[error(transparent)]
    Train(#[from] prune_train::TrainError),
    /// The Taylor pruner (selection, statistics, masks) failed.
    #[error(transparent)]
    Pruner(#[from] prune_pruners::PrunerError),
    /// Deriving a plan from masks, or the surgery, failed.
    #[error(transparent)]
    Speedup(#[from] prune_speedup::SpeedupError),
    /// A pruning plan could not be composed, read or written.
    #[error(transparent)]
    Graph(#[from] prune_graph::GraphError),
    /// Settings that cannot work (weights, temperature, mapping, schedule).
    #[error("invalid distillation settings: {0}")]
    Config(String),
    /// Student and teacher do not fit together, or an input does not fit the settings.
    #[error("{context}: {why}")]
    Mismatch {
        /// What was being done, e.g. `layer mapping` or `logit distillation`.
        context: String,
        /// What does not fit.
        why: String,
    },
    /// The least-squares initialisation of a projection failed.
    #[error("least-squares fit of the projection of student hidden state {student}: {why}")]
    LeastSquares {
        /// Student hidden-state index (0: embedding output) whose projection was fitted.
        student: usize,
        /// What the solver reported.
        why: String,
    },
    /// A state file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl DistillError {
    /// A [`DistillError::Mismatch`].
    pub fn mismatch(context: impl Into<String>, why: impl Into<String>) -> Self {
        DistillError::Mismatch {
            context: context.into(),
            why: why.into(),
        }
    }

    /// A [`DistillError::File`] naming `path`.
    pub fn file(path: &Path, message: impl std::fmt::Display) -> Self {
        DistillError::File {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}

/// Result of this crate's functions.
pub type Result<T> = std::result::Result<T, DistillError>;

/// The distiller runs inside the trainer, whose error type is `TrainError`: tensor, model
/// and training errors keep their variant; the others become a configuration error
/// carrying this crate's message.
impl From<DistillError> for prune_train::TrainError {
    fn from(e: DistillError) -> Self {
        match e {
            DistillError::Tensor(t) => prune_train::TrainError::Tensor(t),
            DistillError::Model(m) => prune_train::TrainError::Model(m),
            DistillError::Train(t) => t,
            DistillError::File { path, message } => prune_train::TrainError::File { path, message },
            other => prune_train::TrainError::Config(format!("distillation: {other}")),
        }
    }
}
