//! Matrix products on the CPU through the pure-Rust `gemm` crate, or for f32 through OpenBLAS
//! where the system has it (`blas.rs`): one large multi-threaded GEMM when the right operand is
//! shared (linear layers), and one single-threaded GEMM per batch entry spread over rayon
//! when both operands are batched (attention).

use super::CpuBackend;
use crate::checks::MatmulGeometry;
use crate::error::{Result, shape_error};
use crate::{Element, LinearOps, MatmulOps, Tensor, Transpose};
use gemm::Parallelism;
use rayon::prelude::*;

/// Multiply-adds below which a product runs on one thread (splitting costs more than it
/// gains), whichever GEMM runs it.
pub(super) const PARALLEL_MIN_MACS: usize = 1 << 18;

/// `c (+)= op(a) · op(b)` for one `[m, k] · [k, n]` product on row-major buffers. `a` is
/// stored `[m, k]` (or `[k, m]` when `ta`), `b` `[k, n]` (or `[n, k]` when `tb`), `c` `[m, n]`.
/// `accumulate` adds into `c` instead of overwriting it; `threaded` lets `gemm` use rayon.
#[allow(clippy::too_many_arguments)]
pub fn gemm_into<E: Element>(
    m: usize,
    n: usize,
    k: usize,
    a: &[E],
    ta: bool,
    b: &[E],
    tb: bool,
    c: &mut [E],
    accumulate: bool,
    threaded: bool,
) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    let ld = Strides::dense(m, n, k, ta, tb);
    // SAFETY: the assert guarantees every index the strides reach lies inside the slices;
    // `c` is borrowed mutably and does not alias `a` or `b`.
    unsafe {
        gemm_strided(
            m,
            n,
            k,
            a,
            ta,
            b,
            tb,
            c.as_mut_ptr(),
            ld,
            accumulate,
            threaded,
        )
    }
}

/// Leading dimensions (row strides, in elements) of a GEMM's stored operands and output.
#[derive(Clone, Copy, Debug)]
pub(super) struct Strides {
    /// Of `a` as stored (`[m, k]`, or `[k, m]` when transposed).
    pub a: usize,
    /// Of `b` as stored (`[k, n]`, or `[n, k]` when transposed).
    pub b: usize,
    /// Of `c` (`[m, n]`).
    pub c: usize,
}

impl Strides {
    /// The strides of dense row-major operands.
    pub(super) fn dense(m: usize, n: usize, k: usize, ta: bool, tb: bool) -> Self {
        Strides {
            a: if ta { m } else { k },
            b: if tb { k } else { n },
            c: n,
        }
    }
}

/// Elements a stored operand of `rows` × `cols` (as stored) with row stride `ld` spans.
fn span(rows: usize, cols: usize, ld: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * ld + cols
    }
}

/// `c (+)= op(a) · op(b)` for operands that are blocks of larger row-major matrices: rows
/// `ld.a`, `ld.b`, `ld.c` elements apart (attention heads read in place).
///
/// # Safety
/// `c` must be valid for writes (and reads when `accumulate`) of the `m × n` block at row
/// stride `ld.c`, not aliasing `a` or `b`, and no other thread may touch that block.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn gemm_strided<E: Element>(
    m: usize,
    n: usize,
    k: usize,
    a: &[E],
    ta: bool,
    b: &[E],
    tb: bool,
    c: *mut E,
    ld: Strides,
    accumulate: bool,
    threaded: bool,
) {
    let (a_rows, a_cols) = if ta { (k, m) } else { (m, k) };
    let (b_rows, b_cols) = if tb { (n, k) } else { (k, n) };
    assert!(a.len() >= span(a_rows, a_cols, ld.a) && b.len() >= span(b_rows, b_cols, ld.b));
    assert!(ld.a >= a_cols && ld.b >= b_cols && ld.c >= n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    // SAFETY: `c` is valid for the m × n block at row stride `ld.c`.
                    unsafe { c.add(i * ld.c + j).write(E::zero()) };
                }
            }
        }
        return;
    }
    if std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>() {
        // SAFETY: `E` is `f32` (checked just above), so the casts keep lengths and layout.
        let (a32, b32, c32) = unsafe {
            (
                std::slice::from_raw_parts(a.as_ptr().cast::<f32>(), a.len()),
                std::slice::from_raw_parts(b.as_ptr().cast::<f32>(), b.len()),
                c.cast::<f32>(),
            )
        };
        if super::amx::bf16_products() && super::amx::pays(m, n, k) {
            let kernel = super::amx::TILE_KERNEL;
            // SAFETY: the caller's contract is `amx::gemm`'s; bf16 products are on only
            // where the tile unit was granted.
            unsafe {
                super::amx::gemm(
                    kernel, m, n, k, a32, ta, b32, tb, c32, ld, accumulate, threaded,
                )
            };
            return;
        }
        if let Some(sgemm) = super::blas::for_extents(m, n, k, ld) {
            // SAFETY: the caller's contract is `sgemm`'s.
            unsafe {
                super::blas::sgemm(
                    sgemm, m, n, k, a32, ta, b32, tb, c32, ld, accumulate, threaded,
                )
            };
            return;
        }
    }
    let (a_rs, a_cs) = if ta {
        (1, ld.a as isize)
    } else {
        (ld.a as isize, 1)
    };
    let (b_rs, b_cs) = if tb {
        (1, ld.b as isize)
    } else {
        (ld.b as isize, 1)
    };
    let parallelism = if threaded && m * n * k >= PARALLEL_MIN_MACS {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    let (a, b) = ((a.as_ptr(), a_cs, a_rs), (b.as_ptr(), b_cs, b_rs));
    if threaded && !ta && tb && m <= FEW_ROWS && n > m {
        // SAFETY: the caller's contract.
        unsafe { few_rows_nt(m, n, k, a, b, c, ld.c, accumulate, parallelism) };
        return;
    }
    // SAFETY: the caller guarantees the extents and that `c` does not alias `a` or `b`;
    // `gemm` does not read `c` unless `accumulate`.
    unsafe {
        crate_gemm(
            m,
            n,
            k,
            (c, 1, ld.c as isize),
            accumulate,
            a,
            b,
            parallelism,
        )
    };
}

