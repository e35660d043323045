//! `cargo xtask test` (and `ci`): the project's full check, step by step: set-up, format,
//! lints, tests, and the CUDA checks that need no GPU. Stops at the first failing step and
//! names it.

use crate::emulator::CUDA_PACKAGES;
use crate::{cargo, emulator, fetch, run_status};
use anyhow::{Context, Result, bail};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Debian packages the build and tests need: OpenBLAS (with LAPACK) for the least-squares
/// fit of distillation projections (ndarray-linalg). GEMMs do not use it: the CPU backend's
/// matrix products are the pure-Rust `gemm` crate. g++ builds the CUDA emulator and brings
/// the AddressSanitizer runtime it runs under.
const SYSTEM_PACKAGES: &[&str] = &["libopenblas-dev", "g++"];

/// The features that turn the CUDA backend on in the crates that have it.
pub const CUDA_FEATURES: &str = "prune-tensor/cuda,prune-transformer/cuda,prune-cli/cuda";

/// Runs every step; `test_args` are passed on to `cargo test`. A checkpoint of one's own
/// given as `$PRUNE_MODEL_DIR` replaces the fetch of the default one.
pub fn run(test_args: &[String]) -> Result<()> {
    let started = Instant::now();
    step("setup", "system packages and the default checkpoint", setup)?;
    step("fmt", "cargo fmt --all -- --check", || {
        run_status(cargo().args(["fmt", "--all", "--", "--check"]), "cargo fmt")
    })?;
    let clippy = [
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ];
    step("clippy", &format!("cargo {}", clippy.join(" ")), || {
        run_status(cargo().args(clippy), "cargo clippy")
    })?;
    let shown = format!("cargo test --workspace {}", test_args.join(" "));
    step("test", shown.trim_end(), || {
        // Tests find the checkpoint in the same cache (or at $PRUNE_MODEL_DIR when set).
        let mut cmd = cargo();
        run_status(
            cmd.args(["test", "--workspace"]).args(test_args),
            "cargo test",
        )
    })?;
    let cuda_clippy: Vec<&str> = ["clippy", "-p", "prune-kernels"]
        .iter()
        .chain(CUDA_PACKAGES)
        .chain(&["--all-targets", "--", "-D", "warnings"])
        .copied()
        .collect();
    step(
        "clippy-cuda",
        &format!("cargo {}", cuda_clippy.join(" ")),
        || run_status(cargo().args(&cuda_clippy), "cargo clippy (cuda)"),
    )?;
    step(
        "cuda-emulated",
        "cargo xtask cuda-emulated (the CUDA tests on the CPU emulator of the driver, no GPU)",
        || emulator::run(&[]),
    )?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!("\nall checks passed in {secs:.0} s");
    Ok(())
}

/// Installs missing system packages and makes sure the checkpoint the tests use is there.
fn setup() -> Result<()> {
    ensure_system_packages(SYSTEM_PACKAGES)?;
    match std::env::var_os("PRUNE_MODEL_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => eprintln!("using PRUNE_MODEL_DIR={}", dir.to_string_lossy()),
        None => eprintln!("checkpoint: {}", fetch::run(None)?.display()),
    }
    Ok(())
}

/// Runs one named step, announcing it and timing it; a failure names the step.
fn step<T>(name: &str, what: &str, body: impl FnOnce() -> Result<T>) -> Result<T> {
    eprintln!("\n==> [{name}] {what}");
    let started = Instant::now();
    let out = body().with_context(|| format!("step `{name}` failed"))?;
    eprintln!("==> [{name}] ok ({:.1} s)", started.elapsed().as_secs_f64());
    Ok(out)
}

/// Makes sure the Debian `packages` are installed: checks each with `dpkg -s`, installs the
/// missing ones with `apt-get` when running as root, and otherwise says what to install.
fn ensure_system_packages(packages: &[&str]) -> Result<()> {
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
    run_status(Command::new("apt-get").arg("update"), "apt-get update")?;
    run_status(
        Command::new("apt-get")
            .args(["install", "-y"])
            .args(&missing),
        "apt-get install",
    )
}
