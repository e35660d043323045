//! `GraphError`: what can go wrong while tracing, analysing dependencies or handling plans.

use crate::group::GroupKind;

/// Errors of tracing, dependency analysis, groups and pruning plans.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// A tensor op failed while tracing (shapes that do not fit the op).
    #[error("trace: {0}")]
    Tensor(prune_tensor::TensorError),
    /// A plan names a group twice.
    #[error("plan: group {kind} appears twice")]
    DuplicateGroup {
        /// The repeated group.
        kind: GroupKind,
    },
    /// A plan's kept channels are not strictly ascending or exceed the group's width.
    #[error("plan: group {kind} keeps {keep:?} of {channels} channels: {why}")]
    BadKeep {
        /// The group.
        kind: GroupKind,
        /// Its width when the plan was made.
        channels: usize,
        /// The offending kept indices.
        keep: Vec<usize>,
        /// What is wrong.
        why: &'static str,
    },
    /// A plan does not fit the groups of the model it is applied to.
    #[error("plan: group {kind}: {why}")]
    PlanMismatch {
        /// The group.
        kind: GroupKind,
        /// What does not fit.
        why: String,
    },
    /// A plan file could not be read or written.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        cause: std::io::Error,
    },
    /// A plan could not be read or written as JSON.
    #[error("plan JSON: {0}")]
    Json(serde_json::Error),
    /// The traced graph does not have the structure the analysis needs.
    #[error("dependency analysis: {0}")]
    Analysis(String),
}

// The variants that wrap another error show its text in their own message, so they do not
// also return it as their source (a `{:#}` chain would print it twice).
impl From<prune_tensor::TensorError> for GraphError {
    fn from(e: prune_tensor::TensorError) -> Self {
        GraphError::Tensor(e)
    }
}

impl From<serde_json::Error> for GraphError {
    fn from(e: serde_json::Error) -> Self {
        GraphError::Json(e)
    }
}

/// Result with [`GraphError`].
pub type Result<T, E = GraphError> = std::result::Result<T, E>;
