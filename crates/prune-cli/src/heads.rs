//! `prune heads`: movement pruning of the attention of a fine-tuned model (NNI's v3 recipe:
//! Q/K/V/O in head-sized blocks, soft mode with a regulariser), then speedup surgery that
//! removes every dead head; the shrunk model is evaluated and saved with its masks and plan.

use crate::device::on_device;
use crate::inputs::{evaluator, prepare, run_identity};
use crate::output::{finish, metrics_line, save_model, write_summary};
use crate::training::StageArgs;
use anyhow::{Context, Result, bail};
use prune::pipeline::heads::{default_config_list, prune_heads};
use prune::pruners::{
    ConfigList, HeadRule, MovementPruner, MovementSettings, kept_heads, modules_of,
};
use prune::tensor::Backend;
use prune::train::run_dir::sha256_file;
use prune::train::{RunDir, Trainer};
use prune::transformer::{BertForSequenceClassification, BertModel};
use serde::Serialize;
use std::path::PathBuf;

/// `prune heads` options. Serialised, the stage's own settings (its run identity).
#[derive(clap::Args, Debug, Serialize)]
pub struct Args {
    #[command(flatten)]
    #[serde(skip)]
    stage: StageArgs,
    /// NNI-style config_list (JSON or TOML); default: every attention Linear
    /// (Q/K/V/output) in head-sized blocks with sparse_threshold 0.1.
    #[arg(long)]
    #[serde(skip)]
    config_list: Option<PathBuf>,
    /// Steps before pruning starts (masks stay all ones).
    #[arg(long, default_value_t = 100)]
    warmup_steps: u64,
    /// Step from which the sparsity goal is final (cubic ramp in between).
    #[arg(long, default_value_t = 700)]
    cooldown_step: u64,
    /// Weight of the score regulariser (soft mode): higher prunes more.
    #[arg(long, default_value_t = 10.0)]
    regular_scale: f64,
    /// Learning rate of the scores' Adam.
    #[arg(long, default_value_t = 1e-2)]
    score_lr: f64,
    /// Hard mode: remove this fraction of the heads of every layer, ranked by the movement
    /// scores of their value-projection rows (replaces the default config_list; the
    /// regulariser is not used).
    #[arg(long, conflicts_with = "config_list")]
    sparse_ratio: Option<f64>,
    /// Which masks decide that a head is dead: `qkvo` (NNI v3: all its rows of Q, K or V,
    /// or its columns of the output projection) or `value` (NNI v2: all its rows of V).
    /// Default: `value` with --sparse-ratio, else `qkvo`.
    #[arg(long, value_enum)]
    head_rule: Option<Rule>,
    /// Print which parameters the config_list selects and stop.
    #[arg(long)]
    #[serde(skip)]
    dry_run: bool,
}

impl Args {
    /// The movement pruner's settings these flags describe.
    fn settings(&self) -> MovementSettings {
        MovementSettings {
            score_lr: self.score_lr,
            ..MovementSettings::new(self.warmup_steps, self.cooldown_step, self.regular_scale)
        }
    }

    /// Checks the options (before anything is read but the config_list).
    pub fn check(&self) -> Result<()> {
        self.stage.check()?;
        if let Some(r) = self.sparse_ratio.filter(|r| !(0.0..1.0).contains(r)) {
            bail!("--sparse-ratio must be in [0, 1), got {r}");
        }
        self.settings().validate()?;
        if let Some(path) = &self.config_list {
            ConfigList::from_path(path).context("--config-list")?;
        }
        Ok(())
    }
}

/// `--head-rule` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Serialize)]
enum Rule {
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

/// `prune heads`.
pub fn run(args: &Args) -> Result<()> {
    args.check()?;
    on_device!(args.stage.device.device, b => run_on(b, args))
}

/// `prune heads` with the model on backend `b`.
fn run_on<B: Backend>(b: B, args: &Args) -> Result<()> {
    let config = args.stage.train.config()?;
    let p = prepare(
        &args.stage.source,
        args.stage.train.max_train,
        !args.dry_run,
    )?;
    let bert = BertModel::load(b, &p.model_dir)
        .with_context(|| format!("loading the fine-tuned model {}", p.model_dir.display()))?;
    let mut model = BertForSequenceClassification::new(bert)?;
    let list = match &args.config_list {
        Some(path) => ConfigList::from_path(path).context("--config-list")?,
        None => default_config_list(model.bert.config.head_dim(), args.sparse_ratio)?,
    };
    println!("{}", list.dry_run(&modules_of(&model.bert))?);
    if args.dry_run {
        return Ok(());
    }
    let movement = MovementPruner::from_config(&list, &model.bert, args.settings())?;
    let eval = evaluator(&args.stage.source, &p)?;
    let mut identity = run_identity("heads", &args.stage.source, &p, &args.stage.train)?
        .with_fields("heads", args);
    let mut inputs = vec![("--model", p.model_dir.as_path()), ("--data", &p.data_dir)];
    if let Some(path) = &args.config_list {
        inputs.push(("--config-list", path));
        identity = identity.with("heads.config_list", sha256_file(path)?);
    }
    let out = RunDir::claim(&args.stage.out, &inputs, &identity, args.stage.resume)?;
    let mut movement = movement.with_checkpoints(out.path(), config.checkpoint_every)?;
    if args.stage.resume {
        movement.resume()?;
    }
    let trainer = Trainer::new(config, &p.train, p.pad)?
        .with_evaluator(&eval)
        .with_output_dir(out.path());
    // Dead heads by the chosen rule; surviving heads are restored whole, then cut.
    let rule = match (args.head_rule, args.sparse_ratio) {
        (Some(r), _) => HeadRule::from(r),
        (None, Some(_)) => HeadRule::ValueOnly,
        (None, None) => HeadRule::QkvO,
    };
    let done = prune_heads(&mut model, &mut movement, trainer, rule, args.stage.resume)?;
    done.masks.save(&out.path().join("masks.safetensors"))?;
    write_summary(out.path(), &done.summary)?;
    done.plan.save(&out.path().join("plan.json"))?;
    let pruned_eval = eval.evaluate(&model)?;
    save_model(&model, &p.model_dir, out.path())?;
    let dir = finish(out)?.join("model");
    let (before, after) = (&done.before, &done.after);
    let kept = kept_heads(&model.bert.config, &Default::default());
    println!(
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
    );
    Ok(())
}
