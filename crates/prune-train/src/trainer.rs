//! `Trainer`: the training loop. Seeded, resumable, with gradient accumulation, clipping by
//! global norm, a linear warm-up/decay schedule, a pluggable objective (task loss, or
//! distillation) and callbacks around each optimizer step, where pruners hook in.

use crate::checkpoint::{self, Progress};
use crate::error::{Result, TrainError};
use crate::evaluator::{Evaluation, Evaluator};
use crate::log::RunLog;
use crate::optimizer::{AdamWConfig, Optimizer, clip_to_norm, grad_norm};
use crate::schedule::LinearSchedule;
use prune_data::{BatchOrder, Encoded, LabelledBatch, collate};
use prune_tensor::Backend;
use prune_tensor::rng::mix64;
use prune_transformer::{BertForSequenceClassification, BertParams, ForwardOptions};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

/// Settings of a training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Passes over the training data.
    pub epochs: u64,
    /// Stop after this many optimizer steps (overrides `epochs` for the schedule too).
    pub max_steps: Option<u64>,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Fraction of the steps spent warming up.
    pub warmup_ratio: f64,
    /// AdamW hyper-parameters.
    pub adamw: AdamWConfig,
    /// Clip the global gradient norm to this value.
    pub clip_norm: Option<f64>,
    /// Seed of data order and dropout.
    pub seed: u64,
    /// Group examples of similar length into batches (less padding, faster).
    pub bucket_by_length: bool,
    /// Save a checkpoint every this many steps (and at the end) when an output dir is set.
    pub checkpoint_every: Option<u64>,
    /// Evaluate every this many steps (and at the end) when an evaluator is set.
    pub eval_every: Option<u64>,
    /// Write a log line every this many steps.
    pub log_every: u64,
    /// Show a progress bar.
    pub progress_bar: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 1,
            max_steps: None,
            batch_size: 32,
            grad_accum: 1,
            lr: 5e-5,
            warmup_ratio: 0.0,
            adamw: AdamWConfig::default(),
            clip_norm: Some(1.0),
            seed: 42,
            bucket_by_length: true,
            checkpoint_every: None,
            eval_every: None,
            log_every: 10,
            progress_bar: true,
        }
    }
}

impl TrainConfig {
    /// Checks the settings can work.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: &str| Err(TrainError::Config(why.to_string()));
        if self.batch_size == 0 || self.grad_accum == 0 {
            return bad("batch_size and grad_accum must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return bad("lr must be a finite number >= 0");
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return bad("warmup_ratio must be in [0, 1)");
        }
        if self.clip_norm.is_some_and(|c| c.is_nan() || c <= 0.0) {
            return bad("clip_norm must be > 0");
        }
        if self.epochs == 0 && self.max_steps.is_none() {
            return bad("nothing to do: epochs is 0 and max_steps unset");
        }
        if self.log_every == 0 {
            return bad("log_every must be at least 1");
        }
        if self.checkpoint_every == Some(0) {
            return bad("checkpoint_every must be at least 1 step");
        }
        if self.eval_every == Some(0) {
            return bad("eval_every must be at least 1 step");
        }
        self.adamw.validate()
    }
}

/// What one optimizer step did, as callbacks and logs see it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct StepInfo {
    /// Optimizer steps completed, this one included (1-based).
    pub step: u64,
    /// Steps of the whole run.
    pub total_steps: u64,
    /// Epoch of the step (0-based).
    pub epoch: u64,
    /// Learning rate used.
    pub lr: f64,
    /// Mean loss over the step's micro-batches.
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

/// The loss a trainer minimises: forward and backward of one micro-batch. An objective
/// also has the step hooks of a [`Callback`] (a distiller updates its projections after
/// each step); the trainer calls them before the callbacks'.
pub trait Objective<B: Backend>: Callback<B> {
    /// Runs the training forward on `batch` with dropout seed `seed`, accumulates the
    /// gradients of `scale · loss` into `grads`, and returns the loss.
    fn accumulate(
        &mut self,
        model: &BertForSequenceClassification<B>,
        batch: &LabelledBatch,
        seed: u64,
        scale: f64,
        grads: &mut BertParams<B::Tensor>,
    ) -> Result<f64>;
}

