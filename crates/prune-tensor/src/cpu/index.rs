//! Row gathers with scatter-add backward, and axis permutations, on the CPU.

use super::{CpuBackend, par_build, rows_per_task};
use crate::error::{Result, shape_error};
use crate::{Element, IndexOps, Tensor};
use ndarray::IxDyn;
use rayon::prelude::*;

impl<E: Element> IndexOps for CpuBackend<E> {
    fn gather_rows_fwd(&self, table: &Tensor<E>, ids: &[usize]) -> Result<Tensor<E>> {
        if table.shape().rank() != 2 {
            return Err(shape_error(
                "gather_rows_fwd",
                &[table.shape()],
                "table must be [V, C]",
            ));
        }
        let (v, c) = (table.dims()[0], table.dims()[1]);
        crate::checks::row_ids("gather_rows_fwd", ids, v)?;
        let mut y = vec![E::zero(); ids.len() * c];
        if c > 0 {
            y.par_chunks_mut(c)
                .zip(ids.par_iter())
                .for_each(|(row, &i)| row.copy_from_slice(&table.data()[i * c..][..c]));
        }
        Tensor::new([ids.len(), c], y)
    }

    fn gather_rows_bwd(&self, dy: &Tensor<E>, ids: &[usize], rows: usize) -> Result<Tensor<E>> {
        if dy.shape().rank() != 2 || dy.dims()[0] != ids.len() {
            return Err(shape_error(
                "gather_rows_bwd",
                &[dy.shape()],
                format!("dy must be [{}, C], one row per id", ids.len()),
            ));
        }
        crate::checks::row_ids("gather_rows_bwd", ids, rows)?;
        let c = dy.dims()[1];
        let mut dt = Tensor::zeros([rows, c]);
        if c > 0 {
            let d = dt.data_mut();
            for (g, &i) in dy.data().chunks_exact(c).zip(ids) {
                d[i * c..][..c]
                    .iter_mut()
                    .zip(g)
                    .for_each(|(a, &b)| *a += b);
            }
        }
        Ok(dt)
    }

    fn permute(&self, x: &Tensor<E>, perm: &[usize]) -> Result<Tensor<E>> {
        crate::checks::permutation("permute", x.shape(), perm)?;
        let rank = x.shape().rank();
        if rank >= 2 && perm[rank - 1] == rank - 1 {
            return Ok(permute_rows(x, perm));
        }
        let view = x.view().permuted_axes(IxDyn(perm));
        let dims = view.shape().to_vec();
        let data = view
            .as_standard_layout()
            .into_owned()
            .into_raw_vec_and_offset()
            .0;
        Tensor::new(dims, data)
    }
}

/// A permutation that keeps the last axis in place (e.g. `[B, T, H, D]` ↔ `[B, H, T, D]`):
/// whole contiguous rows move, in parallel over output rows.
fn permute_rows<E: Element>(x: &Tensor<E>, perm: &[usize]) -> Tensor<E> {
    let dims = x.dims();
    let rank = dims.len();
    let inner = dims[rank - 1];
    let mut in_strides = vec![1; rank];
    for i in (0..rank - 1).rev() {
        in_strides[i] = in_strides[i + 1] * dims[i + 1];
    }
    let out_dims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
    let rows = x.shape().rows();
    let per_task = rows_per_task(rows, inner);
    // SAFETY: each chunk holds whole rows, and every one of them is copied in.
    let out = unsafe {
        par_build(
            rows * inner,
            per_task * inner,
            #[inline(always)]
            |start, dst| {
                for (j, d) in dst.chunks_exact_mut(inner).enumerate() {
                    // Decompose the output row index over the output's leading dims, innermost
                    // first.
                    let (mut rest, mut offset) = (start / inner + j, 0);
                    for i in (0..rank - 1).rev() {
                        offset += (rest % out_dims[i]) * in_strides[perm[i]];
                        rest /= out_dims[i];
                    }
                    for (o, &v) in d.iter_mut().zip(&x.data()[offset..offset + inner]) {
                        o.write(v);
                    }
                }
            },
        )
    };
    Tensor::new(out_dims, out).expect("a permutation keeps the element count")
}
