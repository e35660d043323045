//! GELU and tanh on the GPU (`activation.cu`).

use super::{CudaBackend, CudaTensor};
use crate::ActivationOps;
use crate::error::Result;
use prune_kernels::ACTIVATION;

impl ActivationOps for CudaBackend {
    fn gelu_fwd(&self, x: &CudaTensor) -> Result<CudaTensor> {
        self.unary("gelu_fwd", ACTIVATION, "gelu_fwd_f32", x)
    }

    fn gelu_bwd(&self, x: &CudaTensor, dy: &CudaTensor) -> Result<CudaTensor> {
        self.binary("gelu_bwd", ACTIVATION, "gelu_bwd_f32", x, dy)
    }

    fn tanh_fwd(&self, x: &CudaTensor) -> Result<CudaTensor> {
        self.unary("tanh_fwd", ACTIVATION, "tanh_fwd_f32", x)
    }

    fn tanh_bwd(&self, y: &CudaTensor, dy: &CudaTensor) -> Result<CudaTensor> {
        self.binary("tanh_bwd", ACTIVATION, "tanh_bwd_f32", y, dy)
    }
}
