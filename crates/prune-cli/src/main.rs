//! The `prune` command line: dispatches each pipeline stage to the library crates.
//!
//! The stages are not built yet; every subcommand says so and exits non-zero.

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
    /// Run every stage of a recipe: fine-tune, prune heads, prune FFN/hidden, report.
    Pipeline,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Pipeline => anyhow::bail!(
            "the pruning pipeline is not built yet: today prune provides the tensor crate \
             (CPU backend with forward and backward of every BERT op); see README.md"
        ),
    }
}
