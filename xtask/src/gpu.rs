//! `cargo xtask gpu-check`: on a machine with an NVIDIA GPU, builds with the CUDA backend,
//! runs the CUDA tests (every op against the references, every backward against the CPU, the
//! MiniLM parity of logits and gradients), the CUDA kernel benchmarks and a BERT-base training
//! step benchmark, and prints one table. Sized for a few minutes on an H100.

use crate::emulator::{CUDA_BENCHES, CUDA_PACKAGES, DEVICE_CLI_TEST, DEVICE_OP_TESTS, NVRTC_TEST};
use crate::{bench, cargo, run_status};
use anyhow::{Result, bail};
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

/// Criterion settings that keep every benchmark short (the GPU ones take microseconds).
const QUICK: &[&str] = &["--warm-up-time", "1", "--measurement-time", "2"];

/// Whether an NVIDIA driver is installed: its /proc entry, or libcuda in the loader cache.
fn driver_present() -> bool {
    Path::new("/proc/driver/nvidia/version").exists()
        || Command::new("ldconfig")
            .arg("-p")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("libcuda.so"))
}

/// Runs the GPU checks; fails first, with a clear message, on a machine without a driver.
pub fn run() -> Result<()> {
    if !driver_present() {
        bail!(
            "no NVIDIA driver on this machine (no /proc/driver/nvidia/version, no libcuda.so \
             in the loader cache): `cargo xtask gpu-check` needs an NVIDIA GPU. Without one, \
             `cargo xtask cuda-emulated` compiles every kernel with NVRTC and runs the CUDA tests \
             on a CPU emulator of the driver."
        );
    }
    let started = SystemTime::now();
    let tests = ["test", "--release"]
        .iter()
        .chain(CUDA_PACKAGES)
        .chain(NVRTC_TEST)
        .chain(DEVICE_OP_TESTS)
        .chain(DEVICE_CLI_TEST);
    run_status(cargo().args(tests), "the CUDA tests")?;
    run_status(
        cargo()
            .arg("bench")
            .args(CUDA_PACKAGES)
            .args(CUDA_BENCHES)
            .arg("--")
            .args(QUICK),
        "the CUDA benchmarks",
    )?;
    bench::report(started, bench::GPU_PEAKS, "gpu-check-table.md")
}
