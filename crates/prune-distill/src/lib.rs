//! Distillation of a BERT teacher into a (pruned) student inside the `Trainer`: the logit
//! loss with temperature ([`LogitLoss`]), the hidden-state loss over real tokens or every
//! position ([`TokenRows`]), learned projections `d_s → d_t` initialised by least squares
//! or at random ([`Projection`], [`ProjectionSet`]), NNI's dynamic and CoFi's ordered layer
//! mappings ([`LayerMapping`]), the [`Distiller`] objective, and the iterative loop that
//! prunes FFN neurons (and the hidden width) by Taylor importance, cuts the live student
//! and its optimizer state, and continues distilling ([`IterativePruning`]); both save what
//! the trainer's checkpoints do not hold, so a run resumes where it stopped.

pub mod config;
pub mod distiller;
mod error;
pub mod hidden;
pub mod iterative;
pub mod logits;
pub mod lstsq;
pub mod mapping;
pub mod projection;
pub mod projection_set;
pub mod rounds;
pub mod stats;

pub use config::{DistillConfig, ProjectionConfig, ProjectionInit, ProjectionMode, TokenSelection};
pub use distiller::Distiller;
pub use error::{DistillError, Result};
pub use hidden::TokenRows;
pub use iterative::{IterativeConfig, IterativePruning, MomentPolicy, Round, RoundGrowth};
pub use logits::LogitLoss;
pub use mapping::{LayerMapping, LayerPair, LossTable, cofi_teacher_states};
pub use projection::Projection;
pub use projection_set::ProjectionSet;
pub use stats::{DistillStats, MappingHistogram, StatsLog};