/// The task loss: cross-entropy for classification, MSE for regression.
#[derive(Clone, Copy, Debug, Default)]
pub struct TaskLoss;

impl<B: Backend> Callback<B> for TaskLoss {}

impl<B: Backend> Objective<B> for TaskLoss {
    fn accumulate(
        &mut self,
        model: &BertForSequenceClassification<B>,
        batch: &LabelledBatch,
        seed: u64,
        scale: f64,
        grads: &mut BertParams<B::Tensor>,
    ) -> Result<f64> {
        let opts = ForwardOptions {
            output_hidden_states: false,
            seed,
        };
        let (loss, _, cache) = model.forward_t(&batch.inputs, batch.labels.as_targets(), &opts)?;
        model.backward(cache, scale, grads)?;
        Ok(loss)
    }
}

/// Hooks around each optimizer step.
pub trait Callback<B: Backend> {
    /// After the gradients of a step are complete (before clipping), before the update:
    /// where movement scores and Taylor statistics read them.
    fn after_backward(
        &mut self,
        _info: &StepInfo,
        _model: &BertForSequenceClassification<B>,
        _grads: &BertParams<B::Tensor>,
    ) -> Result<()> {
        Ok(())
    }

    /// After the update: where masks are regenerated and surgery may reshape the model
    /// (and the optimizer state with it).
    fn after_step(
        &mut self,
        _info: &StepInfo,
        _model: &mut BertForSequenceClassification<B>,
        _optimizer: &mut Optimizer<B::Tensor>,
    ) -> Result<()> {
        Ok(())
    }

    /// After a resumed run restored the model of its checkpoint at step `step`, before the
    /// next step: where a callback puts back what the checkpoint's model does not hold
    /// (masks).
    fn resumed(&mut self, _step: u64, _model: &mut BertForSequenceClassification<B>) -> Result<()> {
        Ok(())
    }
}

/// What a finished run reports.
#[derive(Clone, Debug, Serialize)]
pub struct TrainSummary {
    /// Optimizer steps of the whole run (before a resume included).
    pub steps: u64,
    /// Training examples of the whole run (before a resume included).
    pub examples: u64,
    /// The step this invocation resumed from, when it did.
    pub resumed_from_step: Option<u64>,
    /// Wall time of this invocation's training loop (evaluations excluded), seconds.
    pub train_seconds: f64,
    /// Training examples per second in this invocation.
    pub examples_per_second: f64,
    /// Loss of the last step.
    pub final_loss: f64,
    /// The last evaluation, if an evaluator was set.
    pub evaluation: Option<Evaluation>,
}

/// Fails unless a checkpoint's position `p` (read from `dir`) exists in this run: at most
/// `total` steps, and a batch index within the `batches` of its epoch.
fn check_position(dir: &std::path::Path, p: Progress, total: u64, batches: usize) -> Result<()> {
    if p.step > total || p.batch_in_epoch > batches {
        return Err(TrainError::Config(format!(
            "checkpoint {} is at step {} (batch {} of epoch {}) but this run has {total} steps \
             and {batches} batches per epoch: it was made with other data or settings",
            dir.display(),
            p.step,
            p.batch_in_epoch,
            p.epoch
        )));
    }
    Ok(())
}

/// The training loop over a tokenized training set.
pub struct Trainer<'a, B: Backend> {
    config: TrainConfig,
    train: &'a [Encoded],
    pad_id: u32,
    evaluator: Option<&'a Evaluator>,
    objective: Box<dyn Objective<B> + 'a>,
    callbacks: Vec<Box<dyn Callback<B> + 'a>>,
    out_dir: Option<PathBuf>,
}

