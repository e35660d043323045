//! Training: AdamW with decoupled weight decay, warm-up + linear-decay schedules, a `Trainer`
//! with callbacks around each optimizer step, an `Evaluator`, and atomic checkpoints.
//!
//! Not built yet: only the crate boundary exists.
