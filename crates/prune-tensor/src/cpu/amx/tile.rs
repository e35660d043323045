//! The block kernels: the tile unit's, in inline assembly, and the scalar model of it that
//! tests run on every CPU.

#[cfg(test)]
use super::a_index;
#[cfg(test)]
use super::pack::from_bf16;
use super::{BLOCK, Kernel, PANEL, TILE_K};

/// The tile unit's kernel (configured once per run of blocks).
#[cfg(target_arch = "x86_64")]
pub(in crate::cpu) const TILE_KERNEL: Kernel = Kernel {
    block: tile_block,
    begin: tile_begin,
    end: tile_end,
};

/// The scalar model of the tile kernel: what four `tdpbf16ps` accumulators compute, in pairs.
#[cfg(test)]
pub(super) const SCALAR_KERNEL: Kernel = Kernel {
    block: scalar_block,
    begin: || {},
    end: || {},
};

/// [`SCALAR_KERNEL`]'s block.
///
/// # Safety
/// As [`BlockFn`].
#[cfg(test)]
unsafe fn scalar_block(
    a: &[u16],
    b: &[u16],
    panel: usize,
    depth: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    for i in 0..BLOCK {
        for j in 0..BLOCK {
            let pb = &b[(j / PANEL) * panel..];
            let col = j % PANEL;
            // SAFETY: element (i, j) of the block the caller lends.
            let out = unsafe { &mut *c.add(i * ldc + j) };
            let mut sum = if accumulate { *out } else { 0.0f32 };
            for p in 0..depth / 2 {
                let pair = &pb[p * 2 * PANEL + 2 * col..];
                sum += from_bf16(a[a_index(i, 2 * p)]) * from_bf16(pair[0])
                    + from_bf16(a[a_index(i, 2 * p + 1)]) * from_bf16(pair[1]);
            }
            *out = sum;
        }
    }
}

/// Tile configuration (palette 1): eight tiles of 16 rows × 64 bytes.
#[cfg(target_arch = "x86_64")]
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

/// Loads the tile configuration of [`tile_block`] on this thread.
#[cfg(target_arch = "x86_64")]
fn tile_begin() {
    let mut config = TileConfig {
        palette: 1,
        start_row: 0,
        reserved: [0; 14],
        bytes_per_row: [0; 16],
        rows: [0; 16],
    };
    config.bytes_per_row[..8].fill(64);
    config.rows[..8].fill(16);
    // SAFETY: the tile unit was granted (the contract of [`gemm`] with this kernel); the
    // configuration is a valid palette-1 layout.
    unsafe { std::arch::asm!("ldtilecfg [{cfg}]", cfg = in(reg) &config, options(nostack)) };
}

/// Releases this thread's tile state.
#[cfg(target_arch = "x86_64")]
fn tile_end() {
    // SAFETY: the tile unit was granted; releasing returns it to its initial state.
    unsafe { std::arch::asm!("tilerelease", options(nostack)) };
}

/// The tile unit's block: accumulators `tmm0..tmm3`, `A` tiles `tmm4`, `tmm5`, `B` tiles
/// `tmm6`, `tmm7`.
///
/// # Safety
/// As [`BlockFn`].
#[cfg(target_arch = "x86_64")]
unsafe fn tile_block(
    a: &[u16],
    b: &[u16],
    panel: usize,
    depth: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    assert!(a.len() >= BLOCK * depth && b.len() >= panel + depth * PANEL);
    let (a, b0, b1) = (a.as_ptr(), b.as_ptr(), b[panel..].as_ptr());
    let a_stride = TILE_K * 2; // bytes between rows of an A tile (`a_index`)
    let sc = ldc * 4; // bytes between rows of C
    // SAFETY: the caller configured the tiles on this thread. The four accumulators are the
    // 16 × 16 quarters of the block at `c` (valid for reads and writes, the caller's
    // contract). Every tile load stays inside `a` (the slab of 32 rows × 64 bytes at element
    // 32·kk, kk + 32 ≤ depth) and the two panels of `b` (rows kk/2..kk/2 + 16 of 64 bytes).
    unsafe {
        let (c00, c01, c10, c11) = (c, c.add(PANEL), c.add(16 * ldc), c.add(16 * ldc + PANEL));
        if accumulate {
            std::arch::asm!(
                "tileloadd tmm0, [{c00} + {sc}*1]",
                "tileloadd tmm1, [{c01} + {sc}*1]",
                "tileloadd tmm2, [{c10} + {sc}*1]",
                "tileloadd tmm3, [{c11} + {sc}*1]",
                c00 = in(reg) c00, c01 = in(reg) c01, c10 = in(reg) c10, c11 = in(reg) c11,
                sc = in(reg) sc,
                options(nostack, readonly),
            );
        } else {
            std::arch::asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem),
            );
        }
        for kk in (0..depth).step_by(TILE_K) {
            // The B tiles two k-steps on (1 KiB each, contiguous) towards L1 while this one
            // runs: the tile loads stalled on L2. Near the end of a panel these addresses
            // lie past `b` (so `wrapping_add`, never dereferenced); prefetches never fault.
            let (n0, n1) = (
                b0.wrapping_add((kk + 2 * TILE_K) * PANEL),
                b1.wrapping_add((kk + 2 * TILE_K) * PANEL),
            );
            for line in (0..1024usize).step_by(64) {
                std::arch::asm!(
                    "prefetcht0 [{p0} + {o}]",
                    "prefetcht0 [{p1} + {o}]",
                    p0 = in(reg) n0, p1 = in(reg) n1, o = in(reg) line,
                    options(nostack, readonly, preserves_flags),
                );
            }
            std::arch::asm!(
                "tileloadd tmm4, [{a0} + {sa}*1]",
                "tileloadd tmm5, [{a1} + {sa}*1]",
                "tileloadd tmm6, [{b0} + {sb}*1]",
                "tileloadd tmm7, [{b1} + {sb}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a0 = in(reg) a.add(kk * BLOCK),
                a1 = in(reg) a.add(kk * BLOCK + 16 * TILE_K),
                b0 = in(reg) b0.add(kk * PANEL),
                b1 = in(reg) b1.add(kk * PANEL),
                sa = in(reg) a_stride,
                sb = in(reg) 2 * PANEL * 2,
                options(nostack, readonly),
            );
        }
        std::arch::asm!(
            "tilestored [{c00} + {sc}*1], tmm0",
            "tilestored [{c01} + {sc}*1], tmm1",
            "tilestored [{c10} + {sc}*1], tmm2",
            "tilestored [{c11} + {sc}*1], tmm3",
            c00 = in(reg) c00, c01 = in(reg) c01, c10 = in(reg) c10, c11 = in(reg) c11,
            sc = in(reg) sc,
            options(nostack),
        );
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub(in crate::cpu) const TILE_KERNEL: Kernel = Kernel {
    block: |_, _, _, _, _, _, _| {
        unreachable!("bf16 products are refused off x86-64 (`request_tile_state`)")
    },
    begin: || {},
    end: || {},
};