impl<'a, B: Backend> Trainer<'a, B> {
    /// A trainer of the task loss over `train`, padding with `pad_id`.
    pub fn new(config: TrainConfig, train: &'a [Encoded], pad_id: u32) -> Result<Self> {
        config.validate()?;
        if train.is_empty() {
            return Err(TrainError::Config("the training set is empty".into()));
        }
        Ok(Trainer {
            config,
            train,
            pad_id,
            evaluator: None,
            objective: Box::new(TaskLoss),
            callbacks: Vec::new(),
            out_dir: None,
        })
    }

    /// Evaluates with `evaluator` every `eval_every` steps and at the end.
    pub fn with_evaluator(mut self, evaluator: &'a Evaluator) -> Self {
        self.evaluator = Some(evaluator);
        self
    }

    /// Replaces the task loss by another objective (distillation).
    pub fn with_objective(mut self, objective: impl Objective<B> + 'a) -> Self {
        self.objective = Box::new(objective);
        self
    }

    /// Adds a step callback (called in the order added).
    pub fn with_callback(mut self, callback: impl Callback<B> + 'a) -> Self {
        self.callbacks.push(Box::new(callback));
        self
    }

    /// Writes `metrics.jsonl` and `checkpoints/` under `dir`.
    pub fn with_output_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// Optimizer steps of the whole run.
    pub fn total_steps(&self) -> u64 {
        let micro = self.train.len().div_ceil(self.config.batch_size) as u64;
        let per_epoch = micro.div_ceil(self.config.grad_accum as u64);
        self.config
            .max_steps
            .unwrap_or(self.config.epochs * per_epoch)
    }

