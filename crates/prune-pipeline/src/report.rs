//! The pipeline report: per stage the metric, parameters, FLOPs, per-layer widths, measured
//! latency and wall time; written as `report.json`, `report.md` and an SVG figure (per-layer
//! kept heads and FFN width, and metric against parameters across stages).

use crate::error::{PipelineError, Result};
use crate::exports::Exports;
use crate::latency::Latency;
use prune_speedup::ModelStats;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// The sequence length of every figure of a report: FLOPs per token, and prune's and ONNX
/// Runtime's latency.
pub const REPORT_SEQ: usize = 128;

/// One model as the report describes it.
#[derive(Clone, Debug, Serialize)]
pub struct ModelSummary {
    /// The task's main metric, in [0, 1].
    pub metric: f64,
    /// Every parameter.
    pub params_total: usize,
    /// Parameters of the encoder layers.
    pub params_encoder: usize,
    /// Parameters of the embeddings.
    pub params_embeddings: usize,
    /// Matmul FLOPs per token at T = 128.
    pub flops_per_token: f64,
    /// Median latency at B = 1, T = 128, milliseconds.
    pub latency_ms_b1: f64,
    /// Median latency at B = 32, T = 128, milliseconds.
    pub latency_ms_b32: f64,
    /// Median latency of its ONNX export in ONNX Runtime at B = 1 and 32, T = 128,
    /// milliseconds (none when ONNX Runtime was not available).
    pub ort_latency_ms: Option<[f64; 2]>,
    /// Heads kept per layer.
    pub heads: Vec<usize>,
    /// FFN width per layer.
    pub intermediate: Vec<usize>,
    /// Hidden width.
    pub hidden: usize,
}

impl ModelSummary {
    /// A summary from the model's statistics (at T = 128), its metric and two latencies.
    pub fn new(
        stats: &ModelStats,
        metric: f64,
        (b1, b32): (&Latency, &Latency),
        ort_latency_ms: Option<[f64; 2]>,
    ) -> Self {
        ModelSummary {
            metric,
            params_total: stats.parameters,
            params_encoder: stats.encoder_parameters,
            params_embeddings: stats.embedding_parameters,
            flops_per_token: stats.flops_per_sequence as f64 / REPORT_SEQ as f64,
            latency_ms_b1: b1.median_ms,
            latency_ms_b32: b32.median_ms,
            ort_latency_ms,
            heads: stats.heads.clone(),
            intermediate: stats.intermediate.clone(),
            hidden: stats.hidden,
        }
    }
}

/// One pipeline stage as the report describes it.
#[derive(Clone, Debug, Serialize)]
pub struct StageSummary {
    /// Stage name (`finetune`, `heads`, …).
    pub name: String,
    /// Dev metric after the stage.
    pub metric: f64,
    /// Parameters after the stage.
    pub params_total: usize,
    /// Encoder parameters after the stage.
    pub params_encoder: usize,
    /// Heads per layer after the stage.
    pub heads: Vec<usize>,
    /// FFN width per layer after the stage.
    pub intermediate: Vec<usize>,
    /// Hidden width after the stage.
    pub hidden: usize,
    /// Training examples per second during the stage.
    pub examples_per_second: f64,
    /// Wall time of the stage, seconds.
    pub seconds: f64,
}

impl StageSummary {
    /// The stage `name` whose model has `stats` and dev `metric`, trained at
    /// `examples_per_second` for `seconds` of wall time.
    pub fn new(
        name: &str,
        stats: &ModelStats,
        metric: f64,
        examples_per_second: f64,
        seconds: f64,
    ) -> Self {
        StageSummary {
            name: name.to_string(),
            metric,
            params_total: stats.parameters,
            params_encoder: stats.encoder_parameters,
            heads: stats.heads.clone(),
            intermediate: stats.intermediate.clone(),
            hidden: stats.hidden,
            examples_per_second,
            seconds,
        }
    }
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The dense fine-tuned model.
    pub teacher: ModelSummary,
    /// The pruned model, with `speedup_b32` (teacher / final latency at B = 32).
    #[serde(rename = "final")]
    pub final_model: FinalSummary,
    /// Every stage in order.
    pub stages: Vec<StageSummary>,
    /// The recipe used.
    pub recipe: serde_json::Value,
    /// The exports of the teacher and the final model, relative to the run folder.
    pub exports: Exports,
    /// ONNX Runtime's version, or why its latency is missing.
    pub onnxruntime: String,
    /// Wall time of the whole run, seconds.
    pub total_seconds: f64,
}

/// The final model and its speed-up.
#[derive(Clone, Debug, Serialize)]
pub struct FinalSummary {
    /// The model.
    #[serde(flatten)]
    pub model: ModelSummary,
    /// Teacher latency / final latency at B = 32, T = 128 (same process).
    pub speedup_b32: f64,
    /// Teacher latency / final latency at B = 1, T = 128.
    pub speedup_b1: f64,
}

