//! The pipeline: every stage of a recipe in order — fine-tune the teacher, movement-prune
//! the heads (with surgery), distil, Taylor-prune the FFN while distilling — each writing its
//! own artifacts under the run directory, then the report (teacher vs final: metric,
//! parameters, FLOPs, latency measured in this process, per-stage wall time and speed).

use crate::command::{Command, run_in_precision};
use crate::compare::{Measured, check_report_length, compare};
use crate::device::{Device, DeviceArgs};
use crate::distill::DistillOptions;
use crate::error::{Context, PipelineError, Result};
use crate::exports;
use crate::ffn::FfnOptions;
use crate::finetune::FinetuneOptions;
use crate::heads::HeadsOptions;
use crate::options::StageOptions;
use crate::recipe::{self, Recipe, STAGES, preset};
use crate::refuse;
use crate::report::{Report, StageSummary};
use crate::source::{evaluator, load_classifier, prepare};
use prune_tensor::Backend;
use prune_train::state::write_json;
use prune_train::{RunDir, RunIdentity};
use prune_transformer::{BertConfig, paths};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The pipeline's options (`prune pipeline`).
#[derive(clap::Args, Debug, Clone)]
pub struct PipelineOptions {
    /// Recipe file (TOML: a `[common]` table and one table of options per stage, keyed by
    /// the stage's flag names; a stage's value overrides the common one).
    #[arg(long, conflicts_with = "preset")]
    pub recipe: Option<PathBuf>,
    /// Built-in recipe: `default` (MiniLM + SST-2 on a 2-core CPU; the whole model cut to
    /// 10.2M parameters, the hidden width with it), `keep-width` (the default without the
    /// hidden-width cut, for a final model transformers loads) or `nni-bert-base-mnli`.
    #[arg(long, default_value_t = PipelineOptions::default().preset)]
    pub preset: String,
    /// Override a recipe value, `STAGE.KEY=VALUE` (e.g. `heads.regular-scale=20`,
    /// `common.max-train=2000`); repeatable.
    #[arg(long = "set", value_name = "STAGE.KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Whole-model size to reach, in parameters (embeddings, pooler and classifier
    /// included): the ffn stage also cuts the hidden width, as little as leaves at most this
    /// many (the same as `--set ffn.target-params=N`).
    #[arg(long)]
    pub target_params: Option<usize>,
    /// Checkpoint to start from; default: the fetched all-MiniLM-L6-v2.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The glue_data directory; default: the first of $GLUE_DIR, ../shared/data/glue and
    /// <cache>/glue that holds the task, else the task is downloaded into <cache>/glue.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Run directory; default: runs/<unix time>. Written as <out>.partial and renamed
    /// when the report is written.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the interrupted run in <out>.partial: completed stages are kept, the
    /// interrupted one resumes from its newest checkpoint. The recipe and the input model
    /// must be the same.
    #[arg(long, requires = "out")]
    pub resume: bool,
    /// Seconds spent timing each latency figure of the report (teacher and final model
    /// alternately).
    #[arg(long, default_value_t = PipelineOptions::default().latency_seconds)]
    pub latency_seconds: f64,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Every stage, the evaluations and the latency figures run here.
    #[command(flatten)]
    pub device: DeviceArgs,
}

impl Default for PipelineOptions {
    /// The default recipe on the default checkpoint, into `runs/<unix time>`.
    fn default() -> Self {
        PipelineOptions {
            recipe: None,
            preset: "default".into(),
            overrides: Vec::new(),
            target_params: None,
            model: None,
            data: None,
            out: None,
            resume: false,
            latency_seconds: 10.0,
            quiet: false,
            device: DeviceArgs::default(),
        }
    }
}

/// One stage of a recipe, with its typed options.
enum Stage {
    /// Fine-tuning the teacher.
    Finetune(FinetuneOptions),
    /// Movement pruning of the heads, then surgery.
    Heads(HeadsOptions),
    /// Distillation of the head-pruned student.
    Distill(DistillOptions),
    /// Taylor pruning of the FFN (and the hidden width) while distilling.
    Ffn(FfnOptions),
}