    /// Trains `model`. With `resume`, continues from the newest checkpoint in the output
    /// directory (the model, optimizer and position are replaced by the checkpoint's).
    pub fn run(
        &mut self,
        model: &mut BertForSequenceClassification<B>,
        resume: bool,
    ) -> Result<TrainSummary> {
        let cfg = self.config.clone();
        let total = self.total_steps();
        let schedule = LinearSchedule {
            peak: cfg.lr,
            warmup_steps: (cfg.warmup_ratio * total as f64).round() as u64,
            total_steps: total,
        };
        let checkpoints = self.out_dir.as_ref().map(|d| d.join("checkpoints"));
        let fresh = Progress {
            step: 0,
            epoch: 0,
            batch_in_epoch: 0,
            examples: 0,
        };
        let restored = match (resume, &checkpoints) {
            (true, Some(root)) => checkpoint::latest(root)?
                .map(|dir| checkpoint::load(model.bert.backend().clone(), &dir).map(|r| (dir, r)))
                .transpose()?,
            (true, None) => {
                return Err(TrainError::Config(
                    "resume needs an output directory".into(),
                ));
            }
            (false, _) => None,
        };
        let lengths: Vec<usize> = self.train.iter().map(|e| e.ids.len()).collect();
        let order = BatchOrder {
            batch_size: cfg.batch_size,
            shuffle: Some(cfg.seed),
            bucket_by_length: cfg.bucket_by_length,
        };
        let (mut optimizer, mut progress, mut batches) = match restored {
            Some((dir, r)) => {
                let batches = order.batches(&lengths, r.progress.epoch)?;
                check_position(&dir, r.progress, total, batches.len())?;
                *model = r.model;
                self.objective.resumed(r.progress.step, model)?;
                for cb in &mut self.callbacks {
                    cb.resumed(r.progress.step, model)?;
                }
                (r.optimizer, r.progress, batches)
            }
            None => (
                Optimizer::new(model.bert.backend(), &model.bert.params, cfg.adamw)?,
                fresh,
                order.batches(&lengths, 0)?,
            ),
        };
        let resumed_from_step = resume.then_some(progress.step).filter(|&s| s > 0);
        let mut log = RunLog::new(
            self.out_dir.as_deref(),
            total,
            cfg.progress_bar,
            progress.step,
            cfg.log_every,
        )?;
        let start = Instant::now();
        let (mut eval_time, mut examples, mut last_loss, mut evaluation) =
            (0.0, 0u64, f64::NAN, None);
        while progress.step < total {
            let mut grads = model.bert.zero_grads()?;
            let mut loss = 0.0;
            for micro in 0..cfg.grad_accum {
                if progress.batch_in_epoch == batches.len() {
                    progress.epoch += 1;
                    progress.batch_in_epoch = 0;
                    batches = order.batches(&lengths, progress.epoch)?;
                }
                let members: Vec<&Encoded> = batches[progress.batch_in_epoch]
                    .iter()
                    .map(|&i| &self.train[i])
                    .collect();
                progress.batch_in_epoch += 1;
                let batch = collate(&members, self.pad_id)?;
                let seed =
                    mix64(cfg.seed ^ mix64(progress.step * cfg.grad_accum as u64 + micro as u64));
                let l = self.objective.accumulate(
                    model,
                    &batch,
                    seed,
                    1.0 / cfg.grad_accum as f64,
                    &mut grads,
                )?;
                if !l.is_finite() {
                    return Err(TrainError::NonFinite(format!(
                        "loss {l} at step {}",
                        progress.step + 1
                    )));
                }
                loss += l / cfg.grad_accum as f64;
                examples += members.len() as u64;
                progress.examples += members.len() as u64;
            }
            let b = model.bert.backend().clone();
            let grad_norm = grad_norm(&b, &grads)?;
            if !grad_norm.is_finite() {
                return Err(TrainError::NonFinite(format!(
                    "gradient norm {grad_norm} at step {}",
                    progress.step + 1
                )));
            }
            let info = StepInfo {
                step: progress.step + 1,
                total_steps: total,
                epoch: progress.epoch,
                lr: schedule.lr(progress.step),
                loss,
                grad_norm,
            };
            // Pruners read the gradients as backward left them (NNI hooks the backward);
            // clipping only shapes the update.
            self.objective.after_backward(&info, model, &grads)?;
            for cb in &mut self.callbacks {
                cb.after_backward(&info, model, &grads)?;
            }
            clip_to_norm(
                &b,
                &mut grads,
                grad_norm,
                cfg.clip_norm.unwrap_or(f64::INFINITY),
            )?;
            let (params, masks) = model.bert.params_and_masks_mut();
            optimizer.step(&b, params, &grads, masks, info.lr)?;
            progress.step += 1;
            self.objective.after_step(&info, model, &mut optimizer)?;
            for cb in &mut self.callbacks {
                cb.after_step(&info, model, &mut optimizer)?;
            }
            last_loss = loss;
            let elapsed = start.elapsed().as_secs_f64() - eval_time;
            log.step(&info, examples as f64 / elapsed.max(1e-9))?;
            let last = progress.step == total;
            if let Some(ev) = self
                .evaluator
                .filter(|_| last || cfg.eval_every.is_some_and(|e| progress.step % e == 0))
            {
                let e = ev.evaluate(model)?;
                eval_time += e.seconds;
                log.evaluation(progress.step, &e)?;
                evaluation = Some(e);
            }
            if let Some(root) = checkpoints
                .as_ref()
                .filter(|_| last || cfg.checkpoint_every.is_some_and(|c| progress.step % c == 0))
            {
                checkpoint::save(root, model, &optimizer, progress)?;
            }
        }
        log.finish();
        let train_seconds = start.elapsed().as_secs_f64() - eval_time;
        Ok(TrainSummary {
            steps: progress.step,
            examples: progress.examples,
            resumed_from_step,
            train_seconds,
            examples_per_second: examples as f64 / train_seconds.max(1e-9),
            final_loss: last_loss,
            evaluation,
        })
    }
}
