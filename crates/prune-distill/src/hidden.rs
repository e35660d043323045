//! Hidden-state loss: the mean squared error between a (projected) student hidden state and
//! a teacher hidden state, over every position of the batch or over its real tokens only
//! ([`TokenRows`]).
//!
//! With a token selection the rows of both states that do not count are zeroed once
//! ([`TokenRows::select`]), so the loss of any pair is `mse(p', t') · N / n` with N rows in
//! all and n counted, and its gradient `2 (p' − t') / (n · C)` is already zero on the rows
//! left out.

use crate::config::TokenSelection;
use crate::error::{DistillError, Result};
use prune_tensor::{Backend, Shape, Tensor};

/// The rows (tokens) of `[N, C]` hidden states that the loss counts.
#[derive(Clone, Debug)]
pub struct TokenRows<T> {
    /// 1 for a counted row, 0 otherwise, `[N]`; `None` when every row counts.
    keep: Option<T>,
    /// N, all rows.
    rows: usize,
    /// Rows counted.
    counted: usize,
}

impl<T: Clone> TokenRows<T> {
    /// The rows of a batch whose attention mask is `attention_mask` (`[B·T]`, 1 for real
    /// tokens) under `selection`.
    pub fn new<B: Backend<Tensor = T>>(
        b: &B,
        selection: TokenSelection,
        attention_mask: &[u32],
    ) -> Result<Self> {
        let rows = attention_mask.len();
        let counted = attention_mask.iter().filter(|&&m| m == 1).count();
        if rows == 0 || counted == 0 {
            return Err(DistillError::mismatch(
                "hidden-state loss",
                format!("a batch of {rows} positions has no real token"),
            ));
        }
        let keep = match selection {
            TokenSelection::All => None,
            TokenSelection::Real if counted == rows => None,
            TokenSelection::Real => {
                let flags: Vec<f32> = attention_mask
                    .iter()
                    .map(|&m| if m == 1 { 1.0 } else { 0.0 })
                    .collect();
                Some(b.upload(&Tensor::new([rows], flags)?)?)
            }
        };
        let counted = if keep.is_some() { counted } else { rows };
        Ok(TokenRows {
            keep,
            rows,
            counted,
        })
    }

    /// Rows counted.
    pub fn counted(&self) -> usize {
        self.counted
    }

    /// `x` (`[B, T, C]` or `[N, C]`) as `[N, C]` with the rows that do not count zeroed.
    pub fn select<B: Backend<Tensor = T>>(&self, b: &B, x: T) -> Result<T> {
        let shape = b.shape(&x).clone();
        let c = shape.last();
        if shape.numel() != self.rows * c {
            return Err(DistillError::mismatch(
                "hidden-state loss",
                format!(
                    "a hidden state of shape {shape} for a batch of {} positions",
                    self.rows
                ),
            ));
        }
        let x = b.reshape(x, Shape::from([self.rows, c]))?;
        Ok(match &self.keep {
            Some(k) => b.scale_rows_fwd(&x, k, 1)?,
            None => x,
        })
    }

    /// `N / n`: turns a mean over all rows into a mean over the counted rows.
    fn factor(&self) -> f64 {
        self.rows as f64 / self.counted as f64
    }

    /// The mean squared error over the counted rows of two selected states `[N, C]`.
    pub fn mse_fwd<B: Backend<Tensor = T>>(&self, b: &B, pred: &T, target: &T) -> Result<f64> {
        Ok(b.mse_fwd(pred, target)? * self.factor())
    }

    /// The gradient of `dl · mse` with respect to the selected `pred` (zero on the rows
    /// that do not count, so it is also the gradient of the unselected state).
    pub fn mse_bwd<B: Backend<Tensor = T>>(
        &self,
        b: &B,
        pred: &T,
        target: &T,
        dl: f64,
    ) -> Result<T> {
        Ok(b.mse_bwd(pred, target, dl * self.factor())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prune_tensor::CpuBackend;
    use prune_tensor::gradcheck::{GradCheck, uniform};
    use prune_tensor::rng::Rng;

    #[test]
    fn gradient_matches_central_differences_for_both_selections() {
        let b = CpuBackend::<f64>::new();
        let mut rng = Rng::new(3);
        let mask = [1, 1, 1, 0, 1, 1, 0, 0];
        for selection in [TokenSelection::Real, TokenSelection::All] {
            let rows = TokenRows::new(&b, selection, &mask).unwrap();
            let x = uniform([2, 4, 3], -1.0, 1.0, &mut rng);
            let t = rows
                .select(&b, uniform([2, 4, 3], -1.0, 1.0, &mut rng))
                .unwrap();
            let loss = |x: &Tensor<f64>| {
                let p = rows.select(&b, x.clone()).unwrap();
                0.3 * rows.mse_fwd(&b, &p, &t).unwrap()
            };
            let p = rows.select(&b, x.clone()).unwrap();
            let g = rows
                .mse_bwd(&b, &p, &t, 0.3)
                .unwrap()
                .reshape([2, 4, 3])
                .unwrap();
            GradCheck::default().run(&x, &g, loss, &mut rng).unwrap();
        }
    }

    #[test]
    fn real_tokens_ignore_padding_and_average_over_real_ones() {
        let b = CpuBackend::<f64>::new();
        let mask = [1, 1, 0, 0];
        let p = Tensor::new([4, 2], vec![1.0, 1.0, 1.0, 1.0, 9.0, 9.0, 9.0, 9.0]).unwrap();
        let t = Tensor::zeros([4, 2]);
        let real = TokenRows::new(&b, TokenSelection::Real, &mask).unwrap();
        let (ps, ts) = (
            real.select(&b, p.clone()).unwrap(),
            real.select(&b, t.clone()).unwrap(),
        );
        assert_eq!(real.mse_fwd(&b, &ps, &ts).unwrap(), 1.0);
        let all = TokenRows::new(&b, TokenSelection::All, &mask).unwrap();
        assert_eq!(all.mse_fwd(&b, &p, &t).unwrap(), 41.0);
        assert!(TokenRows::new(&b, TokenSelection::Real, &[0, 0]).is_err());
        let e = real.select(&b, Tensor::zeros([3, 2])).unwrap_err();
        assert!(e.to_string().contains("4 positions"), "{e}");
    }
}
