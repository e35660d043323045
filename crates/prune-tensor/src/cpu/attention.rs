//! Attention's per-head products on the CPU, reading and writing the heads in place in
//! their side-by-side layout `[B·T, H·D]`: one single-threaded GEMM per (batch entry, head),
//! spread over rayon, with strided operands instead of `[B, H, T, D]` copies. The fused
//! [`AttentionOps::attention`] and [`AttentionOps::attention_train`] run each head's scores,
//! softmax, dropout and context while its `[T, T]` block is in cache, and
//! [`AttentionOps::attention_bwd`] each head's whole backward. The forward marks each
//! probability its dropout dropped by negating it in the saved probabilities, so that the
//! backward reads the draw instead of making it again.

use super::elementwise::DropDraw;
use super::matmul::{Strides, gemm_strided};
use super::softmax::{softmax_bwd_row, softmax_row};
use super::{CpuBackend, SendPtr, par_build, same_shape, simd::vectorized};
use crate::checks::HeadGeometry;
use crate::error::Result;
use crate::{AttentionOps, AttentionSpec, Element, Tensor};
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

/// `spec`'s dropout on the attention probabilities, `None` without one.
fn probs_dropout<E: Element>(
    op: &'static str,
    spec: &AttentionSpec,
) -> Result<Option<DropDraw<E>>> {
    let draw = DropDraw::new(op, spec.dropout, spec.seed)?;
    Ok((spec.dropout > 0.0).then_some(draw))
}

/// A pair's probabilities `p` after `dropout` (`p` itself without): `p ⊙ keep` in
/// `scratch`, `first` the index of `p[0]`. Each dropped probability in `p` is negated
/// (probabilities are ≥ 0, so the sign bit is free), which lets the backward read the draw
/// ([`kept_probs`]) instead of making it again.
fn drop_probs<'a, E: Element>(
    dropout: Option<DropDraw<E>>,
    p: &'a mut [E],
    first: usize,
    scratch: &'a mut Vec<E>,
) -> &'a [E] {
    let Some(drop) = dropout else { return p };
    scratch.resize(p.len(), E::zero());
    let out = scratch.iter_mut().zip(p).enumerate();
    // `for` loops: an iterator's `for_each` may stay out of line, compiled without the
    // wide instructions.
    vectorized(
        #[inline(always)]
        || {
            for (i, (o, x)) in out {
                let f = drop.factor(first + i);
                *o = *x * f;
                if f == E::zero() {
                    *x = -*x;
                }
            }
        },
    );
    scratch
}

/// The backward's view of a pair's `saved` block (the probabilities, dropped ones negated
/// by [`drop_probs`]): the probabilities into `probs`, `P ⊙ keep` into `dropped`, and
/// `grad ⊙= keep`.
fn kept_probs<E: Element>(
    saved: &[E],
    kept: E,
    probs: &mut Vec<E>,
    dropped: &mut Vec<E>,
    grad: &mut [E],
) {
    probs.resize(saved.len(), E::zero());
    dropped.resize(saved.len(), E::zero());
    let out = probs.iter_mut().zip(dropped.iter_mut()).zip(grad);
    vectorized(
        #[inline(always)]
        || {
            for (((p, o), d), &s) in out.zip(saved) {
                let f = if s.is_sign_negative() {
                    E::zero()
                } else {
                    kept
                };
                *p = s.abs();
                *o = *p * f;
                *d *= f;
            }
        },
    );
}

/// The fused forward of [`AttentionOps::attention`] and [`AttentionOps::attention_train`]:
/// per (batch, head) pair, scores, softmax, dropout (with `dropout`) and context while the
/// pair's `[T, T]` block is in cache. Returns the context and, when `keep_probs`, the
/// probabilities before dropout.
fn fused_forward<E: Element>(
    g: &HeadGeometry,
    [q, k, v]: [&Tensor<E>; 3],
    mask: &Tensor<E>,
    scale: E,
    keep_probs: bool,
    dropout: Option<DropDraw<E>>,
) -> Result<(Tensor<E>, Option<Tensor<E>>)> {
    let (t, tt) = (g.seq, g.seq * g.seq);
    let (pairs, len) = (g.batch * g.heads, q.data().len());
    let mut context: Vec<E> = Vec::with_capacity(len);
    let mut probs: Vec<E> = Vec::with_capacity(if keep_probs { pairs * tt } else { 0 });
    let (out, kept) = (SendPtr(context.as_mut_ptr()), SendPtr(probs.as_mut_ptr()));
    (0..pairs).into_par_iter().for_each_init(
        || (Vec::new(), Vec::new()),
        |(scratch, dropped): &mut (Vec<E>, Vec<E>), pair| {
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
                scores_of(g, pair, q.data(), k.data(), block);
                let p = std::slice::from_raw_parts_mut(block, tt);
                // `for` loops: an iterator's `for_each` may stay out of line, compiled
                // without the wide instructions.
                vectorized(
                    #[inline(always)]
                    || {
                        for row in p.chunks_exact_mut(t.max(1)) {
                            softmax_row(row, scale, Some(m));
                        }
                    },
                );
                let used = drop_probs(dropout, p, pair * tt, dropped);
                context_of(g, pair, used, false, v.data(), out.get());
            }
        },
    );
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

