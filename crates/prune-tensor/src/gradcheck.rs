//! Finite-difference gradient checks in f64 (central differences on sampled coordinates),
//! used by every backward test in the workspace.

use crate::Tensor;
use crate::rng::Rng;

/// Settings of a gradient check.
#[derive(Clone, Copy, Debug)]
pub struct GradCheck {
    /// Step of the central difference.
    pub eps: f64,
    /// Largest accepted relative error `|a − n| / max(|a|, |n|, floor)`.
    pub tol: f64,
    /// Denominator floor, so gradients that are zero up to rounding compare absolutely.
    pub floor: f64,
    /// How many coordinates to probe (all when the tensor is smaller).
    pub samples: usize,
}

impl Default for GradCheck {
    fn default() -> Self {
        GradCheck {
            eps: 1e-6,
            tol: 1e-5,
            floor: 1e-3,
            samples: 24,
        }
    }
}

/// A coordinate where the analytic and numeric gradients disagree.
#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    /// Flat index of the coordinate.
    pub index: usize,
    /// The backward's value.
    pub analytic: f64,
    /// The central difference.
    pub numeric: f64,
    /// Their relative error.
    pub rel_error: f64,
}

impl GradCheck {
    /// Compares `analytic` (the backward's gradient of `loss` at `x`) with central
    /// differences of `loss` on sampled coordinates. Returns the largest relative error, or
    /// the worst mismatching coordinate.
    pub fn run(
        &self,
        x: &Tensor<f64>,
        analytic: &Tensor<f64>,
        mut loss: impl FnMut(&Tensor<f64>) -> f64,
        rng: &mut Rng,
    ) -> Result<f64, Mismatch> {
        assert_eq!(
            x.shape(),
            analytic.shape(),
            "gradient shape must match input shape"
        );
        let n = x.shape().numel();
        let coords: Vec<usize> = if n <= self.samples {
            (0..n).collect()
        } else {
            (0..self.samples).map(|_| rng.below(n)).collect()
        };
        let mut worst = Mismatch {
            index: 0,
            analytic: 0.0,
            numeric: 0.0,
            rel_error: 0.0,
        };
        let mut probe = x.clone();
        for i in coords {
            let orig = probe.data()[i];
            probe.data_mut()[i] = orig + self.eps;
            let up = loss(&probe);
            probe.data_mut()[i] = orig - self.eps;
            let down = loss(&probe);
            probe.data_mut()[i] = orig;
            let numeric = (up - down) / (2.0 * self.eps);
            let a = analytic.data()[i];
            let rel = (a - numeric).abs() / a.abs().max(numeric.abs()).max(self.floor);
            if rel >= worst.rel_error {
                worst = Mismatch {
                    index: i,
                    analytic: a,
                    numeric,
                    rel_error: rel,
                };
            }
        }
        if worst.rel_error < self.tol {
            Ok(worst.rel_error)
        } else {
            Err(worst)
        }
    }
}

/// A tensor of uniform draws in `[lo, hi)`.
pub fn uniform(shape: impl Into<crate::Shape>, lo: f64, hi: f64, rng: &mut Rng) -> Tensor<f64> {
    Tensor::from_fn(shape, |_| rng.range(lo, hi))
}

/// `Σ a ⊙ b`: turns an output and a fixed random upstream gradient into a scalar loss.
pub fn dot(a: &Tensor<f64>, b: &Tensor<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape(), "dot needs equal shapes");
    a.data().iter().zip(b.data()).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_right_gradient_and_rejects_a_wrong_one() {
        let mut rng = Rng::new(3);
        let x = uniform([10], -1.0, 1.0, &mut rng);
        let cube_sum = |x: &Tensor<f64>| x.data().iter().map(|v| v * v * v).sum::<f64>();
        let right = Tensor::from_fn([10], |i| 3.0 * x.data()[i] * x.data()[i]);
        assert!(
            GradCheck::default()
                .run(&x, &right, cube_sum, &mut rng)
                .is_ok()
        );
        let mut wrong = right.clone();
        wrong.data_mut()[4] *= 1.001;
        let err = GradCheck::default()
            .run(&x, &wrong, cube_sum, &mut rng)
            .unwrap_err();
        assert_eq!(err.index, 4);
    }
}
