//! f32 GEMMs through the system OpenBLAS (feature `openblas`), which outruns the pure-Rust
//! `gemm` crate by 10–40 % on the shapes of a BERT layer on AVX2 CPUs (`benches/cpu_ops.rs`,
//! `cpu/matmul_*`).
//!
//! OpenBLAS runs on one thread per call: its own worker threads spin after each call and
//! would fight rayon's workers for the cores between GEMMs. A large product is instead split
//! into one block of rows (or columns) per rayon thread. Every output element is reduced
//! over `k` in the same order whatever the split, so results do not depend on the thread
//! count.

use std::ffi::c_int;
use std::sync::Once;

// SAFETY: the declarations match OpenBLAS's `cblas.h` (`CBLAS_ORDER` and `CBLAS_TRANSPOSE`
// are C enums, passed as `int`).
#[link(name = "openblas")]
unsafe extern "C" {
    fn cblas_sgemm(
        order: c_int,
        trans_a: c_int,
        trans_b: c_int,
        m: c_int,
        n: c_int,
        k: c_int,
        alpha: f32,
        a: *const f32,
        lda: c_int,
        b: *const f32,
        ldb: c_int,
        beta: f32,
        c: *mut f32,
        ldc: c_int,
    );
    fn openblas_set_num_threads(threads: c_int);
}

/// `CblasRowMajor`.
const ROW_MAJOR: c_int = 101;
/// `CblasNoTrans` and `CblasTrans`.
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;
/// Multiply-adds below which a product runs as one call (splitting costs more than it gains).
const SPLIT_MIN_MACS: usize = 1 << 18;
/// Fewest rows (or columns) per block of a split product.
const SPLIT_MIN_EXTENT: usize = 16;

/// Whether OpenBLAS can take a product of these extents (its arguments are C `int`s).
pub(super) fn fits(m: usize, n: usize, k: usize) -> bool {
    [m, n, k].iter().all(|&d| c_int::try_from(d).is_ok())
}

/// A pointer that may cross into rayon tasks.
#[derive(Clone, Copy)]
struct Ptr<T>(*mut T);
// SAFETY: the blocks handed to different tasks never overlap (see `sgemm`).
unsafe impl<T> Send for Ptr<T> {}
// SAFETY: as above; tasks only read the shared operands.
unsafe impl<T> Sync for Ptr<T> {}

impl<T> Ptr<T> {
    /// The pointer (a method, so that closures capture the whole `Send` wrapper).
    fn get(self) -> *mut T {
        self.0
    }
}

/// `c (+)= op(a) · op(b)` on row-major buffers, laid out as in `matmul::gemm_into`; `threaded`
/// splits a large product over rayon's threads.
///
/// # Safety
/// `a`, `b` must hold `m · k` and `k · n` elements, `c` must be valid for `m · n` writes
/// (and reads when `accumulate`) without aliasing `a` or `b`; every extent must [`fits`];
/// `m`, `n`, `k` must be positive.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    c: *mut f32,
    accumulate: bool,
    threaded: bool,
) {
    static ONE_THREAD: Once = Once::new();
    // SAFETY: a plain setter of OpenBLAS's thread count.
    ONE_THREAD.call_once(|| unsafe { openblas_set_num_threads(1) });
    let parts = if threaded && m * n * k >= SPLIT_MIN_MACS {
        rayon::current_num_threads()
    } else {
        1
    };
    let (a, b, c) = (
        Ptr(a.as_ptr().cast_mut()),
        Ptr(b.as_ptr().cast_mut()),
        Ptr(c),
    );
    // One block: rows r0..r0+rows and columns c0..c0+cols of C.
    let block = move |r0: usize, rows: usize, c0: usize, cols: usize| {
        if rows == 0 || cols == 0 {
            return;
        }
        let (a_off, lda) = if ta { (r0, m) } else { (r0 * k, k) };
        let (b_off, ldb) = if tb { (c0 * k, k) } else { (c0, n) };
        let int = |d: usize| d as c_int; // every extent fits (the caller's contract)
        // SAFETY: the offsets stay inside the operands (r0 + rows ≤ m, c0 + cols ≤ n), the
        // leading dimensions are those of the full matrices, and blocks of C are disjoint.
        unsafe {
            cblas_sgemm(
                ROW_MAJOR,
                if ta { TRANS } else { NO_TRANS },
                if tb { TRANS } else { NO_TRANS },
                int(rows),
                int(cols),
                int(k),
                1.0,
                a.get().add(a_off),
                int(lda),
                b.get().add(b_off),
                int(ldb),
                if accumulate { 1.0 } else { 0.0 },
                c.get().add(r0 * n + c0),
                int(n),
            )
        }
    };
    use rayon::prelude::*;
    if parts > 1 && m >= parts * SPLIT_MIN_EXTENT {
        let rows = m.div_ceil(parts);
        (0..parts).into_par_iter().for_each(|i| {
            let r0 = (i * rows).min(m);
            block(r0, rows.min(m - r0), 0, n);
        });
    } else if parts > 1 && n >= parts * SPLIT_MIN_EXTENT {
        let cols = n.div_ceil(parts);
        (0..parts).into_par_iter().for_each(|i| {
            let c0 = (i * cols).min(n);
            block(0, m, c0, cols.min(n - c0));
        });
    } else {
        block(0, m, 0, n);
    }
}
