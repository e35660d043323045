//! The ffn and hidden stages: iterative Taylor pruning of the FFN (and optionally the
//! hidden width) while distilling from the teacher: every `interval` steps a round ranks
//! neurons, cuts the live student (parameters truly removed, optimizer moments sliced) and
//! distillation goes on.

use crate::command::Command;
use crate::device::Device;
use crate::distill::DistillLoss;
use crate::error::{Context, PipelineError, Result};
use crate::options::StageOptions;
use crate::refuse;
use crate::source::{claim_distilling, evaluator, load_classifier, prepare};
use crate::stage_output::{finish, metrics_line, save_model, write_summary};
use prune_distill::{Distiller, IterativeConfig, IterativePruning};
use prune_pruners::ffn_sparse_ratios;
use prune_tensor::Backend;
use prune_train::state::write_json;
use prune_train::{Callback, Optimizer, StepInfo, Trainer};
use prune_transformer::BertForSequenceClassification;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The ffn stage's options (`prune ffn`, a recipe's `[ffn]`). Serialised, the stage's own
/// settings (its run identity).
#[derive(clap::Args, Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all(deserialize = "kebab-case"))]
pub struct FfnOptions {
    /// What every training stage takes.
    #[command(flatten)]
    #[serde(skip_serializing, flatten)]
    pub stage: StageOptions,
    /// The fine-tuned teacher checkpoint.
    #[arg(long)]
    #[serde(skip)]
    pub teacher: PathBuf,
    /// Optimizer steps between pruning rounds.
    #[arg(long, default_value_t = FfnOptions::default().interval)]
    pub interval: u64,
    /// Number of rounds (AGP schedule: the goal is reached at the last).
    #[arg(long, default_value_t = FfnOptions::default().rounds)]
    pub rounds: u64,
    /// Fraction of FFN neurons to remove in every layer; default: NNI's per-layer rule
    /// `1 − (kept heads / heads) / 2` from the student's heads.
    #[arg(long)]
    pub ffn_ratio: Option<f64>,
    /// Also remove this fraction of the hidden width (rounds alike).
    #[arg(long)]
    pub hidden_ratio: Option<f64>,
    /// Also cut the hidden width, as little as leaves the final model at most this many
    /// parameters (embeddings, pooler and classifier included) beside its final FFN widths.
    #[arg(long, conflicts_with = "hidden_ratio")]
    pub target_params: Option<usize>,
    /// The distillation loss.
    #[command(flatten)]
    #[serde(flatten)]
    pub loss: DistillLoss,
}

impl Default for FfnOptions {
    fn default() -> Self {
        FfnOptions {
            stage: StageOptions::default(),
            teacher: PathBuf::new(),
            interval: 100,
            rounds: 4,
            ffn_ratio: None,
            hidden_ratio: None,
            target_params: None,
            loss: DistillLoss::default(),
        }
    }
}

/// The hidden stage's options (`prune hidden`): those of the ffn stage with a hidden goal
/// (`--hidden-ratio` or `--target-params`) required and the FFN left alone unless
/// `--ffn-ratio` is given too.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct HiddenOptions {
    /// The ffn stage's options.
    #[command(flatten)]
    pub ffn: FfnOptions,
}

/// Times optimizer steps between rounds, to report each round's training throughput.
struct RoundClock {
    interval: u64,
    batch: usize,
    last: Option<Instant>,
    steps: Vec<f64>,
    segments: Vec<f64>,
}

impl<B: Backend> Callback<B> for RoundClock {
    fn after_step(
        &mut self,
        info: &StepInfo,
        _: &mut BertForSequenceClassification<B>,
        _: &mut Optimizer<B::Tensor>,
    ) -> prune_train::Result<()> {
        let now = Instant::now();
        if let Some(t) = self.last.replace(now) {
            self.steps.push((now - t).as_secs_f64());
        }
        if info.step % self.interval == 0 || info.step == info.total_steps {
            // The median step time ignores the evaluation that follows a boundary.
            let mut s = std::mem::take(&mut self.steps);
            s.sort_by(f64::total_cmp);
            if let Some(m) = s.get(s.len() / 2) {
                self.segments.push(self.batch as f64 / m);
            }
        }
        Ok(())
    }
}

impl Command for FfnOptions {
    fn check(&self) -> Result<()> {
        self.stage.check()?;
        self.loss.config().validate()?;
        if self.interval == 0 || self.rounds == 0 {
            refuse!("--interval and --rounds must be at least 1");
        }
        if let Some(r) = self.ffn_ratio.filter(|r| !(0.0..=1.0).contains(r)) {
            refuse!("--ffn-ratio must be in [0, 1], got {r}");
        }
        if let Some(r) = self.hidden_ratio.filter(|r| !(0.0..1.0).contains(r)) {
            refuse!("--hidden-ratio must be in [0, 1), got {r}");
        }
        let steps = self.interval.saturating_mul(self.rounds);
        if let Some(max) = self.stage.train.max_steps.filter(|&m| m < steps) {
            refuse!(
                "--max-steps {max} ends before the last of {} rounds {} steps apart (step {steps})",
                self.rounds,
                self.interval
            );
        }
        Ok(())
    }

    fn device(&self) -> Device {
        self.stage.device.device
    }

    fn bf16(&self) -> bool {
        self.stage.train.bf16
    }

    /// Prunes while distilling, saves `<out>/model` with the plan and the rounds.
    fn run<B: Backend>(&self, b: B) -> Result<String> {
        prune_while_distilling(b, self, "ffn")
    }
}

