//! GLUE tasks (TSV layouts, label sets, where their files are found), users' own CSV / JSONL
//! tasks, tokenization into padded batches, and the task metrics (accuracy, F1, Matthews,
//! Pearson, Spearman).

pub mod batching;
pub mod dataset;
mod encode;
mod error;
pub mod locate;
pub mod metrics;
pub mod synthetic;
pub mod task;

pub use batching::{BatchLabels, BatchOrder, Encoded, LabelledBatch, collate};
pub use dataset::{BadRows, Columns, Dataset, Example, Label, Labels, Split, load_glue};
pub use encode::encode_examples;
pub use error::{DataError, Result};
pub use locate::{default_glue_dir, glue_dir_for};
pub use metrics::{Metric, Outputs};
pub use task::Task;
