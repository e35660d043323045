//! The distill stage: re-train a (pruned) student from the fine-tuned teacher with logit
//! distillation and hidden-state losses under a dynamic layer mapping (NNI's rule by default,
//! CoFi's ordered rule by option).

use crate::command::Command;
use crate::device::Device;
use crate::error::Result;
use crate::options::StageOptions;
use crate::source::{claim_distilling, evaluator, load_classifier, prepare};
use crate::stage_output::{finish, metrics_line, save_model, write_summary};
use prune_distill::{DistillConfig, Distiller, LayerMapping};
use prune_tensor::Backend;
use prune_train::Trainer;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which layer mapping to use.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mapping {
    /// NNI: each student layer picks, every step, the teacher layer j ≥ i with the smallest loss.
    #[default]
    Dynamic,
    /// CoFi: 4 fixed teacher layers aligned in increasing order by smallest loss.
    Ordered,
}

/// The distillation loss of a stage that distils from the teacher (the distill and ffn
/// stages): its layer mapping and weights.
#[derive(clap::Args, Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all(deserialize = "kebab-case"))]
pub struct DistillLoss {
    /// Layer mapping.
    #[arg(long, value_enum, default_value_t = Mapping::Dynamic)]
    pub mapping: Mapping,
    /// Weight of the task loss.
    #[arg(long, default_value_t = DistillConfig::default().alpha_ce)]
    pub alpha_ce: f64,
    /// Weight of the hidden-state losses.
    #[arg(long, default_value_t = DistillConfig::default().alpha_layer)]
    pub alpha_layer: f64,
    /// Weight of the logit distillation loss.
    #[arg(long, default_value_t = DistillConfig::default().alpha_kd)]
    pub alpha_kd: f64,
    /// Temperature of the logit distillation loss.
    #[arg(long, default_value_t = DistillConfig::default().temperature)]
    pub temperature: f64,
}

impl Default for DistillLoss {
    fn default() -> Self {
        let d = DistillConfig::default();
        DistillLoss {
            mapping: Mapping::Dynamic,
            alpha_ce: d.alpha_ce,
            alpha_layer: d.alpha_layer,
            alpha_kd: d.alpha_kd,
            temperature: d.temperature,
        }
    }
}

impl DistillLoss {
    /// The distillation settings these options describe.
    pub fn config(&self) -> DistillConfig {
        DistillConfig {
            alpha_ce: self.alpha_ce,
            alpha_layer: self.alpha_layer,
            alpha_kd: self.alpha_kd,
            temperature: self.temperature,
            mapping: match self.mapping {
                Mapping::Dynamic => LayerMapping::Dynamic,
                Mapping::Ordered => LayerMapping::Ordered { teacher: None },
            },
            ..DistillConfig::default()
        }
    }
}

/// The distill stage's options (`prune distill`, a recipe's `[distill]`). Serialised, the
/// stage's own settings (its run identity).
#[derive(clap::Args, Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all(deserialize = "kebab-case"))]
pub struct DistillOptions {
    /// What every training stage takes.
    #[command(flatten)]
    #[serde(skip_serializing, flatten)]
    pub stage: StageOptions,
    /// The fine-tuned teacher checkpoint.
    #[arg(long)]
    #[serde(skip)]
    pub teacher: PathBuf,
    /// The distillation loss.
    #[command(flatten)]
    #[serde(flatten)]
    pub loss: DistillLoss,
}

impl Command for DistillOptions {
    fn check(&self) -> Result<()> {
        self.stage.check()?;
        self.loss.config().validate()?;
        Ok(())
    }

    fn device(&self) -> Device {
        self.stage.device.device
    }

    fn bf16(&self) -> bool {
        self.stage.train.bf16
    }

    /// Distils the student from the teacher, saves `<out>/model`.
    fn run<B: Backend>(&self, b: B) -> Result<String> {
        let train_config = self.stage.train.config()?;
        let p = prepare(&self.stage.source, self.stage.train.max_train, true)?;
        let teacher = load_classifier(b.clone(), &self.teacher)?;
        let mut student = load_classifier(b, &p.model_dir)?;
        let base = (&self.stage.source, &p, &self.stage.train);
        let out = claim_distilling(
            "distill",
            base,
            self,
            &self.teacher,
            (&self.stage.out, self.stage.resume),
        )?;
        let mut distiller = Distiller::new(teacher, self.loss.config())?
            .with_log(&out.path().join("metrics.jsonl"), 10)?
            .with_checkpoints(out.path(), train_config.checkpoint_every)?;
        if self.stage.resume {
            distiller.resume()?;
        }
        let eval = evaluator(&self.stage.source, &p)?;
        let trainer = Trainer::new(train_config, &p.train, p.pad)?
            .with_evaluator(&eval)
            .with_output_dir(out.path());
        let summary = distiller
            .attach(trainer)
            .run(&mut student, self.stage.resume)?;
        write_summary(out.path(), &summary)?;
        save_model(&student, &p.model_dir, out.path())?;
        let dir = finish(out)?.join("model");
        Ok(format!(
            "distilled: {} | layer mapping counts {:?} | {} steps in {:.1}s ({:.1} ex/s); model saved to {}",
            metrics_line(summary.evaluation.as_ref()),
            distiller.mapping_histogram(),
            summary.steps,
            summary.train_seconds,
            summary.examples_per_second,
            dir.display()
        ))
    }
}