/// Rows of C up to which a threaded `A · Bᵀ` (a linear layer on a few tokens) runs through
/// [`few_rows_nt`].
const FEW_ROWS: usize = 128;

/// A `gemm` crate operand: its first element, column stride and row stride.
type Operand<E> = (*const E, isize, isize);

/// `dst (+)= a · b` through the `gemm` crate; `dst` is `(first element, column stride, row
/// stride)`.
///
/// # Safety
/// The operands must hold the `m × k`, `k × n` and `m × n` blocks their strides reach;
/// `dst` must not alias `a` or `b` and no other thread may touch it.
#[allow(clippy::too_many_arguments)]
unsafe fn crate_gemm<E: Element>(
    m: usize,
    n: usize,
    k: usize,
    dst: (*mut E, isize, isize),
    accumulate: bool,
    a: Operand<E>,
    b: Operand<E>,
    parallelism: Parallelism,
) {
    // SAFETY: the caller's contract.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.0,
            dst.1,
            dst.2,
            accumulate,
            a.0,
            a.1,
            a.2,
            b.0,
            b.1,
            b.2,
            E::one(),
            E::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `C (+)= A · Bᵀ` for few rows of C. Into a row-major C, the `gemm` crate works on the
/// transposed problem and packs all of `B` (a weight, `n × k`) on every call, which at a few
/// rows costs more than the product (at 64 rows, 1.5–2.6× the time of this path on MiniLM's
/// shapes). Computed column-major into scratch instead, `B` is read in place and only `A` is
/// packed; the scratch is then transposed into C.
///
/// # Safety
/// As [`gemm_strided`]'s, `c` being the `m × n` block at row stride `ldc`.
#[allow(clippy::too_many_arguments)]
unsafe fn few_rows_nt<E: Element>(
    m: usize,
    n: usize,
    k: usize,
    a: Operand<E>,
    b: Operand<E>,
    c: *mut E,
    ldc: usize,
    accumulate: bool,
    parallelism: Parallelism,
) {
    let mut scratch: Vec<E> = Vec::with_capacity(m * n);
    let dst = (scratch.as_mut_ptr(), m as isize, 1);
    // SAFETY: the caller's contract for `a` and `b`; `scratch` has room for the `m × n`
    // column-major block, which `gemm` writes whole (it does not read it).
    unsafe {
        crate_gemm(m, n, k, dst, false, a, b, parallelism);
        scratch.set_len(m * n);
    }
    let c = super::SendPtr(c);
    // Rows of C in blocks: each column of the scratch gives a short contiguous run per block.
    (0..m.div_ceil(TRANSPOSE_ROWS))
        .into_par_iter()
        .for_each(|block| {
            let rows = block * TRANSPOSE_ROWS..((block + 1) * TRANSPOSE_ROWS).min(m);
            for (j, column) in scratch.chunks_exact(m).enumerate() {
                for i in rows.clone() {
                    // SAFETY: row `i` of C is this block's alone; `(i, j)` lies in the
                    // `m × n` block at row stride `ldc`.
                    unsafe {
                        let out = c.get().add(i * ldc + j);
                        let v = column[i];
                        out.write(if accumulate { *out + v } else { v });
                    }
                }
            }
        });
}

/// Rows of C per task of [`few_rows_nt`]'s transposition.
const TRANSPOSE_ROWS: usize = 16;

/// The geometry of a matmul.
type Plan = MatmulGeometry;

/// `op(a) · op(b)` for already-checked geometry. The output is written by GEMM directly,
/// without being zeroed first.
fn matmul<E: Element>(a: &[E], b: &[E], t: Transpose, p: &Plan) -> Vec<E> {
    let (m, n, k) = (p.m, p.n, p.k);
    let len = p.batch * m * n;
    assert!(a.len() >= p.batch * m * k);
    let b_stride = if p.b_shared { 0 } else { k * n };
    assert!(p.batch == 0 || b.len() >= (p.batch - 1) * b_stride + k * n);
    let mut c = Vec::with_capacity(len);
    let out = c.spare_capacity_mut();
    if (p.b_shared && !t.a()) || p.batch == 1 {
        // Leading dims fold into rows (shared B): one large GEMM.
        let rows = if t.a() { m } else { p.batch * m };
        let ld = Strides::dense(rows, n, k, t.a(), t.b());
        // SAFETY: extents asserted above; `out` has room for `len` elements.
        unsafe {
            gemm_strided(
                rows,
                n,
                k,
                a,
                t.a(),
                b,
                t.b(),
                out.as_mut_ptr().cast(),
                ld,
                false,
                true,
            )
        };
    } else if len > 0 {
        out.par_chunks_mut(m * n).enumerate().for_each(|(i, ci)| {
            let ai = &a[i * m * k..(i + 1) * m * k];
            let bi = &b[i * b_stride..i * b_stride + k * n];
            let ld = Strides::dense(m, n, k, t.a(), t.b());
            // SAFETY: `ci` has room for m · n elements; `ai`, `bi` are sliced to size.
            unsafe {
                gemm_strided(
                    m,
                    n,
                    k,
                    ai,
                    t.a(),
                    bi,
                    t.b(),
                    ci.as_mut_ptr().cast(),
                    ld,
                    false,
                    false,
                )
            };
        });
    }
    // SAFETY: the GEMMs above wrote every one of the `len` elements.
    unsafe { c.set_len(len) };
    c
}

/// `Σ_batch op(a_i) · op(b_i)` into one `[m, n]` matrix (the gradient of a shared operand).
fn matmul_summed<E: Element>(
    a: &[E],
    b: &[E],
    t: Transpose,
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
) -> Vec<E> {
    let mut c = vec![E::zero(); m * n];
    for i in 0..batch {
        let ai = &a[i * m * k..(i + 1) * m * k];
        let bi = &b[i * k * n..(i + 1) * k * n];
        gemm_into(m, n, k, ai, t.a(), bi, t.b(), &mut c, true, true);
    }
    c
}

impl<E: Element> LinearOps for CpuBackend<E> {
    fn linear_fwd(&self, x: &Tensor<E>, w: &Tensor<E>, bias: &Tensor<E>) -> Result<Tensor<E>> {
        let p = Plan::of(x.shape(), w.shape(), Transpose::NT)?;
        crate::checks::row_vector("linear_fwd", &p.out, bias.shape())?;
        let (rows, o) = (p.batch * p.m, p.n);
        // Every row starts as the bias; the GEMM then adds the product into it.
        // SAFETY: each chunk holds whole rows, each written in full.
        let mut y = unsafe {
            super::par_build(rows * o, super::rows_per_task(rows, o) * o, |_, out| {
                for row in out.chunks_exact_mut(o.max(1)) {
                    for (v, &b) in row.iter_mut().zip(bias.data()) {
                        v.write(b);
                    }
                }
            })
        };
        gemm_into(
            rows,
            o,
            p.k,
            x.data(),
            false,
            w.data(),
            true,
            &mut y,
            true,
            true,
        );
        Tensor::new(p.out, y)
    }
}

impl<E: Element> MatmulOps for CpuBackend<E> {
    fn matmul_fwd(&self, a: &Tensor<E>, b: &Tensor<E>, t: Transpose) -> Result<Tensor<E>> {
        let p = Plan::of(a.shape(), b.shape(), t)?;
        let c = matmul(a.data(), b.data(), t, &p);
        Tensor::new(p.out, c)
    }

    fn matmul_bwd(
        &self,
        a: &Tensor<E>,
        b: &Tensor<E>,
        t: Transpose,
        dc: &Tensor<E>,
    ) -> Result<(Tensor<E>, Tensor<E>)> {
        use Transpose::*;
        let p = Plan::of(a.shape(), b.shape(), t)?;
        if dc.shape() != &p.out {
            return Err(shape_error(
                "matmul_bwd",
                &[a.shape(), b.shape(), dc.shape()],
                format!("dc must have the output shape {}", p.out),
            ));
        }
        let (m, n, k) = (p.m, p.n, p.k);
        // dA: stored like a. For op(A) = A it is dC · op(B)ᵀ; for op(A) = Aᵀ it is op(B) · dCᵀ.
        let da = if !t.a() {
            let tt = if t.b() { NN } else { NT };
            let q = Plan {
                batch: p.batch,
                b_shared: p.b_shared,
                m,
                n: k,
                k: n,
                out: a.shape().clone(),
            };
            matmul(dc.data(), b.data(), tt, &q)
        } else {
            // a_i stored [k, m]: dA_i = op(B_i) · dC_iᵀ, with op(B_i) = B_i or B_iᵀ.
            let tt = if t.b() { TT } else { NT };
            let mut out = vec![E::zero(); p.batch * k * m];
            let b_stride = if p.b_shared { 0 } else { k * n };
            out.par_chunks_mut(k * m).enumerate().for_each(|(i, oi)| {
                let bi = &b.data()[i * b_stride..i * b_stride + k * n];
                let di = &dc.data()[i * m * n..(i + 1) * m * n];
                gemm_into(k, m, n, bi, tt.a(), di, tt.b(), oi, false, p.batch == 1);
            });
            out
        };
        // dB: stored like b. For op(B) = B it is op(A)ᵀ · dC; for op(B) = Bᵀ it is dCᵀ · op(A).
        let (lhs, rhs, tt, rows, cols) = match (t.a(), t.b()) {
            (false, false) => (a.data(), dc.data(), TN, k, n),
            (true, false) => (a.data(), dc.data(), NN, k, n),
            (false, true) => (dc.data(), a.data(), TN, n, k),
            (true, true) => (dc.data(), a.data(), TT, n, k),
        };
        let db = if p.b_shared && !t.a() {
            // Fold the batch into the reduction dimension: one large GEMM.
            let mut out = vec![E::zero(); rows * cols];
            gemm_into(
                rows,
                cols,
                p.batch * m,
                lhs,
                true,
                rhs,
                tt.b(),
                &mut out,
                false,
                true,
            );
            out
        } else if p.b_shared {
            matmul_summed(lhs, rhs, tt, p.batch, rows, cols, m)
        } else {
            let q = Plan {
                batch: p.batch,
                b_shared: false,
                m: rows,
                n: cols,
                k: m,
                out: b.shape().clone(),
            };
            matmul(lhs, rhs, tt, &q)
        };
        Ok((
            Tensor::new(a.shape().clone(), da)?,
            Tensor::new(b.shape().clone(), db)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `C (+)= A · Bᵀ` by the definition, in f64, into a block at row stride `ldc`.
    fn naive_nt(m: usize, n: usize, k: usize, a: &[f64], b: &[f64], c: &mut [f64], ldc: usize) {
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k).map(|p| a[i * k + p] * b[j * k + p]).sum();
                c[i * ldc + j] += dot;
            }
        }
    }

    #[test]
    fn few_rows_products_match_the_definition_overwriting_and_accumulating() {
        // Few rows (through `few_rows_nt`), and one shape just above the threshold.
        for (m, n, k) in [
            (1, 40, 7),
            (17, 300, 33),
            (64, 96, 48),
            (FEW_ROWS + 1, 140, 9),
        ] {
            let a: Vec<f64> = (0..m * k).map(|i| ((i * 37) % 11) as f64 - 5.0).collect();
            let b: Vec<f64> = (0..n * k).map(|i| ((i * 53) % 13) as f64 - 6.0).collect();
            let ldc = n + 3;
            let start: Vec<f64> = (0..m * ldc).map(|i| (i % 5) as f64).collect();
            for accumulate in [false, true] {
                let mut want = if accumulate {
                    start.clone()
                } else {
                    vec![0.0; m * ldc]
                };
                naive_nt(m, n, k, &a, &b, &mut want, ldc);
                let mut got = start.clone();
                let ld = Strides { a: k, b: k, c: ldc };
                // SAFETY: `got` holds the m × n block at row stride `ldc`.
                unsafe {
                    gemm_strided(
                        m,
                        n,
                        k,
                        &a,
                        false,
                        &b,
                        true,
                        got.as_mut_ptr(),
                        ld,
                        accumulate,
                        true,
                    )
                };
                for i in 0..m {
                    for j in 0..ldc {
                        let (g, w) = (got[i * ldc + j], want[i * ldc + j]);
                        let w = if j < n { w } else { start[i * ldc + j] };
                        assert_eq!(
                            g, w,
                            "m {m} n {n} k {k} accumulate {accumulate} at ({i}, {j})"
                        );
                    }
                }
            }
        }
    }
}
