//! NVRTC for the CUDA checks on machines without a CUDA toolkit: the PyPI wheel
//! `nvidia-cuda-nvrtc-cu12` installed once into the cache, for the test that compiles every
//! kernel file to PTX (no GPU or driver needed).

use crate::fetch::find_pip;
use anyhow::{Context, Result, bail};
use prune_fetch::cache_dir;
use std::path::PathBuf;

/// The pinned wheel that provides `libnvrtc.so.12`.
const WHEEL: &str = "nvidia-cuda-nvrtc-cu12==12.9.86";

/// The directory holding `libnvrtc.so.12` (cudarc's loader finds that name on
/// `LD_LIBRARY_PATH`), installing the wheel into `<cache>/nvrtc` when it is not there yet.
pub fn lib_dir() -> Result<PathBuf> {
    let target = cache_dir()?.join("nvrtc");
    let lib = target.join("nvidia").join("cuda_nvrtc").join("lib");
    if lib.join("libnvrtc.so.12").is_file() {
        return Ok(lib);
    }
    let Some(mut pip) = find_pip() else {
        bail!(
            "the NVRTC test needs pip to install {WHEEL} (no `python3 -m pip` or `pip3` here); \
             install pip, or put a libnvrtc.so.12 on LD_LIBRARY_PATH yourself"
        );
    };
    eprintln!("installing {WHEEL} into {}", target.display());
    let status = pip
        .args(["install", "--quiet", "--no-deps", "--target"])
        .arg(&target)
        .arg(WHEEL)
        .status()
        .context("could not run pip")?;
    if !status.success() || !lib.join("libnvrtc.so.12").is_file() {
        bail!(
            "pip could not install {WHEEL} into {} ({status})",
            target.display()
        );
    }
    Ok(lib)
}

/// `dirs`, in order, ahead of the current `LD_LIBRARY_PATH`.
pub fn library_path_with(dirs: &[&std::path::Path]) -> std::ffi::OsString {
    let mut paths: Vec<std::path::PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
        paths.extend(std::env::split_paths(&old));
    }
    std::env::join_paths(paths).unwrap_or_default()
}
