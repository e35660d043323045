//! Launch shapes shared by the kernels, the `launch!` macro, and turning driver and cuBLAS
//! errors into [`TensorError::Device`].

use crate::error::{Result, TensorError};
use cudarc::driver::LaunchConfig;

/// Threads per block of elementwise (grid-stride) kernels.
const ELEMENTWISE_THREADS: u32 = 256;
/// Most blocks an elementwise launch uses; larger tensors are covered by the grid-stride loop.
const ELEMENTWISE_MAX_BLOCKS: usize = 8192;
/// Most threads of a one-block-per-row launch.
const ROW_MAX_THREADS: usize = 512;
/// Blocks of a whole-tensor reduction (a fixed number, so results are reproducible).
pub(super) const REDUCE_BLOCKS: u32 = 256;

/// Maps a driver, NVRTC or cuBLAS error into [`TensorError::Device`] naming the op.
pub(super) trait OrDevice<T> {
    /// The value, or a device error of `op`.
    fn or_device(self, op: &'static str) -> Result<T>;
}

impl<T, E: std::fmt::Debug> OrDevice<T> for std::result::Result<T, E> {
    fn or_device(self, op: &'static str) -> Result<T> {
        self.map_err(|e| TensorError::Device {
            op,
            what: format!("{e:?}"),
        })
    }
}

/// A 1-D grid-stride launch over `n` elements (no blocks when `n` is 0).
pub(super) fn elementwise(n: usize) -> LaunchConfig {
    let blocks = n
        .div_ceil(ELEMENTWISE_THREADS as usize)
        .min(ELEMENTWISE_MAX_BLOCKS);
    LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (ELEMENTWISE_THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block per row of `row_len` elements; threads a multiple of 32, at most 512.
pub(super) fn per_row(rows: usize, row_len: usize) -> LaunchConfig {
    let threads = row_len.next_multiple_of(32).clamp(32, ROW_MAX_THREADS);
    LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (threads as u32, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The number of row chunks (rows of partials) of a column sum over `rows` rows.
pub(super) fn column_chunks(rows: usize) -> usize {
    rows.div_ceil(prune_kernels::COL_SUM_CHUNK as usize).max(1)
}

/// Column sums over `rows` × `c`: blocks of `(32, COL_SUM_ROWS)`, one per 32 columns and
/// chunk of rows.
pub(super) fn per_columns(rows: usize, c: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (c.div_ceil(32) as u32, column_chunks(rows) as u32, 1),
        block_dim: (32, prune_kernels::COL_SUM_ROWS, 1),
        shared_mem_bytes: 0,
    }
}

/// The fixed grid of a whole-tensor reduction.
pub(super) fn reduction() -> LaunchConfig {
    LaunchConfig {
        grid_dim: (REDUCE_BLOCKS, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Launches kernel `$name` of file `$file` on the backend's stream with `$cfg` and the given
/// arguments (device buffers by reference, scalars by reference). A launch with no blocks
/// does nothing. Evaluates to `Result<()>`.
macro_rules! launch {
    ($be:expr, $op:expr, $file:expr, $name:expr, $cfg:expr; $($arg:expr),* $(,)?) => {{
        let cfg: cudarc::driver::LaunchConfig = $cfg;
        if cfg.grid_dim.0 == 0 {
            Ok(())
        } else {
            let f = $be.dev.function(&$file, $name)?;
            let mut builder = $be.dev.stream.launch_builder(&f);
            $( cudarc::driver::PushKernelArg::arg(&mut builder, $arg); )*
            // SAFETY: the argument list matches the kernel's signature in `prune-kernels`
            // (checked by the callers' shape rules), and every buffer holds the elements the
            // kernel indexes.
            let launched = unsafe { builder.launch(cfg) };
            $crate::cuda::launch::OrDevice::or_device(launched.map(|_| ()), $op)
        }
    }};
}
pub(super) use launch;
