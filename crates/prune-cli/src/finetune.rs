//! `prune finetune` and `prune eval`: load a checkpoint and a GLUE task, train with AdamW
//! and a linear schedule, evaluate with the task's metrics, save the model.

use anyhow::{Context, Result, bail};
use prune::data::{
    BadRows, Dataset, Encoded, Split, Task, default_glue_dir, encode_examples, load_glue,
};
use prune::tensor::CpuBackend;
use prune::train::{AdamWConfig, Evaluator, TrainConfig, Trainer};
use prune::transformer::{BertForSequenceClassification, Padding, Tokenizer, paths};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where the model and the data come from.
#[derive(clap::Args, Debug)]
pub struct Source {
    /// GLUE task: cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli.
    #[arg(long, default_value = "sst2")]
    task: Task,
    /// Checkpoint directory (config.json, model.safetensors, tokenizer.json); default: the
    /// fetched all-MiniLM-L6-v2 (`cargo xtask fetch`).
    #[arg(long)]
    model: Option<PathBuf>,
    /// The glue_data directory; default: $GLUE_DIR, else ../shared/data/glue beside the
    /// workspace.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Longest sequence in tokens (longer inputs are truncated, longest-first for pairs).
    #[arg(long, default_value_t = 128)]
    max_len: usize,
    /// Examples per evaluation batch.
    #[arg(long, default_value_t = 64)]
    eval_batch_size: usize,
    /// Skip malformed data rows (with a warning count) instead of failing.
    #[arg(long)]
    skip_bad_rows: bool,
}

/// `prune finetune` options.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    source: Source,
    /// Output directory: model/, checkpoints/, metrics.jsonl, summary.json.
    #[arg(long)]
    out: PathBuf,
    /// Use only the first N training rows.
    #[arg(long)]
    max_train: Option<usize>,
    /// Passes over the training data.
    #[arg(long, default_value_t = 1)]
    epochs: u64,
    /// Stop after N optimizer steps.
    #[arg(long)]
    max_steps: Option<u64>,
    /// Examples per batch.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    grad_accum: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 5e-5)]
    lr: f64,
    /// Fraction of steps for linear warm-up.
    #[arg(long, default_value_t = 0.0)]
    warmup_ratio: f64,
    /// AdamW decoupled weight decay (not on biases and LayerNorm).
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Clip the global gradient norm (0 disables).
    #[arg(long, default_value_t = 1.0)]
    clip_norm: f64,
    /// Seed of the classifier initialisation, data order and dropout.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Keep the data order of the file within shuffled batches, without length bucketing.
    #[arg(long)]
    no_bucketing: bool,
    /// Evaluate every N steps (and at the end).
    #[arg(long)]
    eval_every: Option<u64>,
    /// Checkpoint every N steps (and at the end).
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Continue from the newest checkpoint in --out.
    #[arg(long)]
    resume: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// `prune eval` options.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    source: Source,
}

/// A task's data, tokenized.
struct Prepared {
    tokenizer_pad: u32,
    train: Vec<Encoded>,
    dev: Vec<Encoded>,
    model_dir: PathBuf,
}

fn load(source: &Source, split: Split) -> Result<Dataset> {
    let dir = source.data.clone().unwrap_or_else(default_glue_dir);
    let bad = if source.skip_bad_rows {
        BadRows::Skip
    } else {
        BadRows::Fail
    };
    let d = load_glue(&dir, source.task, split, bad)
        .with_context(|| format!("loading {} {split:?} (set --data or GLUE_DIR)", source.task))?;
    if !d.skipped.is_empty() {
        eprintln!(
            "warning: skipped {} malformed rows, first: {}",
            d.skipped.len(),
            d.skipped[0]
        );
    }
    Ok(d)
}

