//! GLUE tasks (TSV layouts, label sets), users' own CSV / JSONL tasks, tokenization into
//! padded batches, and the task metrics (accuracy, F1, Matthews, Pearson, Spearman).

pub mod batching;
pub mod dataset;
mod encode;
mod error;
pub mod metrics;
pub mod synthetic;
pub mod task;

pub use batching::{BatchLabels, BatchOrder, Encoded, LabelledBatch, collate};
pub use dataset::{
    BadRows, Columns, Dataset, Example, Label, Labels, Split, default_glue_dir, load_glue,
};
pub use encode::encode_examples;
pub use error::{DataError, Result};
pub use metrics::{Metric, Outputs};
pub use task::Task;