/// The geometry of the fused attention ops' `q`, `k` and `v`, which must agree, and of the
/// additive `mask` `[B, T]` when given.
fn fused_geometry<E: Element>(
    op: &'static str,
    [q, k, v]: [&Tensor<E>; 3],
    mask: Option<&Tensor<E>>,
    batch: usize,
    head_dim: usize,
) -> Result<HeadGeometry> {
    let g = HeadGeometry::of(op, q.shape(), batch, head_dim)?;
    same_shape(op, q, k)?;
    same_shape(op, q, v)?;
    if let Some(mask) = mask {
        crate::checks::same_shape(op, mask.shape(), &[batch, g.seq].into())?;
    }
    Ok(g)
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
        let g = fused_geometry("attention", [q, k, v], Some(mask), batch, head_dim)?;
        fused_forward(&g, [q, k, v], mask, E::of(scale), keep_probs, None)
    }

    fn attention_train(
        &self,
        q: &Tensor<E>,
        k: &Tensor<E>,
        v: &Tensor<E>,
        mask: &Tensor<E>,
        spec: &AttentionSpec,
    ) -> Result<(Tensor<E>, Tensor<E>)> {
        let op = "attention_train";
        let g = fused_geometry(op, [q, k, v], Some(mask), spec.batch, spec.head_dim)?;
        let dropout = probs_dropout(op, spec)?;
        let (context, probs) =
            fused_forward(&g, [q, k, v], mask, E::of(spec.scale), true, dropout)?;
        let probs = probs.ok_or_else(|| crate::TensorError::Argument {
            op,
            what: "the fused forward kept no probabilities".into(),
        })?;
        Ok((context, probs))
    }

    fn attention_bwd(
        &self,
        qkv: [&Tensor<E>; 3],
        saved: &Tensor<E>,
        dcontext: &Tensor<E>,
        spec: &AttentionSpec,
    ) -> Result<[Tensor<E>; 3]> {
        let op = "attention_bwd";
        let g = fused_geometry(op, qkv, None, spec.batch, spec.head_dim)?;
        same_shape(op, qkv[0], dcontext)?;
        crate::checks::same_shape(op, saved.shape(), &g.scores())?;
        let dropout = probs_dropout(op, spec)?;
        let [q, k, v] = qkv;
        let (t, tt, scale) = (g.seq, g.seq * g.seq, E::of(spec.scale));
        let len = q.data().len();
        let mut grads: [Vec<E>; 3] = [0; 3].map(|_| Vec::with_capacity(len));
        let [dq, dk, dv] = grads.each_mut().map(|g| SendPtr(g.as_mut_ptr()));
        (0..g.batch * g.heads).into_par_iter().for_each_init(
            || [(); 3].map(|_| Vec::new()),
            |[dp, probs, dropped]: &mut [Vec<E>; 3], pair| {
                dp.resize(tt, E::zero());
                let saved = &saved.data()[pair * tt..][..tt];
                // SAFETY: `dp` holds `T · T` elements, written whole by the scores; the
                // pair's blocks of dQ, dK and dV are its own.
                unsafe {
                    scores_of(&g, pair, dcontext.data(), v.data(), dp.as_mut_ptr()); // dC·Vᵀ
                    let (p, used) = match &dropout {
                        Some(drop) => {
                            kept_probs(saved, drop.kept(), probs, dropped, dp);
                            (&probs[..], &dropped[..])
                        }
                        None => (saved, saved),
                    };
                    context_of(&g, pair, used, true, dcontext.data(), dv.get()); // P̃ᵀ·dC
                    vectorized(
                        #[inline(always)]
                        || {
                            for (d, y) in
                                dp.chunks_exact_mut(t.max(1)).zip(p.chunks_exact(t.max(1)))
                            {
                                softmax_bwd_row(d, y, scale);
                            }
                        },
                    );
                    context_of(&g, pair, dp, false, k.data(), dq.get()); // dS·K
                    context_of(&g, pair, dp, true, q.data(), dk.get()); // dSᵀ·Q
                }
            },
        );
        // SAFETY: the (b, h) blocks tile each of the three gradients, every one written by
        // its GEMM.
        grads.iter_mut().for_each(|g| unsafe { g.set_len(len) });
        let [dq, dk, dv] = grads.map(|d| Tensor::new(g.side_by_side(), d));
        Ok([dq?, dk?, dv?])
    }
}
