//! NVRTC for the CUDA checks on machines without a CUDA toolkit: the PyPI wheel
//! `nvidia-cuda-nvrtc-cu12` installed once into the cache, for the test that compiles every
//! kernel file to PTX (no GPU or driver needed).

use crate::wheels::Wheels;
use anyhow::Result;
use std::path::PathBuf;

/// The pinned wheel that provides `libnvrtc.so.12`.
const NVRTC: Wheels = Wheels {
    folder: "nvrtc",
    packages: &["nvidia-cuda-nvrtc-cu12==12.9.86"],
    no_deps: true,
    marker: "nvidia/cuda_nvrtc/lib/libnvrtc.so.12",
};

/// The directory holding `libnvrtc.so.12` (cudarc's loader finds that name on
/// `LD_LIBRARY_PATH`), installing the wheel into `<cache>/nvrtc` when it is not there yet.
pub fn lib_dir() -> Result<PathBuf> {
    Ok(NVRTC
        .installed()?
        .join("nvidia")
        .join("cuda_nvrtc")
        .join("lib"))
}

/// `dirs`, in order, ahead of the current `LD_LIBRARY_PATH`.
pub fn library_path_with(dirs: &[&std::path::Path]) -> std::ffi::OsString {
    let mut paths: Vec<std::path::PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
        paths.extend(std::env::split_paths(&old));
    }
    std::env::join_paths(paths).unwrap_or_default()
}
