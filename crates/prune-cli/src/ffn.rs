//! `prune ffn`: iterative Taylor pruning of the FFN (and optionally the hidden width) while
//! distilling from the teacher: every `interval` steps a round ranks neurons, cuts the live
//! student (parameters truly removed, optimizer moments sliced) and distillation goes on.

use crate::device::on_device;
use crate::inputs::{claim_distilling, evaluator, load_classifier, prepare};
use crate::output::{finish, metrics_line, save_model, write_summary};
use crate::training::StageArgs;
use anyhow::{Context, Result, bail};
use prune::distill::{DistillConfig, Distiller, IterativeConfig, IterativePruning};
use prune::pruners::ffn_sparse_ratios;
use prune::tensor::Backend;
use prune::train::state::write_json;
use prune::train::{Callback, Optimizer, StepInfo, Trainer};
use prune::transformer::BertForSequenceClassification;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// `prune ffn` (and `prune hidden`) options. Serialised, the stage's own settings (its run
/// identity).
#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct Args {
    #[command(flatten)]
    #[serde(skip)]
    stage: StageArgs,
    /// The fine-tuned teacher checkpoint.
    #[arg(long)]
    #[serde(skip)]
    teacher: PathBuf,
    /// Optimizer steps between pruning rounds.
    #[arg(long, default_value_t = 100)]
    interval: u64,
    /// Number of rounds (AGP schedule: the goal is reached at the last).
    #[arg(long, default_value_t = 4)]
    rounds: u64,
    /// Fraction of FFN neurons to remove in every layer; default: NNI's per-layer rule
    /// `1 − (kept heads / heads) / 2` from the student's heads.
    #[arg(long)]
    ffn_ratio: Option<f64>,
    /// Also remove this fraction of the hidden width (rounds alike).
    #[arg(long)]
    hidden_ratio: Option<f64>,
    /// Also cut the hidden width, as little as leaves the final model at most this many
    /// parameters (embeddings, pooler and classifier included) beside its final FFN widths.
    #[arg(long, conflicts_with = "hidden_ratio")]
    target_params: Option<usize>,
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
    ) -> prune::train::Result<()> {
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

impl Args {
    /// Checks the options (before anything is read).
    pub fn check(&self) -> Result<()> {
        self.stage.check()?;
        if self.interval == 0 || self.rounds == 0 {
            bail!("--interval and --rounds must be at least 1");
        }
        if let Some(r) = self.ffn_ratio.filter(|r| !(0.0..=1.0).contains(r)) {
            bail!("--ffn-ratio must be in [0, 1], got {r}");
        }
        if let Some(r) = self.hidden_ratio.filter(|r| !(0.0..1.0).contains(r)) {
            bail!("--hidden-ratio must be in [0, 1), got {r}");
        }
        let steps = self.interval.saturating_mul(self.rounds);
        if let Some(max) = self.stage.train.max_steps.filter(|&m| m < steps) {
            bail!(
                "--max-steps {max} ends before the last of {} rounds {} steps apart (step {steps})",
                self.rounds,
                self.interval
            );
        }
        Ok(())
    }
}

/// `prune ffn`.
pub fn run(args: &Args) -> Result<()> {
    args.check()?;
    on_device!(args.stage.device.device, b => run_on(b, args, "ffn"))
}

/// `prune ffn` (or `hidden`, named by `command`) with teacher and student on backend `b`.
fn run_on<B: Backend>(b: B, args: &Args, command: &str) -> Result<()> {
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
            .with_context(|| format!("--target-params {target}"))?;
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
    let distiller = Distiller::new(teacher, DistillConfig::default())?
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
            .with_callback(prune::train::ByRef(&mut clock));
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
    for (i, r) in rounds.iter().enumerate() {
        let acc = evals
            .iter()
            .find(|(s, _)| *s == r.step)
            .map_or(String::from("n/a"), |(_, a)| format!("{a:.4}"));
        let speed = clock
            .segments
            .get(i)
            .map_or(String::from("n/a"), |v| format!("{v:.1}"));
        println!(
            "round {} at step {}: FFN {:?}, hidden {}, {} parameters; dev right after the cut {acc}; {speed} ex/s during the round",
            r.round, r.step, r.ffn, r.hidden, r.parameters
        );
    }
    println!(
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
    Ok(())
}

/// `prune hidden`'s options: those of `prune ffn` with `--hidden-ratio` or `--target-params`
/// required and the FFN left alone unless `--ffn-ratio` is given too.
pub fn hidden_args(args: &Args) -> Result<Args> {
    if args.hidden_ratio.is_none() && args.target_params.is_none() {
        bail!(
            "prune hidden needs --hidden-ratio (the fraction of hidden channels to remove) or \
             --target-params (the size to reach)"
        );
    }
    Ok(Args {
        ffn_ratio: args.ffn_ratio.or(Some(0.0)),
        ..args.clone()
    })
}

/// `prune hidden`: the same loop over the hidden width.
pub fn run_hidden(args: &Args) -> Result<()> {
    let args = hidden_args(args)?;
    args.check()?;
    on_device!(args.stage.device.device, b => run_on(b, &args, "hidden"))
}

/// `(step, main metric)` of every evaluation in a `metrics.jsonl`.
fn read_evals(path: &std::path::Path) -> Result<Vec<(u64, f64)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
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
