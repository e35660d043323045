//! Exports: the pipeline's of its models into the run folder (the teacher and the final
//! model as ONNX, `export/teacher.onnx` and `export/final.onnx`, and the final model as a
//! transformers checkpoint with any uneven FFN widths padded, `export/final-hf/`, or why
//! transformers cannot hold it), and `prune export`'s of one checkpoint.

use crate::command::Command;
use crate::error::{PipelineError, Result};
use crate::refuse;
use crate::stage_output::finish;
use prune_export::{ExportError, OPSET, to_onnx, to_transformers};
use prune_tensor::Backend;
use prune_train::run_dir::check_apart;
use prune_train::{RunDir, RunIdentity};
use prune_transformer::paths;
use prune_transformer::weights::{save_config, save_params, weights_file, write_atomic};
use prune_transformer::{BertConfig, HostParams, load_params};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What was exported, relative to the run folder.
#[derive(Clone, Debug, Serialize)]
pub struct Exports {
    /// The teacher as ONNX.
    pub teacher_onnx: PathBuf,
    /// The final model as ONNX.
    pub final_onnx: PathBuf,
    /// The final model as a transformers checkpoint, when transformers can hold it.
    pub final_hf: Option<PathBuf>,
    /// Why there is no transformers checkpoint of the final model.
    pub final_hf_missing: Option<String>,
}

/// Copies the tokenizer files a checkpoint folder `from` has (`tokenizer.json`, `vocab.txt`,
/// `tokenizer_config.json`, `special_tokens_map.json`) into `to`.
pub fn copy_tokenizer(from: &Path, to: &Path) -> Result<()> {
    for file in [
        "tokenizer.json",
        "vocab.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        let src = from.join(file);
        if src.is_file() {
            std::fs::copy(&src, to.join(file)).map_err(|e| PipelineError::io(&src, e))?;
        }
    }
    Ok(())
}

/// Creates the folder `dir` (and its parents) when missing.
fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| PipelineError::io(dir, e))
}

/// A checkpoint's configuration and parameters.
pub fn read(dir: &Path) -> Result<(BertConfig, HostParams)> {
    let config = BertConfig::from_file(&dir.join("config.json"))?;
    let params = load_params(&weights_file(dir)?, &config)?;
    Ok((config, params))
}

/// Writes `params` with `config` as a checkpoint into the existing folder `dir`, with the
/// tokenizer files of the checkpoint `source`.
pub fn save_checkpoint(
    dir: &Path,
    config: &BertConfig,
    params: &HostParams,
    source: &Path,
) -> Result<()> {
    save_params(&dir.join("model.safetensors"), params, config.family)?;
    save_config(
        &dir.join("config.json"),
        config,
        params.classifier.is_some(),
    )?;
    copy_tokenizer(source, dir)
}

/// Writes the checkpoint in `dir` as ONNX to `path`.
fn onnx(dir: &Path, path: &Path) -> Result<()> {
    let (config, params) = read(dir)?;
    Ok(write_atomic(path, &to_onnx(&config, &params)?)?)
}

/// Exports `teacher` and `final_model` into `<run>/export/`.
pub fn write(run: &Path, teacher: &Path, final_model: &Path) -> Result<Exports> {
    let teacher_onnx = write_teacher(run, teacher)?;
    write_final(run, teacher_onnx, final_model)
}

/// Exports `teacher` as `<run>/export/teacher.onnx`; the path returned is relative to `run`.
pub fn write_teacher(run: &Path, teacher: &Path) -> Result<PathBuf> {
    let dir = run.join("export");
    create_dir(&dir)?;
    let rel = PathBuf::from("export").join("teacher.onnx");
    onnx(teacher, &run.join(&rel))?;
    Ok(rel)
}

/// Exports `final_model` into `<run>/export/` (ONNX, and a transformers checkpoint when
/// transformers can hold it), beside the teacher's ONNX at `teacher_onnx` (relative to
/// `run`, written before).
pub fn write_final(run: &Path, teacher_onnx: PathBuf, final_model: &Path) -> Result<Exports> {
    let dir = run.join("export");
    create_dir(&dir)?;
    let rel = |name: &str| PathBuf::from("export").join(name);
    let final_onnx = rel("final.onnx");
    onnx(final_model, &run.join(&final_onnx))?;
    let (config, params) = read(final_model)?;
    let (final_hf, final_hf_missing) = match to_transformers(&config, &params) {
        Ok((cfg, padded)) => {
            let hf = run.join(rel("final-hf"));
            create_dir(&hf)?;
            save_checkpoint(&hf, &cfg, &padded, final_model)?;
            (Some(rel("final-hf")), None)
        }
        Err(ExportError::Unsupported(why)) => (None, Some(why)),
        Err(e) => return Err(e.into()),
    };
    Ok(Exports {
        teacher_onnx,
        final_onnx,
        final_hf,
        final_hf_missing,
    })
}

/// What `prune export` writes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// An ONNX model file (opset 17): inputs input_ids, attention_mask, token_type_ids,
    /// output logits.
    Onnx,
    /// A transformers checkpoint folder (FFN widths zero-padded to the widest layer).
    Hf,
}

/// `prune export` options.
#[derive(clap::Args, Debug, Clone)]
pub struct ExportOptions {
    /// The checkpoint to export (for onnx, a fine-tuned classifier).
    #[arg(long)]
    pub model: PathBuf,
    /// What to write.
    #[arg(long, value_enum)]
    pub format: Format,
    /// The .onnx file, or the checkpoint folder for hf (with run.json naming the source);
    /// it must not exist yet.
    #[arg(long)]
    pub out: PathBuf,
}

impl Command for ExportOptions {
    fn check(&self) -> Result<()> {
        Ok(())
    }

    /// Writes the export (the backend is not used: an export reads the saved weights).
    fn run<B: Backend>(&self, _: B) -> Result<String> {
        let dir = paths::require_given_checkpoint(self.model.clone(), false)?;
        let (config, params) = read(&dir)?;
        match self.format {
            Format::Onnx => {
                check_apart(&self.out, &[("--model", &dir)])?;
                if self.out.exists() {
                    refuse!(
                        "{} already exists: an export is never written over a file",
                        self.out.display()
                    );
                }
                let bytes = to_onnx(&config, &params)?;
                if let Some(parent) = self.out.parent().filter(|p| !p.as_os_str().is_empty()) {
                    create_dir(parent)?;
                }
                write_atomic(&self.out, &bytes)?;
                Ok(format!(
                    "ONNX (opset {OPSET}, {:.1} MB) written to {}",
                    bytes.len() as f64 / 1e6,
                    self.out.display()
                ))
            }
            Format::Hf => {
                let (cfg, padded) = to_transformers(&config, &params)?;
                let identity = RunIdentity::new("export-hf").with_checkpoint("model", &dir)?;
                let out = RunDir::claim(&self.out, &[("--model", &dir)], &identity, false)?;
                save_checkpoint(out.path(), &cfg, &padded, &dir)?;
                let saved = finish(out)?;
                Ok(format!(
                    "transformers checkpoint (FFN {} in every layer) written to {}",
                    cfg.intermediate_size,
                    saved.display()
                ))
            }
        }
    }
}