fn prepare(source: &Source, max_train: Option<usize>, with_train: bool) -> Result<Prepared> {
    let model_dir = match &source.model {
        Some(d) => paths::require_checkpoint(d.clone())?,
        None => paths::require_model_dir()?,
    };
    let tok = Tokenizer::from_file(
        &model_dir.join("tokenizer.json"),
        source.max_len,
        Padding::Longest,
    )?;
    let pad = tok.token_id("[PAD]").unwrap_or(0);
    let start = Instant::now();
    let train = if with_train {
        let mut t = load(source, Split::Train)?.examples;
        t.truncate(max_train.unwrap_or(usize::MAX));
        encode_examples(&tok, &t)?
    } else {
        Vec::new()
    };
    let dev = encode_examples(&tok, &load(source, Split::Dev)?.examples)?;
    eprintln!(
        "tokenized {} train and {} dev examples in {:.1}s",
        train.len(),
        dev.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(Prepared {
        tokenizer_pad: pad,
        train,
        dev,
        model_dir,
    })
}

fn evaluator(source: &Source, p: &Prepared) -> Result<Evaluator> {
    Ok(Evaluator::new(
        p.dev.clone(),
        source.task.metrics(),
        source.eval_batch_size,
        p.tokenizer_pad,
    )?)
}

/// `prune finetune`.
pub fn run(args: &Args) -> Result<()> {
    if args.clip_norm < 0.0 {
        bail!("--clip-norm must be >= 0");
    }
    let p = prepare(&args.source, args.max_train, true)?;
    let task = args.source.task;
    let mut model = BertForSequenceClassification::from_pretrained(
        CpuBackend::<f32>::new(),
        &p.model_dir,
        task.num_labels(),
        args.seed,
    )?;
    let config = TrainConfig {
        epochs: args.epochs,
        max_steps: args.max_steps,
        batch_size: args.batch_size,
        grad_accum: args.grad_accum,
        lr: args.lr,
        warmup_ratio: args.warmup_ratio,
        adamw: AdamWConfig {
            weight_decay: args.weight_decay,
            ..AdamWConfig::default()
        },
        clip_norm: (args.clip_norm > 0.0).then_some(args.clip_norm),
        seed: args.seed,
        bucket_by_length: !args.no_bucketing,
        checkpoint_every: args.checkpoint_every,
        eval_every: args.eval_every,
        log_every: 10,
        progress_bar: !args.quiet,
    };
    let eval = evaluator(&args.source, &p)?;
    let mut trainer = Trainer::new(config, &p.train, p.tokenizer_pad)?
        .with_evaluator(&eval)
        .with_output_dir(&args.out);
    let summary = trainer.run(&mut model, args.resume)?;
    let model_out = args.out.join("model");
    model.bert.save(&model_out)?;
    copy_tokenizer(&p.model_dir, &model_out)?;
    let summary_path = args.out.join("summary.json");
    std::fs::write(&summary_path, serde_json::to_string_pretty(&summary)?)
        .with_context(|| format!("writing {}", summary_path.display()))?;
    let metric = summary
        .evaluation
        .as_ref()
        .map_or(String::from("n/a"), |e| {
            e.metrics
                .iter()
                .map(|(m, v)| format!("{m} {:.4}", v))
                .collect::<Vec<_>>()
                .join(", ")
        });
    println!(
        "{task}: {metric} | {} steps, {} examples in {:.1}s ({:.1} ex/s) | model saved to {}",
        summary.steps,
        summary.examples,
        summary.train_seconds,
        summary.examples_per_second,
        model_out.display()
    );
    Ok(())
}

/// Copies `tokenizer.json` (and `vocab.txt` when present) so the saved model directory is
/// self-contained.
fn copy_tokenizer(from: &Path, to: &Path) -> Result<()> {
    for file in [
        "tokenizer.json",
        "vocab.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        let src = from.join(file);
        if src.is_file() {
            std::fs::copy(&src, to.join(file))
                .with_context(|| format!("copying {}", src.display()))?;
        }
    }
    Ok(())
}

/// `prune eval`.
pub fn eval(args: &EvalArgs) -> Result<()> {
    let p = prepare(&args.source, None, false)?;
    let task = args.source.task;
    let bert = prune::transformer::BertModel::load(CpuBackend::<f32>::new(), &p.model_dir)?;
    let model = BertForSequenceClassification::new(bert)?;
    let e = evaluator(&args.source, &p)?.evaluate(&model)?;
    let metrics: Vec<String> = e
        .metrics
        .iter()
        .map(|(m, v)| format!("{m} {v:.4}"))
        .collect();
    println!(
        "{task} dev: {} | loss {:.4} | {} examples in {:.1}s ({:.1} ex/s)",
        metrics.join(", "),
        e.loss,
        e.examples,
        e.seconds,
        e.examples as f64 / e.seconds.max(1e-9)
    );
    Ok(())
}
