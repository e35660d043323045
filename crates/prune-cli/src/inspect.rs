//! `prune inspect` (what a checkpoint is: sizes, per-layer widths, parameters, FLOPs,
//! dependency groups) and `prune speedup` (masks saved by a pruning stage → a smaller
//! checkpoint).

use crate::output::finish;
use anyhow::{Context, Result, bail};
use prune::pipeline::exports::copy_tokenizer;
use prune::pipeline::report::REPORT_SEQ;
use prune::pruners::Masks;
use prune::speedup::{ModelStats, PruningReport, apply, masked_but_kept, plan_from_masks};
use prune::tensor::CpuBackend;
use prune::train::{RunDir, RunIdentity};
use prune::transformer::groups::model_groups;
use prune::transformer::{BertModel, paths};
use std::path::PathBuf;

/// `prune inspect` options.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Checkpoint directory; default: the fetched all-MiniLM-L6-v2.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Sequence length for the FLOPs count.
    #[arg(long, default_value_t = 128)]
    seq: usize,
    /// Also list every member of every dependency group found by tracing the model.
    #[arg(long)]
    groups: bool,
}

/// `prune speedup` options.
#[derive(clap::Args, Debug)]
pub struct SpeedupArgs {
    /// The dense (masked) checkpoint the masks belong to.
    #[arg(long)]
    model: PathBuf,
    /// Masks written by a pruning stage (`masks.safetensors`).
    #[arg(long)]
    masks: PathBuf,
    /// Output directory: model/ (the shrunk checkpoint), plan.json and run.json (written
    /// as <out>.partial and renamed when complete).
    #[arg(long)]
    out: PathBuf,
}

fn load(model: Option<&PathBuf>) -> Result<(PathBuf, BertModel<CpuBackend>)> {
    let dir = match model {
        Some(d) => paths::require_given_checkpoint(d.clone(), false)?,
        None => paths::require_model_dir()?,
    };
    let bert = BertModel::load(CpuBackend::<f32>::new(), &dir)
        .with_context(|| format!("loading {}", dir.display()))?;
    Ok((dir, bert))
}

/// `prune inspect`.
pub fn inspect(args: &InspectArgs) -> Result<()> {
    if args.seq == 0 {
        bail!("--seq must be at least 1");
    }
    let (dir, bert) = load(args.model.as_ref())?;
    let c = &bert.config;
    let stats = ModelStats::of(
        c,
        bert.params.pooler.is_some(),
        bert.params.classifier.is_some(),
        args.seq,
    );
    println!("{}", dir.display());
    println!(
        "layers {}, hidden {} (of {}), head dim {}, vocab {}, labels {}",
        c.num_hidden_layers,
        c.hidden(),
        c.hidden_size,
        c.head_dim(),
        c.vocab_size,
        c.labels()
    );
    if c.projects_embeddings() {
        println!(
            "embeddings {} wide (of {}), projected to the hidden width",
            c.embedding_width(),
            c.embedding_size
        );
    }
    println!("heads per layer: {:?}", stats.heads);
    println!("FFN width per layer: {:?}", stats.intermediate);
    println!(
        "parameters: {} total, {} in the encoder layers",
        stats.parameters, stats.encoder_parameters
    );
    println!(
        "matmul FLOPs per sequence of {} tokens: {} ({:.1} MFLOP/token)",
        args.seq,
        stats.flops_per_sequence,
        stats.flops_per_sequence as f64 / args.seq as f64 / 1e6
    );
    let groups = model_groups(&bert)?;
    println!(
        "dependency groups (from a trace of the forward pass): {}",
        groups.len()
    );
    for g in &groups {
        println!(
            "  {:?}: {} channels of {} element(s), {} members",
            g.kind,
            g.channels,
            g.unit,
            g.members.len()
        );
        if args.groups {
            for m in &g.members {
                println!("    {} axis {} ({:?})", m.param, m.axis, m.role);
            }
        }
    }
    Ok(())
}

/// `prune speedup`.
pub fn speedup(args: &SpeedupArgs) -> Result<()> {
    let (dir, mut bert) = load(Some(&args.model))?;
    let masks = Masks::load(&args.masks).context("--masks")?;
    masks.apply(&mut bert)?;
    let weight_masks = bert.masks().cloned().unwrap_or_else(|| bert.empty_masks());
    let plan = plan_from_masks(&bert, &weight_masks)?;
    let left = masked_but_kept(&bert, &weight_masks, &plan)?;
    if plan.is_identity() {
        bail!(
            "{}: the masks zero {left} weights but no whole head, FFN neuron or hidden channel, \
             so surgery has nothing to remove (it only cuts whole structures)",
            args.masks.display()
        );
    }
    if left > 0 {
        eprintln!(
            "warning: {left} masked weights are not part of a removed head, neuron or channel; \
             they stay in the model with their trained values"
        );
    }
    let identity = RunIdentity::new("speedup")
        .with_checkpoint("model", &dir)?
        .with_file("masks", &args.masks)?;
    let inputs = [("--model", dir.as_path()), ("--masks", &args.masks)];
    let out = RunDir::claim(&args.out, &inputs, &identity, false)?;
    let (pooler, classifier) = (
        bert.params.pooler.is_some(),
        bert.params.classifier.is_some(),
    );
    let report = PruningReport::new(&bert.config, pooler, classifier, &plan, REPORT_SEQ)?;
    apply(&mut bert, &plan, &mut [])?;
    bert.set_masks(None)?;
    let model_dir = out.path().join("model");
    bert.save(&model_dir)?;
    copy_tokenizer(&dir, &model_dir)?;
    plan.save(&out.path().join("plan.json"))?;
    let saved = finish(out)?.join("model");
    println!(
        "heads {:?}, FFN {:?}, hidden {}; parameters {:.1}% of the original, FLOPs {:.2}x fewer; saved to {}",
        report.after.heads,
        report.after.intermediate,
        report.after.hidden,
        100.0 * report.parameter_ratio(),
        1.0 / report.flops_ratio().max(1e-12),
        saved.display()
    );
    Ok(())
}
