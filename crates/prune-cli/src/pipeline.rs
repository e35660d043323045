//! `prune pipeline`: every stage of a recipe in order — fine-tune the teacher, movement-prune
//! the heads (with surgery), distil, Taylor-prune the FFN while distilling — each writing its
//! own artifacts under the run directory, then the report (teacher vs final: metric,
//! parameters, FLOPs, latency measured in this process, per-stage wall time and speed).

use crate::device::{DeviceArgs, on_device};
use crate::inputs::{Source, evaluator, load_classifier, prepare};
use anyhow::{Context, Result, bail};
use clap::Parser;
use prune::pipeline::compare::{Measured, check_report_length, compare};
use prune::pipeline::exports;
use prune::pipeline::report::{Report, StageSummary};
use prune::tensor::Backend;
use prune::train::state::write_json;
use prune::train::{RunDir, RunIdentity};
use prune::transformer::{BertConfig, paths};
use prune_cli::recipe::{self, Recipe, STAGES, StageIo, preset};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `prune pipeline` options.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Recipe file (TOML: a `[common]` table and one table of flags per stage; a stage's
    /// value overrides the common one).
    #[arg(long, conflicts_with = "preset")]
    recipe: Option<PathBuf>,
    /// Built-in recipe: `default` (MiniLM + SST-2 on a 2-core CPU) or `nni-bert-base-mnli`.
    #[arg(long, default_value = "default")]
    preset: String,
    /// Override a recipe value, `STAGE.KEY=VALUE` (e.g. `heads.regular-scale=20`,
    /// `common.max-train=2000`); repeatable.
    #[arg(long = "set", value_name = "STAGE.KEY=VALUE")]
    overrides: Vec<String>,
    /// Whole-model size to reach, in parameters (embeddings, pooler and classifier
    /// included): the ffn stage also cuts the hidden width, as little as leaves at most this
    /// many (the same as `--set ffn.target-params=N`).
    #[arg(long)]
    target_params: Option<usize>,
    /// Checkpoint to start from; default: the fetched all-MiniLM-L6-v2.
    #[arg(long)]
    model: Option<PathBuf>,
    /// The glue_data directory; default: the first of $GLUE_DIR, ../shared/data/glue and
    /// <cache>/glue that holds the task, else the task is downloaded into <cache>/glue.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Run directory; default: runs/<unix time>. Written as <out>.partial and renamed
    /// when the report is written.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the interrupted run in <out>.partial: completed stages are kept, the
    /// interrupted one resumes from its newest checkpoint. The recipe and the input model
    /// must be the same.
    #[arg(long, requires = "out")]
    resume: bool,
    /// Seconds spent timing each latency figure of the report (teacher and final model
    /// alternately).
    #[arg(long, default_value_t = 10.0)]
    latency_seconds: f64,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    /// Every stage, the evaluations and the latency figures run here.
    #[command(flatten)]
    device: DeviceArgs,
}

/// Reads the recipe and applies the overrides.
fn recipe(args: &Args) -> Result<Recipe> {
    let text = match &args.recipe {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading recipe {}", path.display()))?,
        None => preset(&args.preset)?.to_string(),
    };
    let mut overrides = args.overrides.clone();
    if let Some(n) = args.target_params {
        overrides.push(format!("ffn.target-params={n}"));
    }
    recipe::parse(&text, &overrides)
}

/// The command line of `stage` reading `model` (and `teacher`) and the data in `data`,
/// writing `out`.
fn stage_argv(
    args: &Args,
    r: &Recipe,
    stage: &str,
    (model, teacher): (Option<&Path>, Option<&Path>),
    data: Option<&Path>,
    out: &Path,
) -> Vec<String> {
    let mut extra = vec!["--device".to_string(), args.device.device.to_string()];
    if args.quiet {
        extra.push("--quiet".into());
    }
    if args.resume {
        extra.push("--resume".into());
    }
    let io = StageIo {
        model,
        teacher: teacher.filter(|_| stage != "finetune" && stage != "heads"),
        data,
        out,
        extra,
    };
    recipe::stage_argv(r, stage, &io)
}

/// The task's source options as the recipe's common table sets them, for evaluating
/// `model` on the data in `data`.
fn source(r: &Recipe, model: &Path, data: Option<&Path>) -> Result<Source> {
    let argv = recipe::eval_argv(r, model, data);
    match crate::Cli::try_parse_from(&argv)?.command {
        crate::Command::Eval(e) => Ok(e.source),
        _ => unreachable!("the argv names the eval command"),
    }
}

/// Parses a stage's command line and checks its options; errors name the stage.
fn parsed_stage(stage: &str, argv: &[String]) -> Result<crate::Command> {
    let first_line = |e: String| e.lines().next().unwrap_or("").to_string();
    let cli = crate::Cli::try_parse_from(argv)
        .map_err(|e| anyhow::anyhow!("recipe [{stage}]: {}", first_line(e.to_string())))?;
    cli.command
        .check()
        .map_err(|e| anyhow::anyhow!("recipe [{stage}]: {e:#}"))?;
    Ok(cli.command)
}

