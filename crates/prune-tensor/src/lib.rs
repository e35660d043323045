//! Tensors and the `Backend` trait of prune, with a complete CPU backend (rayon, the
//! pure-Rust `gemm` crate and, where the system has it, OpenBLAS for f32 GEMMs;
//! ndarray only for views of a tensor) providing the forward and backward of every op a BERT encoder,
//! its classifier heads and its training need.
//!
//! Models are written once over [`Backend`]; [`CpuBackend<f32>`] does the work,
//! [`CpuBackend<f64>`] serves finite-difference gradient checks ([`gradcheck`]), and
//! [`reference`] holds slow scalar versions of every op for tests. With the feature `cuda`,
//! `CudaBackend` runs the same ops on an NVIDIA GPU.

mod backend;
pub mod checks;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
mod element;
mod error;
pub mod gradcheck;
pub mod reference;
pub mod rng;
mod shape;
mod tensor;

pub use backend::{
    Activation, ActivationOps, AdamW, AttentionOps, AttentionSpec, Backend, ElementwiseOps,
    IndexOps, LayerNormStats, LinearOps, LossOps, MatmulOps, NormOps, OptimOps, SoftmaxOps,
    Storage, Transpose,
};
pub use cpu::CpuBackend;
#[cfg(feature = "cuda")]
pub use cuda::{CudaBackend, CudaOptions, CudaTensor};
pub use element::Element;
pub use error::{Result, TensorError, shape_error};
pub use shape::Shape;
pub use tensor::Tensor;
