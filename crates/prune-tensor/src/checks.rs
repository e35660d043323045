//! Shape rules shared by every backend (CPU, CUDA, the tracing backend), so all of them accept
//! and refuse exactly the same operands with the same errors.

use crate::error::{Result, TensorError, shape_error};
use crate::{Shape, Transpose};

/// Output shape of `op(a) · op(b)` (see `MatmulOps::matmul_fwd`): `a` is `[.., M, K]`
/// (`[.., K, M]` when transposed), `b` is 2-D or has `a`'s leading dims.
pub fn matmul_output_shape(a: &Shape, b: &Shape, t: Transpose) -> Result<Shape> {
    let err = |why: &str| shape_error("matmul_fwd", &[a, b], format!("{why} (transpose {t:?})"));
    if a.rank() < 2 || b.rank() < 2 {
        return Err(err("both operands need at least 2 dims"));
    }
    let (ad, bd) = (a.dims(), b.dims());
    let (ar, ac) = (ad[ad.len() - 2], ad[ad.len() - 1]);
    let (br, bc) = (bd[bd.len() - 2], bd[bd.len() - 1]);
    let (m, k) = if t.a() { (ac, ar) } else { (ar, ac) };
    let (kb, n) = if t.b() { (bc, br) } else { (br, bc) };
    if k != kb {
        return Err(err("inner dimensions differ"));
    }
    let lead = &ad[..ad.len() - 2];
    if bd.len() != 2 && &bd[..bd.len() - 2] != lead {
        return Err(err("b must be 2-D or share a's leading dims"));
    }
    let mut out = lead.to_vec();
    out.extend([m, n]);
    Ok(Shape::new(out))
}

/// The geometry of a checked (batched) matmul `op(a) · op(b)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatmulGeometry {
    /// Product of `a`'s leading dims.
    pub batch: usize,
    /// Whether `b` is 2-D, shared by every batch entry.
    pub b_shared: bool,
    /// Rows of each output matrix.
    pub m: usize,
    /// Columns of each output matrix.
    pub n: usize,
    /// The contracted dimension.
    pub k: usize,
    /// The output shape `[.., M, N]`.
    pub out: Shape,
}

impl MatmulGeometry {
    /// Checks the operands (see [`matmul_output_shape`]) and returns their geometry.
    pub fn of(a: &Shape, b: &Shape, t: Transpose) -> Result<Self> {
        let out = matmul_output_shape(a, b, t)?;
        let (ad, od) = (a.dims(), out.dims());
        Ok(MatmulGeometry {
            batch: ad[..ad.len() - 2].iter().product(),
            b_shared: b.rank() == 2,
            m: od[od.len() - 2],
            n: od[od.len() - 1],
            k: if t.a() {
                ad[ad.len() - 2]
            } else {
                ad[ad.len() - 1]
            },
            out,
        })
    }
}

/// Fails unless `v` is a vector as long as `x`'s last dimension (a bias, LayerNorm γ/β).
pub fn row_vector(op: &'static str, x: &Shape, v: &Shape) -> Result<()> {
    if x.rank() >= 1 && v.dims() == [x.last()] {
        Ok(())
    } else {
        Err(shape_error(
            op,
            &[x, v],
            "expected x [.., C] and a vector [C]",
        ))
    }
}

/// Fails unless `a` and `b` have the same shape.
pub fn same_shape(op: &'static str, a: &Shape, b: &Shape) -> Result<()> {
    if a == b {
        Ok(())
    } else {
        Err(shape_error(op, &[a, b], "shapes must be equal"))
    }
}

/// Fails unless `s` holds one factor per group of `rows_per_group` rows of `x` (see
/// `ElementwiseOps::scale_rows_fwd`).
pub fn row_groups(op: &'static str, x: &Shape, s: &Shape, rows_per_group: usize) -> Result<()> {
    if s.rank() == 1 && rows_per_group > 0 && s.dims()[0] * rows_per_group == x.rows() {
        Ok(())
    } else {
        Err(shape_error(
            op,
            &[x, s],
            format!("s must be a vector of rows / {rows_per_group} factors"),
        ))
    }
}

/// Checks `logits` is `[N, K]` with one label per row, every label in `0..K` or ignored.
/// Returns how many rows count.
pub fn labels(op: &'static str, logits: &Shape, labels: &[i64], ignore: i64) -> Result<usize> {
    if logits.rank() != 2 || logits.dims()[0] != labels.len() {
        return Err(shape_error(
            op,
            &[logits],
            format!("logits must be [{}, K]", labels.len()),
        ));
    }
    let k = logits.dims()[1];
    let mut counted = 0;
    for &l in labels {
        if l == ignore {
            continue;
        }
        if l < 0 || l as usize >= k {
            return Err(TensorError::Index {
                op,
                index: l,
                bound: k,
            });
        }
        counted += 1;
    }
    Ok(counted)
}

