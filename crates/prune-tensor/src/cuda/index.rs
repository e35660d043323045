//! Row gathers, their deterministic scatter-add backward, and axis permutations on the GPU
//! (`index.cu`). Ids stay on the host (they come from the tokenizer), so the backward groups
//! the positions of each id there and the kernel needs no atomics.

use super::launch::{self, launch};
use super::{CudaBackend, CudaTensor, int};
use crate::checks;
use crate::error::{Result, shape_error};
use crate::{IndexOps, Shape};
use prune_kernels::INDEX;
use std::collections::BTreeMap;

/// The positions of every distinct id, in CSR form: `rows[u]` occurs at
/// `positions[starts[u]..starts[u + 1]]` (ascending).
struct Occurrences {
    rows: Vec<i32>,
    starts: Vec<i32>,
    positions: Vec<i32>,
}

fn occurrences(ids: &[usize]) -> Occurrences {
    let mut by_row: BTreeMap<usize, Vec<i32>> = BTreeMap::new();
    for (p, &id) in ids.iter().enumerate() {
        by_row.entry(id).or_default().push(p as i32);
    }
    let mut occ = Occurrences {
        rows: Vec::with_capacity(by_row.len()),
        starts: vec![0],
        positions: Vec::with_capacity(ids.len()),
    };
    for (row, positions) in by_row {
        occ.rows.push(row as i32);
        occ.positions.extend(positions);
        occ.starts.push(occ.positions.len() as i32);
    }
    occ
}

impl IndexOps for CudaBackend {
    fn gather_rows_fwd(&self, table: &CudaTensor, ids: &[usize]) -> Result<CudaTensor> {
        const OP: &str = "gather_rows_fwd";
        if table.shape.rank() != 2 {
            return Err(shape_error(OP, &[&table.shape], "table must be [V, C]"));
        }
        let (v, c) = (table.shape.dims()[0], table.shape.dims()[1]);
        checks::row_ids(OP, ids, v)?;
        let (n_ids, c_i) = (int(OP, ids.len())?, int(OP, c)?);
        int(OP, ids.len() * c)?;
        let ids32: Vec<i32> = ids.iter().map(|&i| i as i32).collect();
        let ids_dev = self.to_device(OP, &ids32)?;
        let mut y = self.alloc(OP, Shape::from([ids.len(), c]))?;
        launch!(self, OP, INDEX, "gather_rows_fwd_f32", launch::elementwise(ids.len() * c);
            &table.data, &ids_dev, &mut y.data, &n_ids, &c_i)?;
        Ok(y)
    }

    fn gather_rows_bwd(&self, dy: &CudaTensor, ids: &[usize], rows: usize) -> Result<CudaTensor> {
        const OP: &str = "gather_rows_bwd";
        if dy.shape.rank() != 2 || dy.shape.dims()[0] != ids.len() {
            return Err(shape_error(
                OP,
                &[&dy.shape],
                format!("dy must be [{}, C], one row per id", ids.len()),
            ));
        }
        checks::row_ids(OP, ids, rows)?;
        let c = dy.shape.dims()[1];
        int(OP, rows * c)?;
        let mut dt = self.zeroed(OP, Shape::from([rows, c]))?;
        if c == 0 || ids.is_empty() {
            return Ok(dt);
        }
        let occ = occurrences(ids);
        let c_i = int(OP, c)?;
        let rows_dev = self.to_device(OP, &occ.rows)?;
        let starts_dev = self.to_device(OP, &occ.starts)?;
        let positions_dev = self.to_device(OP, &occ.positions)?;
        launch!(self, OP, INDEX, "gather_rows_bwd_f32", launch::per_row(occ.rows.len(), c);
            &dy.data, &rows_dev, &starts_dev, &positions_dev, &mut dt.data, &c_i)?;
        Ok(dt)
    }

    fn permute(&self, x: &CudaTensor, perm: &[usize]) -> Result<CudaTensor> {
        const OP: &str = "permute";
        checks::permutation(OP, &x.shape, perm)?;
        let dims = x.shape.dims();
        let rank = dims.len();
        let mut in_strides = vec![1usize; rank];
        for i in (0..rank.saturating_sub(1)).rev() {
            in_strides[i] = in_strides[i + 1] * dims[i + 1];
        }
        let out_dims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
        let n = int(OP, x.shape.numel())?;
        let mut meta = Vec::with_capacity(2 * rank);
        for &d in &out_dims {
            meta.push(int(OP, d)?);
        }
        for &p in perm {
            meta.push(int(OP, in_strides[p])?);
        }
        let meta_dev = self.to_device(OP, &meta)?;
        let rank_i = rank as i32;
        let mut y = self.alloc(OP, Shape::new(out_dims))?;
        launch!(self, OP, INDEX, "permute_f32", launch::elementwise(n as usize);
            &x.data, &mut y.data, &meta_dev, &rank_i, &n)?;
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occurrences_group_positions_by_id_in_order() {
        let occ = occurrences(&[3, 0, 9, 3, 7]);
        assert_eq!(occ.rows, [0, 3, 7, 9]);
        assert_eq!(occ.starts, [0, 1, 3, 4, 5]);
        assert_eq!(occ.positions, [1, 0, 3, 4, 2]);
    }
}
