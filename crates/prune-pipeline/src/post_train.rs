//! The post-train command: retraining-free pruning of a fine-tuned model (Kwon et al. 2022) to a
//! fraction of its head and FFN FLOPs, or of their latency as timed on this machine, from
//! a seeded sample of the training split: Fisher importance, the search under the budget,
//! rearrangement, surgery and mask tuning (`prune_posttrain`); then the dev metric of both
//! models, their exports and the same report as the pipeline's.

use crate::command::Command;
use crate::compare::{Measured, check_report_length, compare};
use crate::device::{Device, DeviceArgs};
use crate::error::{Context, PipelineError, Result};
use crate::exports;
use crate::refuse;
use crate::report::{REPORT_SEQ, Report, StageSummary};
use crate::source::{Prepared, Source, evaluator, load_classifier, prepare, source_identity};
use crate::stage_output::{finish, save_model};
use prune_data::{LabelledBatch, collate};
use prune_posttrain::{
    Budget, Importance, LatencyConfig, LatencyTable, PostTrainConfig, PostTrainReport, TuneConfig,
    importance, prune_to,
};
use prune_tensor::Backend;
use prune_tensor::rng::Rng;
use prune_train::Evaluator;
use prune_train::RunDir;
use prune_train::state::write_json;
use prune_transformer::BertForSequenceClassification;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `prune post-train` options. Serialised, the settings that decide the result.
#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct PostTrainOptions {
    /// The fine-tuned checkpoint (`--model`) and its task.
    #[command(flatten)]
    #[serde(skip)]
    pub source: Source,
    /// Where the model runs.
    #[command(flatten)]
    #[serde(skip)]
    pub device: DeviceArgs,
    /// Output directory: model/, plan.json, summary.json, the report (report.json, .md,
    /// .svg), export/, run.json (written as <out>.partial and renamed when complete); with
    /// several ratios, one folder per ratio (`ratio-0.60/`), the input model's ONNX export
    /// once in export/, and a summary.json listing them.
    #[arg(long)]
    #[serde(skip)]
    pub out: PathBuf,
    /// Fraction of the encoder's head and FFN FLOPs to keep, in (0, 1], counted at the
    /// sample's mean sequence length; several (`0.4,0.5,0.6`) share one importance pass.
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present = "latency_ratio",
        conflicts_with = "latency_ratio"
    )]
    pub flops_ratio: Vec<f64>,
    /// Fraction of the encoder's attention and FFN latency to keep, in (0, 1], as timed
    /// here (`--latency-batch` × `--latency-seq`) for every head count and a grid of FFN
    /// widths; every layer keeps the units its fixed cost pays for. Several ratios share
    /// one importance pass and one timing.
    #[arg(long, value_delimiter = ',')]
    pub latency_ratio: Vec<f64>,
    /// Batch size at which `--latency-ratio` times the sub-layers.
    #[arg(long, default_value_t = 32)]
    pub latency_batch: usize,
    /// Sequence length at which `--latency-ratio` times the sub-layers.
    #[arg(long, default_value_t = 128)]
    pub latency_seq: usize,
    /// Sub-layer timings for `--latency-ratio` read from FILE instead of measured here: the
    /// `latency_table` of an earlier run's summary.json (or the table alone), e.g. timed on
    /// the machine the model will serve on.
    #[arg(long, value_name = "FILE")]
    pub latency_table: Option<PathBuf>,
    /// Seconds spent timing each latency figure of the report (input and pruned model
    /// alternately).
    #[arg(long, default_value_t = 3.0)]
    #[serde(skip)]
    pub latency_seconds: f64,
    /// Training examples drawn (seeded, without replacement) for importance and tuning.
    #[arg(long, default_value_t = 2048)]
    pub samples: usize,
    /// Examples per sample batch (one gradient per batch).
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Seed of the sample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Skip the rearrangement of each layer's pruned set.
    #[arg(long)]
    pub no_rearrange: bool,
    /// Skip mask tuning (the kept units keep scale 1).
    #[arg(long)]
    pub no_tune: bool,
    /// Mask tuning's pull of the scales towards 1, relative to the mean of diag(AᵀA).
    #[arg(long, default_value_t = 1e-3)]
    pub damping: f64,
    /// Mask tuning also fits the output projections' biases (beyond the paper, which fits
    /// the scales only).
    #[arg(long)]
    pub bias_correction: bool,
    /// Mask tuning fits each sub-layer's sum as the LayerNorm after it sees it: each token's
    /// change less its mean, times γ, over the token's spread (beyond the paper; not with
    /// --bias-correction).
    #[arg(long, conflicts_with = "bias_correction")]
    pub norm_aware: bool,
    /// Skip the head refit: after tuning, the classifier is fitted by least squares so that
    /// the pruned model's logits reproduce the input model's on the sample, pulled towards
    /// the classifier it had by --damping (beyond the paper).
    #[arg(long)]
    pub no_refit_head: bool,
}

