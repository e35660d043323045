//! f32 GEMMs through OpenBLAS where the system has it, which outruns the pure-Rust `gemm`
//! crate by 10–40 % on the shapes of a BERT layer on AVX2 CPUs (`benches/cpu_ops.rs`,
//! `cpu/matmul_*`). The library is opened at run time (`libopenblas.so.0`, as Debian's
//! `libopenblas0` installs it), so nothing is needed to build or run without it: every GEMM
//! then stays in the `gemm` crate.
//!
//! OpenBLAS picks its kernels for the CPU it finds at load time, and a release older than
//! the CPU falls back to kernels for a CPU of 2004 (Debian 12's 0.3.21 runs its `Prescott`
//! SSE3 kernels on a Sapphire Rapids Xeon, ten times slower than AVX-512). Such a library is
//! left unused on a CPU with AVX2 and FMA, and the `gemm` crate does the work;
//! `OPENBLAS_CORETYPE` (e.g. `SkylakeX`) makes OpenBLAS load the right kernels instead.
//!
//! OpenBLAS runs on one thread per call: its own worker threads spin after each call and
//! would fight rayon's workers for the cores between GEMMs. A large product is instead split
//! into a few blocks of rows (or columns), run in parallel by rayon; the blocks depend on the
//! product's shape only, so results are the same with any number of threads.

use super::SendPtr;
use super::matmul::{PARALLEL_MIN_MACS, Strides};
use std::ffi::c_int;
use std::sync::OnceLock;

/// `cblas_sgemm` as OpenBLAS's `cblas.h` declares it (`CBLAS_ORDER` and `CBLAS_TRANSPOSE`
/// are C enums, passed as `int`).
type Sgemm = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    f32,
    *const f32,
    c_int,
    *const f32,
    c_int,
    f32,
    *mut f32,
    c_int,
);
/// `openblas_set_num_threads`.
type SetThreads = unsafe extern "C" fn(c_int);
/// `openblas_get_corename`: the name of the kernels OpenBLAS chose at load time.
type CoreName = unsafe extern "C" fn() -> *const std::ffi::c_char;

/// Library names tried in turn.
const LIBRARIES: [&str; 3] = ["libopenblas.so.0", "libopenblas.so", "libopenblas.dylib"];
/// Setting this variable (to anything) keeps every GEMM in the pure-Rust `gemm` crate.
pub const OFF_VAR: &str = "PRUNE_NO_OPENBLAS";

/// OpenBLAS kernels (`openblas_get_corename`) for CPUs without AVX2: slower than the `gemm`
/// crate on a CPU that has it.
const PRE_AVX2_CORES: [&str; 20] = [
    "Unknown",
    "Katmai",
    "Coppermine",
    "Northwood",
    "Prescott",
    "Banias",
    "Atom",
    "Core2",
    "Penryn",
    "Dunnington",
    "Nehalem",
    "Athlon",
    "Opteron",
    "Opteron_SSE3",
    "Barcelona",
    "Nano",
    "Sandybridge",
    "Bobcat",
    "Bulldozer",
    "Piledriver",
];

/// Whether OpenBLAS kernels named `core` would leave a CPU with AVX2 and FMA
/// (`cpu_has_avx2`) half idle.
fn outdated_for_this_cpu(core: &str, cpu_has_avx2: bool) -> bool {
    cpu_has_avx2 && PRE_AVX2_CORES.iter().any(|c| c.eq_ignore_ascii_case(core))
}

/// What was found of OpenBLAS: its `cblas_sgemm` when it is used, and why not otherwise.
struct Loaded {
    sgemm: Option<Sgemm>,
    /// Where f32 GEMMs run, in words (for `prune bench`).
    description: String,
}

/// OpenBLAS, loaded once; `sgemm` is `None` where the library is missing, [`OFF_VAR`] is
/// set or its kernels are outdated for this CPU: the `gemm` crate then does the work.
fn library() -> &'static Loaded {
    static LOADED: OnceLock<Loaded> = OnceLock::new();
    LOADED.get_or_init(|| {
        let unused = |why: String| Loaded {
            sgemm: None,
            description: format!("the gemm crate ({why})"),
        };
        if std::env::var_os(OFF_VAR).is_some() {
            return unused(format!("{OFF_VAR} is set"));
        }
        // SAFETY: loading OpenBLAS runs only its own initialisers, and the symbols are
        // read with the types its header declares. The library is never unloaded (leaked),
        // so the function pointers stay valid; the core name is a static C string.
        unsafe {
            let Some(lib) = LIBRARIES
                .iter()
                .find_map(|&name| libloading::Library::new(name).ok())
            else {
                return unused("no OpenBLAS found".into());
            };
            let (Ok(sgemm), Ok(threads)) = (
                lib.get::<Sgemm>(b"cblas_sgemm\0"),
                lib.get::<SetThreads>(b"openblas_set_num_threads\0"),
            ) else {
                return unused(
                    "the OpenBLAS found lacks cblas_sgemm or openblas_set_num_threads".into(),
                );
            };
            let (sgemm, threads) = (*sgemm, *threads);
            let core = match lib.get::<CoreName>(b"openblas_get_corename\0") {
                Ok(name) => std::ffi::CStr::from_ptr(name())
                    .to_string_lossy()
                    .into_owned(),
                Err(_) => String::from("unnamed"),
            };
            std::mem::forget(lib);
            #[cfg(target_arch = "x86_64")]
            let cpu_has_avx2 = super::simd::has_avx2_fma();
            #[cfg(not(target_arch = "x86_64"))]
            let cpu_has_avx2 = false;
            if outdated_for_this_cpu(&core, cpu_has_avx2) {
                return unused(format!(
                    "OpenBLAS chose its {core} kernels, outdated for this CPU; \
                     OPENBLAS_CORETYPE overrides"
                ));
            }
            threads(1);
            Loaded {
                sgemm: Some(sgemm),
                description: format!("OpenBLAS, {core} kernels"),
            }
        }
    })
}

