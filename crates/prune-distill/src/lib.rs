//! Distillation: logit and hidden-state KD losses, CoFi-style dynamic layer mapping, and the
//! iterative loop that interleaves Taylor pruning and surgery with distillation.
//!
//! Not built yet: only the crate boundary exists.