impl PostTrainOptions {
    /// The budget's option name and its ratios.
    fn ratios(&self) -> (&'static str, &[f64]) {
        if self.latency_ratio.is_empty() {
            ("--flops-ratio", &self.flops_ratio)
        } else {
            ("--latency-ratio", &self.latency_ratio)
        }
    }

    /// The timing settings of a latency budget.
    fn latency(&self) -> LatencyConfig {
        LatencyConfig {
            batch: self.latency_batch,
            seq: self.latency_seq,
            ..LatencyConfig::default()
        }
    }

    /// The pruner's settings for `ratio` of `budget`.
    fn config(&self, ratio: f64, budget: &Budget) -> PostTrainConfig {
        PostTrainConfig {
            ratio,
            budget: budget.clone(),
            rearrange: !self.no_rearrange,
            tune: (!self.no_tune).then_some(TuneConfig {
                damping: self.damping,
                bias: self.bias_correction,
                norm: self.norm_aware,
                ..TuneConfig::default()
            }),
            refit_head: (!self.no_refit_head).then_some(self.damping),
        }
    }
}

impl Command for PostTrainOptions {
    fn check(&self) -> Result<()> {
        self.source.check()?;
        let (name, ratios) = self.ratios();
        for r in ratios {
            if !(*r > 0.0 && *r <= 1.0) {
                refuse!("{name} must be in (0, 1], got {r}");
            }
        }
        let mut names: Vec<String> = ratios.iter().map(|&r| ratio_dir(r)).collect();
        names.sort();
        if names.windows(2).any(|w| w[0] == w[1]) {
            refuse!("{name} lists the same ratio twice (to two decimals)");
        }
        if self.latency_table.is_some() && self.latency_ratio.is_empty() {
            refuse!("--latency-table is the timing of a --latency-ratio budget; give one");
        }
        if self.samples == 0 || self.batch_size == 0 {
            refuse!("--samples and --batch-size must be at least 1");
        }
        if !(self.damping.is_finite() && self.damping >= 0.0) {
            refuse!("--damping must be a number ≥ 0, got {}", self.damping);
        }
        if !(self.latency_seconds.is_finite() && (0.0..=3600.0).contains(&self.latency_seconds)) {
            refuse!(
                "--latency-seconds must be a number of seconds in [0, 3600], got {}",
                self.latency_seconds
            );
        }
        self.latency()
            .check()
            .context("--latency-batch/--latency-seq")?;
        Ok(())
    }

    fn device(&self) -> Device {
        self.device.device
    }

    /// Prunes to every ratio, writes each one's model, summary, exports and report.
    fn run<B: Backend>(&self, b: B) -> Result<String> {
        post_train(b, self)
    }
}

/// The folder of one ratio's results when several are asked for.
fn ratio_dir(r: f64) -> String {
    format!("ratio-{r:.2}")
}

/// What `summary.json` holds.
#[derive(Serialize)]
struct Summary {
    /// Dev metric of the pruned model.
    metric: f64,
    /// Dev metric of the input model.
    teacher_metric: f64,
    /// What the budget counted: `flops` or `latency`.
    budget: &'static str,
    /// Kept fraction of the budget's cost (the latency one as predicted by the fit).
    budget_ratio: f64,
    /// Kept fraction of the head and FFN FLOPs at the sample's mean length.
    flops_ratio: f64,
    /// Kept fraction of all matmul FLOPs at T = 128 ([`REPORT_SEQ`]).
    flops_ratio_t128: f64,
    /// Parameters before and after.
    params: [usize; 2],
    /// Seconds of the pruning (sub-layer timing for a latency budget, importance, search,
    /// rearrangement, surgery, tuning).
    seconds: f64,
    /// Examples sampled.
    examples: usize,
    /// Heads per layer after pruning.
    heads: Vec<usize>,
    /// FFN width per layer after pruning.
    intermediate: Vec<usize>,
    /// The sub-layer timings of a latency budget.
    latency_table: Option<LatencyTable>,
    /// The pruner's own report (selection, costs, tuning fits, step seconds).
    pruning: PostTrainReport,
}

