//! Helpers of the `prune` binary's end-to-end tests (each test binary uses a part of them).
#![allow(dead_code)]

use prune::data::default_glue_dir;
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

/// A GLUE directory holding the header and the first `train` / `dev` rows of SST-2.
pub fn small_sst2(dir: &Path, train: usize, dev: usize) {
    let task = dir.join("SST-2");
    std::fs::create_dir_all(&task).unwrap();
    for (file, rows) in [("train.tsv", train), ("dev.tsv", dev)] {
        let text = std::fs::read_to_string(default_glue_dir().join("SST-2").join(file)).unwrap();
        let head: Vec<&str> = text.lines().take(rows + 1).collect();
        std::fs::write(task.join(file), head.join("\n") + "\n").unwrap();
    }
}

/// Runs `prune` with `args`, expects exit code 2 with a one-line error containing
/// `expected` and no panic; returns the error line.
pub fn prune_refuses(args: &[&str], expected: &str) -> String {
    let r = prune(args);
    let err = String::from_utf8_lossy(&r.stderr).into_owned();
    assert_eq!(r.status.code(), Some(2), "prune {}: {err}", args.join(" "));
    assert!(err.contains(expected), "prune {}: {err}", args.join(" "));
    assert!(!err.contains("panicked"), "prune {}: {err}", args.join(" "));
    let last = err.lines().last().unwrap_or("").to_string();
    assert!(
        last.starts_with("error: "),
        "prune {}: {err}",
        args.join(" ")
    );
    let parts: Vec<&str> = last.split(": ").collect();
    assert!(
        parts.windows(2).all(|w| w[0] != w[1]),
        "the cause is repeated: {last}"
    );
    last
}

/// The contents of every file under `dir`, by path, to check that nothing changed.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}
