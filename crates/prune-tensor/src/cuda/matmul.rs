//! Matrix products on the GPU through cuBLAS: one GEMM when the right operand is shared
//! (linear layers, batch folded into rows), strided-batched GEMMs when both are batched
//! (attention). Row-major `C = op(A)·op(B)` is computed as the column-major
//! `Cᵀ = op(B)ᵀ·op(A)ᵀ`, which needs no copy.

use super::launch::OrDevice;
use super::{CudaBackend, CudaTensor, int};
use crate::checks::MatmulGeometry;
use crate::error::{Result, shape_error};
use crate::{AttentionOps, LinearOps, MatmulOps, Transpose};
use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{Gemm as _, GemmConfig, StridedBatchedConfig};
use cudarc::driver::{DevicePtr, DevicePtrMut};

/// One row-major (strided-batched) product `c_i = op(a_i)·op(b_i) (+ c_i)`: `a_i` stored
/// `[m, k]` (`[k, m]` when `ta`), `b_i` `[k, n]` (`[n, k]` when `tb`), `c_i` `[m, n]`. A stride
/// of 0 shares one operand across the batch.
#[derive(Clone, Copy, Debug)]
struct Product {
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
    batch: usize,
    stride_a: usize,
    stride_b: usize,
    accumulate: bool,
}

impl CudaBackend {
    /// Runs `p` on cuBLAS, writing `c` (which holds `batch · m · n` elements).
    fn product(
        &self,
        op: &'static str,
        p: Product,
        a: &impl DevicePtr<f32>,
        b: &impl DevicePtr<f32>,
        c: &mut impl DevicePtrMut<f32>,
    ) -> Result<()> {
        if p.m == 0 || p.n == 0 || p.batch == 0 {
            return Ok(());
        }
        let trans = |t: bool| {
            if t {
                cublasOperation_t::CUBLAS_OP_T
            } else {
                cublasOperation_t::CUBLAS_OP_N
            }
        };
        let gemm = GemmConfig {
            transa: trans(p.tb),
            transb: trans(p.ta),
            m: int(op, p.n)?,
            n: int(op, p.m)?,
            k: int(op, p.k)?,
            alpha: 1.0f32,
            lda: int(op, if p.tb { p.k } else { p.n }.max(1))?,
            ldb: int(op, if p.ta { p.m } else { p.k }.max(1))?,
            beta: if p.accumulate { 1.0 } else { 0.0 },
            ldc: int(op, p.n)?,
        };
        // SAFETY: the callers size `a`, `b` and `c` for `batch` products of this geometry
        // (checked by `matmul_output_shape`), and the leading dimensions above match the
        // row-major layouts.
        let done = unsafe {
            if p.batch == 1 {
                self.blas.gemm(gemm, b, a, c)
            } else {
                let cfg = StridedBatchedConfig {
                    gemm,
                    batch_size: int(op, p.batch)?,
                    stride_a: p.stride_b as i64,
                    stride_b: p.stride_a as i64,
                    stride_c: (p.m * p.n) as i64,
                };
                self.blas.gemm_strided_batched(cfg, b, a, c)
            }
        };
        done.or_device(op)
    }
}

/// The geometry of a matmul.
type Plan = MatmulGeometry;

impl Plan {
    /// `op(a_i)·op(b_i)` for every batch entry with transposes `t`, folding the batch into
    /// the rows when `b` is shared and `a` is not transposed (one large GEMM).
    fn forward(&self, t: Transpose) -> Product {
        let fold = self.b_shared && !t.a();
        Product {
            m: if fold { self.batch * self.m } else { self.m },
            n: self.n,
            k: self.k,
            ta: t.a(),
            tb: t.b(),
            batch: if fold { 1 } else { self.batch },
            stride_a: self.m * self.k,
            stride_b: if self.b_shared { 0 } else { self.k * self.n },
            accumulate: false,
        }
    }
}

/// Per-head attention products through the composed defaults (copies into `[B, H, T, D]`,
/// then cuBLAS's batched GEMMs).
impl AttentionOps for CudaBackend {}