/// Where f32 GEMMs run here, in words: OpenBLAS and its kernels, or the `gemm` crate and why.
pub fn description() -> &'static str {
    &library().description
}

/// `CblasRowMajor`.
const ROW_MAJOR: c_int = 101;
/// `CblasNoTrans` and `CblasTrans`.
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;
/// Blocks a large product is split into (along its longer side), whatever the thread count.
const PARTS: usize = 4;
/// Fewest rows (or columns) per block of a split product.
const SPLIT_MIN_EXTENT: usize = 32;

/// OpenBLAS's `cblas_sgemm` when it is loaded and can take a product of these extents and
/// strides (its arguments are C `int`s).
pub(super) fn for_extents(m: usize, n: usize, k: usize, ld: Strides) -> Option<Sgemm> {
    let fits = [m, n, k, ld.a, ld.b, ld.c]
        .iter()
        .all(|&d| c_int::try_from(d).is_ok());
    library().sgemm.filter(|_| fits)
}

/// `c (+)= op(a) · op(b)` on row-major blocks with row strides `ld`, laid out as in
/// `matmul::gemm_strided`, with `cblas_sgemm` from [`for_extents`]; `threaded` splits a large
/// product into blocks run in parallel.
///
/// # Safety
/// As `matmul::gemm_strided`, whose checks must have passed; `m`, `n`, `k` must be positive
/// and `cblas_sgemm` must come from [`for_extents`] for them.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn sgemm(
    cblas_sgemm: Sgemm,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    c: *mut f32,
    ld: Strides,
    accumulate: bool,
    threaded: bool,
) {
    let (a, b, c) = (
        SendPtr(a.as_ptr().cast_mut()),
        SendPtr(b.as_ptr().cast_mut()),
        SendPtr(c),
    );
    // One block: rows r0..r0+rows and columns c0..c0+cols of C.
    let block = move |r0: usize, rows: usize, c0: usize, cols: usize| {
        if rows == 0 || cols == 0 {
            return;
        }
        let (a_off, lda) = if ta { (r0, ld.a) } else { (r0 * ld.a, ld.a) };
        let (b_off, ldb) = if tb { (c0 * ld.b, ld.b) } else { (c0, ld.b) };
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
                c.get().add(r0 * ld.c + c0),
                int(ld.c),
            )
        }
    };
    use rayon::prelude::*;
    // The blocks depend on the shape alone, never on the thread count: OpenBLAS rounds a
    // block of a few rows differently from a large one, and runs must not depend on how
    // many threads they had.
    let split = threaded && m * n * k >= PARALLEL_MIN_MACS;
    let extent = |d: usize| (d.div_ceil(PARTS).div_ceil(16) * 16).max(SPLIT_MIN_EXTENT);
    if split && m >= n && m > SPLIT_MIN_EXTENT {
        let rows = extent(m);
        (0..m.div_ceil(rows)).into_par_iter().for_each(|i| {
            let r0 = i * rows;
            block(r0, rows.min(m - r0), 0, n);
        });
    } else if split && n > SPLIT_MIN_EXTENT {
        let cols = extent(n);
        (0..n.div_ceil(cols)).into_par_iter().for_each(|i| {
            let c0 = i * cols;
            block(0, m, c0, cols.min(n - c0));
        });
    } else {
        block(0, m, 0, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_without_avx2_are_outdated_only_on_a_cpu_that_has_it() {
        assert!(outdated_for_this_cpu("Prescott", true));
        assert!(outdated_for_this_cpu("sandybridge", true));
        assert!(!outdated_for_this_cpu("Prescott", false));
        for modern in ["Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"] {
            assert!(!outdated_for_this_cpu(modern, true), "{modern}");
        }
    }

    #[test]
    fn the_description_names_the_gemm_that_runs() {
        let text = description();
        let used = library().sgemm.is_some();
        assert_eq!(used, text.starts_with("OpenBLAS"), "{text}");
    }
}
