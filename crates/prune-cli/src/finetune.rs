//! `prune finetune` and `prune eval`: load a checkpoint and a GLUE task, train with AdamW
//! and a linear schedule, evaluate with the task's metrics, save the model.

use crate::device::{DeviceArgs, on_device};
use crate::inputs::{Source, evaluator, load_classifier, prepare, run_identity};
use crate::output::{finish, metrics_line, save_model, write_summary};
use crate::training::StageArgs;
use anyhow::Result;
use prune::data::task::LabelKind;
use prune::tensor::Backend;
use prune::train::{RunDir, Trainer};
use prune::transformer::BertForSequenceClassification;

/// `prune eval` options.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The checkpoint and the task.
    #[command(flatten)]
    pub source: Source,
    #[command(flatten)]
    device: DeviceArgs,
}

/// `prune finetune`.
pub fn run(args: &StageArgs) -> Result<()> {
    args.check()?;
    on_device!(args.device.device, b => finetune_on(b, args))
}

/// `prune finetune` with the model on backend `b`.
fn finetune_on<B: Backend>(b: B, args: &StageArgs) -> Result<()> {
    let config = args.train.config()?;
    let p = prepare(&args.source, args.train.max_train, true)?;
    let identity = run_identity("finetune", &args.source, &p, &args.train)?;
    let task = args.source.task;
    let mut model = BertForSequenceClassification::from_pretrained(
        b,
        &p.model_dir,
        task.num_labels(),
        args.train.seed,
    )?;
    if let LabelKind::Classes(names) = task.labels() {
        // Saved as id2label, so the checkpoint names its classes as the task does.
        let names = names.iter().enumerate().map(|(i, n)| (i, n.to_string()));
        model.bert.config.id2label = Some(names.collect());
    }
    let eval = evaluator(&args.source, &p)?;
    let inputs = [("--model", p.model_dir.as_path()), ("--data", &p.data_dir)];
    let out = RunDir::claim(&args.out, &inputs, &identity, args.resume)?;
    let mut trainer = Trainer::new(config, &p.train, p.pad)?
        .with_evaluator(&eval)
        .with_output_dir(out.path());
    let summary = trainer.run(&mut model, args.resume)?;
    save_model(&model, &p.model_dir, out.path())?;
    write_summary(out.path(), &summary)?;
    let model_out = finish(out)?.join("model");
    println!(
        "{task}: {} | {} steps, {} examples in {:.1}s ({:.1} ex/s) | model saved to {}",
        metrics_line(summary.evaluation.as_ref()),
        summary.steps,
        summary.examples,
        summary.train_seconds,
        summary.examples_per_second,
        model_out.display()
    );
    Ok(())
}

/// `prune eval`.
pub fn eval(args: &EvalArgs) -> Result<()> {
    args.source.check()?;
    on_device!(args.device.device, b => eval_on(b, args))
}

/// `prune eval` with the model on backend `b`.
fn eval_on<B: Backend>(b: B, args: &EvalArgs) -> Result<()> {
    let p = prepare(&args.source, None, false)?;
    let model = load_classifier(b, &p.model_dir)?;
    let e = evaluator(&args.source, &p)?.evaluate(&model)?;
    println!(
        "{} dev: {} | loss {:.4} | {} examples in {:.1}s ({:.1} ex/s)",
        args.source.task,
        metrics_line(Some(&e)),
        e.loss,
        e.examples,
        e.seconds,
        e.examples as f64 / e.seconds.max(1e-9)
    );
    Ok(())
}
