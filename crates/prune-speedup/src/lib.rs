//! Speedup surgery: masks become a `PruningPlan`, and every member of every group is
//! physically shrunk (smaller Q/K/V/output and FFN matrices), with params/FLOPs reporting.
//!
//! Not built yet: only the crate boundary exists.
