//! The `prune` command line: each pipeline stage, the whole pipeline and the commands on one
//! checkpoint as subcommands, each parsed into the options of its `prune::pipeline` command
//! and run there. Stages read and write plain artifacts (checkpoint directories in Hugging
//! Face layout, JSON logs) so they can be run, inspected and resumed separately.

mod allocator;

use clap::{Parser, Subcommand};
use prune::pipeline::distill::DistillOptions;
use prune::pipeline::exports::ExportOptions;
use prune::pipeline::ffn::{FfnOptions, HiddenOptions};
use prune::pipeline::finetune::{EvalOptions, FinetuneOptions};
use prune::pipeline::heads::HeadsOptions;
use prune::pipeline::inspect::{InspectOptions, SpeedupOptions};
use prune::pipeline::latency::BenchOptions;
use prune::pipeline::post_train::PostTrainOptions;
use prune::pipeline::run::PipelineOptions;
use prune::pipeline::{Result, execute};

/// Structured pruning of BERT-family transformers.
#[derive(Parser)]
#[command(name = "prune", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The commands: the pipeline, each of its stages, and the commands on one checkpoint.
#[derive(Subcommand)]
enum Command {
    /// Fine-tune a checkpoint on a GLUE task (the teacher).
    ///
    /// Writes into --out: model/, metrics.jsonl, summary.json, run.json.
    ///
    /// Example: prune finetune --task sst2 --max-train 8000 --epochs 1 --out runs/teacher
    Finetune(FinetuneOptions),
    /// Evaluate a fine-tuned checkpoint on a task's dev split.
    ///
    /// Example: prune eval --task sst2 --model runs/teacher/model
    Eval(EvalOptions),
    /// Movement-prune the attention heads of a fine-tuned model, then remove them.
    ///
    /// Writes into --out: model/ (the shrunk model), masks.safetensors, plan.json,
    /// metrics.jsonl, summary.json, run.json.
    ///
    /// Example: prune heads --model runs/teacher/model --task sst2 --max-steps 1000 --out runs/heads
    Heads(HeadsOptions),
    /// Re-train a (pruned) student from the teacher with distillation.
    ///
    /// Writes into --out: model/, metrics.jsonl (with distillation statistics),
    /// summary.json, run.json.
    ///
    /// Example: prune distill --teacher runs/teacher/model --model runs/heads/model --max-steps 750 --out runs/distilled
    Distill(DistillOptions),
    /// Iteratively Taylor-prune the FFN (and optionally the hidden width) while distilling;
    /// each round physically cuts the student.
    ///
    /// Writes into --out: model/, plan.json (rounds composed), rounds.json, metrics.jsonl,
    /// summary.json, run.json.
    ///
    /// Example: prune ffn --teacher runs/teacher/model --model runs/distilled/model --interval 150 --rounds 4 --max-steps 750 --out runs/ffn
    Ffn(FfnOptions),
    /// Iteratively Taylor-prune the hidden (embedding) width while distilling: one mask over
    /// every weight coupled to it (embeddings, LayerNorms, Q/K/V inputs, residual writers,
    /// pooler), found by tracing the model; each round physically cuts the student.
    ///
    /// Writes into --out: what `prune ffn` writes.
    ///
    /// Example: prune hidden --teacher runs/teacher/model --model runs/ffn/model --hidden-ratio 0.25 --interval 150 --rounds 4 --max-steps 750 --out runs/hidden
    Hidden(HiddenOptions),
    /// Describe a checkpoint: sizes, per-layer heads and FFN widths, parameters, FLOPs, and
    /// the dependency groups found by tracing its forward pass.
    ///
    /// Example: prune inspect --model runs/heads/model --groups
    Inspect(InspectOptions),
    /// Turn saved masks into a smaller checkpoint (physical surgery of every group).
    ///
    /// Example: prune speedup --model runs/teacher/model --masks runs/heads/masks.safetensors --out runs/cut
    Speedup(SpeedupOptions),
    /// Export a checkpoint as an ONNX model for ONNX Runtime, or as a transformers
    /// checkpoint when its FFN widths differ between layers.
    ///
    /// Example: prune export --model runs/demo/ffn/model --format onnx --out runs/demo/model.onnx
    Export(ExportOptions),
    /// Measure inference latency of a checkpoint at given batch sizes and sequence length.
    ///
    /// Example: prune bench --model runs/teacher/model --batch 1 --batch 32 --seq 128
    Bench(BenchOptions),
    /// Run every stage of a recipe: fine-tune, prune heads, distil, prune the FFN while
    /// distilling, then write report.md / report.json / report.svg.
    ///
    /// Example: prune pipeline --preset default --set heads.regular-scale=20 --out runs/demo
    Pipeline(PipelineOptions),
    /// Prune heads and FFN neurons of a fine-tuned model without retraining, to a fraction
    /// of their FLOPs: Fisher importance, a search under the budget, rearrangement and
    /// layer-wise mask tuning (Kwon et al. 2022), in minutes.
    ///
    /// Example: prune post-train --model runs/demo/finetune/model --task sst2 --flops-ratio 0.6 --out runs/post
    PostTrain(PostTrainOptions),
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
    match run(cli.command) {
        Ok(text) => {
            println!("{text}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Checks the command's options and runs it; returns what it did, in words.
fn run(command: Command) -> Result<String> {
    match command {
        Command::Finetune(o) => execute(&o),
        Command::Eval(o) => execute(&o),
        Command::Heads(o) => execute(&o),
        Command::Distill(o) => execute(&o),
        Command::Ffn(o) => execute(&o),
        Command::Hidden(o) => execute(&o),
        Command::Inspect(o) => execute(&o),
        Command::Speedup(o) => execute(&o),
        Command::Export(o) => execute(&o),
        Command::Bench(o) => execute(&o),
        Command::Pipeline(o) => execute(&o),
        Command::PostTrain(o) => execute(&o),
    }
}
