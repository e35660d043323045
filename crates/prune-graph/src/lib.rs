//! Graph-dependency analysis for structured pruning: a tracing backend that records the ops
//! of any forward pass on a dummy input ([`trace`]), the dependency analysis of that trace
//! ([`deps`]), [`Group`]s of coupled channels (hidden width, attention heads, FFN neurons)
//! named from where the model says its parameters sit ([`naming`]), and the serialisable
//! [`PruningPlan`]. It knows no model: a model traces itself on [`TraceBackend`] and names
//! its parameters' places (`prune_transformer::groups` does both for BERT).

pub mod deps;
pub mod error;
pub mod group;
pub mod naming;
pub mod plan;
pub mod trace;

pub use error::{GraphError, Result};
pub use group::{Group, GroupKind, Member, Role, dead_in_any};
pub use plan::{GroupPlan, PruningPlan};
pub use trace::{SymTensor, Trace, TraceBackend};
