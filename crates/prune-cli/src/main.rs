//! The `prune` command line: each pipeline stage as a subcommand, dispatching to the library
//! crates. Stages read and write plain artifacts (checkpoint directories in Hugging Face
//! layout, JSON logs) so they can be run, inspected and resumed separately.

mod allocator;
mod device;
mod distill;
mod export;
mod ffn;
mod finetune;
mod heads;
mod inputs;
mod inspect;
mod output;
mod pipeline;
mod post_train;
mod training;

use clap::{Parser, Subcommand};
use prune::pipeline::latency;

/// Structured pruning of BERT-family transformers.
#[derive(Parser)]
#[command(name = "prune", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Pipeline stages.
#[derive(Subcommand)]
pub(crate) enum Command {
    /// Fine-tune a checkpoint on a GLUE task (the teacher).
    ///
    /// Writes into --out: model/, metrics.jsonl, summary.json, run.json.
    ///
    /// Example: prune finetune --task sst2 --max-train 8000 --epochs 1 --out runs/teacher
    Finetune(training::StageArgs),
    /// Evaluate a fine-tuned checkpoint on a task's dev split.
    ///
    /// Example: prune eval --task sst2 --model runs/teacher/model
    Eval(finetune::EvalArgs),
    /// Movement-prune the attention heads of a fine-tuned model, then remove them.
    ///
    /// Writes into --out: model/ (the shrunk model), masks.safetensors, plan.json,
    /// metrics.jsonl, summary.json, run.json.
    ///
    /// Example: prune heads --model runs/teacher/model --task sst2 --max-steps 1000 --out runs/heads
    Heads(heads::Args),
    /// Re-train a (pruned) student from the teacher with distillation.
    ///
    /// Writes into --out: model/, metrics.jsonl (with distillation statistics),
    /// summary.json, run.json.
    ///
    /// Example: prune distill --teacher runs/teacher/model --model runs/heads/model --max-steps 750 --out runs/distilled
    Distill(distill::Args),
    /// Iteratively Taylor-prune the FFN (and optionally the hidden width) while distilling;
    /// each round physically cuts the student.
    ///
    /// Writes into --out: model/, plan.json (rounds composed), rounds.json, metrics.jsonl,
    /// summary.json, run.json.
    ///
    /// Example: prune ffn --teacher runs/teacher/model --model runs/distilled/model --interval 150 --rounds 4 --max-steps 750 --out runs/ffn
    Ffn(ffn::Args),
    /// Iteratively Taylor-prune the hidden (embedding) width while distilling: one mask over
    /// every weight coupled to it (embeddings, LayerNorms, Q/K/V inputs, residual writers,
    /// pooler), found by tracing the model; each round physically cuts the student.
    ///
    /// Writes into --out: what `prune ffn` writes.
    ///
    /// Example: prune hidden --teacher runs/teacher/model --model runs/ffn/model --hidden-ratio 0.25 --interval 150 --rounds 4 --max-steps 750 --out runs/hidden
    Hidden(ffn::Args),
    /// Describe a checkpoint: sizes, per-layer heads and FFN widths, parameters, FLOPs, and
    /// the dependency groups found by tracing its forward pass.
    ///
    /// Example: prune inspect --model runs/heads/model --groups
    Inspect(inspect::InspectArgs),
    /// Turn saved masks into a smaller checkpoint (physical surgery of every group).
    ///
    /// Example: prune speedup --model runs/teacher/model --masks runs/heads/masks.safetensors --out runs/cut
    Speedup(inspect::SpeedupArgs),
    /// Export a checkpoint as an ONNX model for ONNX Runtime, or as a transformers
    /// checkpoint when its FFN widths differ between layers.
    ///
    /// Example: prune export --model runs/demo/ffn/model --format onnx --out runs/demo/model.onnx
    Export(export::Args),
    /// Measure inference latency of a checkpoint at given batch sizes and sequence length.
    ///
    /// Example: prune bench --model runs/teacher/model --batch 1 --batch 32 --seq 128
    Bench(BenchArgs),
    /// Run every stage of a recipe: fine-tune, prune heads, distil, prune the FFN while
    /// distilling, then write report.md / report.json / report.svg.
    ///
    /// Example: prune pipeline --preset default --set heads.regular-scale=20 --out runs/demo
    Pipeline(pipeline::Args),
    /// Prune heads and FFN neurons of a fine-tuned model without retraining, to a fraction
    /// of their FLOPs: Fisher importance, a search under the budget, rearrangement and
    /// layer-wise mask tuning (Kwon et al. 2022), in minutes.
    ///
    /// Example: prune post-train --model runs/demo/finetune/model --task sst2 --flops-ratio 0.6 --out runs/post
    PostTrain(post_train::Args),
}

