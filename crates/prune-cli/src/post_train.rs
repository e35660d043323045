//! `prune post-train`: retraining-free pruning of a fine-tuned model (Kwon et al. 2022) to a
//! fraction of its head and FFN FLOPs, from a seeded sample of the training split: Fisher
//! importance, the search under the budget, rearrangement, surgery and mask tuning
//! (`prune_posttrain`); then the dev metric of both models.

use crate::device::{DeviceArgs, on_device};
use crate::distill::load_classifier;
use crate::finetune::save_model;
use crate::inputs::{Prepared, Source, evaluator, prepare, source_identity};
use crate::output::finish;
use anyhow::{Context, Result, bail};
use prune::data::{LabelledBatch, collate};
use prune::posttrain::{PostTrainConfig, PostTrainReport, TuneConfig, importance, prune_to};
use prune::speedup::ModelStats;
use prune::tensor::Backend;
use prune::tensor::rng::Rng;
use prune::train::RunDir;
use prune::train::state::write_json;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// `prune post-train` options. Serialised, the settings that decide the result.
#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct Args {
    /// The fine-tuned checkpoint (`--model`) and its task.
    #[command(flatten)]
    #[serde(skip)]
    source: Source,
    #[command(flatten)]
    #[serde(skip)]
    device: DeviceArgs,
    /// Output directory: model/, plan.json, summary.json, run.json (written as
    /// <out>.partial and renamed when complete); with several ratios, one folder per ratio
    /// (`ratio-0.60/`) and a summary.json listing them.
    #[arg(long)]
    #[serde(skip)]
    out: PathBuf,
    /// Fraction of the encoder's head and FFN FLOPs to keep, in (0, 1], counted at the
    /// sample's mean sequence length; several (`0.4,0.5,0.6`) share one importance pass.
    #[arg(long, value_delimiter = ',', required = true)]
    flops_ratio: Vec<f64>,
    /// Training examples drawn (seeded, without replacement) for importance and tuning.
    #[arg(long, default_value_t = 2048)]
    samples: usize,
    /// Examples per sample batch (one gradient per batch).
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Seed of the sample.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Skip the rearrangement of each layer's pruned set.
    #[arg(long)]
    no_rearrange: bool,
    /// Skip mask tuning (the kept units keep scale 1).
    #[arg(long)]
    no_tune: bool,
    /// Mask tuning's pull of the scales towards 1, relative to the mean of diag(AᵀA).
    #[arg(long, default_value_t = 1e-3)]
    damping: f64,
}

impl Args {
    /// Checks the options (before anything is read).
    pub fn check(&self) -> Result<()> {
        self.source.check()?;
        for r in &self.flops_ratio {
            if !(*r > 0.0 && *r <= 1.0) {
                bail!("--flops-ratio must be in (0, 1], got {r}");
            }
        }
        let mut names: Vec<String> = self.flops_ratio.iter().map(|&r| ratio_dir(r)).collect();
        names.sort();
        if names.windows(2).any(|w| w[0] == w[1]) {
            bail!("--flops-ratio lists the same ratio twice (to two decimals)");
        }
        if self.samples == 0 || self.batch_size == 0 {
            bail!("--samples and --batch-size must be at least 1");
        }
        if !(self.damping.is_finite() && self.damping >= 0.0) {
            bail!("--damping must be a number ≥ 0, got {}", self.damping);
        }
        Ok(())
    }

    fn config(&self, flops_ratio: f64) -> PostTrainConfig {
        PostTrainConfig {
            flops_ratio,
            rearrange: !self.no_rearrange,
            tune: (!self.no_tune).then_some(TuneConfig {
                damping: self.damping,
                ..TuneConfig::default()
            }),
        }
    }
}

/// The folder of one ratio's results when several are asked for.
fn ratio_dir(r: f64) -> String {
    format!("ratio-{r:.2}")
}

