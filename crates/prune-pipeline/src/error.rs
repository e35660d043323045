//! `PipelineError`: what can go wrong running a stage, or measuring, exporting and
//! reporting a run; [`Context`] adds what was being done to an error, and [`refuse!`]
//! returns a refusal of bad input.

use prune_data::DataError;
use prune_distill::DistillError;
use prune_export::ExportError;
use prune_graph::GraphError;
use prune_posttrain::PostTrainError;
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
    /// A pruning plan could not be made, read or written.
    #[error(transparent)]
    Graph(#[from] GraphError),
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
    /// Reading a task's data failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Distillation failed.
    #[error(transparent)]
    Distill(#[from] DistillError),
    /// Retraining-free pruning failed.
    #[error(transparent)]
    PostTrain(#[from] PostTrainError),
    /// Bad input: an option, a recipe, or a model a stage or the report cannot take.
    #[error("{0}")]
    Input(String),
    /// An error with what was being done when it happened.
    #[error("{context}: {cause}")]
    Context {
        /// What was being done.
        context: String,
        /// The error.
        cause: Box<PipelineError>,
    },
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

/// Adds what was being done to an error.
pub trait Context<T> {
    /// The error, if any, prefixed with `what()`.
    fn context_with(self, what: impl FnOnce() -> String) -> Result<T>;

    /// The error, if any, prefixed with `what`.
    fn context(self, what: &str) -> Result<T>;
}

impl<T, E: Into<PipelineError>> Context<T> for std::result::Result<T, E> {
    fn context_with(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| PipelineError::Context {
            context: what(),
            cause: Box::new(e.into()),
        })
    }

    fn context(self, what: &str) -> Result<T> {
        self.context_with(|| what.to_string())
    }
}

/// Returns `Err(PipelineError::Input(format!(…)))`: bad input, said in words.
#[macro_export]
macro_rules! refuse {
    ($($arg:tt)*) => {
        return Err($crate::PipelineError::Input(format!($($arg)*)))
    };
}

/// This crate's result.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;
