//! The normal equations of one sub-layer's fit, and their damped solve.

use super::TuneConfig;
use ndarray::{Array1, Array2};
use ndarray_linalg::SolveH;

/// The largest damping tried before a fit with scales out of range is called ill-posed.
const MAX_DAMPING: f64 = 1e3;

/// The normal equations of one sub-layer, summed over batches, with the sums a free bias
/// needs.
#[derive(Clone)]
pub(super) struct Normal {
    pub(super) gram: Array2<f64>,
    pub(super) rhs: Array1<f64>,
    pub(super) target: f64,
    /// Rows fitted.
    pub(super) rows: f64,
    /// Per unit, its contribution summed over the rows, `[n, C]`.
    pub(super) unit_sums: Array2<f64>,
    /// The target summed over the rows, `[C]`.
    pub(super) target_sum: Array1<f64>,
}

impl Normal {
    pub(super) fn new(n: usize, channels: usize) -> Self {
        Normal {
            gram: Array2::zeros((n, n)),
            rhs: Array1::zeros(n),
            target: 0.0,
            rows: 0.0,
            unit_sums: Array2::zeros((n, channels)),
            target_sum: Array1::zeros(channels),
        }
    }

    /// Adds the constant `d` to every row of the target.
    pub(super) fn shift_target(&mut self, d: &Array1<f64>) {
        self.rhs += &self.unit_sums.dot(d);
        self.target += 2.0 * d.dot(&self.target_sum) + self.rows * d.dot(d);
        self.target_sum.scaled_add(self.rows, d);
    }

    /// The equations with the bias eliminated: `G − M·Mᵀ/N`, `r − M·t/N`, `‖b‖² − ‖t‖²/N`
    /// (`M` the unit sums, `t` the target sum, `N` the rows).
    pub(super) fn centred(&self) -> Normal {
        let n = self.rows.max(1.0);
        let mut c = self.clone();
        c.gram -= &(self.unit_sums.dot(&self.unit_sums.t()) / n);
        c.rhs -= &(self.unit_sums.dot(&self.target_sum) / n);
        c.target -= self.target_sum.dot(&self.target_sum) / n;
        c
    }

    /// The bias that is best for the scales `s`: `(t − Mᵀ·s) / N`.
    pub(super) fn bias(&self, s: &Array1<f64>) -> Array1<f64> {
        (&self.target_sum - &self.unit_sums.t().dot(s)) / self.rows.max(1.0)
    }

    /// `sᵀ·G·s − 2·sᵀ·r + ‖b‖²`.
    pub(super) fn error(&self, s: &Array1<f64>) -> f64 {
        s.dot(&self.gram.dot(s)) - 2.0 * s.dot(&self.rhs) + self.target
    }

    /// The damped solution with the least damping, from `cfg.damping` up by factors of 10,
    /// whose scales all lie within `±max_scale`, and that damping; or why the problem is
    /// ill-posed (no unit contributes, a failed solve, or scales out of range even at
    /// [`MAX_DAMPING`]).
    pub(super) fn solve(
        &self,
        cfg: &TuneConfig,
    ) -> std::result::Result<(Array1<f64>, f64), String> {
        let n = self.rhs.len();
        let mean = self.gram.diag().sum() / n.max(1) as f64;
        if !(mean.is_finite() && mean > 0.0) {
            return Err("the units contribute nothing on the sample".into());
        }
        let mut damping = cfg.damping;
        loop {
            let lambda = damping * mean;
            let mut a = self.gram.clone();
            a.diag_mut().mapv_inplace(|v| v + lambda);
            let b = &self.rhs + lambda;
            let s = a
                .solveh(&b)
                .map_err(|e| format!("the solve failed ({e})"))?;
            match s
                .iter()
                .find(|v| !(v.is_finite() && v.abs() <= cfg.max_scale))
            {
                None => return Ok((s, damping)),
                Some(bad) if damping >= MAX_DAMPING => {
                    return Err(format!(
                        "a scale of {bad} is outside ±{} even at damping {damping}",
                        cfg.max_scale
                    ));
                }
                Some(_) => damping = (damping * 10.0).clamp(1e-4, MAX_DAMPING),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two nearly collinear units whose exact fit is (20, −18).
    fn collinear() -> Normal {
        let mut n = Normal::new(2, 1);
        n.gram = ndarray::arr2(&[[1.0, 0.999], [0.999, 1.0]]);
        n.rhs = n.gram.dot(&ndarray::arr1(&[20.0, -18.0]));
        n
    }

    #[test]
    fn scales_out_of_range_raise_the_damping_instead_of_stopping() {
        let cfg = |max_scale| TuneConfig {
            damping: 0.0,
            max_scale,
            ..TuneConfig::default()
        };
        let (s, damping) = collinear().solve(&cfg(100.0)).unwrap();
        assert_eq!(damping, 0.0);
        assert!(
            (s[0] - 20.0).abs() < 1e-6 && (s[1] + 18.0).abs() < 1e-6,
            "{s}"
        );
        let (s, damping) = collinear().solve(&cfg(10.0)).unwrap();
        assert!((1e-4..=MAX_DAMPING).contains(&damping), "{damping}");
        assert!(s.iter().all(|v| v.abs() <= 10.0), "{s}");
        // One step less damping would have left the range.
        let less = TuneConfig {
            damping: damping / 10.0,
            ..cfg(f64::INFINITY)
        };
        let (s, _) = collinear().solve(&less).unwrap();
        assert!(s.iter().any(|v| v.abs() > 10.0) || damping == 1e-4, "{s}");
    }
}
