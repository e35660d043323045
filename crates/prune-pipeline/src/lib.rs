//! Stages and what a pruning run reports and exports, as a library: the heads stage
//! ([`heads`]: movement pruning, then surgery of the dead heads), the input and the output model
//! measured side by side ([`compare`]: metric, parameters, FLOPs, prune's latency
//! ([`latency`]) and ONNX Runtime's on their exports ([`ort`])), the report as data with
//! its Markdown and its figure ([`report`], [`plots`]), and the exports of the run's models
//! ([`exports`]: ONNX, and a transformers checkpoint when transformers can hold it).

pub mod compare;
pub mod error;
pub mod exports;
pub mod heads;
pub mod latency;
pub mod ort;
pub mod plots;
pub mod report;

pub use error::{PipelineError, Result};
