//! Least-squares fit of an affine map `y ≈ x · Wᵀ + b` from rows of student hidden states
//! to rows of teacher hidden states (host, f64, LAPACK through `ndarray-linalg`), the
//! default initialisation of a projection. Several targets sharing the same inputs are
//! solved together (one factorisation).
//!
//! With `A = [X, 1]` (`[n, d_in + 1]`) the solution minimises
//! `‖A·Θ − Y‖² + λ‖Θ‖²`, `λ = ridge · ‖A‖²_F / (d_in + 1)`: rows `√λ·I` are stacked
//! under `A` and zeros under `Y`, which keeps the problem well posed when a batch has fewer
//! tokens than the student is wide.

use ndarray::{Array2, Axis, s};
use ndarray_linalg::LeastSquaresSvd;
use prune_tensor::Tensor;

/// An affine map and how well it fits.
#[derive(Clone, Debug, PartialEq)]
pub struct AffineFit {
    /// `[d_out, d_in]`, PyTorch layout.
    pub weight: Tensor<f32>,
    /// `[d_out]`
    pub bias: Tensor<f32>,
    /// Mean squared residual over the fitted rows and outputs (ridge term excluded).
    pub mse: f64,
}

/// The rows of a `[N, C]` host tensor flagged in `keep`, as an f64 matrix `[n, C]`.
fn rows_of(t: &Tensor<f32>, keep: &[bool]) -> Result<Array2<f64>, String> {
    let c = t.shape().last();
    if t.shape().rank() < 1 || t.shape().numel() != keep.len() * c {
        return Err(format!(
            "a tensor of shape {} does not have {} rows",
            t.shape(),
            keep.len()
        ));
    }
    let data: Vec<f64> = t
        .data()
        .chunks(c.max(1))
        .zip(keep)
        .filter(|(_, k)| **k)
        .flat_map(|(row, _)| row.iter().map(|&v| f64::from(v)))
        .collect();
    let n = data.len() / c.max(1);
    Array2::from_shape_vec((n, c), data).map_err(|e| e.to_string())
}

/// Fits one affine map from the rows `keep` of `x` (`[N, d_in]`, any leading dims) to the
/// same rows of each of `targets` (`[N, d_out]` each).
pub fn fit_affine(
    x: &Tensor<f32>,
    targets: &[&Tensor<f32>],
    keep: &[bool],
    ridge: f64,
) -> Result<Vec<AffineFit>, String> {
    let xs = rows_of(x, keep)?;
    let (n, d_in) = xs.dim();
    if n == 0 {
        return Err("no rows to fit".into());
    }
    let ys = targets
        .iter()
        .map(|t| rows_of(t, keep))
        .collect::<Result<Vec<_>, _>>()?;
    let d_out = ys.first().map_or(0, |y| y.ncols());
    if ys.iter().any(|y| y.ncols() != d_out) {
        return Err("targets differ in width".into());
    }
    let k = d_in + 1;
    let mut a = Array2::<f64>::ones((n + k, k));
    a.slice_mut(s![..n, ..d_in]).assign(&xs);
    let lambda = ridge * a.slice(s![..n, ..]).iter().map(|v| v * v).sum::<f64>() / k as f64;
    let mut tail = a.slice_mut(s![n.., ..]);
    tail.fill(0.0);
    tail.diag_mut().fill(lambda.sqrt());
    let mut rhs = Array2::<f64>::zeros((n + k, d_out * ys.len()));
    for (i, y) in ys.iter().enumerate() {
        rhs.slice_mut(s![..n, i * d_out..(i + 1) * d_out]).assign(y);
    }
    let solved = a.least_squares(&rhs).map_err(|e| e.to_string())?.solution;
    let fitted = a.slice(s![..n, ..]).dot(&solved);
    ys.iter()
        .enumerate()
        .map(|(i, y)| {
            let theta = solved.slice(s![.., i * d_out..(i + 1) * d_out]);
            let pred = fitted.slice(s![.., i * d_out..(i + 1) * d_out]);
            let sq: f64 = (&pred - y).iter().map(|v| v * v).sum();
            let weight = theta
                .slice(s![..d_in, ..])
                .t()
                .iter()
                .map(|&v| v as f32)
                .collect();
            let bias = theta
                .index_axis(Axis(0), d_in)
                .iter()
                .map(|&v| v as f32)
                .collect();
            let mse = sq / (n * d_out).max(1) as f64;
            if !mse.is_finite() {
                return Err("the solution is not finite".to_string());
            }
            Ok(AffineFit {
                weight: Tensor::new([d_out, d_in], weight).map_err(|e| e.to_string())?,
                bias: Tensor::new([d_out], bias).map_err(|e| e.to_string())?,
                mse,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prune_tensor::rng::Rng;

    #[test]
    fn recovers_an_affine_map_and_ranks_targets() {
        let mut rng = Rng::new(11);
        let (n, d_in, d_out) = (40, 3, 2);
        let w = [0.5f32, -1.0, 2.0, 1.5, 0.0, -0.25];
        let bias = [0.3f32, -0.7];
        let x = Tensor::from_fn([n, d_in], |_| rng.range(-1.0, 1.0) as f32);
        let exact = Tensor::from_fn([n, d_out], |i| {
            let (r, o) = (i / d_out, i % d_out);
            (0..d_in)
                .map(|j| x.data()[r * d_in + j] * w[o * d_in + j])
                .sum::<f32>()
                + bias[o]
        });
        let noise = Tensor::from_fn([n, d_out], |_| rng.range(-1.0, 1.0) as f32);
        let mut keep = vec![true; n];
        keep[3] = false;
        let fits = fit_affine(&x, &[&noise, &exact], &keep, 0.0).unwrap();
        assert!(fits[1].mse < 1e-10, "{}", fits[1].mse);
        assert!(fits[0].mse > 0.1);
        for (a, e) in fits[1].weight.data().iter().zip(w) {
            assert!((a - e).abs() < 1e-4, "{a} vs {e}");
        }
        for (a, e) in fits[1].bias.data().iter().zip(bias) {
            assert!((a - e).abs() < 1e-4, "{a} vs {e}");
        }
        // Fewer rows than unknowns: the ridge keeps it well posed.
        let two_rows: Vec<bool> = (0..n).map(|i| i < 2).collect();
        let few = fit_affine(&x, &[&exact], &two_rows, 1e-3).unwrap();
        assert!(few[0].mse.is_finite());
        assert!(fit_affine(&x, &[&exact], &vec![false; n], 0.0).is_err());
        assert!(fit_affine(&x, &[&exact], &[true; 3], 0.0).is_err());
    }
}
