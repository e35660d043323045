//! Rounding f32 to bf16 and laying operands out for the tile unit: row blocks of `A`,
//! pair-layout panels of `B`.

use super::super::rows_per_task;
use super::{BLOCK, PANEL, TILE_K};
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

/// Rows `r0..r0 + rows` of `a` (`[m, k]`, rows `lda` apart) as bf16, [`BLOCK`] rows of `kp`,
/// zero-padded.
pub(super) fn pack_a_rows(
    a: &[f32],
    lda: usize,
    r0: usize,
    rows: usize,
    k: usize,
    kp: usize,
) -> Vec<u16> {
    let mut packed = vec![0u16; BLOCK * kp];
    for (i, dst) in packed.chunks_exact_mut(kp).take(rows).enumerate() {
        convert(&a[(r0 + i) * lda..(r0 + i) * lda + k], &mut dst[..k]);
    }
    packed
}

/// Columns `r0..r0 + rows` of `at` (`[k, m]`, already rounded: `op(a)` is its transpose) as
/// the rows of a block, laid out as [`pack_a_rows`] does. They go through a small staging
/// block, [`TILE_K`] rows of `at` at a time, so that each packed row is written a line at a
/// time: the packed rows are `kp` apart, a stride that maps them all to the same cache set
/// when `kp` is a multiple of 2048.
pub(super) fn pack_a_columns(
    at: &[u16],
    m: usize,
    r0: usize,
    rows: usize,
    k: usize,
    kp: usize,
) -> Vec<u16> {
    let mut packed = vec![0u16; BLOCK * kp];
    let mut stage = [[0u16; BLOCK]; TILE_K];
    for l0 in (0..k).step_by(TILE_K) {
        let depth = TILE_K.min(k - l0);
        for (dl, line) in stage.iter_mut().take(depth).enumerate() {
            let from = (l0 + dl) * m + r0;
            line[..rows].copy_from_slice(&at[from..from + rows]);
        }
        for (i, dst) in packed.chunks_exact_mut(kp).take(rows).enumerate() {
            for (d, line) in dst[l0..l0 + depth].iter_mut().zip(&stage) {
                *d = line[i];
            }
        }
    }
    packed
}

/// `op(b)` (`[k, n]`) as bf16 panels of [`PANEL`] columns in pair layout, `k` padded to `kp`
/// and `n` to a whole number of [`BLOCK`]s with zeros. `b` is rounded first (along its
/// rows, long runs), then laid out; panels are laid out in parallel.
pub(super) fn pack_b(b: &[f32], tb: bool, ldb: usize, k: usize, n: usize, kp: usize) -> Vec<u16> {
    let panels = n.div_ceil(BLOCK) * (BLOCK / PANEL);
    let panel = kp * PANEL;
    let mut packed = vec![0u16; panels * panel];
    let r = match tb {
        true => rounded(b, ldb, n, k),
        false => rounded(b, ldb, k, n),
    };
    let pack_panel = |(p, dst): (usize, &mut [u16])| {
        let cols = PANEL.min(n.saturating_sub(p * PANEL));
        let j0 = p * PANEL;
        if cols == 0 {
            return; // a padding panel: zeros
        }
        if tb {
            // Column j of op(b) is row j of b: its pairs of elements go side by side.
            for col in 0..cols {
                let column = &r[(j0 + col) * k..(j0 + col + 1) * k];
                for (q, pair) in column.chunks(2).enumerate() {
                    dst[q * 2 * PANEL + 2 * col..][..pair.len()].copy_from_slice(pair);
                }
            }
        } else {
            // Rows 2q and 2q + 1 of op(b) are rows of b: interleaved into pair row q.
            for (q, row) in dst
                .chunks_exact_mut(2 * PANEL)
                .take(k.div_ceil(2))
                .enumerate()
            {
                let even = &r[2 * q * n + j0..2 * q * n + j0 + cols];
                let slots = row.chunks_exact_mut(2);
                if 2 * q + 1 < k {
                    let odd = &r[(2 * q + 1) * n + j0..(2 * q + 1) * n + j0 + cols];
                    for (pair, (&x, &y)) in slots.zip(even.iter().zip(odd)) {
                        pair.copy_from_slice(&[x, y]);
                    }
                } else {
                    slots.zip(even).for_each(|(pair, &x)| pair[0] = x);
                }
            }
        }
    };
    if k * n >= 1 << 16 {
        packed
            .par_chunks_exact_mut(panel)
            .enumerate()
            .for_each(pack_panel);
    } else {
        packed
            .chunks_exact_mut(panel)
            .enumerate()
            .for_each(pack_panel);
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
        // long as `src`.
        true => unsafe { convert_avx512(src, dst) },
        false => 0,
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    dst[done..]
        .iter_mut()
        .zip(&src[done..])
        .for_each(|(d, &v)| *d = to_bf16(v));
}

/// Converts the leading elements of `src` into `dst` 32 at a time with `vcvtne2ps2bf16`
/// (then 16 with `vcvtneps2bf16`), leaving fewer than 16; returns how many it converted.
///
/// # Safety
/// The CPU must support AVX-512 F and BF16; `dst` must be as long as `src`.
#[cfg(target_arch = "x86_64")]
unsafe fn convert_avx512(src: &[f32], dst: &mut [u16]) -> usize {
    let mut left = src.len();
    // SAFETY: each step reads 32 (or 16) f32 from `s` and writes as many u16 to `d` only
    // while `left` says that many remain in both slices. Every vector register is declared
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
            "add rdi, 64",
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
            inout("rsi") src.as_ptr() => _,
            inout("rdi") dst.as_mut_ptr() => _,
            inout("rcx") left,
            clobber_abi("C"),
            options(nostack),
        );
    }
    src.len() - left
}
