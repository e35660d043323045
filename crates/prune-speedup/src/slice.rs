//! Keeping a subset of the indices of one axis of a tensor, on any backend (row gathers and
//! transposes, so device tensors never visit the host).

use crate::error::{Result, SpeedupError};
use prune_tensor::{Backend, Shape};

/// Keeps the entries `keep` (ascending element indices) of axis `axis` of `t`: rows
/// (`axis` 0) of a `[O, I]` matrix or a `[C]` vector, or columns (`axis` 1) of a matrix.
pub fn keep_along<B: Backend>(
    b: &B,
    t: &B::Tensor,
    axis: usize,
    keep: &[usize],
) -> Result<B::Tensor> {
    let shape = b.shape(t).clone();
    let dims = shape.dims();
    if let Some(&bad) = keep
        .iter()
        .find(|&&k| dims.get(axis).is_none_or(|&n| k >= n))
    {
        return Err(SpeedupError::Input(format!(
            "cannot keep index {bad} of axis {axis} of a tensor of shape {shape}"
        )));
    }
    match (dims.len(), axis) {
        (1, 0) => {
            let col = b.reshape(t.clone(), Shape::from([dims[0], 1]))?;
            let kept = b.gather_rows_fwd(&col, keep)?;
            Ok(b.reshape(kept, Shape::from([keep.len()]))?)
        }
        (2, 0) => Ok(b.gather_rows_fwd(t, keep)?),
        (2, 1) => {
            let tt = b.permute(t, &[1, 0])?;
            let kept = b.gather_rows_fwd(&tt, keep)?;
            Ok(b.permute(&kept, &[1, 0])?)
        }
        _ => Err(SpeedupError::Input(format!(
            "can only slice rows or columns of a matrix or a vector, not axis {axis} of {shape}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prune_tensor::{CpuBackend, Tensor};

    #[test]
    fn keeps_rows_columns_and_vector_entries() {
        let b = CpuBackend::<f32>::new();
        let m = Tensor::from_fn([3, 4], |i| i as f32);
        let rows = keep_along(&b, &m, 0, &[0, 2]).unwrap();
        assert_eq!(rows.data(), &[0., 1., 2., 3., 8., 9., 10., 11.]);
        let cols = keep_along(&b, &m, 1, &[1, 3]).unwrap();
        assert_eq!(cols.dims(), &[3, 2]);
        assert_eq!(cols.data(), &[1., 3., 5., 7., 9., 11.]);
        let none = keep_along(&b, &m, 1, &[]).unwrap();
        assert_eq!(none.dims(), &[3, 0]);
        let v = Tensor::from_fn([4], |i| i as f32);
        assert_eq!(keep_along(&b, &v, 0, &[3]).unwrap().data(), &[3.]);
        let e = keep_along(&b, &m, 1, &[4]).unwrap_err();
        assert!(e.to_string().contains("index 4 of axis 1"), "{e}");
        assert!(keep_along(&b, &v, 1, &[0]).is_err());
    }
}