/// `$body` with `$s` bound to the options of whichever stage `$stage` holds.
macro_rules! on_stage {
    ($stage:expr, $s:ident => $body:expr) => {
        match $stage {
            Stage::Finetune($s) => $body,
            Stage::Heads($s) => $body,
            Stage::Distill($s) => $body,
            Stage::Ffn($s) => $body,
        }
    };
}

impl Stage {
    /// Stage `name`'s options in recipe `r`.
    fn from_recipe(r: &Recipe, name: &str) -> Result<Stage> {
        Ok(match name {
            "finetune" => Stage::Finetune(recipe::stage_options(r, name)?),
            "heads" => Stage::Heads(recipe::stage_options(r, name)?),
            "distill" => Stage::Distill(recipe::stage_options(r, name)?),
            "ffn" => Stage::Ffn(recipe::stage_options(r, name)?),
            _ => refuse!("no stage {name}"),
        })
    }

    /// The options every training stage shares.
    fn shared(&mut self) -> &mut StageOptions {
        on_stage!(self, s => &mut s.stage)
    }

    /// Sets the teacher of a stage that distils.
    fn set_teacher(&mut self, teacher: &Path) {
        match self {
            Stage::Distill(s) => s.teacher = teacher.to_path_buf(),
            Stage::Ffn(s) => s.teacher = teacher.to_path_buf(),
            Stage::Finetune(_) | Stage::Heads(_) => {}
        }
    }

    /// Checks the options.
    fn check(&self) -> Result<()> {
        on_stage!(self, s => s.check())
    }

    /// Runs the stage on backend `b` (in bf16 when its options ask).
    fn run<B: Backend>(&self, b: B) -> Result<String> {
        on_stage!(self, s => run_in_precision(s, b))
    }
}

impl PipelineOptions {
    /// Reads the recipe and applies the overrides.
    pub fn recipe(&self) -> Result<Recipe> {
        let text = match &self.recipe {
            Some(path) => std::fs::read_to_string(path).map_err(|e| PipelineError::io(path, e))?,
            None => preset(&self.preset)?,
        };
        let mut overrides = self.overrides.clone();
        if let Some(n) = self.target_params {
            overrides.push(format!("ffn.target-params={n}"));
        }
        recipe::parse(&text, &overrides)
    }

    /// The recipe, once the options, the recipe and every stage's options in it are checked.
    fn checked_recipe(&self) -> Result<Recipe> {
        if !(self.latency_seconds.is_finite() && (0.0..=3600.0).contains(&self.latency_seconds)) {
            refuse!(
                "--latency-seconds must be a number of seconds in [0, 3600], got {}",
                self.latency_seconds
            );
        }
        let r = self.recipe()?;
        let placeholder = Path::new(".");
        for name in STAGES {
            let io = (Some(placeholder), placeholder);
            let stage = self.stage(&r, name, io, self.data.as_deref(), placeholder)?;
            stage.check().context_with(|| format!("recipe [{name}]"))?;
        }
        recipe::source(&r)?.check()?;
        Ok(r)
    }

    /// Stage `name` of recipe `r` reading `model` (and `teacher`) and the data in `data`,
    /// writing `out`, with this run's device, quietness and resuming.
    fn stage(
        &self,
        r: &Recipe,
        name: &str,
        (model, teacher): (Option<&Path>, &Path),
        data: Option<&Path>,
        out: &Path,
    ) -> Result<Stage> {
        let mut stage = Stage::from_recipe(r, name)?;
        stage.set_teacher(teacher);
        let shared = stage.shared();
        shared.source.model = model.map(Path::to_path_buf);
        shared.source.data = data.map(Path::to_path_buf);
        shared.out = out.to_path_buf();
        shared.device = self.device;
        shared.resume = self.resume;
        shared.train.quiet |= self.quiet;
        Ok(stage)
    }

    /// Loads the model saved in `dir` onto backend `b` and evaluates it on the recipe's task
    /// in `data`.
    fn measure<B: Backend>(
        &self,
        b: &B,
        r: &Recipe,
        dir: &Path,
        data: &Path,
    ) -> Result<Measured<B>> {
        let mut src = recipe::source(r)?;
        (src.model, src.data) = (Some(dir.to_path_buf()), Some(data.to_path_buf()));
        let p = prepare(&src, None, false)?;
        let model = load_classifier(b.clone(), dir)?;
        let metric = evaluator(&src, &p)?.evaluate(&model)?.main();
        Ok(Measured::new(model, metric))
    }
}

