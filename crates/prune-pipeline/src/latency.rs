//! Latency of a model at a given batch size and sequence length: the median of repeated
//! inference forward passes, or training steps, on random token ids (after one warm-up);
//! and `prune bench`, which measures a checkpoint's.

use crate::command::Command;
use crate::device::{Device, DeviceArgs, PrecisionArgs};
use crate::error::Result;
use crate::refuse;
use prune_tensor::Backend;
use prune_tensor::rng::Rng;
use prune_transformer::{
    Batch, BertConfig, BertForSequenceClassification, ForwardOptions, Targets, paths,
};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One latency measurement.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Latency {
    /// Batch size B.
    pub batch: usize,
    /// Sequence length T.
    pub seq: usize,
    /// Median wall time of one forward pass, milliseconds.
    pub median_ms: f64,
    /// Forward passes timed.
    pub runs: usize,
    /// Examples per second at the median.
    pub examples_per_second: f64,
}

/// What one timed run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// An inference forward pass up to the logits.
    Inference,
    /// A training step without the optimizer: forward with dropout, loss, backward into
    /// the gradients (the work PyTorch does in `loss.backward()`).
    TrainStep,
}

/// Times `work` on `model` with a `[batch, seq]` batch of random ids (no padding),
/// repeating until `budget` has passed (at least 3 and at most 50 runs).
pub fn measure<B: Backend>(
    model: &BertForSequenceClassification<B>,
    batch: usize,
    seq: usize,
    budget: Duration,
    work: Work,
) -> Result<Latency> {
    let mut l = measure_alternating(&[model], batch, seq, budget, work)?;
    Ok(l.remove(0))
}

/// Like [`measure`] for several models, timed in turn (a, b, a, b, …) on the same input, so
/// that load from other processes on a shared machine affects each of them alike and their
/// latency ratio stays meaningful.
pub fn measure_alternating<B: Backend>(
    models: &[&BertForSequenceClassification<B>],
    batch: usize,
    seq: usize,
    budget: Duration,
    work: Work,
) -> Result<Vec<Latency>> {
    let vocab = models
        .iter()
        .map(|m| m.bert.config.vocab_size)
        .min()
        .unwrap_or(0);
    let lo = if vocab > 2000 { 1000 } else { 1 }; // skip special and unused ids
    let mut rng = Rng::new(0);
    let ids = (0..batch * seq)
        .map(|_| (lo + rng.below(vocab.saturating_sub(lo).max(1))) as u32)
        .collect();
    // Training: the second half of each sequence is segment 1 (where the models have a
    // second segment), labels alternate.
    let segments = models.iter().map(|m| m.bert.config.type_vocab_size).min();
    let types = match work {
        Work::TrainStep if segments >= Some(2) => (0..batch * seq)
            .map(|i| u32::from(i % seq >= seq / 2))
            .collect(),
        _ => vec![0; batch * seq],
    };
    let input = Batch::new(batch, seq, ids, types, vec![1; batch * seq])?;
    let classes: Vec<i64> = (0..batch as i64).map(|i| i % 2).collect();
    let values = vec![0.5f32; batch];
    let mut grads = match work {
        Work::Inference => Vec::new(),
        Work::TrainStep => models
            .iter()
            .map(|m| m.bert.zero_grads())
            .collect::<Result<_, _>>()?,
    };
    // What is computed last is downloaded, so that the clock also covers a backend that
    // runs asynchronously (the GPU).
    let mut run = |i: usize, seed: u64| -> Result<()> {
        let m = models[i];
        let b = m.bert.backend();
        match work {
            Work::Inference => b.download(&m.logits(&input)?)?,
            Work::TrainStep => {
                let targets = match m.bert.config.labels() {
                    1 => Targets::Values(&values),
                    _ => Targets::Classes(&classes),
                };
                let opts = ForwardOptions {
                    output_hidden_states: false,
                    seed,
                };
                let (_, _, cache) = m.forward_t(&input, targets, &opts)?;
                b.download(&m.backward(cache, 1.0, &mut grads[i])?)?
            }
        };
        Ok(())
    };
    for i in 0..models.len() {
        run(i, 0)?;
    }
    let start = Instant::now();
    let mut times = vec![Vec::new(); models.len()];
    while times[0].len() < 3 || (start.elapsed() < budget && times[0].len() < 50) {
        for (i, t) in times.iter_mut().enumerate() {
            let clock = Instant::now();
            run(i, t.len() as u64 + 1)?;
            t.push(clock.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            let median_ms = t[t.len() / 2];
            Latency {
                batch,
                seq,
                median_ms,
                runs: t.len(),
                examples_per_second: batch as f64 * 1e3 / median_ms,
            }
        })
        .collect())
}