/// A seeded sample of the training split, in batches of similar lengths.
fn sample(p: &Prepared, args: &PostTrainOptions) -> Result<Vec<LabelledBatch>> {
    let mut order: Vec<usize> = (0..p.train.len()).collect();
    Rng::new(args.seed).shuffle(&mut order);
    order.truncate(args.samples);
    if order.is_empty() {
        refuse!("the training split is empty");
    }
    // Batches of similar lengths pad little (the draw itself stays random).
    order.sort_by_key(|&i| p.train[i].ids.len());
    order
        .chunks(args.batch_size)
        .map(|c| {
            let rows: Vec<_> = c.iter().map(|&i| &p.train[i]).collect();
            Ok(collate(&rows, p.pad)?)
        })
        .collect()
}

/// What every ratio of one run shares.
struct Shared<'a, B: Backend> {
    args: &'a PostTrainOptions,
    prepared: &'a Prepared,
    teacher: &'a Measured<B>,
    batches: &'a [LabelledBatch],
    /// Examples in `batches`.
    examples: usize,
    importance: &'a Importance,
    budget: &'a Budget,
    eval: &'a Evaluator,
    /// The input model's ONNX export, relative to a ratio's folder, when it was written once
    /// for several ratios.
    teacher_onnx: Option<PathBuf>,
    /// Seconds this run spent timing sub-layers.
    timing_seconds: f64,
}

/// The budget of `args` on `model`: FLOPs, or latency timed here or read from
/// `--latency-table`; every ratio is checked against what the budget can reach. Returns
/// the seconds spent timing too.
fn budget_of<B: Backend>(
    b: &B,
    args: &PostTrainOptions,
    model: &BertForSequenceClassification<B>,
) -> Result<(Budget, f64)> {
    let config = &model.bert.config;
    let (budget, seconds) = match (&args.latency_table, args.latency_ratio.is_empty()) {
        (_, true) => (Budget::Flops, 0.0),
        (Some(path), false) => {
            let table = read_table(path)?;
            table
                .check(config)
                .context_with(|| format!("--latency-table {}", path.display()))?;
            (Budget::Latency(table), 0.0)
        }
        (None, false) => {
            let table = LatencyTable::measure(b, config, &args.latency())?;
            let (b, t, s) = (table.batch, table.seq, table.seconds);
            eprintln!("sub-layers timed at B={b} T={t} in {s:.1}s");
            (Budget::Latency(table), s)
        }
    };
    for &ratio in args.ratios().1 {
        budget.check_ratio(config, ratio)?;
    }
    Ok((budget, seconds))
}

/// A latency table from a JSON file: a summary's `latency_table`, or the table itself.
fn read_table(path: &Path) -> Result<LatencyTable> {
    let text = std::fs::read_to_string(path).map_err(|e| PipelineError::io(path, e))?;
    let mut value: serde_json::Value = serde_json::from_str(&text)
        .context_with(|| format!("--latency-table {}: not JSON", path.display()))?;
    if let Some(table) = value.get_mut("latency_table") {
        value = table.take();
    }
    serde_json::from_value(value).context_with(|| {
        format!(
            "--latency-table {}: not a latency table (batch, seq, heads, neurons, seconds)",
            path.display()
        )
    })
}

