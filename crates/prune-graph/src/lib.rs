//! Graph-dependency analysis for structured pruning: a tracing backend that records the ops
//! of any forward pass on a dummy input, the dependency analysis built from that trace,
//! [`Group`]s of coupled channels (hidden width, attention heads, FFN neurons) and the
//! serialisable [`PruningPlan`].

pub mod error;
pub mod group;
pub mod plan;

pub use error::{GraphError, Result};
pub use group::{Group, GroupKind, Member, Role};
pub use plan::{GroupPlan, PruningPlan};
