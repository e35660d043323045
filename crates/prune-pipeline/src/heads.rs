//! The heads stage: movement pruning of a fine-tuned model's attention (NNI's v3 recipe:
//! Q/K/V/O in head-sized blocks, soft mode with a regulariser, or one hard ratio over the
//! value projections), then the heads the chosen rule finds dead are removed by speedup
//! surgery, the surviving heads restored whole first; the shrunk model is evaluated and
//! saved with its masks and plan.

use crate::command::Command;
use crate::device::Device;
use crate::error::{Context, Result};
use crate::options::StageOptions;
use crate::refuse;
use crate::report::REPORT_SEQ;
use crate::source::{evaluator, prepare, run_identity};
use crate::stage_output::{finish, metrics_line, save_model, write_summary};
use prune_graph::PruningPlan;
use prune_pruners::{
    ConfigList, HeadRule, Masks, MovementPruner, MovementSettings, kept_heads, modules_of,
    restore_heads,
};
use prune_speedup::{ModelStats, apply, plan_from_masks};
use prune_tensor::Backend;
use prune_train::run_dir::sha256_file;
use prune_train::{RunDir, TrainSummary, Trainer};
use prune_transformer::{BertForSequenceClassification, BertModel};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The v3 tutorial's attention entry for a model with head dim `d` (soft mode, threshold
/// 0.1), or with `sparse_ratio`, one hard entry over the value projections in whole-head
/// row blocks.
pub fn default_config_list(d: usize, sparse_ratio: Option<f64>) -> Result<ConfigList> {
    let text = match sparse_ratio {
        None => format!(
            r#"[{{"op_types": ["Linear"],
                  "op_names_re": ["bert\\.encoder\\.layer\\.[0-9]*\\.attention\\..*"],
                  "sparse_threshold": 0.1, "granularity": [{d}, {d}]}}]"#
        ),
        Some(r) => format!(
            r#"[{{"op_types": ["Linear"],
                  "op_names_re": ["bert\\.encoder\\.layer\\.[0-9]*\\.attention\\.self\\.value"],
                  "sparse_ratio": {r}, "granularity": [{d}, -1]}}]"#
        ),
    };
    Ok(ConfigList::from_json_str(&text)?)
}

/// What [`prune_heads`] did.
#[derive(Clone, Debug)]
pub struct HeadsOutcome {
    /// The movement pruner's final masks.
    pub masks: Masks,
    /// The surgery applied (the dead heads of each layer).
    pub plan: PruningPlan,
    /// The training run the pruner rode along.
    pub summary: TrainSummary,
    /// The model's statistics before surgery, at [`REPORT_SEQ`] tokens.
    pub before: ModelStats,
    /// And after.
    pub after: ModelStats,
}

/// Trains `model` with `trainer` while `movement` prunes its attention (continuing the
/// newest checkpoint with `resume`, after [`MovementPruner::resume`]), then removes every
/// head `rule` finds dead. The model is left cut and without masks.
pub fn prune_heads<B: Backend>(
    model: &mut BertForSequenceClassification<B>,
    movement: &mut MovementPruner,
    trainer: Trainer<'_, B>,
    rule: HeadRule,
    resume: bool,
) -> Result<HeadsOutcome> {
    let (masks, summary) = movement.compress(trainer, model, resume)?;
    let bert = &mut model.bert;
    let before = ModelStats::of(&bert.config, true, true, REPORT_SEQ);
    restore_heads(&masks, &bert.config, rule)?.apply(bert)?;
    let weight_masks = bert.masks().cloned().unwrap_or_else(|| bert.empty_masks());
    let plan = plan_from_masks(bert, &weight_masks)?;
    apply(bert, &plan, &mut [])?;
    bert.set_masks(None)?;
    let after = ModelStats::of(&bert.config, true, true, REPORT_SEQ);
    Ok(HeadsOutcome {
        masks,
        plan,
        summary,
        before,
        after,
    })
}

/// The heads stage's options (`prune heads`, a recipe's `[heads]`). Serialised, the stage's
/// own settings (its run identity).
#[derive(clap::Args, Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all(deserialize = "kebab-case"))]
pub struct HeadsOptions {
    /// What every training stage takes.
    #[command(flatten)]
    #[serde(skip_serializing, flatten)]
    pub stage: StageOptions,
    /// NNI-style config_list (JSON or TOML); default: every attention Linear
    /// (Q/K/V/output) in head-sized blocks with sparse_threshold 0.1.
    #[arg(long)]
    #[serde(skip_serializing)]
    pub config_list: Option<PathBuf>,
    /// Steps before pruning starts (masks stay all ones).
    #[arg(long, default_value_t = HeadsOptions::default().warmup_steps)]
    pub warmup_steps: u64,
    /// Step from which the sparsity goal is final (cubic ramp in between).
    #[arg(long, default_value_t = HeadsOptions::default().cooldown_step)]
    pub cooldown_step: u64,
    /// Weight of the score regulariser (soft mode): higher prunes more.
    #[arg(long, default_value_t = HeadsOptions::default().regular_scale)]
    pub regular_scale: f64,
    /// Learning rate of the scores' Adam.
    #[arg(long, default_value_t = HeadsOptions::default().score_lr)]
    pub score_lr: f64,
    /// Hard mode: remove this fraction of the heads of every layer, ranked by the movement
    /// scores of their value-projection rows (replaces the default config_list; the
    /// regulariser is not used).
    #[arg(long, conflicts_with = "config_list")]
    pub sparse_ratio: Option<f64>,
    /// Which masks decide that a head is dead: `qkvo` (NNI v3: all its rows of Q, K or V,
    /// or its columns of the output projection) or `value` (NNI v2: all its rows of V).
    /// Default: `value` with --sparse-ratio, else `qkvo`.
    #[arg(long, value_enum)]
    pub head_rule: Option<Rule>,
    /// Print which parameters the config_list selects and stop.
    #[arg(long)]
    #[serde(skip)]
    pub dry_run: bool,
}