/// Checks `student` and `teacher` are equal `[N, K]` and `temperature > 0`.
pub fn distillation(
    op: &'static str,
    student: &Shape,
    teacher: &Shape,
    temperature: f64,
) -> Result<()> {
    same_shape(op, student, teacher)?;
    if student.rank() != 2 {
        return Err(shape_error(op, &[student], "logits must be [N, K]"));
    }
    if temperature.is_nan() || temperature <= 0.0 {
        return Err(TensorError::Argument {
            op,
            what: format!("temperature {temperature} must be > 0"),
        });
    }
    Ok(())
}

/// Fails unless `perm` is a permutation of `x`'s axes.
pub fn permutation(op: &'static str, x: &Shape, perm: &[usize]) -> Result<()> {
    let rank = x.rank();
    let mut seen = vec![false; rank];
    let valid = perm.len() == rank
        && perm
            .iter()
            .all(|&p| p < rank && !std::mem::replace(&mut seen[p], true));
    if valid {
        Ok(())
    } else {
        Err(shape_error(
            op,
            &[x],
            format!("{perm:?} is not a permutation of the {rank} axes"),
        ))
    }
}

/// Fails unless the dropout probability `p` is in `[0, 1)`.
pub fn drop_probability(op: &'static str, p: f64) -> Result<()> {
    if (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(TensorError::Argument {
            op,
            what: format!("drop probability {p} outside [0, 1)"),
        })
    }
}

/// Fails unless LayerNorm can run: `C > 0` and `eps >= 0`.
pub fn layer_norm_args(op: &'static str, x: &Shape, eps: f64) -> Result<()> {
    let c = x.last();
    if c == 0 || eps.is_nan() || eps < 0.0 {
        return Err(TensorError::Argument {
            op,
            what: format!("needs C > 0 and eps >= 0, got C = {c}, eps = {eps}"),
        });
    }
    Ok(())
}

/// Fails unless LayerNorm statistics are `[rows]` each for `x`.
pub fn layer_norm_stats(x: &Shape, mean: &Shape, rstd: &Shape) -> Result<()> {
    let rows = x.rows();
    if mean.dims() != [rows] || rstd.dims() != [rows] {
        return Err(shape_error(
            "layer_norm_bwd",
            &[x, mean, rstd],
            "stats must be [rows] each",
        ));
    }
    Ok(())
}

/// Fails unless a keep mask holds only 0 and 1 with at least one 1. Returns the kept count.
pub fn keep_mask(op: &'static str, keep: impl IntoIterator<Item = f64>) -> Result<usize> {
    let mut kept = 0;
    for k in keep {
        if k != 0.0 && k != 1.0 {
            return Err(TensorError::Argument {
                op,
                what: "the keep mask must hold only 0 and 1".into(),
            });
        }
        kept += usize::from(k == 1.0);
    }
    if kept == 0 {
        return Err(TensorError::Argument {
            op,
            what: "the keep mask drops every channel".into(),
        });
    }
    Ok(kept)
}

/// Fails unless an AdamW step count is valid (it counts from 1).
pub fn adamw_step(step: u64) -> Result<()> {
    if step == 0 {
        return Err(TensorError::Argument {
            op: "adamw_step",
            what: "step counts from 1".into(),
        });
    }
    Ok(())
}

/// Fails unless every row id is below `bound`.
pub fn row_ids(op: &'static str, ids: &[usize], bound: usize) -> Result<()> {
    match ids.iter().find(|&&i| i >= bound) {
        Some(&bad) => Err(TensorError::Index {
            op,
            index: bad as i64,
            bound,
        }),
        None => Ok(()),
    }
}

/// The geometry of attention heads stored side by side, `[B·T, H·D]` (see
/// `AttentionOps`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadGeometry {
    /// Batch size B.
    pub batch: usize,
    /// Tokens per sequence T.
    pub seq: usize,
    /// Heads H.
    pub heads: usize,
    /// Head dim D.
    pub dim: usize,
}

impl HeadGeometry {
    /// Checks that `x` is `[B·T, H·D]` for `batch` B and `head_dim` D and returns the
    /// geometry.
    pub fn of(op: &'static str, x: &Shape, batch: usize, head_dim: usize) -> Result<Self> {
        let ok = x.rank() == 2
            && batch > 0
            && head_dim > 0
            && x.dims()[0] % batch == 0
            && x.dims()[1] % head_dim == 0;
        if !ok {
            return Err(shape_error(
                op,
                &[x],
                format!("heads must be [B·T, H·D] with B = {batch}, D = {head_dim}"),
            ));
        }
        Ok(HeadGeometry {
            batch,
            seq: x.dims()[0] / batch,
            heads: x.dims()[1] / head_dim,
            dim: head_dim,
        })
    }

    /// The scores' shape, `[B, H, T, T]`.
    pub fn scores(&self) -> Shape {
        Shape::from([self.batch, self.heads, self.seq, self.seq])
    }

    /// The heads' own shape, `[B·T, H·D]`.
    pub fn side_by_side(&self) -> Shape {
        Shape::from([self.batch * self.seq, self.heads * self.dim])
    }
}
