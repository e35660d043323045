//! Elementwise arithmetic, row-broadcast bias and scales, reductions and dropout on the CPU.

use super::{
    CpuBackend, PAR_MIN_ELEMENTS, ordered_sum, par_build, par_update, row_vector, rows_per_task,
    same_shape, simd::vectorized, sum_partials,
};
use crate::error::{Result, TensorError, shape_error};
use crate::rng::DropTest;
use crate::{Element, ElementwiseOps, Shape, Tensor};
use rayon::prelude::*;

/// `f(a_i, b_i)` over two same-shaped tensors, in parallel.
pub(super) fn zip_map<E: Element>(
    op: &'static str,
    a: &Tensor<E>,
    b: &Tensor<E>,
    f: impl Fn(E, E) -> E + Sync + Copy,
) -> Result<Tensor<E>> {
    same_shape(op, a, b)?;
    let (xa, xb) = (a.data(), b.data());
    // SAFETY: each chunk is written whole, element by element.
    let data = unsafe {
        par_build(
            xa.len(),
            PAR_MIN_ELEMENTS,
            #[inline(always)]
            |start, out| {
                let local_f = f; // a copy: its captures provably do not alias `out`
                let n = out.len();
                for ((o, &x), &y) in out
                    .iter_mut()
                    .zip(&xa[start..start + n])
                    .zip(&xb[start..start + n])
                {
                    o.write(local_f(x, y));
                }
            },
        )
    };
    Tensor::new(a.shape().clone(), data)
}

/// `f(x_i)` over a tensor, in parallel.
pub(super) fn map<E: Element>(x: &Tensor<E>, f: impl Fn(E) -> E + Sync + Copy) -> Tensor<E> {
    // Chunks rather than a per-element parallel iterator, so each inner loop vectorises.
    let xs = x.data();
    // SAFETY: each chunk is written whole, element by element.
    let data = unsafe {
        par_build(
            xs.len(),
            PAR_MIN_ELEMENTS,
            #[inline(always)]
            |start, out| {
                let local_f = f; // a copy: its captures provably do not alias `out`
                let n = out.len();
                for (o, &v) in out.iter_mut().zip(&xs[start..start + n]) {
                    o.write(local_f(v));
                }
            },
        )
    };
    Tensor::new(x.shape().clone(), data).expect("map keeps the element count")
}

/// Checks `s` holds one factor per group of `rows_per_group` rows of `x`.
fn check_row_groups<E: Element>(
    op: &'static str,
    x: &Tensor<E>,
    s: &Tensor<E>,
    rows_per_group: usize,
) -> Result<()> {
    crate::checks::row_groups(op, x.shape(), s.shape(), rows_per_group)
}

impl<E: Element> ElementwiseOps for CpuBackend<E> {
    fn add_fwd(&self, a: &Tensor<E>, b: &Tensor<E>) -> Result<Tensor<E>> {
        zip_map("add_fwd", a, b, move |x, y| x + y)
    }

    fn mul_fwd(&self, a: &Tensor<E>, b: &Tensor<E>) -> Result<Tensor<E>> {
        zip_map("mul_fwd", a, b, move |x, y| x * y)
    }

    fn mul_bwd(
        &self,
        a: &Tensor<E>,
        b: &Tensor<E>,
        dy: &Tensor<E>,
    ) -> Result<(Tensor<E>, Tensor<E>)> {
        same_shape("mul_bwd", a, dy)?;
        Ok((
            zip_map("mul_bwd", dy, b, move |g, y| g * y)?,
            zip_map("mul_bwd", dy, a, move |g, x| g * x)?,
        ))
    }

    fn scale_fwd(&self, x: &Tensor<E>, s: f64) -> Result<Tensor<E>> {
        let s = E::of(s);
        Ok(map(x, move |v| v * s))
    }

