//! Inference latency of a model at a given batch size and sequence length: the median of
//! repeated forward passes on random token ids (after one warm-up pass).

use anyhow::Result;
use prune::tensor::Backend;
use prune::tensor::rng::Rng;
use prune::transformer::{Batch, BertForSequenceClassification};
use serde::Serialize;
use std::time::{Duration, Instant};

/// One latency measurement.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Latency {
    /// Batch size B.
    pub batch: usize,
    /// Sequence length T.
    pub seq: usize,
    /// Median wall time of one forward pass, milliseconds.
    pub median_ms: f64,
    /// Forward passes timed.
    pub runs: usize,
    /// Examples per second at the median.
    pub examples_per_second: f64,
}

/// Times `model`'s inference forward on a `[batch, seq]` batch of random ids (no padding),
/// repeating until `budget` has passed (at least 3 and at most 50 runs).
pub fn measure<B: Backend>(
    model: &BertForSequenceClassification<B>,
    batch: usize,
    seq: usize,
    budget: Duration,
) -> Result<Latency> {
    let vocab = model.bert.config.vocab_size;
    let lo = if vocab > 2000 { 1000 } else { 1 }; // skip special and unused ids
    let mut rng = Rng::new(0);
    let ids = (0..batch * seq)
        .map(|_| (lo + rng.below(vocab - lo)) as u32)
        .collect();
    let input = Batch::new(batch, seq, ids, vec![0; batch * seq], vec![1; batch * seq])?;
    model.logits(&input)?;
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < 3 || (start.elapsed() < budget && times.len() < 50) {
        let t = Instant::now();
        model.logits(&input)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let median_ms = times[times.len() / 2];
    Ok(Latency {
        batch,
        seq,
        median_ms,
        runs: times.len(),
        examples_per_second: batch as f64 * 1e3 / median_ms,
    })
}
