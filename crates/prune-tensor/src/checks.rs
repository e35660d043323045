//! Shape rules shared by every backend (CPU, CUDA, the tracing backend), so all of them accept
//! and refuse exactly the same operands with the same errors.

use crate::error::{Result, shape_error};
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
