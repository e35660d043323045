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

/// Where the (b, h) head of pair `pair = b·H + h` starts in a `[B·T, H·D]` tensor.
fn head_start(g: &HeadGeometry, pair: usize) -> usize {
    (pair / g.heads) * g.seq * g.heads * g.dim + (pair % g.heads) * g.dim
}

/// `S_bh = X_bh · Y_bhᵀ` of pair `pair` into `out`, a `[T, T]` block.
///
/// # Safety
/// `out` must be valid for `T · T` writes that no other thread touches; `x` and `y` must
/// be `[B·T, H·D]` of geometry `g`.
unsafe fn scores_of<E: Element>(g: &HeadGeometry, pair: usize, x: &[E], y: &[E], out: *mut E) {
    let (t, width, at) = (g.seq, g.heads * g.dim, head_start(g, pair));
    let ld = Strides {
        a: width,
        b: width,
        c: t,
    };
    // SAFETY: the caller's contract; the heads are read in place at row stride H·D.
    unsafe {
        gemm_strided(
            t,
            t,
            g.dim,
            &x[at..],
            false,
            &y[at..],
            true,
            out,
            ld,
            false,
            false,
        )
    }
}

/// `C_bh = op(P_bh) · Y_bh` of pair `pair`, written into its `[T, D]` block of `out`, a
/// `[B·T, H·D]` buffer; `p` is the pair's `[T, T]` block.
///
/// # Safety
/// `out` must be valid for writes of that block, which no other thread touches; `y` must be
/// `[B·T, H·D]` of geometry `g`.
unsafe fn context_of<E: Element>(
    g: &HeadGeometry,
    pair: usize,
    p: &[E],
    transpose_p: bool,
    y: &[E],
    out: *mut E,
) {
    let (t, width, at) = (g.seq, g.heads * g.dim, head_start(g, pair));
    let ld = Strides {
        a: t,
        b: width,
        c: width,
    };
    // SAFETY: the caller's contract; the block starts at `at` and spans rows b·T.. at row
    // stride H·D.
    unsafe {
        let c = out.add(at);
        gemm_strided(
            t,
            g.dim,
            t,
            p,
            transpose_p,
            &y[at..],
            false,
            c,
            ld,
            false,
            false,
        );
    }
}

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
        let tt = g.seq * g.seq;
        // SAFETY: each chunk is one (b, h) score matrix, written whole by its GEMM.
        let data = unsafe {
            par_build(g.batch * g.heads * tt, tt, |start, out| {
                scores_of(
                    &g,
                    start / tt.max(1),
                    x.data(),
                    y.data(),
                    out.as_mut_ptr().cast(),
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
        let (tt, len) = (g.seq * g.seq, y.data().len());
        let mut c: Vec<E> = Vec::with_capacity(len);
        let out = SendPtr(c.as_mut_ptr());
        (0..g.batch * g.heads).into_par_iter().for_each(|pair| {
            let ps = &p.data()[pair * tt..];
            // SAFETY: the (b, h) block of the `len`-element output is this pair's alone.
            unsafe { context_of(&g, pair, ps, transpose_p, y.data(), out.get()) };
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
        let (t, tt) = (g.seq, g.seq * g.seq);
        crate::checks::same_shape("attention", mask.shape(), &[batch, t].into())?;
        let (pairs, scale, len) = (g.batch * g.heads, E::of(scale), q.data().len());
        let mut context: Vec<E> = Vec::with_capacity(len);
        let mut probs: Vec<E> = Vec::with_capacity(if keep_probs { pairs * tt } else { 0 });
        let (out, kept) = (SendPtr(context.as_mut_ptr()), SendPtr(probs.as_mut_ptr()));
        (0..pairs)
            .into_par_iter()
            .for_each_init(Vec::new, |scratch: &mut Vec<E>, pair| {
                let block = if keep_probs {
                    // SAFETY: pair's own `[T, T]` block of the `pairs · T · T` probabilities.
                    unsafe { kept.get().add(pair * tt) }
                } else {
                    scratch.resize(tt, E::zero());
                    scratch.as_mut_ptr()
                };
                let m = &mask.data()[(pair / g.heads) * t..][..t];
                // SAFETY: `block` holds `T · T` elements no other pair touches, written whole
                // by the scores before it is read; the context block is this pair's alone.
                unsafe {
                    scores_of(&g, pair, q.data(), k.data(), block);
                    let p = std::slice::from_raw_parts_mut(block, tt);
                    // A `for` loop: an iterator's `for_each` may stay out of line, compiled
                    // without the wide instructions.
                    vectorized(
                        #[inline(always)]
                        || {
                            for row in p.chunks_exact_mut(t.max(1)) {
                                softmax_row(row, scale, Some(m));
                            }
                        },
                    );
                    context_of(&g, pair, p, false, v.data(), out.get());
                }
            });
        // SAFETY: the (b, h) blocks tile the context, and every pair's block of the
        // probabilities was written when they are kept.
        unsafe {
            context.set_len(len);
            probs.set_len(if keep_probs { pairs * tt } else { 0 });
        }
        let probs = keep_probs
            .then(|| Tensor::new(g.scores(), probs))
            .transpose()?;
        Ok((Tensor::new(g.side_by_side(), context)?, probs))
    }
}
