//! The pipeline and one stage run from Rust code, with no command line: a short run of the
//! default recipe (the default checkpoint, SST-2), then the hidden stage on its final model,
//! its options built as a struct.
//!
//! `cargo run --release -p prune-pipeline --example from_code -- runs/from-code` (the
//! folder must not exist yet; `cargo xtask fetch` provides the checkpoint).

use prune_pipeline::ffn::{FfnOptions, HiddenOptions};
use prune_pipeline::run::PipelineOptions;
use prune_pipeline::{Command, execute};
use prune_tensor::CpuBackend;
use std::path::PathBuf;

fn main() -> prune_pipeline::Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or("runs/from-code".into()));
    // The default recipe, every stage shortened.
    let short = [
        "common.max-train=640",
        "finetune.max-train=2000",
        "heads.max-steps=40",
        "heads.warmup-steps=5",
        "heads.cooldown-step=30",
        "distill.max-steps=20",
        "ffn.max-steps=40",
        "ffn.interval=10",
        "ffn.rounds=4",
    ];
    let pipeline = PipelineOptions {
        overrides: short.iter().map(|s| s.to_string()).collect(),
        out: Some(out.join("pipeline")),
        latency_seconds: 1.0,
        quiet: true,
        ..Default::default()
    };
    // `execute` checks every stage's options before the first one runs.
    println!("{}", execute(&pipeline)?);

    // One stage with options built in code: a quarter of the hidden width of the final
    // model, cut in two rounds while distilling from the teacher.
    let mut hidden = HiddenOptions {
        ffn: FfnOptions {
            teacher: out.join("pipeline/finetune/model"),
            interval: 10,
            rounds: 2,
            hidden_ratio: Some(0.25),
            ..Default::default()
        },
    };
    let stage = &mut hidden.ffn.stage;
    stage.source.model = Some(out.join("pipeline/ffn/model"));
    stage.train.max_train = Some(640);
    stage.train.max_steps = Some(30);
    stage.train.quiet = true;
    stage.out = out.join("hidden");
    hidden.check()?;
    // A stage runs on any backend; here the CPU's.
    println!("{}", hidden.run(CpuBackend::<f32>::new())?);
    Ok(())
}
