//! Allocator tuning for training loops. Every step allocates and frees the same large
//! activation and gradient buffers (tens of MB). glibc serves blocks above its mmap threshold
//! with fresh `mmap`s and returns them on free, so each step pays page faults and kernel
//! zeroing for all of them (about a tenth of a MiniLM training step on 2 cores). Raising the
//! thresholds keeps freed blocks in the heap for reuse.

/// Makes glibc reuse freed large blocks instead of unmapping them (no-op elsewhere).
pub fn keep_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before any other
    // thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