/// What `summary.json` holds.
#[derive(Serialize)]
struct Summary {
    /// Dev metric of the pruned model.
    metric: f64,
    /// Dev metric of the input model.
    teacher_metric: f64,
    /// Kept fraction of the head and FFN FLOPs at the sample's mean length.
    flops_ratio: f64,
    /// Kept fraction of all matmul FLOPs at T = 128.
    flops_ratio_t128: f64,
    /// Parameters before and after.
    params: [usize; 2],
    /// Seconds of the pruning (importance, search, rearrangement, surgery, tuning).
    seconds: f64,
    /// Examples sampled.
    examples: usize,
    /// Heads per layer after pruning.
    heads: Vec<usize>,
    /// FFN width per layer after pruning.
    intermediate: Vec<usize>,
    /// The pruner's own report (selection, costs, tuning fits, step seconds).
    pruning: PostTrainReport,
}

/// `prune post-train`.
pub fn run(args: &Args) -> Result<()> {
    args.check()?;
    on_device!(args.device.device, b => run_on(b, args))
}

/// A seeded sample of the training split, in batches of similar lengths.
fn sample(p: &Prepared, args: &Args) -> Result<Vec<LabelledBatch>> {
    let mut order: Vec<usize> = (0..p.train.len()).collect();
    Rng::new(args.seed).shuffle(&mut order);
    order.truncate(args.samples);
    if order.is_empty() {
        bail!("the training split is empty");
    }
    // Batches of similar lengths pad little (the draw itself stays random).
    order.sort_by_key(|&i| p.train[i].ids.len());
    order
        .chunks(args.batch_size)
        .map(|c| {
            let rows: Vec<_> = c.iter().map(|&i| &p.train[i]).collect();
            Ok(collate(&rows, p.pad)?)
        })
        .collect()
}

fn run_on<B: Backend>(b: B, args: &Args) -> Result<()> {
    let started = Instant::now();
    let p = prepare(&args.source, None, true)?;
    let model = load_classifier(b, &p.model_dir)?;
    let identity = source_identity("post-train", &args.source, &p)?.with_fields("post-train", args);
    let inputs = [("--model", p.model_dir.as_path()), ("--data", &p.data_dir)];
    let out = RunDir::claim(&args.out, &inputs, &identity, false)?;
    let batches = sample(&p, args)?;
    let examples = batches.iter().map(|x| x.inputs.batch).sum();
    let imp = importance(&model, &batches)?;
    eprintln!(
        "importance from {examples} examples (mean length {:.1}) in {:.1}s",
        imp.mean_seq_len, imp.seconds
    );
    let eval = evaluator(&args.source, &p)?;
    let teacher_metric = eval.evaluate(&model)?.main();
    let before = ModelStats::of(&model.bert.config, true, true, 128);
    let several = args.flops_ratio.len() > 1;
    let mut summaries = Vec::new();
    for &ratio in &args.flops_ratio {
        let (pruned, plan, report) = prune_to(&model, &batches, &imp, &args.config(ratio))?;
        let metric = eval.evaluate(&pruned)?.main();
        let after = ModelStats::of(&pruned.bert.config, true, true, 128);
        let s = &report.seconds;
        let summary = Summary {
            metric,
            teacher_metric,
            flops_ratio: report.flops_ratio(),
            flops_ratio_t128: after.flops_per_sequence as f64 / before.flops_per_sequence as f64,
            params: [before.parameters, after.parameters],
            seconds: s.importance + s.selection + s.tuning,
            examples,
            heads: after.heads.clone(),
            intermediate: after.intermediate.clone(),
            pruning: report,
        };
        let dir = if several {
            out.path().join(ratio_dir(ratio))
        } else {
            out.path().to_path_buf()
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        plan.save(&dir.join("plan.json"))?;
        write_json(&dir.join("summary.json"), &summary)?;
        save_model(&pruned, &p.model_dir, &dir)?;
        if let Some(why) = summary
            .pruning
            .tune
            .as_ref()
            .and_then(|t| t.stopped.as_ref())
        {
            eprintln!("warning: mask tuning stopped early at {why}");
        }
        println!(
            "{} dev {metric:.4} (input {teacher_metric:.4}) at {:.3} of the head and FFN FLOPs ({:.3} of all at T=128); heads {:?}, FFN {:?}; pruned in {:.1}s",
            args.source.task,
            summary.flops_ratio,
            summary.flops_ratio_t128,
            summary.heads,
            summary.intermediate,
            summary.seconds
        );
        summaries.push(summary);
    }
    if several {
        write_json(&out.path().join("summary.json"), &summaries)?;
    }
    let dir = finish(out)?;
    println!(
        "{} in {:.0}s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
