//! f32 GEMMs with bf16 inputs on Intel AMX, an opt-in for inference and training
//! ([`set_bf16_products`]).
//!
//! Each operand is rounded to bf16 (to nearest, ties to even) and packed, and the tile unit
//! multiplies 16 × 32 bf16 tiles into 16 × 16 f32 accumulators (`tdpbf16ps`), many more
//! multiply-adds per cycle than AVX-512's f32 FMAs. Products and sums are f32, so the only
//! loss is the inputs' rounding to 8 bits of mantissa (relative error ≤ 2⁻⁹ each); PyTorch's
//! bf16 autocast rounds the outputs as well.
//!
//! Layout: `A` is packed as row blocks of [`BLOCK`] rows, `K` padded with zeros to a multiple
//! of [`TILE_K`], tile by tile (each 16 × 32 tile's 1 KiB contiguous, see [`a_index`]); `B`
//! as panels of 16 columns in the tile unit's pair layout (row `p` of a panel holds
//! `B[2p][j]`, `B[2p+1][j]` side by side for its 16 columns `j`). One kernel call computes a
//! [`BLOCK`] × [`BLOCK`] block of `C` in four accumulator tiles, over one slice of the depth
//! ([`DEPTH`]). Each element of `C` is summed by one kernel call per slice in a fixed
//! order, so results do not depend on threads. The rounding runs 32 elements per instruction
//! (`vcvtne2ps2bf16`, AVX-512 BF16, which every CPU with AMX-BF16 has); a transposed operand
//! is rounded along its rows and transposed through a small staging block. Products under
//! [`MIN_MACS`] multiply-adds or [`MIN_ROWS`] rows stay f32.
//!
//! Here: the switch, the grant and the driver; `pack` rounds and lays out the operands,
//! `tile` holds the block kernels (inline assembly). The packing and the driver are shared
//! with a scalar model of the tile instruction, which runs on every CPU, so that the tests
//! check them everywhere; the tile kernel itself runs only where the CPU has AMX and the OS
//! grants its state (Linux's `arch_prctl`).

mod pack;
mod tile;

use super::SendPtr;
use super::matmul::{PARALLEL_MIN_MACS, Strides};
use pack::{pack_a_columns, pack_a_rows, pack_b, rounded};
use rayon::prelude::*;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// Rows (and columns) of `C` one kernel call computes: two tiles of 16 each way.
const BLOCK: usize = 32;
/// Columns of a `B` panel (one tile's width of f32 results).
const PANEL: usize = 16;
/// Depth one tile multiply consumes: 32 bf16 (64 bytes) per row of an `A` tile.
const TILE_K: usize = 32;

/// Whether products of f32 operands run in bf16 on AMX (set by [`set_bf16_products`]).
static BF16_PRODUCTS: AtomicBool = AtomicBool::new(false);

