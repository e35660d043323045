//! `prune pipeline`: every stage of a recipe in order — fine-tune the teacher, movement-prune
//! the heads (with surgery), distil, Taylor-prune the FFN while distilling — each writing its
//! own artifacts under the run directory, then the report (teacher vs final: metric,
//! parameters, FLOPs, latency measured in this process, per-stage wall time and speed).

use crate::device::{DeviceArgs, on_device};
use crate::distill::load_classifier;
use crate::inputs::{Source, evaluator, prepare};
use crate::latency::{self, Latency};
use crate::report::{FinalSummary, ModelSummary, Report, StageSummary};
use anyhow::{Context, Result, bail};
use clap::Parser;
use prune::speedup::ModelStats;
use prune::tensor::Backend;
use prune::transformer::BertForSequenceClassification;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The stages a recipe may configure, in the order they run.
const STAGES: [&str; 4] = ["finetune", "heads", "distill", "ffn"];

/// Recipes built into the binary.
const PRESETS: [(&str, &str); 2] = [
    ("default", include_str!("../recipes/default.toml")),
    (
        "nni-bert-base-mnli",
        include_str!("../recipes/nni-bert-base-mnli.toml"),
    ),
];

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
    /// Checkpoint to start from; default: the fetched all-MiniLM-L6-v2.
    #[arg(long)]
    model: Option<PathBuf>,
    /// The glue_data directory; default: $GLUE_DIR, else ../shared/data/glue.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Run directory; default: runs/<unix time>.
    #[arg(long)]
    out: Option<PathBuf>,
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

/// A recipe: flags per stage.
type Recipe = BTreeMap<String, toml::Table>;

/// Reads the recipe, applies the overrides and checks the stage names.
fn recipe(args: &Args) -> Result<Recipe> {
    let text = match &args.recipe {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading recipe {}", path.display()))?,
        None => PRESETS
            .iter()
            .find(|(n, _)| *n == args.preset)
            .map(|(_, t)| t.to_string())
            .with_context(|| {
                format!(
                    "unknown preset {:?} (known: default, nni-bert-base-mnli)",
                    args.preset
                )
            })?,
    };
    let mut r: Recipe = toml::from_str(&text).context("malformed recipe")?;
    for o in &args.overrides {
        let (key, value) = o
            .split_once('=')
            .with_context(|| format!("--set {o:?}: expected STAGE.KEY=VALUE"))?;
        let (stage, flag) = key
            .split_once('.')
            .with_context(|| format!("--set {o:?}: expected STAGE.KEY=VALUE"))?;
        let value = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .map(|mut t| {
                t.remove("v")
                    .unwrap_or(toml::Value::String(value.to_string()))
            })
            .unwrap_or_else(|_| toml::Value::String(value.to_string()));
        r.entry(stage.to_string())
            .or_default()
            .insert(flag.to_string(), value);
    }
    if let Some(bad) = r
        .keys()
        .find(|k| *k != "common" && !STAGES.contains(&k.as_str()))
    {
        bail!(
            "recipe: unknown stage [{bad}] (stages: common, {})",
            STAGES.join(", ")
        );
    }
    Ok(r)
}

/// `--key value` flags of a recipe table.
fn flags(table: Option<&toml::Table>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in table.into_iter().flatten() {
        match v {
            toml::Value::Boolean(true) => out.push(format!("--{k}")),
            toml::Value::Boolean(false) => {}
            toml::Value::String(s) => out.extend([format!("--{k}"), s.clone()]),
            other => out.extend([format!("--{k}"), other.to_string()]),
        }
    }
    out
}

/// The command line of `stage`, reading `model` (and `teacher`), writing `out`.
fn stage_argv(
    args: &Args,
    r: &Recipe,
    stage: &str,
    model: Option<&Path>,
    teacher: Option<&Path>,
    out: &Path,
) -> Vec<String> {
    let mut argv = vec!["prune".to_string(), stage.to_string()];
    // The stage's own values override the common ones.
    let mut table = r.get("common").cloned().unwrap_or_default();
    table.extend(r.get(stage).cloned().unwrap_or_default());
    argv.extend(flags(Some(&table)));
    let path = |p: &Path| p.to_string_lossy().into_owned();
    if let Some(m) = model {
        argv.extend(["--model".into(), path(m)]);
    }
    if let Some(t) = teacher {
        argv.extend(["--teacher".into(), path(t)]);
    }
    if let Some(d) = &args.data {
        argv.extend(["--data".into(), path(d)]);
    }
    argv.extend(["--out".into(), path(out)]);
    argv.extend(["--device".into(), args.device.device.to_string()]);
    if args.quiet {
        argv.push("--quiet".into());
    }
    argv
}

