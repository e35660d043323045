//! The `prune` command line: each pipeline stage as a subcommand, dispatching to the library
//! crates. Stages read and write plain artifacts (checkpoint directories in Hugging Face
//! layout, JSON logs) so they can be run, inspected and resumed separately.

mod finetune;

use clap::{Parser, Subcommand};

/// Structured pruning of BERT-family transformers.
#[derive(Parser)]
#[command(name = "prune", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Pipeline stages.
#[derive(Subcommand)]
enum Command {
    /// Fine-tune a checkpoint on a GLUE task (the teacher).
    ///
    /// Example: prune finetune --task sst2 --max-train 8000 --epochs 1 --out runs/teacher
    Finetune(finetune::Args),
    /// Evaluate a fine-tuned checkpoint on a task's dev split.
    ///
    /// Example: prune eval --task sst2 --model runs/teacher/model
    Eval(finetune::EvalArgs),
    /// Run every stage of a recipe: fine-tune, prune heads, prune FFN/hidden, report.
    Pipeline,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Finetune(args) => finetune::run(&args),
        Command::Eval(args) => finetune::eval(&args),
        Command::Pipeline => anyhow::bail!(
            "the pruning pipeline is not built yet: today prune fine-tunes and evaluates \
             (`prune finetune`, `prune eval`); pruning, speedup and distillation come next"
        ),
    }
}
