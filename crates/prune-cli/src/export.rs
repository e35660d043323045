//! `prune export`: a checkpoint as an ONNX graph for ONNX Runtime (`--format onnx`), or as
//! a transformers checkpoint for FFN widths that differ between layers (`--format hf`,
//! zero-padded to the widest). Checkpoints that prune saves are already transformers
//! checkpoints whenever transformers can express their shapes.

use crate::output::finish;
use anyhow::{Context, Result, bail};
use prune::export::{OPSET, to_onnx, to_transformers};
use prune::pipeline::exports::{read, save_checkpoint};
use prune::train::run_dir::check_apart;
use prune::train::{RunDir, RunIdentity};
use prune::transformer::paths;
use prune::transformer::weights::write_atomic;
use std::path::PathBuf;

/// What `prune export` writes.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Format {
    /// An ONNX model file (opset 17): inputs input_ids, attention_mask, token_type_ids,
    /// output logits.
    Onnx,
    /// A transformers checkpoint folder (FFN widths zero-padded to the widest layer).
    Hf,
}

/// `prune export` options.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The checkpoint to export (for onnx, a fine-tuned classifier).
    #[arg(long)]
    model: PathBuf,
    /// What to write.
    #[arg(long, value_enum)]
    format: Format,
    /// The .onnx file, or the checkpoint folder for hf (with run.json naming the source);
    /// it must not exist yet.
    #[arg(long)]
    out: PathBuf,
}

/// `prune export`.
pub fn run(args: &Args) -> Result<()> {
    let dir = paths::require_given_checkpoint(args.model.clone(), false)?;
    let (config, params) = read(&dir)?;
    match args.format {
        Format::Onnx => {
            check_apart(&args.out, &[("--model", &dir)])?;
            if args.out.exists() {
                bail!(
                    "{} already exists: an export is never written over a file",
                    args.out.display()
                );
            }
            let bytes = to_onnx(&config, &params)?;
            if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            write_atomic(&args.out, &bytes)?;
            println!(
                "ONNX (opset {OPSET}, {:.1} MB) written to {}",
                bytes.len() as f64 / 1e6,
                args.out.display()
            );
        }
        Format::Hf => {
            let (cfg, padded) = to_transformers(&config, &params)?;
            let identity = RunIdentity::new("export-hf").with_checkpoint("model", &dir)?;
            let out = RunDir::claim(&args.out, &[("--model", &dir)], &identity, false)?;
            save_checkpoint(out.path(), &cfg, &padded, &dir)?;
            let saved = finish(out)?;
            println!(
                "transformers checkpoint (FFN {} in every layer) written to {}",
                cfg.intermediate_size,
                saved.display()
            );
        }
    }
    Ok(())
}
