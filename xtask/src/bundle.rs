//! `cargo xtask gpu-bundle`: what `gpu-check` runs, prebuilt, for a GPU machine that has the
//! NVIDIA driver and the CUDA libraries but no Rust toolchain. Writes `<target>/gpu-bundle/`:
//! `bin/` (the CUDA test and benchmark executables, release, stripped), `model/` (the default
//! checkpoint with its weights rounded to bf16, to halve what has to travel; the parity test
//! loads the same weights on both backends, so it is unaffected), `fixtures/minilm/` (the
//! head and inputs of the parity test) and `run.sh`, which finds the CUDA libraries there,
//! runs everything and leaves logs and criterion's results in `$OUT`.
//! `cargo xtask gpu-table DIR` then prints gpu-check's table from those results.

use crate::bench::{self, target_dir};
use crate::emulator::{CUDA_BENCHES, CUDA_PACKAGES, DEVICE_OP_TESTS, NVRTC_TEST};
use crate::{cargo, fetch, run_status};
use anyhow::{Context, Result, bail};
use safetensors::tensor::{Dtype, TensorView};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The script the bundle runs on the GPU machine.
const RUN_SH: &str = include_str!("gpu_bundle.sh");

/// Files of the fixtures the parity test reads.
const FIXTURES: &[&str] = &["head.safetensors", "inputs.json"];

/// Builds the bundle and prints its size.
pub fn run() -> Result<()> {
    let out = target_dir()?.join("gpu-bundle");
    if out.exists() {
        fs::remove_dir_all(&out).with_context(|| format!("cannot clear {}", out.display()))?;
    }
    let bin = out.join("bin");
    fs::create_dir_all(&bin)?;
    let mut built = executables(
        cargo()
            .args(["test", "--release", "--no-run"])
            .args(CUDA_PACKAGES)
            .args(NVRTC_TEST)
            .args(DEVICE_OP_TESTS),
    )?;
    built.extend(executables(
        cargo()
            .args(["bench", "--no-run"])
            .args(CUDA_PACKAGES)
            .args(CUDA_BENCHES),
    )?);
    for (name, path) in &built {
        run_status(
            Command::new("strip")
                .arg("-o")
                .arg(bin.join(name))
                .arg(path),
            "strip (binutils)",
        )?;
    }
    let model = fetch::run(None)?;
    bf16_checkpoint(&model, &out.join("model"))?;
    let fixtures = prune_fixtures_dir().join("minilm");
    let to = out.join("fixtures").join("minilm");
    fs::create_dir_all(&to)?;
    for file in FIXTURES {
        fs::copy(fixtures.join(file), to.join(file))
            .with_context(|| format!("copying fixture {file} from {}", fixtures.display()))?;
    }
    let script = out.join("run.sh");
    fs::write(&script, RUN_SH)?;
    run_status(Command::new("chmod").arg("755").arg(&script), "chmod")?;
    eprintln!(
        "bundle in {} ({:.1} MiB): run `bash {}` on the GPU machine, then \
         `cargo xtask gpu-table <its $OUT>` here",
        out.display(),
        size(&out)? as f64 / (1 << 20) as f64,
        script.display()
    );
    Ok(())
}

/// `cargo xtask gpu-table DIR`: gpu-check's table from the criterion results under `DIR`
/// (the `$OUT` of a bundle run, or its `criterion/` folder).
pub fn table(dir: &Path) -> Result<()> {
    let root = if dir.join("criterion").is_dir() {
        dir.join("criterion")
    } else {
        dir.to_path_buf()
    };
    bench::report_from(
        &root,
        std::time::SystemTime::UNIX_EPOCH,
        bench::GPU_PEAKS,
        "gpu-check-table.md",
    )
}

/// The fixtures directory the tests use (`$PRUNE_FIXTURES`, else `../shared/fixtures`).
fn prune_fixtures_dir() -> PathBuf {
    std::env::var_os("PRUNE_FIXTURES")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            crate::workspace_root()
                .join("..")
                .join("shared")
                .join("fixtures")
        })
}

/// Runs `cmd` (a `cargo test|bench --no-run`) and returns the name and path of every test or
/// benchmark executable it built.
fn executables(cmd: &mut Command) -> Result<Vec<(String, PathBuf)>> {
    let output = cmd
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit())
        .output()
        .context("could not run cargo")?;
    if !output.status.success() {
        bail!(
            "the build of the CUDA executables failed ({})",
            output.status
        );
    }
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let (Some(exe), Some(name)) = (
            message["executable"].as_str(),
            message["target"]["name"].as_str(),
        ) else {
            continue;
        };
        found.push((name.to_string(), PathBuf::from(exe)));
    }
    Ok(found)
}

/// Copies the checkpoint in `from` to `to` with every f32 tensor rounded to bf16
/// (round to nearest even), keeping `config.json` and `tokenizer.json`.
fn bf16_checkpoint(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for file in ["config.json", "tokenizer.json"] {
        fs::copy(from.join(file), to.join(file))
            .with_context(|| format!("copying {file} from {}", from.display()))?;
    }
    let path = from.join("model.safetensors");
    let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes)?;
    let mut converted = Vec::new();
    for (name, view) in tensors.tensors() {
        let data = match view.dtype() {
            Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .flat_map(|b| bf16_bits(f32::from_le_bytes([b[0], b[1], b[2], b[3]])).to_le_bytes())
                .collect(),
            _ => view.data().to_vec(),
        };
        let dtype = if view.dtype() == Dtype::F32 {
            Dtype::BF16
        } else {
            view.dtype()
        };
        converted.push((name, dtype, view.shape().to_vec(), data));
    }
    let views = converted
        .iter()
        .map(|(name, dtype, shape, data)| {
            Ok((name.clone(), TensorView::new(*dtype, shape.clone(), data)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let out = to.join("model.safetensors");
    safetensors::serialize_to_file(views, None, &out)
        .with_context(|| format!("writing {}", out.display()))
}

/// `x` rounded to bf16 (nearest, ties to even), as its 16 bits.
fn bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1));
    (rounded >> 16) as u16
}

/// Total bytes of the files under `dir`.
fn size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
