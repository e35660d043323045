//! Norm-aware fitting (beyond the paper): a sub-layer's sum is fitted as the LayerNorm after
//! it sees it. That LayerNorm removes each token's mean over channels, divides by the
//! token's standard deviation and scales channel `c` by `γ_c`, so an error it removes costs
//! nothing and one in a channel of large `γ` or a token of small spread costs more. Each
//! change `e_t` to a token's sum is weighed as `γ ⊙ (e_t − mean(e_t)) / σ_t`, `σ_t` the
//! unpruned sum's spread (the LayerNorm's own, linearised around it); the fit stays linear
//! in the scales.

use crate::error::Result;
use ndarray::Array1;
use prune_tensor::Tensor;

/// One sub-layer's LayerNorm as the fit weighs changes through it.
pub(super) struct NormView {
    /// `γ`, `[C]`.
    gamma: Vec<f32>,
    /// Per batch, per fitted row, `1 / σ_t` of the unpruned sum.
    inv_sigma: Vec<Vec<f32>>,
}

impl NormView {
    /// The view of the LayerNorm with `gamma` and `eps` after sums `sums[i] + bias` (per
    /// batch, `[N, C]`).
    pub(super) fn new(
        gamma: &Tensor<f32>,
        sums: &[&Tensor<f32>],
        bias: &Array1<f64>,
        eps: f64,
    ) -> Self {
        let c = gamma.data().len();
        let inv_sigma = sums
            .iter()
            .map(|t| {
                t.data()
                    .chunks(c)
                    .map(|row| {
                        let values = row.iter().zip(bias).map(|(v, b)| f64::from(*v) + b);
                        let mean = values.clone().sum::<f64>() / c as f64;
                        let var = values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / c as f64;
                        (1.0 / (var + eps).sqrt()) as f32
                    })
                    .collect()
            })
            .collect();
        NormView {
            gamma: gamma.data().to_vec(),
            inv_sigma,
        }
    }

    /// Rows of `t` (`[N, C]`, changes to batch `i`'s sums, each first shifted by `shift`
    /// when given) as the LayerNorm sees them.
    pub(super) fn rows(
        &self,
        i: usize,
        t: &Tensor<f32>,
        shift: Option<&Array1<f64>>,
    ) -> Result<Tensor<f32>> {
        let c = self.gamma.len();
        let mut data = Vec::with_capacity(t.data().len());
        for (row, s) in t.data().chunks(c).zip(&self.inv_sigma[i]) {
            let shifted: Vec<f64> = match shift {
                Some(d) => row.iter().zip(d).map(|(v, d)| f64::from(*v) + d).collect(),
                None => row.iter().map(|v| f64::from(*v)).collect(),
            };
            let mean = shifted.iter().sum::<f64>() / c as f64;
            data.extend(
                shifted
                    .iter()
                    .zip(&self.gamma)
                    .map(|(v, g)| ((v - mean) * f64::from(*g) * f64::from(*s)) as f32),
            );
        }
        Ok(Tensor::new(t.dims().to_vec(), data)?)
    }

    /// Rows of `g` (`[N, F]`, batch `i`'s FFN activations) times `1 / σ_t` of their row:
    /// with [`NormView::weight`], each neuron's contribution as the LayerNorm sees it.
    pub(super) fn scale_rows(&self, i: usize, g: &Tensor<f32>) -> Result<Tensor<f32>> {
        let f = g.dims().last().copied().unwrap_or(1).max(1);
        let data = g
            .data()
            .chunks(f)
            .zip(&self.inv_sigma[i])
            .flat_map(|(row, s)| row.iter().map(move |v| v * s))
            .collect();
        Ok(Tensor::new(g.dims().to_vec(), data)?)
    }

    /// The output projection `w` (`[C, F]`) with each column less its mean over channels,
    /// times `γ`: neuron `j` adds `g_tj` times column `j` to token `t`.
    pub(super) fn weight(&self, w: &Tensor<f32>) -> Result<Tensor<f32>> {
        let (c, f) = (self.gamma.len(), w.dims()[1]);
        let mut means = vec![0.0f64; f];
        for row in w.data().chunks(f) {
            means
                .iter_mut()
                .zip(row)
                .for_each(|(m, v)| *m += f64::from(*v));
        }
        means.iter_mut().for_each(|m| *m /= c as f64);
        let data = w
            .data()
            .chunks(f)
            .zip(&self.gamma)
            .flat_map(|(row, g)| {
                row.iter()
                    .zip(&means)
                    .map(move |(v, m)| ((f64::from(*v) - m) * f64::from(*g)) as f32)
            })
            .collect();
        Ok(Tensor::new(w.dims().to_vec(), data)?)
    }
}
