//! GLUE tasks (TSV layouts, label sets), users' own CSV / JSONL tasks, tokenization into
//! padded batches, and the task metrics (accuracy, F1, Matthews, Pearson, Spearman).

pub mod dataset;
mod error;
pub mod metrics;
pub mod task;

pub use dataset::{BadRows, Columns, Dataset, Example, Label, Labels, Split, load_glue};
pub use error::{DataError, Result};
pub use metrics::{Metric, Outputs};
pub use task::Task;
