//! Logit distillation: `T² · KL(softmax(z_T/T) ‖ softmax(z_S/T))` averaged over the batch
//! (PyTorch's `batchmean`, as NNI and CoFi compute it), and for a single output (regression)
//! the mean squared difference of the two outputs, since a softmax over one class carries
//! no signal.

use crate::error::{DistillError, Result};
use prune_tensor::Backend;

/// The logit distillation loss at a temperature.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogitLoss {
    /// Softmax temperature T (> 0).
    pub temperature: f64,
}

impl LogitLoss {
    /// Checks that `student` and `teacher` are equal `[B, K]` shapes; returns K.
    fn classes<B: Backend>(
        &self,
        b: &B,
        student: &B::Tensor,
        teacher: &B::Tensor,
    ) -> Result<usize> {
        let (s, t) = (b.shape(student), b.shape(teacher));
        if s != t || s.rank() != 2 {
            return Err(DistillError::mismatch(
                "logit distillation",
                format!("student logits {s} and teacher logits {t} must be equal [B, K]"),
            ));
        }
        Ok(s.last())
    }

    /// The loss of `student` logits `[B, K]` against `teacher` logits `[B, K]`.
    pub fn forward<B: Backend>(
        &self,
        b: &B,
        student: &B::Tensor,
        teacher: &B::Tensor,
    ) -> Result<f64> {
        Ok(match self.classes(b, student, teacher)? {
            1 => b.mse_fwd(student, teacher)?,
            _ => b.kl_div_fwd(student, teacher, self.temperature)?,
        })
    }

    /// The gradient of `dl · loss` with respect to the student logits, `[B, K]`.
    pub fn backward<B: Backend>(
        &self,
        b: &B,
        student: &B::Tensor,
        teacher: &B::Tensor,
        dl: f64,
    ) -> Result<B::Tensor> {
        Ok(match self.classes(b, student, teacher)? {
            1 => b.mse_bwd(student, teacher, dl)?,
            _ => b.kl_div_bwd(student, teacher, self.temperature, dl)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prune_tensor::gradcheck::{GradCheck, uniform};
    use prune_tensor::rng::Rng;
    use prune_tensor::{CpuBackend, Tensor};

    #[test]
    fn gradient_matches_central_differences() {
        let b = CpuBackend::<f64>::new();
        let mut rng = Rng::new(7);
        for (k, t) in [(3, 2.0), (2, 1.0), (1, 2.0)] {
            let loss = LogitLoss { temperature: t };
            let s = uniform([4, k], -3.0, 3.0, &mut rng);
            let teacher = uniform([4, k], -3.0, 3.0, &mut rng);
            let g = loss.backward(&b, &s, &teacher, 1.7).unwrap();
            let f = |x: &Tensor<f64>| 1.7 * loss.forward(&b, x, &teacher).unwrap();
            GradCheck::default().run(&s, &g, f, &mut rng).unwrap();
        }
    }

    #[test]
    fn equal_logits_cost_nothing_and_shapes_must_agree() {
        let b = CpuBackend::<f64>::new();
        let mut rng = Rng::new(1);
        let z = uniform([3, 4], -2.0, 2.0, &mut rng);
        let loss = LogitLoss { temperature: 2.0 };
        assert!(loss.forward(&b, &z, &z).unwrap().abs() < 1e-12);
        let other = uniform([3, 5], -2.0, 2.0, &mut rng);
        let e = loss.forward(&b, &z, &other).unwrap_err();
        assert!(e.to_string().contains("[3, 5]"), "{e}");
    }
}
