//! `cargo xtask cuda-emulated`: the CUDA backend's tests (NVRTC, every op, the MiniLM parity,
//! `prune --device cuda`) on a machine without a GPU, against the CPU emulator of libcuda and libcublas in
//! `crates/prune-kernels/emulator/`. The emulator runs the kernel files themselves, compiled
//! as C++ with the system compiler, and the tests run under AddressSanitizer, so a kernel that
//! reads or writes outside its buffers fails the step. What it cannot show (timing, races
//! between real GPU threads, NVRTC's code generation, cuBLAS itself) is left to `gpu-check`.

use crate::bench::target_dir;
use crate::check::CUDA_FEATURES;
use crate::{cargo, nvrtc, run_status, workspace_root};
use anyhow::{Context, Result, bail};
use prune_kernels::{ALL, KernelFile};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The packages and features of the CUDA tests, as `cargo test` arguments.
pub const CUDA_PACKAGES: &[&str] = &[
    "-p",
    "prune-tensor",
    "-p",
    "prune-transformer",
    "-p",
    "prune-cli",
    "--features",
    CUDA_FEATURES,
];

/// The libraries' CUDA test targets that need a device: every op, attention's per-head
/// products and the MiniLM parity (what the GPU bundle prebuilds).
pub const DEVICE_OP_TESTS: &[&str] = &[
    "--test",
    "ops",
    "--test",
    "attention",
    "--test",
    "cuda_parity",
];

/// The CLI's CUDA test target: fine-tuning and pruning through `prune --device cuda`.
pub const DEVICE_CLI_TEST: &[&str] = &["--test", "cuda"];

/// The CUDA benchmarks: the kernels (`cuda/<op>/<shape>`) and a BERT-base training step.
pub const CUDA_BENCHES: &[&str] = &["--bench", "cuda_ops", "--bench", "cuda_train_step"];

/// The CUDA test target that needs only NVRTC (and checks the error without a driver).
pub const NVRTC_TEST: &[&str] = &["--test", "nvrtc"];

/// Compiler flags of the emulator's libraries: AddressSanitizer on, only the driver's and
/// cuBLAS's entry points exported.
const CXX_FLAGS: &[&str] = &[
    "-std=c++17",
    "-O2",
    "-g",
    "-fsanitize=address",
    "-fno-omit-frame-pointer",
    "-fPIC",
    "-shared",
    "-fvisibility=hidden",
    "-Wall",
    "-Wextra",
];

/// Runs the NVRTC test with no driver on the library path, then builds the emulator and runs
/// the device tests against it; `test_args` go to both `cargo test` runs.
pub fn run(test_args: &[String]) -> Result<()> {
    let nvrtc = nvrtc::lib_dir()?;
    run_status(
        cargo()
            .arg("test")
            .args(CUDA_PACKAGES)
            .args(NVRTC_TEST)
            .args(test_args)
            .env("LD_LIBRARY_PATH", nvrtc::library_path_with(&[&nvrtc])),
        "the NVRTC test",
    )?;
    let emulator = build()?;
    let runner = format!(
        "target.'cfg(unix)'.runner = ['env', 'LD_PRELOAD={}', \
         'ASAN_OPTIONS=detect_leaks=0:detect_stack_use_after_return=0']",
        asan_runtime()?.display()
    );
    run_status(
        cargo()
            .args(["test", "--config", &runner])
            .args(CUDA_PACKAGES)
            .args(DEVICE_OP_TESTS)
            .args(DEVICE_CLI_TEST)
            .args(test_args)
            .env(
                "LD_LIBRARY_PATH",
                nvrtc::library_path_with(&[&emulator, &nvrtc]),
            ),
        "the CUDA tests on the emulator",
    )
}

/// Compiles `libcuda.so` (the driver with every kernel file) and `libcublas.so` into
/// `<target>/cuda-emulator/` and returns that directory.
fn build() -> Result<PathBuf> {
    let sources = workspace_root().join("crates").join("prune-kernels");
    let emulator = sources.join("emulator");
    let out = target_dir()?.join("cuda-emulator");
    let generated = out.join("kernels");
    std::fs::create_dir_all(&generated)
        .with_context(|| format!("could not create {}", generated.display()))?;
    let mut driver = vec![emulator.join("driver.cpp"), emulator.join("fiber.cpp")];
    for file in ALL {
        let path = generated.join(format!("{}.cpp", file.name.trim_end_matches(".cu")));
        let text = translation_unit(file, &sources.join("kernels"));
        std::fs::write(&path, text)
            .with_context(|| format!("could not write {}", path.display()))?;
        driver.push(path);
    }
    compile(&driver, &emulator, &out.join("libcuda.so"))?;
    compile(
        &[emulator.join("cublas.cpp")],
        &emulator,
        &out.join("libcublas.so"),
    )?;
    Ok(out)
}

/// A kernel file as C++: the device shim, the shared constants and helpers, the file's text
/// (with `#line` marks, so diagnostics name the `.cu` files) and its kernels' registration.
fn translation_unit(file: &KernelFile, kernels_dir: &Path) -> String {
    let entries: String = file
        .kernels
        .iter()
        .map(|k| format!("    {{\"{k}\", &emu::entry<&{k}>}},\n"))
        .collect();
    format!(
        "#include \"device.h\"\n{}#line 1 \"{common}\"\n{}\n\
         #line 1 \"{source}\"\n{}\n\
         static const emu::Kernel kernels[] = {{\n{entries}}};\n\
         static emu::Registration registration(kernels, {count});\n",
        prune_kernels::constants(),
        prune_kernels::COMMON,
        file.source,
        common = kernels_dir.join("common.cuh").display(),
        source = kernels_dir.join(file.name).display(),
        count = file.kernels.len(),
    )
}

/// The C++ compiler: `$CXX`, else `c++`.
fn cxx() -> Command {
    Command::new(std::env::var_os("CXX").unwrap_or_else(|| "c++".into()))
}

/// Compiles `sources` into the shared library `out`.
fn compile(sources: &[PathBuf], include: &Path, out: &Path) -> Result<()> {
    let mut cmd = cxx();
    cmd.args(CXX_FLAGS)
        .arg("-I")
        .arg(include)
        .arg("-o")
        .arg(out)
        .args(sources);
    run_status(&mut cmd, "the C++ compiler (set $CXX, or install g++)")
}

/// The AddressSanitizer runtime of the C++ compiler, preloaded into the test binaries.
fn asan_runtime() -> Result<PathBuf> {
    let output = cxx()
        .arg("-print-file-name=libasan.so")
        .output()
        .context("could not run the C++ compiler (set $CXX, or install g++)")?;
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if !path.is_absolute() || !path.is_file() {
        bail!("the C++ compiler has no AddressSanitizer runtime (libasan.so); install g++");
    }
    Ok(path)
}
