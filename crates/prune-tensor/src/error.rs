//! `TensorError`: what went wrong in a tensor op, with the op and the shapes involved.

use crate::Shape;

/// Errors of tensor construction and ops. Shape errors name the op and every shape involved.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TensorError {
    /// The operands' shapes do not fit the op.
    #[error("{op}: incompatible shapes {shapes:?}: {why}")]
    Shape {
        /// The op that refused its operands, e.g. `matmul_fwd`.
        op: &'static str,
        /// The shapes of the operands, in argument order.
        shapes: Vec<Shape>,
        /// What was expected.
        why: String,
    },
    /// A buffer's length does not match the shape it is given.
    #[error("a tensor of shape {shape} needs {} elements, got {len}", shape.numel())]
    Length {
        /// The requested shape.
        shape: Shape,
        /// The buffer length supplied.
        len: usize,
    },
    /// An index (token id, label) is out of range.
    #[error("{op}: index {index} out of range 0..{bound}")]
    Index {
        /// The op.
        op: &'static str,
        /// The offending index.
        index: i64,
        /// The exclusive upper bound.
        bound: usize,
    },
    /// A scalar argument is outside its domain (dropout p, temperature, eps...).
    #[error("{op}: {what}")]
    Argument {
        /// The op.
        op: &'static str,
        /// What was wrong.
        what: String,
    },
    /// A GPU backend could not do its work: no driver or library, or an allocation, a copy, a
    /// kernel launch or a cuBLAS call failed.
    #[error("{op}: device error: {what}")]
    Device {
        /// The op or step, e.g. `CudaBackend::new` or `softmax_fwd`.
        op: &'static str,
        /// What the driver or library reported.
        what: String,
    },
    /// NVRTC refused a kernel file.
    #[error("NVRTC could not compile {file}: {log}")]
    KernelCompile {
        /// The kernel file, e.g. `softmax.cu`.
        file: &'static str,
        /// NVRTC's log (or why the compiler could not run).
        log: String,
    },
}

/// Result of tensor operations.
pub type Result<T> = std::result::Result<T, TensorError>;

/// Builds a [`TensorError::Shape`] for `op` from borrowed shapes.
pub fn shape_error(op: &'static str, shapes: &[&Shape], why: impl Into<String>) -> TensorError {
    TensorError::Shape {
        op,
        shapes: shapes.iter().map(|s| (*s).clone()).collect(),
        why: why.into(),
    }
}