impl Default for HeadsOptions {
    fn default() -> Self {
        HeadsOptions {
            stage: StageOptions::default(),
            config_list: None,
            warmup_steps: 100,
            cooldown_step: 700,
            regular_scale: 10.0,
            score_lr: 1e-2,
            sparse_ratio: None,
            head_rule: None,
            dry_run: false,
        }
    }
}

impl HeadsOptions {
    /// The movement pruner's settings these options describe.
    fn settings(&self) -> MovementSettings {
        MovementSettings {
            score_lr: self.score_lr,
            ..MovementSettings::new(self.warmup_steps, self.cooldown_step, self.regular_scale)
        }
    }
}

/// `--head-rule` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rule {
    /// Dead if all its rows of Q, K or V, or all its columns of the output, are masked.
    Qkvo,
    /// Dead if all its rows of V are masked.
    Value,
}

impl From<Rule> for HeadRule {
    fn from(r: Rule) -> Self {
        match r {
            Rule::Qkvo => HeadRule::QkvO,
            Rule::Value => HeadRule::ValueOnly,
        }
    }
}

impl Command for HeadsOptions {
    /// Checks the options (before anything is read but the config_list).
    fn check(&self) -> Result<()> {
        self.stage.check()?;
        if let Some(r) = self.sparse_ratio.filter(|r| !(0.0..1.0).contains(r)) {
            refuse!("--sparse-ratio must be in [0, 1), got {r}");
        }
        self.settings().validate()?;
        if let Some(path) = &self.config_list {
            ConfigList::from_path(path).context("--config-list")?;
        }
        Ok(())
    }

    fn device(&self) -> Device {
        self.stage.device.device
    }

    fn bf16(&self) -> bool {
        self.stage.train.bf16
    }

    /// Movement-prunes the heads while training, cuts the dead ones, saves `<out>/model`
    /// with the masks and the plan.
    fn run<B: Backend>(&self, b: B) -> Result<String> {
        let config = self.stage.train.config()?;
        let p = prepare(
            &self.stage.source,
            self.stage.train.max_train,
            !self.dry_run,
        )?;
        let bert = BertModel::load(b, &p.model_dir)
            .context_with(|| format!("loading the fine-tuned model {}", p.model_dir.display()))?;
        let mut model = BertForSequenceClassification::new(bert)?;
        let list = match &self.config_list {
            Some(path) => ConfigList::from_path(path).context("--config-list")?,
            None => default_config_list(model.bert.config.head_dim(), self.sparse_ratio)?,
        };
        let selected = list.dry_run(&modules_of(&model.bert))?;
        if self.dry_run {
            return Ok(selected.to_string());
        }
        println!("{selected}");
        let movement = MovementPruner::from_config(&list, &model.bert, self.settings())?;
        let eval = evaluator(&self.stage.source, &p)?;
        let mut identity = run_identity("heads", &self.stage.source, &p, &self.stage.train)?
            .with_fields("heads", self);
        let mut inputs = vec![("--model", p.model_dir.as_path()), ("--data", &p.data_dir)];
        if let Some(path) = &self.config_list {
            inputs.push(("--config-list", path));
            identity = identity.with("heads.config_list", sha256_file(path)?);
        }
        let out = RunDir::claim(&self.stage.out, &inputs, &identity, self.stage.resume)?;
        let mut movement = movement.with_checkpoints(out.path(), config.checkpoint_every)?;
        if self.stage.resume {
            movement.resume()?;
        }
        let trainer = Trainer::new(config, &p.train, p.pad)?
            .with_evaluator(&eval)
            .with_output_dir(out.path());
        // Dead heads by the chosen rule; surviving heads are restored whole, then cut.
        let rule = match (self.head_rule, self.sparse_ratio) {
            (Some(r), _) => HeadRule::from(r),
            (None, Some(_)) => HeadRule::ValueOnly,
            (None, None) => HeadRule::QkvO,
        };
        let done = prune_heads(&mut model, &mut movement, trainer, rule, self.stage.resume)?;
        done.masks.save(&out.path().join("masks.safetensors"))?;
        write_summary(out.path(), &done.summary)?;
        done.plan.save(&out.path().join("plan.json"))?;
        let pruned_eval = eval.evaluate(&model)?;
        save_model(&model, &p.model_dir, out.path())?;
        let dir = finish(out)?.join("model");
        let (before, after) = (&done.before, &done.after);
        let kept = kept_heads(&model.bert.config, &Default::default());
        Ok(format!(
            "heads kept per layer: {kept:?} (removed, by layer and position: {:?})\n\
             encoder parameters {} -> {} ({:.1}% removed), FLOPs/token ratio {:.2}x\n\
             dev after movement (masked): {} | after surgery: {}\n\
             {} steps in {:.1}s ({:.1} ex/s); model saved to {}",
            done.plan.removed_heads(),
            before.encoder_parameters,
            after.encoder_parameters,
            100.0 * (1.0 - after.encoder_parameters as f64 / before.encoder_parameters as f64),
            before.flops_per_sequence as f64 / after.flops_per_sequence.max(1) as f64,
            metrics_line(done.summary.evaluation.as_ref()),
            metrics_line(Some(&pruned_eval)),
            done.summary.steps,
            done.summary.train_seconds,
            done.summary.examples_per_second,
            dir.display()
        ))
    }
}
