//! Pruning algorithms with NNI's semantics, as a library the CLI composes: `config_list`
//! parsing and validation ([`ConfigList`], [`Selection`]), masks at metric granularity
//! ([`Masks`]), sparsity allocation (per weight, global, dependency-aware), schedules
//! (cubic, AGP), the level (magnitude), movement and Taylor pruners, and the head rule
//! that turns attention masks into pruned heads.

pub mod adam;
pub mod allocate;
pub mod config;
mod error;
pub mod granularity;
pub mod heads;
mod host;
pub mod level;
pub mod masks;
pub mod modules;
pub mod movement;
pub mod schedule;
pub mod select;
pub mod taylor;

pub use adam::ScoreAdam;
pub use config::{ConfigEntry, ConfigList};
pub use error::{PrunerError, Result, Suggestion};
pub use granularity::{Blocking, Granularity};
pub use heads::{
    HeadRule, ffn_config_list, ffn_sparse_ratios, kept_heads, pruned_heads, restore_heads,
};
pub use level::{LevelPruner, Norm};
pub use masks::{Masks, ParamMask};
pub use modules::{Module, OpType, modules, modules_of, shapes_of};
pub use movement::{MovementPruner, MovementSettings, score_gradient, sigmoid};
pub use schedule::{Cubic, Growth, Iterative};
pub use select::{ChannelAxis, EntrySelection, Selection, Target};
pub use taylor::{TaylorPruner, taylor_importance};