/// A linear layer as its GEMM and the bias kernel.
impl LinearOps for CudaBackend {}

impl MatmulOps for CudaBackend {
    fn matmul_fwd(&self, a: &CudaTensor, b: &CudaTensor, t: Transpose) -> Result<CudaTensor> {
        let p = Plan::of(&a.shape, &b.shape, t)?;
        let mut c = self.alloc("matmul_fwd", p.out.clone())?;
        self.product("matmul_fwd", p.forward(t), &a.data, &b.data, &mut c.data)?;
        Ok(c)
    }

    fn matmul_bwd(
        &self,
        a: &CudaTensor,
        b: &CudaTensor,
        t: Transpose,
        dc: &CudaTensor,
    ) -> Result<(CudaTensor, CudaTensor)> {
        use Transpose::*;
        const OP: &str = "matmul_bwd";
        let p = Plan::of(&a.shape, &b.shape, t)?;
        if dc.shape != p.out {
            return Err(shape_error(
                OP,
                &[&a.shape, &b.shape, &dc.shape],
                format!("dc must have the output shape {}", p.out),
            ));
        }
        let (m, n, k) = (p.m, p.n, p.k);
        let b_stride = if p.b_shared { 0 } else { k * n };
        // dA, stored like a. For op(A) = A it is dC · op(B)ᵀ; for op(A) = Aᵀ it is op(B) · dCᵀ.
        let mut da = self.alloc(OP, a.shape.clone())?;
        if !t.a() {
            let q = Plan {
                batch: p.batch,
                b_shared: p.b_shared,
                m,
                n: k,
                k: n,
                out: a.shape.clone(),
            };
            let tt = if t.b() { NN } else { NT };
            self.product(OP, q.forward(tt), &dc.data, &b.data, &mut da.data)?;
        } else {
            let tt = if t.b() { TT } else { NT };
            let prod = Product {
                m: k,
                n: m,
                k: n,
                ta: tt.a(),
                tb: tt.b(),
                batch: p.batch,
                stride_a: b_stride,
                stride_b: m * n,
                accumulate: false,
            };
            self.product(OP, prod, &b.data, &dc.data, &mut da.data)?;
        }
        // dB, stored like b. For op(B) = B it is op(A)ᵀ · dC; for op(B) = Bᵀ it is dCᵀ · op(A).
        let (lhs, rhs, tt, rows, cols) = match (t.a(), t.b()) {
            (false, false) => (&a.data, &dc.data, TN, k, n),
            (true, false) => (&a.data, &dc.data, NN, k, n),
            (false, true) => (&dc.data, &a.data, TN, n, k),
            (true, true) => (&dc.data, &a.data, TT, n, k),
        };
        let mut db = self.alloc(OP, b.shape.clone())?;
        let entry = Product {
            m: rows,
            n: cols,
            k: m,
            ta: tt.a(),
            tb: tt.b(),
            batch: 1,
            stride_a: 0,
            stride_b: 0,
            accumulate: false,
        };
        if p.b_shared && !t.a() {
            // lhs is [batch·m, rows] here: fold the batch into the reduction (one GEMM).
            let folded = Product {
                k: p.batch * m,
                ..entry
            };
            self.product(OP, folded, lhs, rhs, &mut db.data)?;
        } else if p.b_shared {
            // Σ over the batch: one GEMM per entry, accumulating after the first.
            for i in 0..p.batch {
                let (l, r) = (lhs.slice(i * m * rows..), rhs.slice(i * m * cols..));
                let acc = Product {
                    accumulate: i > 0,
                    ..entry
                };
                self.product(OP, acc, &l, &r, &mut db.data)?;
            }
            if p.batch == 0 {
                db = self.zeroed(OP, b.shape.clone())?;
            }
        } else {
            let batched = Product {
                batch: p.batch,
                stride_a: m * rows,
                stride_b: m * cols,
                ..entry
            };
            self.product(OP, batched, lhs, rhs, &mut db.data)?;
        }
        Ok((da, db))
    }
}
