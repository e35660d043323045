//! Attention's per-head products on the CPU, reading and writing the heads in place in
//! their side-by-side layout `[B·T, H·D]`: one single-threaded GEMM per (batch entry, head),
//! spread over rayon, with strided operands instead of `[B, H, T, D]` copies. The fused
//! [`AttentionOps::attention`] runs each head's scores, softmax and context while its
//! `[T, T]` block is in cache.

use super::matmul::{Strides, gemm_strided};
use super::softmax::softmax_row;
use super::{CpuBackend, SendPtr, par_build, same_shape, simd::vectorized};
use crate::checks::HeadGeometry;
use crate::error::Result;
use crate::{AttentionOps, Element, Tensor};
use rayon::prelude::*;

impl<E: Element> AttentionOps for CpuBackend<E> {
    fn head_scores(
        &self,
        x: &Tensor<E>,
        y: &Tensor<E>,
        batch: usize,
        head_dim: usize,
    ) -> Result<Tensor<E>> {
        let g = HeadGeometry::of("head_scores", x.shape(), batch, head_dim)?;
        same_shape("head_scores", x, y)?;
        let (t, d, width) = (g.seq, g.dim, g.heads * g.dim);
        let len = g.batch * g.heads * t * t;
        // SAFETY: each chunk is one (b, h) score matrix, written whole by its GEMM.
        let data = unsafe {
            par_build(len, t * t, |start, out| {
                let pair = start / (t * t);
                let at = (pair / g.heads) * t * width + (pair % g.heads) * d;
                let ld = Strides {
                    a: width,
                    b: width,
                    c: t,
                };
                let (xs, ys) = (&x.data()[at..], &y.data()[at..]);
                gemm_strided(
                    t,
                    t,
                    d,
                    xs,
                    false,
                    ys,
                    true,
                    out.as_mut_ptr().cast(),
                    ld,
                    false,
                    false,
                );
            })
        };
        Tensor::new(g.scores(), data)
    }

    fn head_context(
        &self,
        p: &Tensor<E>,
        y: &Tensor<E>,
        batch: usize,
        head_dim: usize,
        transpose_p: bool,
    ) -> Result<Tensor<E>> {
        let g = HeadGeometry::of("head_context", y.shape(), batch, head_dim)?;
        crate::checks::same_shape("head_context", p.shape(), &g.scores())?;
        let (t, d, width) = (g.seq, g.dim, g.heads * g.dim);
        let len = g.batch * t * width;
        let mut c: Vec<E> = Vec::with_capacity(len);
        let out = SendPtr(c.as_mut_ptr());
        (0..g.batch * g.heads).into_par_iter().for_each(|pair| {
            let at = (pair / g.heads) * t * width + (pair % g.heads) * d;
            let ld = Strides {
                a: t,
                b: width,
                c: width,
            };
            let ps = &p.data()[pair * t * t..];
            // SAFETY: the (b, h) block, rows b·T.. and columns h·D.. of the output, lies in
            // its `len` elements, and no other pair writes it.
            unsafe {
                let c = out.get().add(at);
                gemm_strided(
                    t,
                    d,
                    t,
                    ps,
                    transpose_p,
                    &y.data()[at..],
                    false,
                    c,
                    ld,
                    false,
                    false,
                );
            }
        });
        // SAFETY: the (b, h) blocks tile the whole `[B·T, H·D]` output, and every block
        // was written by its GEMM.
        unsafe { c.set_len(len) };
        Tensor::new(g.side_by_side(), c)
    }

    fn attention(
        &self,
        q: &Tensor<E>,
        k: &Tensor<E>,
        v: &Tensor<E>,
        mask: &Tensor<E>,
        scale: f64,
        batch: usize,
        head_dim: usize,
        keep_probs: bool,
    ) -> Result<(Tensor<E>, Option<Tensor<E>>)> {
        let g = HeadGeometry::of("attention", q.shape(), batch, head_dim)?;
        same_shape("attention", q, k)?;
        same_shape("attention", q, v)?;
        let (t, d, width) = (g.seq, g.dim, g.heads * g.dim);
        crate::checks::same_shape("attention", mask.shape(), &[batch, t].into())?;
        let (pairs, scale) = (g.batch * g.heads, E::of(scale));
        let mut context: Vec<E> = Vec::with_capacity(g.batch * t * width);
        let mut probs: Vec<E> = Vec::with_capacity(if keep_probs { pairs * t * t } else { 0 });
        let (out, kept) = (SendPtr(context.as_mut_ptr()), SendPtr(probs.as_mut_ptr()));
        let scores = Strides {
            a: width,
            b: width,
            c: t,
        };
        let products = Strides {
            a: t,
            b: width,
            c: width,
        };
        (0..pairs)
            .into_par_iter()
            .for_each_init(Vec::new, |scratch: &mut Vec<E>, pair| {
                let at = (pair / g.heads) * t * width + (pair % g.heads) * d;
                let block = if keep_probs {
                    // SAFETY: pair's own `[T, T]` block of the `pairs · T · T` probabilities.
                    unsafe { kept.get().add(pair * t * t) }
                } else {
                    scratch.resize(t * t, E::zero());
                    scratch.as_mut_ptr()
                };
                let (qs, ks, vs) = (&q.data()[at..], &k.data()[at..], &v.data()[at..]);
                let m = &mask.data()[(pair / g.heads) * t..][..t];
                // SAFETY: `block` holds `T · T` elements no other pair touches, written whole by
                // the first GEMM before it is read; the second GEMM writes the (b, h) block of
                // the context, rows b·T.., columns h·D.., which no other pair writes.
                unsafe {
                    gemm_strided(t, t, d, qs, false, ks, true, block, scores, false, false);
                    let p = std::slice::from_raw_parts_mut(block, t * t);
                    vectorized(
                        #[inline(always)]
                        || {
                            p.chunks_exact_mut(t.max(1))
                                .for_each(|row| softmax_row(row, scale, Some(m)))
                        },
                    );
                    let c = out.get().add(at);
                    gemm_strided(t, d, t, p, false, vs, false, c, products, false, false);
                }
            });
        // SAFETY: the (b, h) blocks tile the context, and every pair's block of the
        // probabilities was written when they are kept.
        unsafe {
            context.set_len(g.batch * t * width);
            probs.set_len(if keep_probs { pairs * t * t } else { 0 });
        }
        let probs = keep_probs
            .then(|| Tensor::new(g.scores(), probs))
            .transpose()?;
        Ok((Tensor::new(g.side_by_side(), context)?, probs))
    }
}