    fn add_bias_fwd(&self, x: &Tensor<E>, bias: &Tensor<E>) -> Result<Tensor<E>> {
        let mut y = x.clone();
        self.add_bias_assign(&mut y, bias)?;
        Ok(y)
    }

    fn add_bias_assign(&self, x: &mut Tensor<E>, bias: &Tensor<E>) -> Result<()> {
        row_vector("add_bias_fwd", x, bias)?;
        let c = bias.data().len();
        if c > 0 {
            let chunk = rows_per_task(x.shape().rows(), c) * c;
            x.data_mut().par_chunks_mut(chunk).for_each(|rows| {
                vectorized(
                    #[inline(always)]
                    || {
                        for row in rows.chunks_exact_mut(c) {
                            row.iter_mut().zip(bias.data()).for_each(|(v, &b)| *v += b);
                        }
                    },
                )
            });
        }
        Ok(())
    }

    fn add_bias_bwd(&self, dy: &Tensor<E>) -> Result<Tensor<E>> {
        if dy.shape().rank() == 0 {
            return Err(shape_error(
                "add_bias_bwd",
                &[dy.shape()],
                "dy needs a last axis",
            ));
        }
        let c = dy.shape().last();
        let mut db = vec![E::zero(); c];
        if c > 0 {
            let chunk = rows_per_task(dy.shape().rows(), c) * c;
            let partials = dy
                .data()
                .par_chunks(chunk)
                .map(|rows| {
                    vectorized(
                        #[inline(always)]
                        || {
                            let mut acc = vec![E::zero(); c];
                            for row in rows.chunks_exact(c) {
                                acc.iter_mut().zip(row).for_each(|(a, &g)| *a += g);
                            }
                            acc
                        },
                    )
                })
                .collect();
            db = sum_partials(partials, c);
        }
        Tensor::new([c], db)
    }

    fn scale_rows_fwd(
        &self,
        x: &Tensor<E>,
        s: &Tensor<E>,
        rows_per_group: usize,
    ) -> Result<Tensor<E>> {
        check_row_groups("scale_rows_fwd", x, s, rows_per_group)?;
        let group = rows_per_group * x.shape().last();
        let mut y = x.clone();
        if group > 0 {
            y.data_mut()
                .par_chunks_mut(group)
                .zip(s.data().par_iter())
                .for_each(|(g, &f)| {
                    vectorized(
                        #[inline(always)]
                        || g.iter_mut().for_each(|v| *v *= f),
                    )
                });
        }
        Ok(y)
    }

    fn scale_rows_bwd(
        &self,
        x: &Tensor<E>,
        s: &Tensor<E>,
        rows_per_group: usize,
        dy: &Tensor<E>,
    ) -> Result<(Tensor<E>, Tensor<E>)> {
        check_row_groups("scale_rows_bwd", x, s, rows_per_group)?;
        same_shape("scale_rows_bwd", x, dy)?;
        let dx = self.scale_rows_fwd(dy, s, rows_per_group)?;
        let group = (rows_per_group * x.shape().last()).max(1);
        let ds = x
            .data()
            .par_chunks(group)
            .zip(dy.data().par_chunks(group))
            .map(|(xg, gg)| {
                vectorized(
                    #[inline(always)]
                    || xg.iter().zip(gg).map(|(&a, &g)| a * g).sum(),
                )
            })
            .collect::<Vec<E>>();
        let ds = if x.shape().last() == 0 {
            vec![E::zero(); s.data().len()]
        } else {
            ds
        };
        Ok((dx, Tensor::new(s.shape().clone(), ds)?))
    }

    fn add_assign(&self, acc: &mut Tensor<E>, x: &Tensor<E>) -> Result<()> {
        same_shape("add_assign", acc, x)?;
        let xs = x.data();
        par_update(
            acc.data_mut(),
            #[inline(always)]
            |start, chunk| {
                let xs = &xs[start..start + chunk.len()];
                chunk.iter_mut().zip(xs).for_each(|(a, &v)| *a += v);
            },
        );
        Ok(())
    }

