//! `ScoreAdam`: the separate Adam of movement scores (PyTorch's `Adam`: bias-corrected
//! moments, no weight decay), on host vectors of f64.

use crate::error::{PrunerError, Result};
use prune_tensor::{AdamW, CpuBackend, OptimOps, Tensor};

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

    /// One step: `s -= lr · m̂ / (sqrt(v̂) + eps)` for every score (the backend's AdamW
    /// update without weight decay, in f64, on the vectors moved in and out: no copy but the
    /// gradient's). Scores, gradients and moments must have the same lengths.
    pub fn step(&mut self, scores: &mut [Vec<f64>], grads: &[Vec<f64>]) -> Result<()> {
        let lens = |vs: &[Vec<f64>]| vs.iter().map(Vec::len).collect::<Vec<_>>();
        let expected = lens(&self.m);
        if lens(scores) != expected || lens(grads) != expected || lens(&self.v) != expected {
            return Err(PrunerError::Settings(format!(
                "score Adam over vectors of lengths {expected:?} got scores {:?} and \
                 gradients {:?}",
                lens(scores),
                lens(grads)
            )));
        }
        self.step += 1;
        let hp = AdamW {
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: 0.0,
            step: self.step,
        };
        let cpu = CpuBackend::<f64>::new();
        let moved = |v: &mut Vec<f64>| Tensor::new([v.len()], std::mem::take(v));
        for (((s, g), m), v) in scores
            .iter_mut()
            .zip(grads)
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            let (mut st, mut mt, mut vt) = (moved(s)?, moved(m)?, moved(v)?);
            let gt = Tensor::new([g.len()], g.clone())?;
            cpu.adamw_step(&mut st, &gt, &mut mt, &mut vt, &hp, None)?;
            (*s, *m, *v) = (st.into_data(), mt.into_data(), vt.into_data());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_step_moves_by_lr_against_the_gradient_sign() {
        let mut adam = ScoreAdam::new(1e-2, &[3]);
        let mut s = vec![vec![0.0, 0.0, 0.0]];
        adam.step(&mut s, &[vec![2.0, -0.5, 0.0]]).unwrap();
        assert!((s[0][0] + 1e-2).abs() < 1e-9);
        assert!((s[0][1] - 1e-2).abs() < 1e-9);
        assert_eq!(s[0][2], 0.0);
        // Mismatched lengths are refused before anything moves.
        let before = (s.clone(), adam.clone());
        assert!(adam.step(&mut s, &[vec![1.0; 2]]).is_err());
        assert_eq!((s, adam), before);
    }
}
