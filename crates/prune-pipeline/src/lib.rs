//! The `prune` tool as a library: every stage and the whole pipeline, callable from Rust
//! code with typed options ([`Command`]; [`execute`] checks and runs one on its device).
//!
//! - What a stage reads ([`source`]: a checkpoint and a GLUE task) and takes
//!   ([`options`]: training options), and what it writes ([`stage_output`]).
//! - The stages: [`finetune`] (and evaluation), [`heads`] (movement pruning, then surgery of
//!   the dead heads), [`distill`], [`ffn`] (Taylor pruning of the FFN or the hidden width
//!   while distilling), and the retraining-free [`post_train`].
//! - The pipeline ([`run`]) over a recipe ([`recipe`]: TOML → each stage's options).
//! - What a run reports: the input and the output model measured side by side
//!   ([`compare`]: metric, parameters, FLOPs, prune's latency ([`latency`]) and ONNX
//!   Runtime's on their exports ([`ort`])), the report as data with its Markdown and its
//!   figure ([`report`], [`plots`]), and the exports ([`exports`]: ONNX, and a
//!   transformers checkpoint when transformers can hold it).
//! - Commands on one checkpoint: [`inspect`] (and speedup from saved masks),
//!   [`exports::ExportOptions`], [`latency::BenchOptions`].
//!
//! Every option type is both the flags of its `prune` command (clap) and, for the
//! pipeline's stages, a recipe table (serde), with one default for both.

pub mod command;
pub mod compare;
pub mod device;
pub mod distill;
pub mod error;
pub mod exports;
pub mod ffn;
pub mod finetune;
pub mod heads;
pub mod inspect;
pub mod latency;
pub mod options;
pub mod ort;
pub mod plots;
pub mod post_train;
pub mod recipe;
pub mod report;
pub mod run;
pub mod source;
pub mod stage_output;

pub use command::{Command, execute, run_in_precision};
pub use error::{PipelineError, Result};
