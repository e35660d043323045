//! The finetune stage and evaluation: load a checkpoint and a GLUE task, train with AdamW
//! and a linear schedule, evaluate with the task's metrics, save the model.

use crate::command::Command;
use crate::device::{Device, DeviceArgs, PrecisionArgs};
use crate::error::Result;
use crate::options::StageOptions;
use crate::source::{Source, evaluator, load_classifier, prepare, run_identity};
use crate::stage_output::{finish, metrics_line, save_model, write_summary};
use prune_data::task::LabelKind;
use prune_tensor::Backend;
use prune_train::{RunDir, Trainer};
use prune_transformer::BertForSequenceClassification;
use serde::Deserialize;

/// The finetune stage's options (`prune finetune`, a recipe's `[finetune]`).
#[derive(clap::Args, Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FinetuneOptions {
    /// What every training stage takes.
    #[command(flatten)]
    #[serde(flatten)]
    pub stage: StageOptions,
}

impl Command for FinetuneOptions {
    fn check(&self) -> Result<()> {
        self.stage.check()
    }

    fn device(&self) -> Device {
        self.stage.device.device
    }

    fn bf16(&self) -> bool {
        self.stage.train.bf16
    }

    /// Fine-tunes the checkpoint on the task, saves it into `<out>/model`.
    fn run<B: Backend>(&self, b: B) -> Result<String> {
        let stage = &self.stage;
        let config = stage.train.config()?;
        let p = prepare(&stage.source, stage.train.max_train, true)?;
        let identity = run_identity("finetune", &stage.source, &p, &stage.train)?;
        let task = stage.source.task;
        let mut model = BertForSequenceClassification::from_pretrained(
            b,
            &p.model_dir,
            task.num_labels(),
            stage.train.seed,
        )?;
        if let LabelKind::Classes(names) = task.labels() {
            // Saved as id2label, so the checkpoint names its classes as the task does.
            let names = names.iter().enumerate().map(|(i, n)| (i, n.to_string()));
            model.bert.config.id2label = Some(names.collect());
        }
        let eval = evaluator(&stage.source, &p)?;
        let inputs = [("--model", p.model_dir.as_path()), ("--data", &p.data_dir)];
        let out = RunDir::claim(&stage.out, &inputs, &identity, stage.resume)?;
        let mut trainer = Trainer::new(config, &p.train, p.pad)?
            .with_evaluator(&eval)
            .with_output_dir(out.path());
        let summary = trainer.run(&mut model, stage.resume)?;
        save_model(&model, &p.model_dir, out.path())?;
        write_summary(out.path(), &summary)?;
        let model_out = finish(out)?.join("model");
        Ok(format!(
            "{task}: {} | {} steps, {} examples in {:.1}s ({:.1} ex/s) | model saved to {}",
            metrics_line(summary.evaluation.as_ref()),
            summary.steps,
            summary.examples,
            summary.train_seconds,
            summary.examples_per_second,
            model_out.display()
        ))
    }
}

/// `prune eval` options.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalOptions {
    /// The checkpoint and the task.
    #[command(flatten)]
    pub source: Source,
    /// Where the model runs.
    #[command(flatten)]
    pub device: DeviceArgs,
    /// The precision of its matrix products.
    #[command(flatten)]
    pub precision: PrecisionArgs,
}

impl Command for EvalOptions {
    fn check(&self) -> Result<()> {
        self.source.check()?;
        self.precision.check(self.device.device)
    }

    fn device(&self) -> Device {
        self.device.device
    }

    fn bf16(&self) -> bool {
        self.precision.bf16
    }

    /// Evaluates the checkpoint on the task's dev split.
    fn run<B: Backend>(&self, b: B) -> Result<String> {
        let p = prepare(&self.source, None, false)?;
        let model = load_classifier(b, &p.model_dir)?;
        let e = evaluator(&self.source, &p)?.evaluate(&model)?;
        Ok(format!(
            "{} dev: {} | loss {:.4} | {} examples in {:.1}s ({:.1} ex/s)",
            self.source.task,
            metrics_line(Some(&e)),
            e.loss,
            e.examples,
            e.seconds,
            e.examples as f64 / e.seconds.max(1e-9)
        ))
    }
}