/// Prunes the model of `args` on backend `b` to each ratio; returns what was done, in
/// words.
fn post_train<B: Backend>(b: B, args: &PostTrainOptions) -> Result<String> {
    let started = Instant::now();
    let p = prepare(&args.source, None, true)?;
    let model = load_classifier(b.clone(), &p.model_dir)?;
    check_report_length(&model.bert.config)?;
    let identity = source_identity("post-train", &args.source, &p)?.with_fields("post-train", args);
    let mut inputs = vec![("--model", p.model_dir.as_path()), ("--data", &p.data_dir)];
    if let Some(table) = &args.latency_table {
        inputs.push(("--latency-table", table));
    }
    let (budget, timing_seconds) = budget_of(&b, args, &model)?;
    let out = RunDir::claim(&args.out, &inputs, &identity, false)?;
    let batches = sample(&p, args)?;
    let examples: usize = batches.iter().map(|x| x.inputs.batch).sum();
    let imp = importance(&model, &batches)?;
    eprintln!(
        "importance from {examples} examples (mean length {:.1}) in {:.1}s",
        imp.mean_seq_len, imp.seconds
    );
    let eval = evaluator(&args.source, &p)?;
    let metric = eval.evaluate(&model)?.main();
    let teacher = Measured::new(model, metric);
    let (_, ratios) = args.ratios();
    let several = ratios.len() > 1;
    let teacher_onnx = match several {
        true => Some(Path::new("..").join(exports::write_teacher(out.path(), &p.model_dir)?)),
        false => None,
    };
    let shared = Shared {
        args,
        prepared: &p,
        teacher: &teacher,
        batches: &batches,
        examples,
        importance: &imp,
        budget: &budget,
        eval: &eval,
        teacher_onnx,
        timing_seconds,
    };
    let (mut summaries, mut text) = (Vec::new(), String::new());
    for &ratio in ratios {
        let dir = match several {
            true => out.path().join(ratio_dir(ratio)),
            false => out.path().to_path_buf(),
        };
        std::fs::create_dir_all(&dir).map_err(|e| PipelineError::io(&dir, e))?;
        let (summary, line) = prune_one(&shared, ratio, &dir)?;
        summaries.push(summary);
        text += &line;
    }
    if several {
        write_json(&out.path().join("summary.json"), &summaries)?;
    }
    let dir = finish(out)?;
    text += &format!(
        "{} in {:.0}s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(text)
}

/// Prunes to `ratio` of the budget and writes the model, plan, summary, exports and report
/// into `dir`; returns the summary and a line saying what was done.
fn prune_one<B: Backend>(s: &Shared<'_, B>, ratio: f64, dir: &Path) -> Result<(Summary, String)> {
    let (args, teacher) = (s.args, s.teacher);
    let config = args.config(ratio, s.budget);
    let (pruned, plan, report) = prune_to(&teacher.model, s.batches, s.importance, &config)?;
    let metric = s.eval.evaluate(&pruned)?.main();
    plan.save(&dir.join("plan.json"))?;
    let model_dir = save_model(&pruned, &s.prepared.model_dir, dir)?;
    let pruned = Measured::new(pruned, metric);
    let (before, after) = (&teacher.stats, &pruned.stats);
    let steps = &report.seconds;
    let seconds = s.timing_seconds + steps.importance + steps.selection + steps.tuning;
    let examples = s.examples;
    let summary = Summary {
        metric,
        teacher_metric: teacher.metric,
        budget: match s.budget {
            Budget::Flops => "flops",
            Budget::Latency(_) => "latency",
        },
        budget_ratio: report.budget_ratio(),
        flops_ratio: report.flops_ratio(),
        flops_ratio_t128: after.flops_per_sequence as f64 / before.flops_per_sequence as f64,
        params: [before.parameters, after.parameters],
        seconds,
        examples,
        heads: after.heads.clone(),
        intermediate: after.intermediate.clone(),
        latency_table: match s.budget {
            Budget::Latency(t) => Some(t.clone()),
            Budget::Flops => None,
        },
        pruning: report,
    };
    write_json(&dir.join("summary.json"), &summary)?;
    if let Some(why) = summary
        .pruning
        .tune
        .as_ref()
        .and_then(|t| t.stopped.as_ref())
    {
        eprintln!("warning: mask tuning stopped early at {why}");
    }
    let source = &s.prepared.model_dir;
    let exports = match &s.teacher_onnx {
        Some(t) => exports::write_final(dir, t.clone(), &model_dir)?,
        None => exports::write(dir, source, &model_dir)?,
    };
    let onnx = [
        dir.join(&exports.teacher_onnx),
        dir.join(&exports.final_onnx),
    ];
    let c = compare(teacher, &pruned, [&onnx[0], &onnx[1]], args.latency_seconds)?;
    let per_second = examples as f64 / seconds.max(1e-9);
    let stage = StageSummary::new("post-train", after, metric, per_second, seconds);
    let report = Report {
        teacher: c.teacher,
        final_model: c.final_model,
        stages: vec![stage],
        recipe: serde_json::json!({ "post-train": args, "ratio": ratio }),
        exports,
        onnxruntime: c.onnxruntime,
        total_seconds: seconds,
    };
    report.write(dir)?;
    let line = format!(
        "{} dev {metric:.4} (input {:.4}) at {:.3} of the {} budget, {:.3} of the head and FFN FLOPs ({:.3} of all at T={REPORT_SEQ}); heads {:?}, FFN {:?}; pruned in {:.1}s; measured speed-up {:.2}x at B=32, {:.2}x at B=1",
        args.source.task,
        teacher.metric,
        summary.budget_ratio,
        summary.budget,
        summary.flops_ratio,
        summary.flops_ratio_t128,
        summary.heads,
        summary.intermediate,
        summary.seconds,
        report.final_model.speedup_b32,
        report.final_model.speedup_b1,
    );
    Ok((summary, line + "\n"))
}
