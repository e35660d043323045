//! What every training stage (`finetune`, `heads`, `distill`, `ffn`, `hidden`) takes: the
//! checkpoint and task, the training options and the `TrainConfig` they make, the device,
//! the output folder and resuming. Each option is a flag of the `prune` command and a key
//! of a recipe's stage table, with one default for both.

use crate::device::{DeviceArgs, PrecisionArgs};
use crate::error::Result;
use crate::refuse;
use crate::source::Source;
use prune_train::{AdamWConfig, TrainConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Training options. Serialised, they are the part of a run's identity that decides its
/// result (how often it evaluates, checkpoints or draws a progress bar does not).
#[derive(clap::Args, Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all(deserialize = "kebab-case"))]
pub struct TrainOptions {
    /// Use only the first N training rows.
    #[arg(long)]
    pub max_train: Option<usize>,
    /// Passes over the training data.
    #[arg(long, default_value_t = TrainOptions::default().epochs)]
    pub epochs: u64,
    /// Stop after N optimizer steps (the schedule spans them).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Examples per batch.
    #[arg(long, default_value_t = TrainOptions::default().batch_size)]
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = TrainOptions::default().grad_accum)]
    pub grad_accum: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = TrainOptions::default().lr)]
    pub lr: f64,
    /// Fraction of steps for linear warm-up.
    #[arg(long, default_value_t = TrainOptions::default().warmup_ratio)]
    pub warmup_ratio: f64,
    /// AdamW decoupled weight decay (not on biases and LayerNorm).
    #[arg(long, default_value_t = TrainOptions::default().weight_decay)]
    pub weight_decay: f64,
    /// Clip the global gradient norm (0 disables).
    #[arg(long, default_value_t = TrainOptions::default().clip_norm)]
    pub clip_norm: f64,
    /// Seed of initialisation, data order and dropout.
    #[arg(long, default_value_t = TrainOptions::default().seed)]
    pub seed: u64,
    /// Batches in shuffled file order instead of grouping similar lengths.
    #[arg(long)]
    pub no_bucketing: bool,
    /// Run the matrix products in bf16 on Intel AMX (inputs rounded to bf16; sums,
    /// gradients, weights and optimizer in f32): faster training; CPU only.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub bf16: bool,
    /// Evaluate every N steps (and at the end).
    #[arg(long)]
    #[serde(skip_serializing)]
    pub eval_every: Option<u64>,
    /// Checkpoint every N steps (and at the end), so that --resume can continue a run
    /// that was stopped.
    #[arg(long, default_value_t = TrainOptions::default().checkpoint_every)]
    #[serde(skip_serializing)]
    pub checkpoint_every: u64,
    /// No progress bar.
    #[arg(long)]
    #[serde(skip_serializing)]
    pub quiet: bool,
}

impl Default for TrainOptions {
    /// The trainer's defaults, with a checkpoint every 250 steps.
    fn default() -> Self {
        let c = TrainConfig::default();
        TrainOptions {
            max_train: None,
            epochs: c.epochs,
            max_steps: c.max_steps,
            batch_size: c.batch_size,
            grad_accum: c.grad_accum,
            lr: c.lr,
            warmup_ratio: c.warmup_ratio,
            weight_decay: c.adamw.weight_decay,
            clip_norm: c.clip_norm.unwrap_or(0.0),
            seed: c.seed,
            no_bucketing: !c.bucket_by_length,
            bf16: false,
            eval_every: c.eval_every,
            checkpoint_every: 250,
            quiet: !c.progress_bar,
        }
    }
}

impl TrainOptions {
    /// The trainer settings these options describe.
    pub fn config(&self) -> Result<TrainConfig> {
        if !(self.clip_norm.is_finite() && self.clip_norm >= 0.0) {
            refuse!(
                "--clip-norm must be a finite number >= 0, got {}",
                self.clip_norm
            );
        }
        if self.max_train == Some(0) {
            refuse!("--max-train must be at least 1 row");
        }
        if self.max_steps == Some(0) {
            refuse!("--max-steps must be at least 1");
        }
        let config = TrainConfig {
            epochs: self.epochs,
            max_steps: self.max_steps,
            batch_size: self.batch_size,
            grad_accum: self.grad_accum,
            lr: self.lr,
            warmup_ratio: self.warmup_ratio,
            adamw: AdamWConfig {
                weight_decay: self.weight_decay,
                ..AdamWConfig::default()
            },
            clip_norm: (self.clip_norm > 0.0).then_some(self.clip_norm),
            seed: self.seed,
            bucket_by_length: !self.no_bucketing,
            checkpoint_every: Some(self.checkpoint_every),
            eval_every: self.eval_every,
            log_every: 10,
            progress_bar: !self.quiet,
        };
        config.validate()?;
        Ok(config)
    }
}

/// The options every training stage shares. Its output folder is written as
/// `<out>.partial` and renamed when complete; each stage's help says what it holds.
#[derive(clap::Args, Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StageOptions {
    /// The checkpoint to train (`--model`) and its task.
    #[command(flatten)]
    #[serde(flatten)]
    pub source: Source,
    /// How to train.
    #[command(flatten)]
    #[serde(flatten)]
    pub train: TrainOptions,
    /// Where the models run (set by the pipeline, not by a recipe).
    #[command(flatten)]
    #[serde(skip)]
    pub device: DeviceArgs,
    /// Output directory (written as <out>.partial and renamed when complete).
    #[arg(long)]
    #[serde(skip)]
    pub out: PathBuf,
    /// Continue the interrupted run in <out>.partial from its newest checkpoint (it must be
    /// the same run: same inputs and settings).
    #[arg(long)]
    #[serde(skip)]
    pub resume: bool,
}

impl StageOptions {
    /// Checks the shared options (before anything is read).
    pub fn check(&self) -> Result<()> {
        self.source.check()?;
        self.train.config()?;
        PrecisionArgs {
            bf16: self.train.bf16,
        }
        .check(self.device.device)
    }
}
