//! `prune distill`: re-train a (pruned) student from the fine-tuned teacher with logit
//! distillation and hidden-state losses under a dynamic layer mapping (NNI's rule by default,
//! CoFi's ordered rule by option).

use crate::device::on_device;
use crate::inputs::{claim_distilling, evaluator, load_classifier, prepare};
use crate::output::{finish, metrics_line, save_model, write_summary};
use crate::training::StageArgs;
use anyhow::Result;
use prune::distill::{DistillConfig, Distiller, LayerMapping};
use prune::tensor::Backend;
use prune::train::Trainer;
use serde::Serialize;
use std::path::PathBuf;

/// Which layer mapping to use.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Serialize)]
pub enum Mapping {
    /// NNI: each student layer picks, every step, the teacher layer j ≥ i with the smallest loss.
    Dynamic,
    /// CoFi: 4 fixed teacher layers aligned in increasing order by smallest loss.
    Ordered,
}

/// `prune distill` options. Serialised, the stage's own settings (its run identity).
#[derive(clap::Args, Debug, Serialize)]
pub struct Args {
    #[command(flatten)]
    #[serde(skip)]
    stage: StageArgs,
    /// The fine-tuned teacher checkpoint.
    #[arg(long)]
    #[serde(skip)]
    teacher: PathBuf,
    /// Layer mapping.
    #[arg(long, value_enum, default_value = "dynamic")]
    mapping: Mapping,
    /// Weight of the task loss.
    #[arg(long, default_value_t = 0.1)]
    alpha_ce: f64,
    /// Weight of the hidden-state losses.
    #[arg(long, default_value_t = 0.9)]
    alpha_layer: f64,
    /// Weight of the logit distillation loss.
    #[arg(long, default_value_t = 0.9)]
    alpha_kd: f64,
    /// Temperature of the logit distillation loss.
    #[arg(long, default_value_t = 2.0)]
    temperature: f64,
}

/// The distillation settings these flags describe.
fn config(args: &Args) -> DistillConfig {
    DistillConfig {
        alpha_ce: args.alpha_ce,
        alpha_layer: args.alpha_layer,
        alpha_kd: args.alpha_kd,
        temperature: args.temperature,
        mapping: match args.mapping {
            Mapping::Dynamic => LayerMapping::Dynamic,
            Mapping::Ordered => LayerMapping::Ordered { teacher: None },
        },
        ..DistillConfig::default()
    }
}

impl Args {
    /// Checks the options (before anything is read).
    pub fn check(&self) -> Result<()> {
        self.stage.check()?;
        config(self).validate()?;
        Ok(())
    }
}

/// `prune distill`.
pub fn run(args: &Args) -> Result<()> {
    args.check()?;
    on_device!(args.stage.device.device, b => run_on(b, args))
}

/// `prune distill` with teacher and student on backend `b`.
fn run_on<B: Backend>(b: B, args: &Args) -> Result<()> {
    let train_config = args.stage.train.config()?;
    let p = prepare(&args.stage.source, args.stage.train.max_train, true)?;
    let teacher = load_classifier(b.clone(), &args.teacher)?;
    let mut student = load_classifier(b, &p.model_dir)?;
    let base = (&args.stage.source, &p, &args.stage.train);
    let out = claim_distilling(
        "distill",
        base,
        args,
        &args.teacher,
        (&args.stage.out, args.stage.resume),
    )?;
    let mut distiller = Distiller::new(teacher, config(args))?
        .with_log(&out.path().join("metrics.jsonl"), 10)?
        .with_checkpoints(out.path(), train_config.checkpoint_every)?;
    if args.stage.resume {
        distiller.resume()?;
    }
    let eval = evaluator(&args.stage.source, &p)?;
    let trainer = Trainer::new(train_config, &p.train, p.pad)?
        .with_evaluator(&eval)
        .with_output_dir(out.path());
    let summary = distiller
        .attach(trainer)
        .run(&mut student, args.stage.resume)?;
    write_summary(out.path(), &summary)?;
    save_model(&student, &p.model_dir, out.path())?;
    let dir = finish(out)?.join("model");
    println!(
        "distilled: {} | layer mapping counts {:?} | {} steps in {:.1}s ({:.1} ex/s); model saved to {}",
        metrics_line(summary.evaluation.as_ref()),
        distiller.mapping_histogram(),
        summary.steps,
        summary.train_seconds,
        summary.examples_per_second,
        dir.display()
    );
    Ok(())
}
