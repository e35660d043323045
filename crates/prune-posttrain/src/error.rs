//! `PostTrainError`: what can go wrong while pruning without retraining.

/// Errors of the retraining-free pruner.
#[derive(Debug, thiserror::Error)]
pub enum PostTrainError {
    /// A tensor op failed.
    #[error(transparent)]
    Tensor(#[from] prune_tensor::TensorError),
    /// The model refused an input.
    #[error(transparent)]
    Model(#[from] prune_transformer::TransformerError),
    /// The surgery failed.
    #[error(transparent)]
    Speedup(#[from] prune_speedup::SpeedupError),
    /// The pruning plan could not be built.
    #[error(transparent)]
    Graph(#[from] prune_graph::GraphError),
    /// Settings or inputs that cannot work.
    #[error("{0}")]
    Input(String),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, PostTrainError>;
