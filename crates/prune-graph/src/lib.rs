//! Graph-dependency analysis for structured pruning: a tracing backend that records the ops
//! of any forward pass on a dummy input ([`trace`]), the dependency analysis of that trace
//! ([`deps`]), [`Group`]s of coupled channels (hidden width, attention heads, FFN neurons)
//! found that way for BERT ([`bert`]), and the serialisable [`PruningPlan`].

pub mod bert;
pub mod deps;
pub mod error;
pub mod group;
pub mod plan;
pub mod trace;

pub use bert::{bert_groups, model_groups, trace_bert};
pub use error::{GraphError, Result};
pub use group::{Group, GroupKind, Member, Role, dead_in_any};
pub use plan::{GroupPlan, PruningPlan};
pub use trace::{SymTensor, Trace, TraceBackend};
