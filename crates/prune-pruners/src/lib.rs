//! Pruning algorithms with NNI's semantics: `config_list` parsing and validation, per-element
//! `Masks`, importance scores (magnitude, movement, Taylor), sparsity schedules and selection
//! (per-op, global, dependency-aware).
//!
//! Not built yet: only the crate boundary exists.