/// The task's source options as the recipe's common table sets them, for evaluation.
fn source(args: &Args, r: &Recipe, model: &Path) -> Result<Source> {
    let mut argv = vec!["prune".to_string(), "eval".to_string()];
    let common = r.get("common");
    for key in ["task", "max-len", "eval-batch-size", "skip-bad-rows"] {
        let one: toml::Table = common
            .and_then(|c| c.get(key))
            .map(|v| (key.to_string(), v.clone()))
            .into_iter()
            .collect();
        argv.extend(flags(Some(&one)));
    }
    argv.extend(["--model".into(), model.to_string_lossy().into_owned()]);
    if let Some(d) = &args.data {
        argv.extend(["--data".into(), d.to_string_lossy().into_owned()]);
    }
    match crate::Cli::try_parse_from(&argv)?.command {
        crate::Command::Eval(e) => Ok(e.source),
        _ => unreachable!("the argv names the eval command"),
    }
}

/// A stage's model with its metric and statistics.
struct Measured<B: Backend> {
    model: BertForSequenceClassification<B>,
    metric: f64,
    stats: ModelStats,
}

/// Loads the model saved in `dir` onto backend `b` and evaluates it.
fn measure<B: Backend>(b: &B, args: &Args, r: &Recipe, dir: &Path) -> Result<Measured<B>> {
    let src = source(args, r, dir)?;
    let p = prepare(&src, None, false)?;
    let model = load_classifier(b.clone(), dir)?;
    let metric = evaluator(&src, &p)?.evaluate(&model)?.main();
    let b = &model.bert;
    let stats = ModelStats::of(
        &b.config,
        b.params.pooler.is_some(),
        b.params.classifier.is_some(),
        128,
    );
    Ok(Measured {
        model,
        metric,
        stats,
    })
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
    on_device!(args.device.device, b => run_on(&b, args))
}

/// `prune pipeline` with every model on backend `b`.
fn run_on<B: Backend>(b: &B, args: &Args) -> Result<()> {
    let r = recipe(args)?;
    let out = args.out.clone().unwrap_or_else(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from("runs").join(secs.to_string())
    });
    // Check every stage's command line before any work starts.
    for stage in STAGES {
        let argv = stage_argv(
            args,
            &r,
            stage,
            Some(Path::new(".")),
            (stage != "finetune" && stage != "heads").then_some(Path::new(".")),
            &out,
        );
        crate::Cli::try_parse_from(&argv).map_err(|e| {
            anyhow::anyhow!(
                "recipe [{stage}]: {}",
                e.to_string().lines().next().unwrap_or("")
            )
        })?;
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join("recipe.toml"), toml::to_string(&r)?)?;
    let started = Instant::now();
    let mut stages = Vec::new();
    let mut model = args.model.clone();
    let mut teacher: Option<PathBuf> = None;
    for stage in STAGES {
        let dir = out.join(stage);
        let t = (stage != "finetune" && stage != "heads")
            .then(|| teacher.clone())
            .flatten();
        let argv = stage_argv(args, &r, stage, model.as_deref(), t.as_deref(), &dir);
        eprintln!("== {stage}: {}", argv[1..].join(" "));
        let stage_start = Instant::now();
        crate::run(crate::Cli::try_parse_from(&argv)?).with_context(|| format!("stage {stage}"))?;
        let seconds = stage_start.elapsed().as_secs_f64();
        let saved = dir.join("model");
        let m = measure(b, args, &r, &saved)?;
        stages.push(StageSummary {
            name: stage.to_string(),
            metric: m.metric,
            params_total: m.stats.parameters,
            params_encoder: m.stats.encoder_parameters,
            heads: m.stats.heads.clone(),
            intermediate: m.stats.intermediate.clone(),
            examples_per_second: examples_per_second(&dir),
            seconds,
        });
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
        measure(b, args, &r, &teacher_dir)?,
        measure(b, args, &r, &final_dir)?,
    );
    let budget = Duration::from_secs_f64(args.latency_seconds.max(0.0));
    // Teacher and final model are timed alternately, so that load hits both alike.
    let lat = |b: usize| -> Result<(Latency, Latency)> {
        let mut l = latency::measure_alternating(&[&t.model, &f.model], b, 128, budget)?;
        let f = l.pop().context("final latency")?;
        Ok((l.pop().context("teacher latency")?, f))
    };
    let ((t1, f1), (t32, f32_)) = (lat(1)?, lat(32)?);
    let report = Report {
        teacher: ModelSummary::new(&t.stats, t.metric, &t1, &t32),
        final_model: FinalSummary {
            model: ModelSummary::new(&f.stats, f.metric, &f1, &f32_),
            speedup_b32: t32.median_ms / f32_.median_ms,
            speedup_b1: t1.median_ms / f1.median_ms,
        },
        stages,
        recipe: serde_json::to_value(&r)?,
        total_seconds: started.elapsed().as_secs_f64(),
    };
    report.write(&out)?;
    println!("{}", report.markdown());
    println!("report: {}", out.join("report.md").display());
    Ok(())
}