/// Why bf16 products cannot run here.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "bf16 products need Intel AMX (AMX-TILE and AMX-BF16) with tile state enabled by the OS: {0}"
)]
pub struct AmxUnavailable(pub &'static str);

/// Turns bf16 products on or off for every f32 GEMM of the CPU backend in this process (the
/// small ones stay f32). Fails, leaving them off, where the CPU or OS lacks AMX.
pub fn set_bf16_products(on: bool) -> Result<(), AmxUnavailable> {
    if on {
        tile_unit()?;
    }
    BF16_PRODUCTS.store(on, Ordering::Relaxed);
    Ok(())
}

/// Keeps bf16 products on while alive (when it turned them on), then restores what was set.
#[must_use = "the previous setting is restored when this is dropped"]
pub struct Bf16Scope(Option<bool>);

impl Bf16Scope {
    /// Turns bf16 products on when `on` (an error where AMX is unavailable); with `on` false
    /// it changes nothing.
    pub fn enter(on: bool) -> Result<Self, AmxUnavailable> {
        if !on {
            return Ok(Bf16Scope(None));
        }
        let before = bf16_products();
        set_bf16_products(true)?;
        Ok(Bf16Scope(Some(before)))
    }
}

impl Drop for Bf16Scope {
    fn drop(&mut self) {
        if let Some(before) = self.0 {
            BF16_PRODUCTS.store(before, Ordering::Relaxed);
        }
    }
}

/// Whether bf16 products can run here: `Ok` where the CPU has AMX and the OS grants it.
pub fn check_bf16_products() -> Result<(), AmxUnavailable> {
    tile_unit()
}

/// Whether f32 GEMMs currently run in bf16 on AMX.
pub fn bf16_products() -> bool {
    BF16_PRODUCTS.load(Ordering::Relaxed)
}

/// Where element `l` of row `i` of a packed block of `A` lies: the block is stored [`TILE_K`]
/// columns at a time, each such slab of [`BLOCK`] rows contiguous, so that a tile load reads
/// 1 KiB in one run rather than 16 lines a row apart (rows a power of two apart share cache
/// sets, and the loads stalled on them).
#[inline(always)]
fn a_index(i: usize, l: usize) -> usize {
    (l / TILE_K) * (BLOCK * TILE_K) + i * TILE_K + l % TILE_K
}

/// Multiply-adds below which a product stays f32: rounding and packing both operands costs
/// more than the tile unit saves (attention's per-head products, 128 × 128 × 32, ran 2-4×
/// slower).
const MIN_MACS: usize = 1 << 21;

/// Rows of `C` below which a product stays f32: `B` (a layer's weights) is rounded and
/// packed on every call, and over fewer rows that costs more than it saves (MiniLM at one
/// sequence of 64 tokens ran 10-45% slower, at 128 tokens faster).
const MIN_ROWS: usize = 128;

/// Whether a product of these extents is large enough to run faster on the tile unit.
pub(super) fn pays(m: usize, n: usize, k: usize) -> bool {
    m >= MIN_ROWS && m * n * k >= MIN_MACS
}

/// Checks once that the CPU has AMX-TILE and AMX-BF16 and asks Linux for the tile state.
fn tile_unit() -> Result<(), AmxUnavailable> {
    static GRANTED: OnceLock<Result<(), AmxUnavailable>> = OnceLock::new();
    GRANTED.get_or_init(request_tile_state).clone()
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_state() -> Result<(), AmxUnavailable> {
    if std::arch::x86_64::__cpuid(0).eax < 7 {
        return Err(AmxUnavailable("this CPU has none"));
    }
    let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
    let (amx_bf16, amx_tile) = (leaf7.edx & (1 << 22) != 0, leaf7.edx & (1 << 24) != 0);
    if !(amx_bf16 && amx_tile) {
        return Err(AmxUnavailable("this CPU has none"));
    }
    /// `ARCH_REQ_XCOMP_PERM` and the tile data's state component (`XFEATURE_XTILEDATA`).
    const ARCH_REQ_XCOMP_PERM: libc::c_int = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_ulong = 18;
    // SAFETY: a plain system call with integer arguments.
    let status = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        )
    };
    match status {
        0 => Ok(()),
        _ => Err(AmxUnavailable(
            "Linux refused the tile state (kernel before 5.16?)",
        )),
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn request_tile_state() -> Result<(), AmxUnavailable> {
    Err(AmxUnavailable("supported on x86-64 Linux only"))
}

/// How one [`BLOCK`] × [`BLOCK`] block of `C` is computed from packed operands over one
/// slice of the depth: `a` is a block of `BLOCK` rows of `depth` bf16, `b` the two panels of
/// its columns from the slice's first pair row on (each `depth / 2` rows of `2 · PANEL`
/// bf16, `panel` elements apart); the f32 result is written to (or, with `accumulate`, added
/// to) the block at `c`, whose rows are `ldc` elements apart.
///
/// # Safety
/// `c` must be valid for reads and writes of that block, which no other thread touches, and
/// the kernel's `begin` must have run on this thread since its last `end`.
type BlockFn = unsafe fn(&[u16], &[u16], usize, usize, *mut f32, usize, bool);

/// A block kernel and what it needs done around a run of blocks on one thread.
#[derive(Clone, Copy)]
pub(super) struct Kernel {
    block: BlockFn,
    begin: fn(),
    end: fn(),
}

pub(super) use tile::TILE_KERNEL;

/// Depth of one pass over `C`: a packed block of `A` (32 rows of 1024 bf16, 64 KiB, read in
/// order) meets every column of `B`'s slice while that slice stays in L2. Undivided, a deep
/// product (a weight gradient, whose depth is the batch's tokens) streamed all of `B` from
/// memory once per block of rows: the 384 × 1536 weight gradient over 4096 tokens ran at
/// 170–290 GFLOP/s, in slices 275–305. Chosen by measurement: the twelve products of a
/// MiniLM layer's training step at 4096 rows took 7 % less time in slices of 1024 than of
/// 512, 13 % less than of 2048 (sums of minimums, four rounds), more in slices of 256.
const DEPTH: usize = 1024;

/// `c (+)= op(a) · op(b)` in bf16 products with f32 sums, laid out as in
/// `matmul::gemm_strided`, each block of `C` computed by `kernel` ([`TILE_KERNEL`], or the
/// scalar model in tests); `threaded` spreads blocks of rows over rayon. The depth is taken
/// [`DEPTH`] at a time, each slice added to the sums of the ones before it (exactly: the
/// accumulators are f32 either way).
///
/// # Safety
/// As `matmul::gemm_strided`, whose checks must have passed, with `m`, `n`, `k` positive;
/// for [`TILE_KERNEL`], [`set_bf16_products`] must have succeeded (the tile unit is granted).
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn gemm(
    kernel: Kernel,
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
    let kp = k.div_ceil(TILE_K) * TILE_K;
    let panels = pack_b(b, tb, ld.b, k, n, kp);
    // A transposed `a` is rounded whole first: its rows are the long runs.
    let at = ta.then(|| rounded(a, ld.a, k, m));
    let panel = kp * PANEL;
    let c = SendPtr(c);
    for l0 in (0..kp).step_by(DEPTH) {
        let depth = DEPTH.min(kp - l0);
        let accumulate = accumulate || l0 > 0;
        let slice = Slice { l0, depth, k };
        let row_block = |r0: usize| {
            let rows = BLOCK.min(m - r0);
            let a_block = match &at {
                Some(at) => pack_a_columns(at, m, r0, rows, &slice),
                None => pack_a_rows(a, ld.a, r0, rows, &slice),
            };
            let mut edge = [0.0f32; BLOCK * BLOCK];
            (kernel.begin)();
            for c0 in (0..n).step_by(BLOCK) {
                let b_panels = &panels[(c0 / PANEL) * panel + l0 * PANEL..];
                let cols = BLOCK.min(n - c0);
                // SAFETY: rows r0..r0 + rows ≤ m and columns c0..c0 + cols ≤ n of C, which
                // the caller lets this call write; row blocks are disjoint between tasks.
                let at_c = |i: usize| unsafe { c.get().add((r0 + i) * ld.c + c0) };
                if rows == BLOCK && cols == BLOCK {
                    // SAFETY: as above; `begin` ran on this thread.
                    unsafe {
                        (kernel.block)(&a_block, b_panels, panel, depth, at_c(0), ld.c, accumulate)
                    };
                    continue;
                }
                // A block at the edge of C: computed whole in `edge`, from and to its part
                // of C, so that its sums run in the same order as a whole block's.
                if accumulate {
                    for (i, row) in edge.chunks_exact_mut(BLOCK).take(rows).enumerate() {
                        // SAFETY: row r0 + i, columns c0..c0 + cols of C, as above.
                        let part = unsafe { std::slice::from_raw_parts(at_c(i), cols) };
                        row[..cols].copy_from_slice(part);
                    }
                }
                let out = edge.as_mut_ptr();
                // SAFETY: `edge` is a whole block; `begin` ran on this thread.
                unsafe { (kernel.block)(&a_block, b_panels, panel, depth, out, BLOCK, accumulate) };
                for (i, row) in edge.chunks_exact(BLOCK).take(rows).enumerate() {
                    // SAFETY: as above.
                    let part = unsafe { std::slice::from_raw_parts_mut(at_c(i), cols) };
                    part.copy_from_slice(&row[..cols]);
                }
            }
            (kernel.end)();
        };
        let blocks = 0..m.div_ceil(BLOCK);
        if threaded && m * n * k >= PARALLEL_MIN_MACS {
            blocks.into_par_iter().for_each(|i| row_block(i * BLOCK));
        } else {
            blocks.for_each(|i| row_block(i * BLOCK));
        }
    }
}

/// One slice of the depth: packed columns `l0..l0 + depth` (the depth padded to whole tiles),
/// of which those below `k` hold data.
pub(super) struct Slice {
    l0: usize,
    depth: usize,
    k: usize,
}

impl Slice {
    /// Columns of the slice that hold data (the rest are padding zeros).
    fn filled(&self) -> usize {
        self.depth.min(self.k.saturating_sub(self.l0))
    }
}

#[cfg(test)]
mod tests {
    use super::pack::{convert, from_bf16, to_bf16};
    use super::tile::SCALAR_KERNEL;
    use super::*;

    /// `op(a) · op(b)` in f64 from the bf16-rounded inputs, plus `c0` when given.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        m: usize,
        n: usize,
        k: usize,
        a: &[f32],
        ta: bool,
        b: &[f32],
        tb: bool,
        c0: Option<&[f32]>,
    ) -> Vec<f64> {
        let r = |x: f32| f64::from(from_bf16(to_bf16(x)));
        let mut c = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = c0.map_or(0.0, |c0| f64::from(c0[i * n + j]));
                for l in 0..k {
                    let x = if ta { a[l * m + i] } else { a[i * k + l] };
                    let y = if tb { b[j * k + l] } else { b[l * n + j] };
                    s += r(x) * r(y);
                }
                c[i * n + j] = s;
            }
        }
        c
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 2001) as f32
                    / 1000.0
                    - 1.0
            })
            .collect()
    }

    /// Runs `kernel` on odd shapes (deep enough for several slices, large enough for parallel
    /// packing), both transposes, overwrite and accumulate, and compares with the f64
    /// reference of the rounded inputs.
    fn check(kernel: Kernel) {
        for &(m, n, k) in &[
            (1, 1, 1),
            (5, 7, 3),
            (33, 17, 40),
            (64, 96, 64),
            (70, 45, 129),
            (37, 40, 1100), // two slices of the depth, the last part padding
            (40, 96, 701),  // `B` packed in parallel
        ] {
            for (ta, tb, acc) in [
                (false, false, false),
                (true, false, true),
                (false, true, true),
                (true, true, false),
            ] {
                let (a, b) = (values(m * k, 1), values(k * n, 2));
                let start = values(m * n, 3);
                let mut c = start.clone();
                let ld = Strides::dense(m, n, k, ta, tb);
                // SAFETY: dense operands of exactly these extents; `c` is owned here.
                unsafe {
                    gemm(
                        kernel,
                        m,
                        n,
                        k,
                        &a,
                        ta,
                        &b,
                        tb,
                        c.as_mut_ptr(),
                        ld,
                        acc,
                        true,
                    )
                };
                let want = reference(m, n, k, &a, ta, &b, tb, acc.then_some(&start[..]));
                for (got, want) in c.iter().zip(&want) {
                    let tol = 1e-6 * k as f64 * (1.0 + want.abs());
                    assert!(
                        (f64::from(*got) - want).abs() < tol,
                        "{m}x{n}x{k} ta={ta} tb={tb}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn packing_and_blocks_give_the_products_of_the_rounded_inputs() {
        check(SCALAR_KERNEL);
    }

    #[test]
    fn the_tile_unit_gives_the_products_of_the_rounded_inputs() {
        match tile_unit() {
            Ok(()) => check(TILE_KERNEL),
            Err(why) => eprintln!("skipped: {why}"),
        }
    }

    #[test]
    fn converting_runs_rounds_every_element_as_to_bf16_does() {
        // Every length up to three vectors and a bit (the 32-wide, 16-wide and scalar steps),
        // with ties, negatives, overflow to infinity and NaN.
        let special = [
            1.0 + 1.0 / 256.0,
            -1.0 - 3.0 / 256.0,
            f32::MAX,
            f32::INFINITY,
        ];
        for len in 0..=100 {
            let mut src = values(len, 7);
            for (s, v) in src.iter_mut().step_by(5).zip(special.iter().cycle()) {
                *s = *v;
            }
            if len > 3 {
                src[3] = f32::NAN;
            }
            let mut dst = vec![0u16; len];
            convert(&src, &mut dst);
            for (&x, &h) in src.iter().zip(&dst) {
                match x.is_nan() {
                    true => assert!(from_bf16(h).is_nan()),
                    false => assert_eq!(h, to_bf16(x), "{x} at length {len}"),
                }
            }
        }
    }

    #[test]
    fn rounding_to_bf16_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(to_bf16(f32::MAX), 0x7f80); // rounds up to infinity
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
    }
}
