//! The fused AdamW step on the GPU (`optim.cu`), with the CPU's mask semantics: the mask
//! gates the gradient, so masked entries are only decayed.

use super::launch::{self, launch};
use super::{CudaBackend, CudaTensor, int};
use crate::checks;
use crate::error::Result;
use crate::{AdamW, OptimOps};
use prune_kernels::OPTIM;

impl OptimOps for CudaBackend {
    fn adamw_step(
        &self,
        param: &mut CudaTensor,
        grad: &CudaTensor,
        m: &mut CudaTensor,
        v: &mut CudaTensor,
        hp: &AdamW,
        mask: Option<&CudaTensor>,
    ) -> Result<()> {
        const OP: &str = "adamw_step";
        checks::same_shape(OP, &param.shape, &grad.shape)?;
        checks::same_shape(OP, &param.shape, &m.shape)?;
        checks::same_shape(OP, &param.shape, &v.shape)?;
        if let Some(mk) = mask {
            checks::same_shape(OP, &param.shape, &mk.shape)?;
        }
        checks::adamw_step(hp.step)?;
        let n = int(OP, param.shape.numel())?;
        let t = hp.step as i32;
        let bc1 = 1.0 - hp.beta1.powi(t);
        let bc2 = 1.0 - hp.beta2.powi(t);
        let (b1, b2) = (hp.beta1 as f32, hp.beta2 as f32);
        let decay = (1.0 - hp.lr * hp.weight_decay) as f32;
        let step_size = (hp.lr / bc1) as f32;
        let (eps, inv_sqrt_bc2) = (hp.eps as f32, (1.0 / bc2.sqrt()) as f32);
        let has_mask = i32::from(mask.is_some());
        let mask = mask.map_or(&grad.data, |mk| &mk.data);
        launch!(self, OP, OPTIM, "adamw_step_f32", launch::elementwise(n as usize);
            &mut param.data, &grad.data, &mut m.data, &mut v.data, mask, &has_mask,
            &b1, &b2, &decay, &step_size, &eps, &inv_sqrt_bc2, &n)
    }
}