    fn scale_assign(&self, x: &mut Tensor<E>, s: f64) -> Result<()> {
        let s = E::of(s);
        par_update(
            x.data_mut(),
            #[inline(always)]
            |_, chunk| chunk.iter_mut().for_each(|v| *v *= s),
        );
        Ok(())
    }

    fn sum_fwd(&self, x: &Tensor<E>) -> Result<f64> {
        Ok(ordered_sum(
            x.data(),
            #[inline(always)]
            |c| c.iter().map(|v| v.f64()).sum(),
        ))
    }

    fn mean_fwd(&self, x: &Tensor<E>) -> Result<f64> {
        let n = x.shape().numel();
        if n == 0 {
            return Err(TensorError::Argument {
                op: "mean_fwd",
                what: "mean of an empty tensor".into(),
            });
        }
        Ok(self.sum_fwd(x)? / n as f64)
    }

    fn sum_bwd(&self, shape: &Shape, dl: f64) -> Result<Tensor<E>> {
        Ok(Tensor::full(shape.clone(), E::of(dl)))
    }

    fn mean_bwd(&self, shape: &Shape, dl: f64) -> Result<Tensor<E>> {
        let n = shape.numel().max(1) as f64;
        Ok(Tensor::full(shape.clone(), E::of(dl / n)))
    }

    fn sum_squares(&self, x: &Tensor<E>) -> Result<f64> {
        // Eight running sums per chunk rather than one serial chain, combined in order.
        Ok(ordered_sum(
            x.data(),
            #[inline(always)]
            |c| {
                let mut acc = [0.0f64; 8];
                let lanes = c.chunks_exact(8);
                let tail: f64 = lanes.remainder().iter().map(|v| v.f64() * v.f64()).sum();
                for l in lanes {
                    for (a, v) in acc.iter_mut().zip(l) {
                        *a += v.f64() * v.f64();
                    }
                }
                acc.iter().sum::<f64>() + tail
            },
        ))
    }

    fn dropout_fwd(&self, x: &Tensor<E>, p: f64, seed: u64) -> Result<(Tensor<E>, Tensor<E>)> {
        let draw = DropDraw::new("dropout_fwd", p, seed)?;
        // SAFETY: each chunk is written whole, element by element.
        let keep = unsafe {
            par_build(
                x.shape().numel(),
                PAR_MIN_ELEMENTS,
                #[inline(always)]
                |start, out| {
                    for (i, o) in out.iter_mut().enumerate() {
                        o.write(draw.factor(start + i));
                    }
                },
            )
        };
        let keep = Tensor::new(x.shape().clone(), keep)?;
        let y = zip_map("dropout_fwd", x, &keep, move |v, k| v * k)?;
        Ok((y, keep))
    }
}

/// A dropout draw: which elements are dropped, and the factor `1/(1 − p)` on the others.
#[derive(Clone, Copy)]
pub(super) struct DropDraw<E> {
    test: DropTest,
    kept: E,
}

impl<E: Element> DropDraw<E> {
    /// The draw of `seed` at probability `p` (refused outside `[0, 1)`).
    pub(super) fn new(op: &'static str, p: f64, seed: u64) -> Result<Self> {
        crate::checks::drop_probability(op, p)?;
        Ok(DropDraw {
            test: DropTest::new(seed, p),
            kept: E::of(1.0 / (1.0 - p)),
        })
    }

    /// The factor on a kept element, `1/(1 − p)`.
    pub(super) fn kept(&self) -> E {
        self.kept
    }

    /// The factor on element `index`: 0 when it is dropped, `1/(1 − p)` otherwise.
    #[inline(always)]
    pub(super) fn factor(&self, index: usize) -> E {
        if self.test.below(index as u64) {
            E::zero()
        } else {
            self.kept
        }
    }
}