impl Command {
    /// Checks the options of the command that can be checked before anything is read
    /// (the pipeline checks each stage's this way before the first one runs).
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        match self {
            Command::Finetune(a) => a.check(),
            Command::Heads(a) => a.check(),
            Command::Distill(a) => a.check(),
            Command::Ffn(a) => a.check(),
            Command::Hidden(a) => ffn::hidden_args(a)?.check(),
            Command::Bench(a) => a.check(),
            Command::PostTrain(a) => a.check(),
            Command::Eval(_)
            | Command::Inspect(_)
            | Command::Speedup(_)
            | Command::Export(_)
            | Command::Pipeline(_) => Ok(()),
        }
    }
}

/// Runs the command; an error is one line on stderr and exit code 2.
fn main() -> std::process::ExitCode {
    allocator::keep_large_buffers();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // clap's first line names the problem; its usage block follows on more lines.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("error: bad arguments");
            eprintln!("{first} (see --help)");
            return std::process::ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Dispatches to the stage.
pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Finetune(args) => finetune::run(&args),
        Command::Eval(args) => finetune::eval(&args),
        Command::Bench(args) => bench(&args),
        Command::Heads(args) => heads::run(&args),
        Command::Distill(args) => distill::run(&args),
        Command::Ffn(args) => ffn::run(&args),
        Command::Hidden(args) => ffn::run_hidden(&args),
        Command::Inspect(args) => inspect::inspect(&args),
        Command::Speedup(args) => inspect::speedup(&args),
        Command::Export(args) => export::run(&args),
        Command::Pipeline(args) => pipeline::run(&args),
        Command::PostTrain(args) => post_train::run(&args),
    }
}

/// `prune bench` options.
#[derive(clap::Args, Debug)]
struct BenchArgs {
    /// Checkpoint directory; default: the fetched all-MiniLM-L6-v2.
    #[arg(long)]
    model: Option<std::path::PathBuf>,
    /// Batch sizes to time (repeatable).
    #[arg(long = "batch", default_values_t = [1, 32])]
    batches: Vec<usize>,
    /// Sequence length.
    #[arg(long, default_value_t = 128)]
    seq: usize,
    /// Seconds spent timing each batch size.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Time a training step (forward with dropout, loss, backward; no optimizer) instead
    /// of an inference forward.
    #[arg(long)]
    train: bool,
    #[command(flatten)]
    device: device::DeviceArgs,
}

impl BenchArgs {
    /// Checks the options (before anything is read).
    fn check(&self) -> anyhow::Result<()> {
        if !(self.seconds.is_finite() && (0.0..=3600.0).contains(&self.seconds)) {
            anyhow::bail!(
                "--seconds must be a number of seconds in [0, 3600], got {}",
                self.seconds
            );
        }
        if self.batches.iter().any(|b| !(1..=4096).contains(b)) || self.seq == 0 {
            anyhow::bail!("--batch must be in [1, 4096] and --seq at least 1");
        }
        Ok(())
    }
}

/// `prune bench`: loads the checkpoint (a classifier is added if it has none) and prints the
/// median latency of an inference forward (or, with `--train`, a training step) per batch
/// size.
fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    args.check()?;
    device::on_device!(args.device.device, b => bench_on(b, args))
}

/// `prune bench` with the model on backend `backend`.
fn bench_on<B: prune::tensor::Backend>(backend: B, args: &BenchArgs) -> anyhow::Result<()> {
    use prune::transformer::{BertConfig, BertForSequenceClassification, paths};
    let dir = match &args.model {
        Some(d) => paths::require_given_checkpoint(d.clone(), false)?,
        None => paths::require_model_dir()?,
    };
    let labels = BertConfig::from_file(&dir.join("config.json"))?.labels();
    let model = BertForSequenceClassification::from_pretrained(backend, &dir, labels, 0)?;
    let positions = model.bert.config.max_tokens();
    if args.seq > positions {
        anyhow::bail!(
            "--seq {} exceeds the {positions} tokens the model's positions cover",
            args.seq
        );
    }
    let gemm = if prune::tensor::cpu::blas::available() {
        "OpenBLAS"
    } else {
        "the gemm crate"
    };
    println!(
        "{}: {} parameters (CPU GEMMs: {gemm})",
        dir.display(),
        model.bert.num_parameters()
    );
    for &b in &args.batches {
        let budget = std::time::Duration::from_secs_f64(args.seconds.max(0.0));
        let work = if args.train {
            latency::Work::TrainStep
        } else {
            latency::Work::Inference
        };
        let l = latency::measure(&model, b, args.seq, budget, work)?;
        println!(
            "B={:<3} T={}: {:8.2} ms median of {} runs, {:.1} examples/s",
            l.batch, l.seq, l.median_ms, l.runs, l.examples_per_second
        );
    }
    Ok(())
}
