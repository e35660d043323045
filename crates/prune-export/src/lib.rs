//! Exports of (pruned) BERT checkpoints for the tools users deploy with: an ONNX graph with
//! the checkpoint's own per-layer shapes ([`to_onnx`]) for ONNX Runtime, and a transformers
//! checkpoint for FFN widths that differ between layers ([`to_transformers`]).

mod error;
mod graph;
mod onnx;
pub mod proto;
mod transformers;

pub use error::{ExportError, Result};
pub use graph::{IR_VERSION, OPSET};
pub use onnx::to_onnx;
pub use transformers::to_transformers;
