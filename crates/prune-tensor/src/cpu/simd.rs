//! Runtime choice of vector instructions for the CPU backend's own loops.
//!
//! The crate is compiled for the baseline of its target (SSE2 on x86-64), so that one binary
//! runs on every CPU of that target. Elementwise, softmax and LayerNorm loops are then limited
//! to 4-lane vectors although nearly every x86-64 CPU in use has AVX2 (8 lanes) and FMA, and
//! many AVX-512 (16 lanes, and 64-bit integer multiplies, which the dropout draw's hash
//! needs and AVX2 lacks). [`vectorized`] runs a closure inside a function compiled with the
//! widest of these the CPU has: the closure (and what it calls that is inlined) is then
//! vectorised that wide. Results are bit-identical on every path: Rust never fuses
//! `a · b + c` into an FMA on its own, and the reductions (`lanes.rs`) keep their fixed lane
//! order.

/// Runs `f`, compiled for AVX-512 (F, DQ) when this CPU has it, else for AVX2 + FMA when
/// it has both, else for the baseline.
#[inline(always)]
pub(super) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU supports AVX-512 F and DQ, AVX2 and FMA (checked just above).
        return unsafe { avx512(f) };
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        return unsafe { avx2_fma(f) };
    }
    f()
}

/// Whether this CPU supports AVX2 and FMA (cached by `std` after the first query).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) fn has_avx2_fma() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// Whether this CPU supports AVX-512 F and DQ (with AVX2 and FMA, which they imply).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn has_avx512() -> bool {
    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq") && has_avx2_fma()
}

/// Calls `f` from code compiled with AVX-512 F and DQ; `f` inlines into it.
///
/// # Safety
/// The CPU must support AVX-512 F and DQ, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Calls `f` from code compiled with AVX2 and FMA; `f` inlines into it.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_fma<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectorized_runs_the_closure_and_returns_its_value() {
        let data: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5).collect();
        let plain: f32 = data.iter().map(|v| v * 2.0 + 1.0).sum();
        let wide: f32 = vectorized(
            #[inline(always)]
            || data.iter().map(|v| v * 2.0 + 1.0).sum(),
        );
        assert_eq!(plain.to_bits(), wide.to_bits());
    }
}
