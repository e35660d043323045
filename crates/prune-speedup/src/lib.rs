//! Speedup: masks become a [`PruningPlan`] ([`plan_from_masks`]), and surgery ([`apply`])
//! physically removes every member of every planned group, as found by tracing the model
//! (`prune-graph`): Q/K/V rows and attention-output columns per head, FFN rows and columns,
//! and the hidden width through embeddings, every residual writer and reader, every
//! LayerNorm and the pooler's input. Optimizer state and masks are cut alike. A plan can be
//! simulated on the dense model with masks ([`plan_masks`], [`mask_model`]) whose function
//! is the cut model's, and [`PruningReport`] gives parameters and FLOPs before and after.

pub mod config;
pub mod error;
pub mod mask_plan;
pub mod report;
pub mod slice;
pub mod surgery;

pub use config::planned_config;
pub use error::{Result, SpeedupError};
pub use mask_plan::{PlanMasks, mask_model, masked_but_kept, plan_from_masks, plan_masks};
pub use prune_graph::{Group, GroupKind, GroupPlan, PruningPlan};
pub use report::{ModelStats, PruningReport, widest_hidden_within};
pub use surgery::{apply, prune_heads};
