//! The input and the output model of a run side by side, as its report shows them: their
//! metrics and statistics, prune's own latency (both models timed alternately, B = 1 and
//! 32, T = 128) and ONNX Runtime's on their exports.

use crate::error::{PipelineError, Result};
use crate::latency::{self, Latency, Work};
use crate::ort;
use crate::report::{FinalSummary, ModelSummary, REPORT_SEQ};
use prune_speedup::ModelStats;
use prune_tensor::Backend;
use prune_transformer::{BertConfig, BertForSequenceClassification};
use std::path::Path;
use std::time::Duration;

/// A model with its dev metric and its statistics at T = 128.
pub struct Measured<B: Backend> {
    /// The model.
    pub model: BertForSequenceClassification<B>,
    /// Its dev metric.
    pub metric: f64,
    /// Its statistics at T = 128.
    pub stats: ModelStats,
}

impl<B: Backend> Measured<B> {
    /// `model` with its `metric`; the statistics are counted here.
    pub fn new(model: BertForSequenceClassification<B>, metric: f64) -> Self {
        let b = &model.bert;
        let stats = ModelStats::of(
            &b.config,
            b.params.pooler.is_some(),
            b.params.classifier.is_some(),
            REPORT_SEQ,
        );
        Measured {
            model,
            metric,
            stats,
        }
    }
}

/// The two models' summaries and the ONNX Runtime used (or why it was not).
pub struct Comparison {
    /// The input model (the teacher).
    pub teacher: ModelSummary,
    /// The output model and its speed-ups.
    pub final_model: FinalSummary,
    /// ONNX Runtime's version, or why its latency is missing.
    pub onnxruntime: String,
}

/// Checks, before any work, that a model of `config` covers the [`REPORT_SEQ`] tokens every
/// latency of the report is timed at.
pub fn check_report_length(config: &BertConfig) -> Result<()> {
    let (table, covered) = (config.max_position_embeddings, config.max_tokens());
    if covered < REPORT_SEQ {
        return Err(PipelineError::Input(format!(
            "the report times models at {REPORT_SEQ} tokens, but this model's {table} \
             positions cover only {covered}"
        )));
    }
    Ok(())
}

/// Compares `teacher` and `final_model`, whose ONNX exports are `onnx`; every latency
/// figure is timed for about `seconds`.
pub fn compare<B: Backend>(
    teacher: &Measured<B>,
    final_model: &Measured<B>,
    onnx: [&Path; 2],
    seconds: f64,
) -> Result<Comparison> {
    let budget = Duration::from_secs_f64(seconds);
    // Both models are timed alternately, so that load hits both alike.
    let lat = |b: usize| -> Result<(Latency, Latency)> {
        let models = [&teacher.model, &final_model.model];
        let l = latency::measure_alternating(&models, b, REPORT_SEQ, budget, Work::Inference)?;
        let [t, f] = l[..] else {
            unreachable!("one latency per model timed")
        };
        Ok((t, f))
    };
    let ((t1, f1), (t32, f32_)) = (lat(1)?, lat(32)?);
    let vocab = teacher.model.bert.config.vocab_size;
    let ort = ort::latency(&onnx, vocab, &[1, 32], REPORT_SEQ, seconds);
    let ort_ms = |i: usize| {
        ort.as_ref()
            .ok()
            .and_then(|o| o.median_ms.get(i))
            .map(|m| [m[0], m[1]])
    };
    let (t, f) = (teacher, final_model);
    Ok(Comparison {
        teacher: ModelSummary::new(&t.stats, t.metric, (&t1, &t32), ort_ms(0)),
        final_model: FinalSummary {
            model: ModelSummary::new(&f.stats, f.metric, (&f1, &f32_), ort_ms(1)),
            speedup_b32: t32.median_ms / f32_.median_ms,
            speedup_b1: t1.median_ms / f1.median_ms,
        },
        onnxruntime: match &ort {
            Ok(o) => format!("onnxruntime {} (CPU, 2 threads)", o.version),
            Err(why) => format!("latency not measured: {why}"),
        },
    })
}
