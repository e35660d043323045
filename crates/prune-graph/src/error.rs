//! `GraphError`: what can go wrong while tracing, analysing dependencies or handling plans.

use crate::group::GroupKind;

/// Errors of tracing, dependency analysis, groups and pruning plans.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// A tensor op failed while tracing (shapes that do not fit the op).
    #[error("trace: {0}")]
    Tensor(#[from] prune_tensor::TensorError),
    /// A plan names a group twice.
    #[error("plan: group {kind} appears twice")]
    DuplicateGroup {
        /// The repeated group.
        kind: GroupKind,
    },
    /// The model could not be built or run on the tracing backend.
    #[error("tracing the model: {0}")]
    Model(#[from] prune_transformer::Error),
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
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A plan could not be read or written as JSON.
    #[error("plan JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The traced graph does not have the structure the analysis needs.
    #[error("dependency analysis: {0}")]
    Analysis(String),
}

/// Result with [`GraphError`].
pub type Result<T, E = GraphError> = std::result::Result<T, E>;