impl Report {
    /// Writes `report.json`, `report.md` and `report.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| PipelineError::io(&path, e))
        };
        write("report.json", serde_json::to_string_pretty(self)?)?;
        write("report.md", self.markdown())?;
        write("report.svg", crate::plots::svg(self)?)
    }

    /// The report as a markdown page.
    pub fn markdown(&self) -> String {
        let (t, f) = (&self.teacher, &self.final_model.model);
        let removed = |a: usize, b: usize| 100.0 * (1.0 - b as f64 / a.max(1) as f64);
        let share =
            |m: &ModelSummary| 100.0 * m.params_embeddings as f64 / m.params_total.max(1) as f64;
        let mut md = format!(
            "# Pruning report\n\n**{:.2}M → {:.2}M parameters (−{:.1}%)**; embeddings {:.1}% of the \
             final model ({:.1}% of the teacher); encoder −{:.1}%; dev metric {:.4} → {:.4}; \
             measured speed-up {:.2}x at B=32, {:.2}x at B=1.\n\n| | teacher | final |\n|---|---:|---:|\n",
            t.params_total as f64 / 1e6,
            f.params_total as f64 / 1e6,
            removed(t.params_total, f.params_total),
            share(f),
            share(t),
            removed(t.params_encoder, f.params_encoder),
            t.metric,
            f.metric,
            self.final_model.speedup_b32,
            self.final_model.speedup_b1,
        );
        let ort = |m: &ModelSummary, i: usize| {
            m.ort_latency_ms
                .map_or("n/a".to_string(), |l| format!("{:.1}", l[i]))
        };
        let rows: [(&str, String, String); 11] = [
            (
                "dev metric",
                format!("{:.4}", t.metric),
                format!("{:.4}", f.metric),
            ),
            (
                "parameters",
                t.params_total.to_string(),
                f.params_total.to_string(),
            ),
            (
                "embedding parameters",
                t.params_embeddings.to_string(),
                f.params_embeddings.to_string(),
            ),
            (
                "encoder parameters",
                t.params_encoder.to_string(),
                f.params_encoder.to_string(),
            ),
            ("hidden width", t.hidden.to_string(), f.hidden.to_string()),
            (
                &format!("MFLOP per token (T={REPORT_SEQ})"),
                format!("{:.2}", t.flops_per_token / 1e6),
                format!("{:.2}", f.flops_per_token / 1e6),
            ),
            (
                &format!("latency B=1, T={REPORT_SEQ} (ms)"),
                format!("{:.1}", t.latency_ms_b1),
                format!("{:.1}", f.latency_ms_b1),
            ),
            (
                &format!("latency B=32, T={REPORT_SEQ} (ms)"),
                format!("{:.1}", t.latency_ms_b32),
                format!("{:.1}", f.latency_ms_b32),
            ),
            ("ONNX Runtime latency B=1 (ms)", ort(t, 0), ort(f, 0)),
            ("ONNX Runtime latency B=32 (ms)", ort(t, 1), ort(f, 1)),
            (
                "heads / FFN per layer",
                format!("{:?} / {:?}", t.heads, t.intermediate),
                format!("{:?} / {:?}", f.heads, f.intermediate),
            ),
        ];
        for (name, a, b) in rows {
            let _ = writeln!(md, "| {name} | {a} | {b} |");
        }
        let _ = writeln!(
            md,
            "\nSpeed-ups are timed in one process, teacher and final model alternately. Total wall \
             time: {:.0} s.\n\n## Stages\n\n| stage | metric | parameters | encoder params | hidden | heads | FFN | ex/s | seconds |\n|---|---:|---:|---:|---:|---|---|---:|---:|",
            self.total_seconds
        );
        for s in &self.stages {
            let _ = writeln!(
                md,
                "| {} | {:.4} | {} | {} | {} | {:?} | {:?} | {:.1} | {:.0} |",
                s.name,
                s.metric,
                s.params_total,
                s.params_encoder,
                s.hidden,
                s.heads,
                s.intermediate,
                s.examples_per_second,
                s.seconds
            );
        }
        let e = &self.exports;
        let _ = write!(
            md,
            "\n## Exports\n\n- ONNX (opset {}): `{}` (teacher), `{}` (final)\n",
            prune_export::OPSET,
            e.teacher_onnx.display(),
            e.final_onnx.display()
        );
        match (&e.final_hf, &e.final_hf_missing) {
            (Some(hf), _) => {
                let _ = writeln!(
                    md,
                    "- transformers checkpoint of the final model: `{}`",
                    hf.display()
                );
            }
            (None, why) => {
                let why = why.as_deref().unwrap_or("unknown");
                let _ = writeln!(md, "- no transformers checkpoint of the final model: {why}");
            }
        }
        let _ = writeln!(md, "- ONNX Runtime: {}", self.onnxruntime);
        md.push_str("\n![per-layer widths and metric vs parameters](report.svg)\n");
        md
    }
}
