//! `cargo xtask onnx-check`: ONNX Runtime (the PyPI wheel, installed once into the cache)
//! runs prune's ONNX exports, and their logits must be prune's: the ignored tests of
//! `prune-export` (`tests/onnxruntime.rs`), run with that Python.

use crate::wheels::Wheels;
use crate::{cargo, run_status};
use anyhow::Result;
use std::process::Command;

/// ONNX Runtime, and onnx to read back the graph it optimizes.
const ORT: Wheels = Wheels {
    folder: "onnxruntime",
    packages: &["onnxruntime==1.23.2", "onnx==1.23.2", "numpy==2.4.6"],
    no_deps: false,
    marker: "onnxruntime/__init__.py",
};

/// `cmd` with a Python that has ONNX Runtime (`PRUNE_ORT_PYTHON`, `PYTHONPATH`), installing
/// the wheels into the cache first when needed.
pub fn with_onnxruntime(cmd: &mut Command) -> Result<&mut Command> {
    let site = ORT.installed()?;
    Ok(cmd
        .env("PRUNE_ORT_PYTHON", "python3")
        .env("PYTHONPATH", site))
}

/// Runs the ONNX Runtime tests of the exports (installing the wheels first when needed).
pub fn run() -> Result<()> {
    run_status(
        with_onnxruntime(&mut cargo())?
            // --workspace: the features of the test step's build, so nothing is rebuilt.
            .args(["test", "--workspace", "--test", "onnxruntime"])
            .args(["--", "--ignored", "--nocapture"]),
        "the ONNX Runtime tests",
    )
}