/// `prune bench` options.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchOptions {
    /// Checkpoint directory; default: the fetched all-MiniLM-L6-v2.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Batch sizes to time (repeatable).
    #[arg(long = "batch", default_values_t = [1, 32])]
    pub batches: Vec<usize>,
    /// Sequence length.
    #[arg(long, default_value_t = 128)]
    pub seq: usize,
    /// Seconds spent timing each batch size.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Time a training step (forward with dropout, loss, backward; no optimizer) instead
    /// of an inference forward.
    #[arg(long)]
    pub train: bool,
    /// Where the model runs.
    #[command(flatten)]
    pub device: DeviceArgs,
    /// The precision of its matrix products.
    #[command(flatten)]
    pub precision: PrecisionArgs,
}

impl Command for BenchOptions {
    fn check(&self) -> Result<()> {
        if !(self.seconds.is_finite() && (0.0..=3600.0).contains(&self.seconds)) {
            refuse!(
                "--seconds must be a number of seconds in [0, 3600], got {}",
                self.seconds
            );
        }
        if self.batches.iter().any(|b| !(1..=4096).contains(b)) || self.seq == 0 {
            refuse!("--batch must be in [1, 4096] and --seq at least 1");
        }
        self.precision.check(self.device.device)
    }

    fn device(&self) -> Device {
        self.device.device
    }

    fn bf16(&self) -> bool {
        self.precision.bf16
    }

    /// Loads the checkpoint (a classifier is added if it has none) and measures the median
    /// latency of an inference forward (or, with `train`, a training step) per batch size.
    fn run<B: Backend>(&self, backend: B) -> Result<String> {
        let dir = match &self.model {
            Some(d) => paths::require_given_checkpoint(d.clone(), false)?,
            None => paths::require_model_dir()?,
        };
        let labels = BertConfig::from_file(&dir.join("config.json"))?.labels();
        let model = BertForSequenceClassification::from_pretrained(backend, &dir, labels, 0)?;
        let positions = model.bert.config.max_tokens();
        if self.seq > positions {
            refuse!(
                "--seq {} exceeds the {positions} tokens the model's positions cover",
                self.seq
            );
        }
        let gemm = match prune_tensor::cpu::bf16_products() {
            true => "bf16 products, f32 sums, on Intel AMX",
            false => prune_tensor::cpu::blas::description(),
        };
        let mut lines = vec![format!(
            "{}: {} parameters (CPU GEMMs: {gemm})",
            dir.display(),
            model.bert.num_parameters()
        )];
        let work = match self.train {
            true => Work::TrainStep,
            false => Work::Inference,
        };
        let budget = Duration::from_secs_f64(self.seconds);
        for &b in &self.batches {
            let l = measure(&model, b, self.seq, budget, work)?;
            lines.push(format!(
                "B={:<3} T={}: {:8.2} ms median of {} runs, {:.1} examples/s",
                l.batch, l.seq, l.median_ms, l.runs, l.examples_per_second
            ));
        }
        Ok(lines.join("\n"))
    }
}
