//! The pipeline report: per stage the metric, parameters, FLOPs, per-layer widths, measured
//! latency and wall time; written as `report.json`, `report.md` and an SVG figure (per-layer
//! kept heads and FFN width, and metric against parameters across stages).

use crate::exports::Exports;
use crate::latency::Latency;
use anyhow::{Context, Result};
use prune::speedup::ModelStats;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// One model as the report describes it.
#[derive(Clone, Debug, Serialize)]
pub struct ModelSummary {
    /// The task's main metric, in [0, 1].
    pub metric: f64,
    /// Every parameter.
    pub params_total: usize,
    /// Parameters of the encoder layers.
    pub params_encoder: usize,
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
            flops_per_token: stats.flops_per_sequence as f64 / 128.0,
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
    /// Training examples per second during the stage.
    pub examples_per_second: f64,
    /// Wall time of the stage, seconds.
    pub seconds: f64,
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
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
        };
        write("report.json", serde_json::to_string_pretty(self)?)?;
        write("report.md", self.markdown())?;
        write("report.svg", self.svg())
    }

    /// The report as a markdown page.
    pub fn markdown(&self) -> String {
        let (t, f) = (&self.teacher, &self.final_model.model);
        let mut md = String::from("# Pruning report\n\n| | teacher | final |\n|---|---:|---:|\n");
        let ort = |m: &ModelSummary, i: usize| {
            m.ort_latency_ms
                .map_or("n/a".to_string(), |l| format!("{:.1}", l[i]))
        };
        let rows: [(&str, String, String); 9] = [
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
                "encoder parameters",
                t.params_encoder.to_string(),
                f.params_encoder.to_string(),
            ),
            (
                "MFLOP per token (T=128)",
                format!("{:.2}", t.flops_per_token / 1e6),
                format!("{:.2}", f.flops_per_token / 1e6),
            ),
            (
                "latency B=1, T=128 (ms)",
                format!("{:.1}", t.latency_ms_b1),
                format!("{:.1}", f.latency_ms_b1),
            ),
            (
                "latency B=32, T=128 (ms)",
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
        let removed = 1.0 - f.params_encoder as f64 / t.params_encoder.max(1) as f64;
        let _ = writeln!(
            md,
            "\nEncoder parameters removed: {:.1}%. Measured speed-up: {:.2}x at B=32, {:.2}x at B=1 \
             (same process). Total wall time: {:.0} s.\n\n## Stages\n\n| stage | metric | encoder params | heads | FFN | ex/s | seconds |\n|---|---:|---:|---|---|---:|---:|",
            100.0 * removed,
            self.final_model.speedup_b32,
            self.final_model.speedup_b1,
            self.total_seconds
        );
        for s in &self.stages {
            let _ = writeln!(
                md,
                "| {} | {:.4} | {} | {:?} | {:?} | {:.1} | {:.0} |",
                s.name,
                s.metric,
                s.params_encoder,
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
            prune::export::OPSET,
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

    /// Two panels: per-layer kept heads and FFN width (fractions of the teacher's) as bars,
    /// and the dev metric against encoder parameters, one point per stage.
    pub fn svg(&self) -> String {
        let (w, h) = (760.0, 300.0);
        let mut s = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
        );
        s.push_str(r#"<rect width="100%" height="100%" fill="white"/>"#);
        // Panel 1: bars.
        let (x0, y0, pw, ph) = (40.0, 30.0, 320.0, 220.0);
        let _ = write!(
            s,
            r#"<text x="{x0}" y="18">kept per layer (fraction of teacher)</text>"#
        );
        let (t, f) = (&self.teacher, &self.final_model.model);
        let layers = t.heads.len().max(1);
        let slot = pw / layers as f64;
        for l in 0..layers {
            let frac = |a: &[usize], b: &[usize]| {
                b.get(l).map_or(0.0, |&x| {
                    x as f64 / a.get(l).copied().unwrap_or(1).max(1) as f64
                })
            };
            for (k, (v, colour)) in [
                (frac(&t.heads, &f.heads), "#4477aa"),
                (frac(&t.intermediate, &f.intermediate), "#ee6677"),
            ]
            .into_iter()
            .enumerate()
            {
                let bh = ph * v;
                let x = x0 + l as f64 * slot + 4.0 + k as f64 * (slot - 8.0) / 2.0;
                let _ = write!(
                    s,
                    r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="{colour}"/>"#,
                    y0 + ph - bh,
                    (slot - 8.0) / 2.0
                );
            }
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}">L{l}</text>"#,
                x0 + l as f64 * slot + slot / 2.0 - 6.0,
                y0 + ph + 14.0
            );
        }
        let _ = write!(
            s,
            r##"<line x1="{x0}" y1="{}" x2="{}" y2="{}" stroke="black"/>"##,
            y0 + ph,
            x0 + pw,
            y0 + ph
        );
        let _ = write!(
            s,
            r##"<rect x="{x0}" y="{}" width="10" height="10" fill="#4477aa"/><text x="{}" y="{}">heads</text>"##,
            h - 22.0,
            x0 + 14.0,
            h - 13.0
        );
        let _ = write!(
            s,
            r##"<rect x="{}" y="{}" width="10" height="10" fill="#ee6677"/><text x="{}" y="{}">FFN width</text>"##,
            x0 + 70.0,
            h - 22.0,
            x0 + 84.0,
            h - 13.0
        );
        // Panel 2: metric vs encoder parameters.
        let (x1, px) = (430.0, 300.0);
        let _ = write!(
            s,
            r#"<text x="{x1}" y="18">dev metric vs encoder parameters (M)</text>"#
        );
        let max_p = self
            .stages
            .iter()
            .map(|s| s.params_encoder)
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let (lo, hi) = self.stages.iter().fold((1.0f64, 0.0f64), |(a, b), s| {
            (a.min(s.metric), b.max(s.metric))
        });
        let (lo, hi) = (lo - 0.02, hi + 0.02);
        let mut points = Vec::new();
        for st in &self.stages {
            let x = x1 + px * st.params_encoder as f64 / max_p;
            let y = y0 + ph * (1.0 - (st.metric - lo) / (hi - lo).max(1e-9));
            points.push(format!("{x:.1},{y:.1}"));
            let _ = write!(
                s,
                r##"<circle cx="{x:.1}" cy="{y:.1}" r="4" fill="#228833"/><text x="{:.1}" y="{:.1}">{} {:.3}</text>"##,
                x - 30.0,
                y - 8.0,
                st.name,
                st.metric
            );
        }
        let _ = write!(
            s,
            r##"<polyline points="{}" fill="none" stroke="#228833"/>"##,
            points.join(" ")
        );
        let _ = write!(
            s,
            r##"<line x1="{x1}" y1="{}" x2="{}" y2="{}" stroke="black"/>"##,
            y0 + ph,
            x1 + px,
            y0 + ph
        );
        let _ = write!(
            s,
            r#"<text x="{x1}" y="{}">0</text><text x="{}" y="{}">{:.2}</text>"#,
            y0 + ph + 14.0,
            x1 + px - 20.0,
            y0 + ph + 14.0,
            max_p / 1e6
        );
        s.push_str("</svg>\n");
        s
    }
}
