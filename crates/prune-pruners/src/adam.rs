//! `ScoreAdam`: the separate Adam of movement scores (PyTorch's `Adam`: bias-corrected
//! moments, no weight decay), on host vectors of f64.

/// Adam state over a list of score vectors (serialised in a resumable run's state).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScoreAdam {
    /// Learning rate (NNI: 1e-2).
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to `sqrt(v̂)`.
    pub eps: f64,
    /// Steps taken.
    pub step: u64,
    m: Vec<Vec<f64>>,
    v: Vec<Vec<f64>>,
}

impl ScoreAdam {
    /// Zero moments for score vectors of the given lengths, betas (0.9, 0.999), eps 1e-8.
    pub fn new(lr: f64, lens: &[usize]) -> Self {
        let zeros: Vec<Vec<f64>> = lens.iter().map(|&n| vec![0.0; n]).collect();
        ScoreAdam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step: 0,
            m: zeros.clone(),
            v: zeros,
        }
    }

    /// One step: `s -= lr · m̂ / (sqrt(v̂) + eps)` for every score.
    pub fn step(&mut self, scores: &mut [Vec<f64>], grads: &[Vec<f64>]) {
        self.step += 1;
        let t = self.step as i32;
        let (bc1, bc2) = (1.0 - self.beta1.powi(t), 1.0 - self.beta2.powi(t));
        let (b1, b2) = (self.beta1, self.beta2);
        for (((s, g), m), v) in scores
            .iter_mut()
            .zip(grads)
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            for (((s, &g), m), v) in s.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                *s -= self.lr * (*m / bc1) / ((*v / bc2).sqrt() + self.eps);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_step_moves_by_lr_against_the_gradient_sign() {
        let mut adam = ScoreAdam::new(1e-2, &[3]);
        let mut s = vec![vec![0.0, 0.0, 0.0]];
        adam.step(&mut s, &[vec![2.0, -0.5, 0.0]]);
        assert!((s[0][0] + 1e-2).abs() < 1e-9);
        assert!((s[0][1] - 1e-2).abs() < 1e-9);
        assert_eq!(s[0][2], 0.0);
    }
}
