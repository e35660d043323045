//! `Evaluator`: runs a model in inference mode over a labelled split and computes the task
//! metrics (NNI's evaluator contract: what pruners and the distiller call to score a model).

use crate::error::{Result, TrainError};
use prune_data::{BatchLabels, Encoded, Label, Metric, Outputs, collate};
use prune_tensor::Backend;
use prune_transformer::BertForSequenceClassification;
use serde::Serialize;
use std::time::Instant;

/// The result of one evaluation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evaluation {
    /// Each metric of the task with its value; the first is the main one.
    pub metrics: Vec<(Metric, f64)>,
    /// Mean loss (cross-entropy, or MSE for regression).
    pub loss: f64,
    /// Examples evaluated.
    pub examples: usize,
    /// Wall time of the evaluation, seconds.
    pub seconds: f64,
}

impl Evaluation {
    /// The task's main metric.
    pub fn main(&self) -> f64 {
        self.metrics.first().map_or(f64::NAN, |m| m.1)
    }
}

/// Evaluates models on a fixed, tokenized split.
#[derive(Clone, Debug)]
pub struct Evaluator {
    examples: Vec<Encoded>,
    metrics: Vec<Metric>,
    /// Batches of example indices, sorted by length so padding is small.
    batches: Vec<Vec<usize>>,
    pad_id: u32,
}

impl Evaluator {
    /// An evaluator of `examples` with the given metrics (the first is the main one).
    pub fn new(
        examples: Vec<Encoded>,
        metrics: &[Metric],
        batch_size: usize,
        pad_id: u32,
    ) -> Result<Self> {
        if examples.is_empty() || metrics.is_empty() || batch_size == 0 {
            return Err(TrainError::Config(
                "an evaluator needs examples, at least one metric and a batch size >= 1".into(),
            ));
        }
        let mut order: Vec<usize> = (0..examples.len()).collect();
        order.sort_by_key(|&i| examples[i].ids.len());
        let batches = order.chunks(batch_size).map(<[usize]>::to_vec).collect();
        Ok(Evaluator {
            examples,
            metrics: metrics.to_vec(),
            batches,
            pad_id,
        })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// Whether there are no examples (never, by construction).
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// Runs `model` (inference mode: no dropout) on every example and computes the metrics.
    pub fn evaluate<B: Backend>(
        &self,
        model: &BertForSequenceClassification<B>,
    ) -> Result<Evaluation> {
        let start = Instant::now();
        let b = model.bert.backend();
        let n = self.examples.len();
        let (mut pred_class, mut pred_score) = (vec![0usize; n], vec![0f64; n]);
        let mut loss_sum = 0.0;
        for idx in &self.batches {
            let members: Vec<&Encoded> = idx.iter().map(|&i| &self.examples[i]).collect();
            let batch = collate(&members, self.pad_id)?;
            let logits = model.logits(&batch.inputs)?;
            let loss = match &batch.labels {
                BatchLabels::Classes(l) => b.cross_entropy_fwd(&logits, l, -100)?.0,
                BatchLabels::Scores(s) => {
                    let target = prune_tensor::Tensor::new([s.len(), 1], s.clone())?;
                    b.mse_fwd(&logits, &b.upload(&target)?)?
                }
            };
            loss_sum += loss * idx.len() as f64;
            let host = b.download(&logits)?;
            let k = host.shape().last();
            for (row, &i) in host.data().chunks_exact(k).zip(idx) {
                pred_score[i] = f64::from(row[0]);
                pred_class[i] = (0..k).fold(0, |best, j| if row[j] > row[best] { j } else { best });
            }
        }
        let outputs = match self.examples[0].label {
            Label::Class(_) => {
                let gold: Vec<usize> = self.examples.iter().map(|e| class_of(e.label)).collect();
                OutputsOwned::Classes(pred_class, gold)
            }
            Label::Score(_) => {
                let gold: Vec<f64> = self.examples.iter().map(|e| score_of(e.label)).collect();
                OutputsOwned::Scores(pred_score, gold)
            }
        };
        let metrics = self
            .metrics
            .iter()
            .map(|&m| {
                m.compute(outputs.view()).map(|v| (m, v)).ok_or_else(|| {
                    TrainError::Config(format!("metric {m} does not apply to this task's labels"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Evaluation {
            metrics,
            loss: loss_sum / n as f64,
            examples: n,
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}

/// Predictions and gold labels, owned.
enum OutputsOwned {
    Classes(Vec<usize>, Vec<usize>),
    Scores(Vec<f64>, Vec<f64>),
}

impl OutputsOwned {
    fn view(&self) -> Outputs<'_> {
        match self {
            OutputsOwned::Classes(p, g) => Outputs::Classes { pred: p, gold: g },
            OutputsOwned::Scores(p, g) => Outputs::Scores { pred: p, gold: g },
        }
    }
}

fn class_of(l: Label) -> usize {
    match l {
        Label::Class(c) => c,
        Label::Score(s) => s as usize,
    }
}

fn score_of(l: Label) -> f64 {
    match l {
        Label::Class(c) => c as f64,
        Label::Score(s) => f64::from(s),
    }
}
