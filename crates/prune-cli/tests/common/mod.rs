//! Helpers of the `prune` binary's end-to-end tests.

use prune::tensor::CpuBackend;
use prune::transformer::{BertConfig, BertModel, paths};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the `prune` binary with `args`.
pub fn prune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prune"))
        .args(args)
        .output()
        .expect("the prune binary runs")
}

/// Runs the `prune` binary with `args` and asserts that it succeeds; returns its stdout.
pub fn prune_ok(args: &[&str]) -> String {
    let run = prune(args);
    assert!(
        run.status.success(),
        "prune {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&run.stderr)
    );
    String::from_utf8_lossy(&run.stdout).into_owned()
}

/// A fresh scratch directory for test `name`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("prune-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A tiny random BERT (2 layers, hidden 32, 4 heads, FFN 64) with MiniLM's vocabulary and
/// tokenizer, saved as a checkpoint directory.
pub fn tiny_checkpoint(dir: &Path) {
    let tokenizer = paths::require_model_dir()
        .expect("cargo xtask fetch")
        .join("tokenizer.json");
    let config = BertConfig::new(30522, 32, 2, 4, 64).unwrap();
    let model = BertModel::random(CpuBackend::<f32>::new(), config, true, false, 5).unwrap();
    model.save(dir).unwrap();
    std::fs::copy(tokenizer, dir.join("tokenizer.json")).unwrap();
}