impl HiddenOptions {
    /// The ffn stage's options this stage runs.
    fn ffn_options(&self) -> Result<FfnOptions> {
        let ffn = &self.ffn;
        if ffn.hidden_ratio.is_none() && ffn.target_params.is_none() {
            refuse!(
                "prune hidden needs --hidden-ratio (the fraction of hidden channels to remove) \
                 or --target-params (the size to reach)"
            );
        }
        Ok(FfnOptions {
            ffn_ratio: ffn.ffn_ratio.or(Some(0.0)),
            ..ffn.clone()
        })
    }
}

impl Command for HiddenOptions {
    fn check(&self) -> Result<()> {
        self.ffn_options()?.check()
    }

    fn device(&self) -> Device {
        self.ffn.device()
    }

    fn bf16(&self) -> bool {
        self.ffn.bf16()
    }

    /// Prunes the hidden width while distilling, as the ffn stage does.
    fn run<B: Backend>(&self, b: B) -> Result<String> {
        prune_while_distilling(b, &self.ffn_options()?, "hidden")
    }
}

/// The ffn stage (or the hidden one, named by `command`) with teacher and student on
/// backend `b`.
fn prune_while_distilling<B: Backend>(b: B, args: &FfnOptions, command: &str) -> Result<String> {
    let mut train_config = args.stage.train.config()?;
    if train_config.eval_every.is_none() {
        train_config.eval_every = Some(args.interval);
    }
    let p = prepare(&args.stage.source, args.stage.train.max_train, true)?;
    let teacher = load_classifier(b.clone(), &args.teacher)?;
    let mut student = load_classifier(b, &p.model_dir)?;
    let ffn = match args.ffn_ratio {
        Some(r) => vec![r],
        None => {
            let heads = teacher.bert.config.num_attention_heads;
            let kept: Vec<usize> = (0..student.bert.config.num_hidden_layers)
                .map(|l| student.bert.config.heads(l))
                .collect();
            ffn_sparse_ratios(&kept, heads)
        }
    };
    let mut config = IterativeConfig {
        interval: args.interval,
        rounds: args.rounds,
        ffn,
        hidden: args.hidden_ratio,
        ..IterativeConfig::default()
    };
    if let Some(target) = args.target_params {
        let b = &student.bert;
        let (pooler, classifier) = (b.params.pooler.is_some(), b.params.classifier.is_some());
        config.hidden = config
            .hidden_goal_for(&b.config, pooler, classifier, target)
            .context_with(|| format!("--target-params {target}"))?;
    }
    let base = (&args.stage.source, &p, &args.stage.train);
    let out = claim_distilling(
        command,
        base,
        args,
        &args.teacher,
        (&args.stage.out, args.stage.resume),
    )?;
    let every = train_config.checkpoint_every;
    let distiller = Distiller::new(teacher, args.loss.config())?
        .with_log(&out.path().join("metrics.jsonl"), 10)?
        .with_checkpoints(out.path(), every)?;
    let mut looped =
        IterativePruning::new(distiller, config, &student)?.with_checkpoints(out.path(), every)?;
    if args.stage.resume {
        looped.resume()?;
    }
    let eval = evaluator(&args.stage.source, &p)?;
    let mut clock = RoundClock {
        interval: args.interval,
        batch: train_config.batch_size,
        last: None,
        steps: Vec::new(),
        segments: Vec::new(),
    };
    let started = Instant::now();
    let summary = {
        let trainer = Trainer::new(train_config, &p.train, p.pad)?
            .with_evaluator(&eval)
            .with_output_dir(out.path())
            .with_callback(prune_train::ByRef(&mut clock));
        looped
            .attach(trainer)
            .run(&mut student, args.stage.resume)?
    };
    let rounds = looped.rounds().to_vec();
    looped.plan()?.save(&out.path().join("plan.json"))?;
    write_json(&out.path().join("rounds.json"), &rounds)?;
    write_summary(out.path(), &summary)?;
    save_model(&student, &p.model_dir, out.path())?;
    let evals = read_evals(&out.path().join("metrics.jsonl"))?;
    let dir = finish(out)?.join("model");
    let mut text = String::new();
    for (i, r) in rounds.iter().enumerate() {
        let acc = evals
            .iter()
            .find(|(s, _)| *s == r.step)
            .map_or(String::from("n/a"), |(_, a)| format!("{a:.4}"));
        let speed = clock
            .segments
            .get(i)
            .map_or(String::from("n/a"), |v| format!("{v:.1}"));
        text += &format!(
            "round {} at step {}: FFN {:?}, hidden {}, {} parameters; dev right after the cut {acc}; {speed} ex/s during the round\n",
            r.round, r.step, r.ffn, r.hidden, r.parameters
        );
    }
    text += &format!(
        "final: {} | after the last round {} ex/s | {} steps, {:.0}s wall; model saved to {}",
        metrics_line(summary.evaluation.as_ref()),
        clock
            .segments
            .last()
            .map_or(String::from("n/a"), |v| format!("{v:.1}")),
        summary.steps,
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(text)
}

/// `(step, main metric)` of every evaluation in a `metrics.jsonl`.
fn read_evals(path: &Path) -> Result<Vec<(u64, f64)>> {
    let text = std::fs::read_to_string(path).map_err(|e| PipelineError::io(path, e))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "eval")
        .filter_map(|v| {
            let metric = v["metrics"].as_object()?.values().next()?.as_f64()?;
            Some((v["step"].as_u64()?, metric))
        })
        .collect())
}
