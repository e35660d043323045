//! Pruning algorithms with NNI's semantics, as a library the CLI composes: `config_list`
//! parsing and validation ([`ConfigList`], [`Selection`]), masks at metric granularity
//! ([`Masks`]), sparsity allocation (per weight, global, dependency-aware), schedules
//! (cubic, AGP), the level (magnitude), movement and Taylor pruners, and the head rule
//! that turns attention masks into pruned heads.

pub mod allocate;
pub mod config;
mod error;
pub mod granularity;
pub mod masks;
pub mod ops;
pub mod schedule;
pub mod select;

pub use config::{ConfigEntry, ConfigList};
pub use error::{PrunerError, Result, Suggestion};
pub use granularity::{Blocking, Granularity};
pub use masks::{Masks, ParamMask};
pub use ops::{Module, OpType, modules, modules_of, shapes_of};
pub use schedule::{Cubic, Growth, Iterative};
pub use select::{ChannelAxis, EntrySelection, Selection, Target};
