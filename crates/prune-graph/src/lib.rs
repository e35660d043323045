//! Graph-dependency analysis: a tracing backend that records the ops of any forward pass on
//! a dummy input, the dependency graph built from that trace, `Group`s of coupled channels
//! (hidden width, heads, FFN) and the serialisable `PruningPlan`.
//!
//! Not built yet: only the crate boundary exists.
