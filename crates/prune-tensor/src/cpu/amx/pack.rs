//! Rounding f32 to bf16 and laying operands out for the tile unit: row blocks of `A`,
//! pair-layout panels of `B`.

use super::super::{SendPtr, rows_per_task};
use super::{BLOCK, PANEL, Slice, TILE_K, a_index};
use rayon::prelude::*;

/// `x` rounded to bf16 (to nearest, ties to even), as its bits; NaN stays NaN.
#[inline(always)]
pub(super) fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16;
    let quiet_nan = (bits >> 16) | 0x40;
    // A select rather than an early return, so that packing loops vectorise.
    (if x.is_nan() { quiet_nan } else { rounded }) as u16
}

/// The f32 value of bf16 bits.
#[cfg(test)]
pub(super) fn from_bf16(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// `rows` rows of `cols` elements of `src` (rows `ld` apart) rounded to bf16, dense; rows
/// are rounded in parallel, in tasks of the CPU backend's usual size.
pub(super) fn rounded(src: &[f32], ld: usize, rows: usize, cols: usize) -> Vec<u16> {
    let mut out = vec![0u16; rows * cols];
    if cols == 0 {
        return out;
    }
    let per_task = rows_per_task(rows, cols);
    out.par_chunks_mut(per_task * cols)
        .enumerate()
        .for_each(|(t, chunk)| {
            for (i, dst) in chunk.chunks_exact_mut(cols).enumerate() {
                let r = t * per_task + i;
                convert(&src[r * ld..r * ld + cols], dst);
            }
        });
    out
}

/// Rows `r0..r0 + rows` of `a` (`[m, k]`, rows `lda` apart), the columns of `slice`, as
/// bf16: a block of [`BLOCK`] rows of `slice.depth` laid out as [`a_index`] says,
/// zero-padded.
pub(super) fn pack_a_rows(
    a: &[f32],
    lda: usize,
    r0: usize,
    rows: usize,
    slice: &Slice,
) -> Vec<u16> {
    let filled = slice.filled();
    let mut packed = vec![0u16; BLOCK * slice.depth];
    for i in 0..rows {
        let row = &a[(r0 + i) * lda + slice.l0..][..filled];
        convert_runs(row, &mut packed[a_index(i, 0)..], BLOCK * TILE_K);
    }
    packed
}

/// Columns `r0..r0 + rows` of `at` (`[k, m]`, already rounded: `op(a)` is its transpose),
/// the rows of `slice`, as the rows of a block laid out as [`pack_a_rows`] does: each
/// [`TILE_K`] rows of `at` are read into a small staging block, then written transposed as
/// one contiguous slab.
pub(super) fn pack_a_columns(
    at: &[u16],
    m: usize,
    r0: usize,
    rows: usize,
    slice: &Slice,
) -> Vec<u16> {
    let filled = slice.filled();
    let mut packed = vec![0u16; BLOCK * slice.depth];
    let mut stage = [[0u16; BLOCK]; TILE_K];
    for l in (0..filled).step_by(TILE_K) {
        let lines = TILE_K.min(filled - l);
        for (dl, line) in stage.iter_mut().take(lines).enumerate() {
            let from = (slice.l0 + l + dl) * m + r0;
            line[..rows].copy_from_slice(&at[from..from + rows]);
        }
        for i in 0..rows {
            let at = a_index(i, l);
            for (d, line) in packed[at..at + lines].iter_mut().zip(&stage) {
                *d = line[i];
            }
        }
    }
    packed
}

/// `op(b)` (`[k, n]`) as bf16 panels of [`PANEL`] columns in pair layout, `k` padded to `kp`
/// and `n` to a whole number of [`BLOCK`]s with zeros. One pass over `b`: a few of its rows
/// at a time are rounded into a buffer that stays in cache (along its rows, long runs), then
/// laid out; both steps run in parallel over the buffers.
pub(super) fn pack_b(b: &[f32], tb: bool, ldb: usize, k: usize, n: usize, kp: usize) -> Vec<u16> {
    let panels = n.div_ceil(BLOCK) * (BLOCK / PANEL);
    let panel = kp * PANEL;
    let mut packed = vec![0u16; panels * panel];
    let parallel = k * n >= 1 << 16;
    if tb {
        // Column j of op(b) is row j of b: a panel's rows are rounded, then the pairs of
        // elements of each go side by side.
        let pack_panel = |(p, dst): (usize, &mut [u16])| {
            let j0 = p * PANEL;
            let cols = PANEL.min(n.saturating_sub(j0));
            let mut r = vec![0u16; cols * k];
            for (col, line) in r.chunks_exact_mut(k).enumerate() {
                convert(&b[(j0 + col) * ldb..][..k], line);
            }
            for (col, line) in r.chunks_exact(k).enumerate() {
                for (q, pair) in line.chunks(2).enumerate() {
                    dst[q * 2 * PANEL + 2 * col..][..pair.len()].copy_from_slice(pair);
                }
            }
        };
        match parallel {
            true => packed
                .par_chunks_exact_mut(panel)
                .enumerate()
                .for_each(pack_panel),
            false => packed
                .chunks_exact_mut(panel)
                .enumerate()
                .for_each(pack_panel),
        }
        return packed;
    }
    // Rows 2q and 2q + 1 of op(b) are rows of b: a task rounds its pairs of rows, then
    // interleaves them into pair row q of every panel.
    const PAIRS: usize = 16;
    let out = SendPtr(packed.as_mut_ptr());
    let task = |q0: usize| {
        let q1 = (q0 + PAIRS).min(k.div_ceil(2));
        let mut r = vec![0u16; 2 * (q1 - q0) * n]; // a last odd row pairs with zeros
        for (i, line) in r.chunks_exact_mut(n).take(k - 2 * q0).enumerate() {
            convert(&b[(2 * q0 + i) * ldb..][..n], line);
        }
        for (q, rows) in (q0..q1).zip(r.chunks_exact(2 * n)) {
            let (even, odd) = rows.split_at(n);
            for j0 in (0..n).step_by(PANEL) {
                let cols = PANEL.min(n - j0);
                // SAFETY: pair row q of panel j0 / PANEL, inside `packed`; only this task
                // writes pair rows q0..q1, and `packed` outlives the tasks.
                let row = unsafe {
                    std::slice::from_raw_parts_mut(
                        out.get().add((j0 / PANEL) * panel + q * 2 * PANEL),
                        2 * cols,
                    )
                };
                let pairs = even[j0..j0 + cols].iter().zip(&odd[j0..j0 + cols]);
                for (slot, (&x, &y)) in row.chunks_exact_mut(2).zip(pairs) {
                    slot.copy_from_slice(&[x, y]);
                }
            }
        }
    };
    let tasks = k.div_ceil(2).div_ceil(PAIRS);
    match parallel {
        true => (0..tasks).into_par_iter().for_each(|t| task(t * PAIRS)),
        false => (0..tasks).for_each(|t| task(t * PAIRS)),
    }
    packed
}

/// `src` rounded to bf16 into `dst` (as [`to_bf16`], denormals flushed to zero where the
/// CPU converts, as the tile unit reads them).
pub(super) fn convert(src: &[f32], dst: &mut [u16]) {
    assert_eq!(src.len(), dst.len());
    #[cfg(target_arch = "x86_64")]
    let done = match is_x86_feature_detected!("avx512bf16") {
        // SAFETY: the CPU has AVX-512 BF16 (and so AVX-512 F), checked just here; `dst` is as
        // long as `src`, and its runs of 32 are 32 apart.
        true => unsafe { convert_avx512(src, dst.as_mut_ptr(), TILE_K) },
        false => 0,
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    dst[done..]
        .iter_mut()
        .zip(&src[done..])
        .for_each(|(d, &v)| *d = to_bf16(v));
}

/// `src` rounded to bf16 as [`convert`] does, its runs of [`TILE_K`] elements written `step`
/// elements apart in `dst` (the last run may be shorter).
pub(super) fn convert_runs(src: &[f32], dst: &mut [u16], step: usize) {
    let runs = src.len().div_ceil(TILE_K);
    let last = src.len() - runs.saturating_sub(1) * TILE_K;
    assert!(step >= TILE_K && (runs == 0 || dst.len() >= (runs - 1) * step + last));
    let whole = src.len() / TILE_K * TILE_K;
    #[cfg(target_arch = "x86_64")]
    let done = match is_x86_feature_detected!("avx512bf16") {
        // SAFETY: the CPU has AVX-512 BF16, checked just here; `src[..whole]` is whole runs,
        // each written inside `dst` (the length checked above).
        true => unsafe { convert_avx512(&src[..whole], dst.as_mut_ptr(), step) },
        false => 0,
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    for (r, part) in src[done..].chunks(TILE_K).enumerate() {
        let at = (done / TILE_K + r) * step;
        convert(part, &mut dst[at..at + part.len()]);
    }
}

/// Converts the leading elements of `src` into `dst` 32 at a time with `vcvtne2ps2bf16`,
/// each run of 32 `step` elements after the last (then 16 with `vcvtneps2bf16`, where the
/// next run would start), leaving fewer than 16; returns how many it converted.
///
/// # Safety
/// The CPU must support AVX-512 F and BF16; `dst` must be valid for writes of 32 elements at
/// each multiple of `step` below `src.len() / 32 · step`, and of the 16 after that when
/// `src.len() % 32 ≥ 16`.
#[cfg(target_arch = "x86_64")]
unsafe fn convert_avx512(src: &[f32], dst: *mut u16, step: usize) -> usize {
    let mut left = src.len();
    // SAFETY: each step reads 32 (or 16) f32 from `s` while `left` says that many remain,
    // and writes them where the contract allows. Every vector register is declared
    // clobbered (the C ABI's caller-saved set), so the zmm registers used and `vzeroupper`
    // (which spares the caller's code the AVX-512 upper state) disturb nothing live.
    unsafe {
        std::arch::asm!(
            "2:",
            "cmp rcx, 32",
            "jb 3f",
            "vmovups zmm0, [rsi]",
            "vmovups zmm1, [rsi + 64]",
            "vcvtne2ps2bf16 zmm0, zmm1, zmm0",
            "vmovdqu16 [rdi], zmm0",
            "add rsi, 128",
            "add rdi, {step}",
            "sub rcx, 32",
            "jmp 2b",
            "3:",
            "cmp rcx, 16",
            "jb 4f",
            "vmovups zmm0, [rsi]",
            "vcvtneps2bf16 ymm0, zmm0",
            "vmovdqu16 [rdi], ymm0",
            "sub rcx, 16",
            "4:",
            "vzeroupper",
            step = in(reg) step * 2,
            inout("rsi") src.as_ptr() => _,
            inout("rdi") dst => _,
            inout("rcx") left,
            clobber_abi("C"),
            options(nostack),
        );
    }
    src.len() - left
}
