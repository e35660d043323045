//! prune: structured pruning of BERT-family transformers, end to end.
//!
//! This facade re-exports the workspace crates under short names so that applications,
//! the root `tests/` and the root `benches/` can depend on one package.

pub use prune_data as data;
pub use prune_distill as distill;
pub use prune_export as export;
pub use prune_graph as graph;
pub use prune_pipeline as pipeline;
pub use prune_posttrain as posttrain;
pub use prune_pruners as pruners;
pub use prune_speedup as speedup;
pub use prune_tensor as tensor;
pub use prune_train as train;
pub use prune_transformer as transformer;
