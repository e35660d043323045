//! GELU (erf and tanh forms), ReLU and tanh on the GPU (`activation.cu`).

use super::launch::{self, launch};
use super::{CudaBackend, CudaTensor, int};
use crate::error::Result;
use crate::{ActivationOps, checks};
use prune_kernels::ACTIVATION;

impl ActivationOps for CudaBackend {
    fn gelu_fwd(&self, x: &CudaTensor) -> Result<CudaTensor> {
        self.unary("gelu_fwd", ACTIVATION, "gelu_fwd_f32", x)
    }

    fn bias_gelu_fwd(&self, x: &mut CudaTensor, bias: &CudaTensor) -> Result<CudaTensor> {
        const OP: &str = "bias_gelu_fwd";
        checks::row_vector(OP, &x.shape, &bias.shape)?;
        let (n, c) = (int(OP, x.shape.numel())?, int(OP, x.shape.last())?);
        let mut y = self.alloc(OP, x.shape.clone())?;
        launch!(self, OP, ACTIVATION, "bias_gelu_fwd_f32", launch::elementwise(n as usize);
            &mut x.data, &bias.data, &mut y.data, &n, &c)?;
        Ok(y)
    }

    fn gelu_bwd(&self, x: &CudaTensor, dy: &CudaTensor) -> Result<CudaTensor> {
        self.binary("gelu_bwd", ACTIVATION, "gelu_bwd_f32", x, dy)
    }

    fn gelu_tanh_fwd(&self, x: &CudaTensor) -> Result<CudaTensor> {
        self.unary("gelu_tanh_fwd", ACTIVATION, "gelu_tanh_fwd_f32", x)
    }

    fn gelu_tanh_bwd(&self, x: &CudaTensor, dy: &CudaTensor) -> Result<CudaTensor> {
        self.binary("gelu_tanh_bwd", ACTIVATION, "gelu_tanh_bwd_f32", x, dy)
    }

    fn relu_fwd(&self, x: &CudaTensor) -> Result<CudaTensor> {
        self.unary("relu_fwd", ACTIVATION, "relu_fwd_f32", x)
    }

    fn relu_bwd(&self, x: &CudaTensor, dy: &CudaTensor) -> Result<CudaTensor> {
        self.binary("relu_bwd", ACTIVATION, "relu_bwd_f32", x, dy)
    }

    fn tanh_fwd(&self, x: &CudaTensor) -> Result<CudaTensor> {
        self.unary("tanh_fwd", ACTIVATION, "tanh_fwd_f32", x)
    }

    fn tanh_bwd(&self, y: &CudaTensor, dy: &CudaTensor) -> Result<CudaTensor> {
        self.binary("tanh_bwd", ACTIVATION, "tanh_bwd_f32", y, dy)
    }
}
