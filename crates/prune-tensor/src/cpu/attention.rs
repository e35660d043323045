//! Attention's per-head products on the CPU, reading and writing the heads in place in
//! their side-by-side layout `[B·T, H·D]`: one single-threaded GEMM per (batch entry, head),
//! spread over rayon, with strided operands instead of `[B, H, T, D]` copies.

use super::matmul::{Strides, gemm_strided};
use super::{CpuBackend, SendPtr, par_build, same_shape};
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
}
