//! Run-time compilation of a `prune-kernels` file to PTX with NVRTC (no driver needed).

use crate::error::{Result, TensorError};
use cudarc::nvrtc::{CompileError, CompileOptions, compile_ptx_with_opts};
use prune_kernels::KernelFile;

/// Compiles `file` (with the shared prelude) to PTX for the virtual architecture
/// `compute_<major><minor>` and returns the PTX text. Needs only libnvrtc: it works on a
/// machine without a GPU. Fails with [`TensorError::KernelCompile`] carrying NVRTC's log, or
/// saying that libnvrtc could not be loaded.
pub fn compile_ptx(file: &KernelFile, (major, minor): (i32, i32)) -> Result<String> {
    // SAFETY: only tries to open the library; no symbol of it is called.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(TensorError::KernelCompile {
            file: file.name,
            log: "libnvrtc could not be loaded: install a CUDA toolkit, or the PyPI wheel \
                  nvidia-cuda-nvrtc-cu12 and put its nvidia/cuda_nvrtc/lib on LD_LIBRARY_PATH"
                .into(),
        });
    }
    let opts = CompileOptions {
        name: Some(file.name.into()),
        options: vec![
            format!("--gpu-architecture=compute_{major}{minor}"),
            "--std=c++17".into(),
        ],
        ..Default::default()
    };
    compile_ptx_with_opts(file.full_source(), opts)
        .map(|ptx| ptx.to_src())
        .map_err(|e| TensorError::KernelCompile {
            file: file.name,
            log: match e {
                CompileError::CompileError { log, .. } => log.to_string_lossy().into_owned(),
                other => format!("{other:?}"),
            },
        })
}
