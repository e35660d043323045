//! The system packages an xtask entry needs before it builds, installed with apt-get when
//! missing (as root), or named in one line saying what to install.

use crate::run_status;
use anyhow::{Result, bail};
use std::process::{Command, Stdio};

/// What building the workspace needs: OpenBLAS with LAPACK, which ndarray-linalg links for
/// the least-squares fit of distillation projections (GEMMs do not use it: the CPU backend's
/// matrix products are the pure-Rust `gemm` crate).
pub const BUILD: &[&str] = &["libopenblas-dev"];

/// What the entries that run the CUDA emulator need besides: g++, which compiles the emulator
/// and brings the AddressSanitizer runtime it runs under.
pub const EMULATOR: &[&str] = &["libopenblas-dev", "g++"];

/// Makes sure the Debian `packages` are installed: checks each with `dpkg -s`, installs the
/// missing ones with `apt-get` when running as root, and otherwise fails with one line
/// saying what to install.
pub fn system_packages(packages: &[&str]) -> Result<()> {
    let quiet_ok = |cmd: &mut Command| {
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !quiet_ok(Command::new("dpkg").args(["-s", p])))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if !is_root {
        bail!(
            "missing system packages: {0}; install them with `sudo apt-get install -y {0}`",
            missing.join(" ")
        );
    }
    eprintln!("installing missing system packages: {}", missing.join(" "));
    run_status(Command::new("apt-get").arg("update"), "apt-get update")?;
    run_status(
        Command::new("apt-get")
            .args(["install", "-y"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install",
    )
}