/// Training examples per second recorded in a stage's `summary.json`.
fn examples_per_second(dir: &Path) -> f64 {
    std::fs::read_to_string(dir.join("summary.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["examples_per_second"].as_f64())
        .unwrap_or(f64::NAN)
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

impl Command for PipelineOptions {
    /// Checks the options, the recipe and every stage's options in it.
    fn check(&self) -> Result<()> {
        self.checked_recipe().map(drop)
    }

    fn device(&self) -> Device {
        self.device.device
    }

    /// Runs every stage, measures the teacher and the final model, exports both and writes
    /// the report; returns the report in Markdown.
    fn run<B: Backend>(&self, b: B) -> Result<String> {
        // Read and checked again: the recipe run is the recipe checked.
        let r = self.checked_recipe()?;
        let out = self.out.clone().unwrap_or_else(|| {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            PathBuf::from("runs").join(secs.to_string())
        });
        let model_dir = match &self.model {
            Some(d) => paths::require_given_checkpoint(d.clone(), true)?,
            None => paths::require_model_dir()?,
        };
        check_report_length(&BertConfig::from_file(&model_dir.join("config.json"))?)?;
        // The data is found (or downloaded) once, before the first stage.
        let mut source = recipe::source(&r)?;
        source.data = self.data.clone();
        let data = source.data_dir()?;
        let identity = RunIdentity::new("pipeline")
            .with("recipe", serde_json::to_value(&r)?)
            .with_checkpoint("model", &model_dir)?;
        let inputs = [("--model", model_dir.as_path()), ("--data", &data)];
        let run = RunDir::claim(&out, &inputs, &identity, self.resume)?;
        let work = run.path().to_path_buf();
        let recipe_text = toml::to_string(&r).map_err(|e| PipelineError::Input(e.to_string()))?;
        let recipe_path = work.join("recipe.toml");
        std::fs::write(&recipe_path, recipe_text)
            .map_err(|e| PipelineError::io(&recipe_path, e))?;
        let seconds_path = work.join(STAGE_SECONDS);
        let mut seconds: BTreeMap<String, f64> = std::fs::read_to_string(&seconds_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let (started, mut earlier) = (Instant::now(), 0.0);
        let mut stages = Vec::new();
        let mut model = self.model.clone();
        let mut teacher = PathBuf::new();
        for name in STAGES {
            let dir = work.join(name);
            if is_complete(&dir) {
                eprintln!("== {name}: complete, kept");
                earlier += seconds.get(name).copied().unwrap_or(0.0);
            } else {
                let io = (model.as_deref(), teacher.as_path());
                let stage = self.stage(&r, name, io, Some(&data), &dir)?;
                let set: Vec<String> = recipe::stage_table(&r, name)
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                eprintln!("== {name}: {}", set.join(" "));
                let stage_start = Instant::now();
                let done = stage
                    .run(b.clone())
                    .context_with(|| format!("stage {name}"))?;
                eprintln!("{done}");
                seconds.insert(name.to_string(), stage_start.elapsed().as_secs_f64());
                write_json(&seconds_path, &seconds)?;
            }
            let saved = dir.join("model");
            let m = self.measure(&b, &r, &saved, &data)?;
            stages.push(StageSummary::new(
                name,
                &m.stats,
                m.metric,
                examples_per_second(&dir),
                seconds.get(name).copied().unwrap_or(f64::NAN),
            ));
            if name == "finetune" {
                teacher = saved.clone();
            }
            model = Some(saved);
        }
        let Some(final_dir) = model else {
            refuse!("the recipe has no stage");
        };
        let (t, f) = (
            self.measure(&b, &r, &teacher, &data)?,
            self.measure(&b, &r, &final_dir, &data)?,
        );
        let exports = exports::write(&work, &teacher, &final_dir)?;
        let onnx = [
            work.join(&exports.teacher_onnx),
            work.join(&exports.final_onnx),
        ];
        let c = compare(&t, &f, [&onnx[0], &onnx[1]], self.latency_seconds)?;
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
        Ok(format!(
            "{}\nreport: {}",
            report.markdown(),
            out.join("report.md").display()
        ))
    }
}
