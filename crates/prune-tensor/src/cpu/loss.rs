//! Cross-entropy, MSE and temperature-scaled KL divergence on the CPU.

use super::elementwise::zip_map;
use super::softmax::softmax_row;
use super::{CpuBackend, ordered_sum_ranges, same_shape};
use crate::error::{Result, TensorError};
use crate::{Element, LossOps, Tensor};
use rayon::prelude::*;

/// Row-wise softmax of `x / temperature` for `x` `[N, K]`.
fn softmax_rows<E: Element>(x: &Tensor<E>, temperature: f64) -> Tensor<E> {
    let k = x.shape().last().max(1);
    let inv_t = E::of(1.0 / temperature);
    let mut p = x.clone();
    p.data_mut()
        .par_chunks_mut(k)
        .for_each(|row| softmax_row(row, inv_t, None));
    p
}

impl<E: Element> LossOps for CpuBackend<E> {
    fn cross_entropy_fwd(
        &self,
        logits: &Tensor<E>,
        labels: &[i64],
        ignore_index: i64,
    ) -> Result<(f64, Tensor<E>)> {
        let counted =
            crate::checks::labels("cross_entropy_fwd", logits.shape(), labels, ignore_index)?;
        let probs = softmax_rows(logits, 1.0);
        let k = logits.dims()[1];
        let total: f64 = labels
            .iter()
            .enumerate()
            .filter(|&(_, &l)| l != ignore_index)
            .map(|(r, &l)| {
                // -log p computed from logits for accuracy: logsumexp(row) - row[l].
                let row = &logits.data()[r * k..][..k];
                let max = row
                    .iter()
                    .map(|v| v.f64())
                    .fold(f64::NEG_INFINITY, f64::max);
                let lse = max + row.iter().map(|v| (v.f64() - max).exp()).sum::<f64>().ln();
                lse - row[l as usize].f64()
            })
            .sum();
        let loss = if counted == 0 {
            0.0
        } else {
            total / counted as f64
        };
        Ok((loss, probs))
    }

    fn cross_entropy_bwd(
        &self,
        probs: &Tensor<E>,
        labels: &[i64],
        ignore_index: i64,
        dl: f64,
    ) -> Result<Tensor<E>> {
        let counted =
            crate::checks::labels("cross_entropy_bwd", probs.shape(), labels, ignore_index)?;
        let k = probs.dims()[1];
        let scale = E::of(if counted == 0 {
            0.0
        } else {
            dl / counted as f64
        });
        let mut d = probs.clone();
        if k > 0 {
            d.data_mut()
                .par_chunks_mut(k)
                .zip(labels.par_iter())
                .for_each(|(row, &l)| {
                    if l == ignore_index {
                        row.fill(E::zero());
                    } else {
                        row[l as usize] -= E::one();
                        row.iter_mut().for_each(|v| *v *= scale);
                    }
                });
        }
        Ok(d)
    }

    fn mse_fwd(&self, pred: &Tensor<E>, target: &Tensor<E>) -> Result<f64> {
        same_shape("mse_fwd", pred, target)?;
        let n = pred.shape().numel();
        if n == 0 {
            return Err(TensorError::Argument {
                op: "mse_fwd",
                what: "empty tensors".into(),
            });
        }
        let (p, t) = (pred.data(), target.data());
        let sum = ordered_sum_ranges(
            n,
            #[inline(always)]
            |r| {
                p[r.clone()]
                    .iter()
                    .zip(&t[r])
                    .map(|(&p, &t)| (p.f64() - t.f64()).powi(2))
                    .sum()
            },
        );
        Ok(sum / n as f64)
    }

    fn mse_bwd(&self, pred: &Tensor<E>, target: &Tensor<E>, dl: f64) -> Result<Tensor<E>> {
        let scale = E::of(2.0 * dl / pred.shape().numel().max(1) as f64);
        zip_map("mse_bwd", pred, target, move |p, t| scale * (p - t))
    }

    fn kl_div_fwd(
        &self,
        student: &Tensor<E>,
        teacher: &Tensor<E>,
        temperature: f64,
    ) -> Result<f64> {
        crate::checks::distillation("kl_div_fwd", student.shape(), teacher.shape(), temperature)?;
        let (n, k) = (student.dims()[0], student.dims()[1]);
        if n == 0 {
            return Ok(0.0);
        }
        let per_row: Vec<f64> = (0..n)
            .into_par_iter()
            .map(|r| {
                let (s, t) = (&student.data()[r * k..][..k], &teacher.data()[r * k..][..k]);
                let log_softmax = |row: &[E]| {
                    let z: Vec<f64> = row.iter().map(|v| v.f64() / temperature).collect();
                    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let lse = max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
                    z.into_iter().map(move |v| v - lse)
                };
                log_softmax(t)
                    .zip(log_softmax(s))
                    .map(|(lt, ls)| lt.exp() * (lt - ls))
                    .sum::<f64>()
            })
            .collect();
        let total: f64 = per_row.iter().sum();
        Ok(temperature * temperature * total / n as f64)
    }

    fn kl_div_bwd(
        &self,
        student: &Tensor<E>,
        teacher: &Tensor<E>,
        temperature: f64,
        dl: f64,
    ) -> Result<Tensor<E>> {
        crate::checks::distillation("kl_div_bwd", student.shape(), teacher.shape(), temperature)?;
        let n = student.dims()[0].max(1);
        let ps = softmax_rows(student, temperature);
        let pt = softmax_rows(teacher, temperature);
        let scale = E::of(dl * temperature / n as f64);
        zip_map("kl_div_bwd", &ps, &pt, move |a, b| scale * (a - b))
    }
}
