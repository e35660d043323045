//! `SpeedupError`: what can go wrong deriving plans from masks, cutting a model, reporting.

use prune_graph::GroupKind;

/// Errors of masks → plan, surgery and reports.
#[derive(Debug, thiserror::Error)]
pub enum SpeedupError {
    /// Tracing the model or handling the plan failed.
    #[error(transparent)]
    Graph(#[from] prune_graph::GraphError),
    /// The model refused the result (shapes, config) or could not be read or written.
    #[error(transparent)]
    Model(#[from] prune_transformer::TransformerError),
    /// A tensor op failed while slicing.
    #[error("slicing: {0}")]
    Tensor(prune_tensor::TensorError),
    /// The masks of one group disagree on which channels are dead.
    #[error(
        "masks of the {kind} group disagree on channel {channel}: it is fully masked in \
         `{dead_in}` but not in `{alive_in}`"
    )]
    MaskConflict {
        /// The group.
        kind: GroupKind,
        /// The first channel they disagree on.
        channel: usize,
        /// A member (or the hidden mask) in which the channel is dead.
        dead_in: String,
        /// A member in which it is alive.
        alive_in: String,
    },
    /// A plan does not fit the model it is applied to.
    #[error("plan does not fit the model: {kind}: {why}")]
    PlanMismatch {
        /// The group.
        kind: GroupKind,
        /// What does not fit.
        why: String,
    },
    /// Invalid input (mask shapes, a parameter tree that does not mirror the model).
    #[error("invalid input: {0}")]
    Input(String),
}

// Shown in the message, so not also returned as the source (see `GraphError`).
impl From<prune_tensor::TensorError> for SpeedupError {
    fn from(e: prune_tensor::TensorError) -> Self {
        SpeedupError::Tensor(e)
    }
}

/// Result with [`SpeedupError`].
pub type Result<T, E = SpeedupError> = std::result::Result<T, E>;
