//! GLUE tasks (TSV layouts, label sets), tokenization into padded batches, and the task
//! metrics (accuracy, F1, Matthews correlation, Pearson, Spearman).
//!
//! Not built yet: only the crate boundary exists.
