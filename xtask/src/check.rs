//! `cargo xtask test` (and `ci`): the project's full check, step by step: set-up (the
//! checkpoint), format, lints, tests, a bounded run of every loader's fuzz target, and the
//! CUDA checks that need no GPU. Stops at the first failing step and names it.

use crate::emulator::CUDA_PACKAGES;
use crate::{cargo, emulator, fetch, onnx, run_status};
use anyhow::{Context, Result};
use std::time::Instant;

/// Seconds each fuzz target runs in the check (two at a time, one per core).
const FUZZ_SECONDS: &str = "30";

/// The fuzz test files: the loaders' (workspace root) and the recipes' (prune-cli).
/// Selected with `--workspace`, so that cargo reuses the test step's build (selecting one
/// package unifies features differently and rebuilds dependencies).
const FUZZ_TESTS: [&str; 4] = ["--test", "fuzz_loaders", "--test", "fuzz_recipe"];

/// The features that turn the CUDA backend on in the crates that have it.
pub const CUDA_FEATURES: &str = "prune-tensor/cuda,prune-transformer/cuda,prune-cli/cuda";

/// Runs every step; `test_args` are passed on to `cargo test`. A checkpoint of one's own
/// given as `$PRUNE_MODEL_DIR` replaces the fetch of the default one. (The system packages
/// were installed before, as for every entry that builds: `crate::setup`.)
pub fn run(test_args: &[String]) -> Result<()> {
    let started = Instant::now();
    step("setup", "the default checkpoint", checkpoint)?;
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
    step(
        "fuzz",
        &format!("PRUNE_FUZZ_SECONDS={FUZZ_SECONDS} for every fuzz target"),
        || {
            run_status(
                cargo()
                    .args(["test", "--workspace"])
                    .args(FUZZ_TESTS)
                    .args(["--", "--nocapture"])
                    .env("PRUNE_FUZZ_SECONDS", FUZZ_SECONDS),
                "fuzzing",
            )
        },
    )?;
    step(
        "onnx",
        "cargo xtask onnx-check (the ONNX exports in ONNX Runtime)",
        onnx::run,
    )?;
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

/// Makes sure the checkpoint the tests use is there.
fn checkpoint() -> Result<()> {
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
    let secs = started.elapsed().as_secs_f64();
    match free_disk() {
        Some(free) => eprintln!("==> [{name}] ok ({secs:.1} s; {free} free on disk)"),
        None => eprintln!("==> [{name}] ok ({secs:.1} s)"),
    }
    Ok(out)
}

/// The free space of the file system the build folder is on, as `df -h` prints it (a full
/// disk stops the compiler half-way, so the check shows how much each step leaves).
fn free_disk() -> Option<String> {
    let out = std::process::Command::new("df")
        .args(["-Ph", "."])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    text.lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)
        .map(str::to_string)
}