/// Loads the model saved in `dir` onto backend `b` and evaluates it on the data in `data`.
fn measure<B: Backend>(b: &B, r: &Recipe, dir: &Path, data: &Path) -> Result<Measured<B>> {
    let src = source(r, dir, Some(data))?;
    let p = prepare(&src, None, false)?;
    let model = load_classifier(b.clone(), dir)?;
    let metric = evaluator(&src, &p)?.evaluate(&model)?.main();
    Ok(Measured::new(model, metric))
}

/// Training examples per second recorded in a stage's `summary.json`.
fn examples_per_second(dir: &Path) -> f64 {
    std::fs::read_to_string(dir.join("summary.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["examples_per_second"].as_f64())
        .unwrap_or(f64::NAN)
}

/// `prune pipeline`.
pub fn run(args: &Args) -> Result<()> {
    if !(args.latency_seconds.is_finite() && (0.0..=3600.0).contains(&args.latency_seconds)) {
        bail!(
            "--latency-seconds must be a number of seconds in [0, 3600], got {}",
            args.latency_seconds
        );
    }
    on_device!(args.device.device, b => run_on(&b, args))
}

/// The stage folder `dir` holds a completed stage: its model, summary and run record.
fn is_complete(dir: &Path) -> bool {
    [
        "model/config.json",
        "model/model.safetensors",
        "summary.json",
        "run.json",
    ]
    .iter()
    .all(|f| dir.join(f).is_file())
}

/// Wall seconds of the stages completed so far, kept in the run folder for a resumed run.
const STAGE_SECONDS: &str = "stage-seconds.json";

/// `prune pipeline` with every model on backend `b`.
fn run_on<B: Backend>(b: &B, args: &Args) -> Result<()> {
    let r = recipe(args)?;
    let out = args.out.clone().unwrap_or_else(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from("runs").join(secs.to_string())
    });
    // Every stage's options are checked before any work starts.
    let placeholder = Path::new(".");
    for stage in STAGES {
        let io = (Some(placeholder), Some(placeholder));
        let argv = stage_argv(args, &r, stage, io, args.data.as_deref(), &out);
        parsed_stage(stage, &argv)?;
    }
    let model_dir = match &args.model {
        Some(d) => paths::require_given_checkpoint(d.clone(), true)?,
        None => paths::require_model_dir()?,
    };
    check_report_length(&BertConfig::from_file(&model_dir.join("config.json"))?)?;
    // The data is found (or downloaded) once, before the first stage.
    let data = source(&r, &model_dir, args.data.as_deref())?.data_dir()?;
    let identity = RunIdentity::new("pipeline")
        .with("recipe", serde_json::to_value(&r)?)
        .with_checkpoint("model", &model_dir)?;
    let inputs = [("--model", model_dir.as_path()), ("--data", &data)];
    let run = RunDir::claim(&out, &inputs, &identity, args.resume)?;
    let work = run.path().to_path_buf();
    std::fs::write(work.join("recipe.toml"), toml::to_string(&r)?)?;
    let seconds_path = work.join(STAGE_SECONDS);
    let mut seconds: BTreeMap<String, f64> = std::fs::read_to_string(&seconds_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let (started, mut earlier) = (Instant::now(), 0.0);
    let mut stages = Vec::new();
    let mut model = args.model.clone();
    let mut teacher: Option<PathBuf> = None;
    for stage in STAGES {
        let dir = work.join(stage);
        if is_complete(&dir) {
            eprintln!("== {stage}: complete, kept");
            earlier += seconds.get(stage).copied().unwrap_or(0.0);
        } else {
            let io = (model.as_deref(), teacher.as_deref());
            let argv = stage_argv(args, &r, stage, io, Some(&data), &dir);
            eprintln!("== {stage}: {}", argv[1..].join(" "));
            let stage_start = Instant::now();
            crate::run(crate::Cli::try_parse_from(&argv)?)
                .with_context(|| format!("stage {stage}"))?;
            seconds.insert(stage.to_string(), stage_start.elapsed().as_secs_f64());
            write_json(&seconds_path, &seconds)?;
        }
        let saved = dir.join("model");
        let m = measure(b, &r, &saved, &data)?;
        stages.push(StageSummary::new(
            stage,
            &m.stats,
            m.metric,
            examples_per_second(&dir),
            seconds.get(stage).copied().unwrap_or(f64::NAN),
        ));
        if stage == "finetune" {
            teacher = Some(saved.clone());
        }
        model = Some(saved);
    }
    let (teacher_dir, final_dir) = (
        teacher.context("no teacher")?,
        model.context("no final model")?,
    );
    let (t, f) = (
        measure(b, &r, &teacher_dir, &data)?,
        measure(b, &r, &final_dir, &data)?,
    );
    let exports = exports::write(&work, &teacher_dir, &final_dir)?;
    let onnx = [
        work.join(&exports.teacher_onnx),
        work.join(&exports.final_onnx),
    ];
    let c = compare(&t, &f, [&onnx[0], &onnx[1]], args.latency_seconds)?;
    let report = Report {
        teacher: c.teacher,
        final_model: c.final_model,
        stages,
        recipe: serde_json::to_value(&r)?,
        exports,
        onnxruntime: c.onnxruntime,
        total_seconds: earlier + started.elapsed().as_secs_f64(),
    };
    report.write(&work)?;
    // The stages dropped their own resume state; the run folder holds only stage folders.
    let out = run.commit()?;
    println!("{}", report.markdown());
    println!("report: {}", out.join("report.md").display());
    Ok(())
}
