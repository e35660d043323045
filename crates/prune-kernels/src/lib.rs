//! CUDA C sources of prune's GPU kernels, one `.cu` per op family, exposed as `&'static str`
//! and compiled at run time by NVRTC (so building prune needs no CUDA toolkit).
//!
//! The kernels arrive with the CUDA backend of `prune-tensor`; until then this crate is empty.
