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
    let mut l = measure_alternating(&[model], batch, seq, budget)?;
    Ok(l.remove(0))
}

/// Like [`measure`] for several models, timed in turn (a, b, a, b, …) on the same input, so
/// that load from other processes on a shared machine affects each of them alike and their
/// latency ratio stays meaningful.
pub fn measure_alternating<B: Backend>(
    models: &[&BertForSequenceClassification<B>],
    batch: usize,
    seq: usize,
    budget: Duration,
) -> Result<Vec<Latency>> {
    let vocab = models
        .iter()
        .map(|m| m.bert.config.vocab_size)
        .min()
        .unwrap_or(0);
    let lo = if vocab > 2000 { 1000 } else { 1 }; // skip special and unused ids
    let mut rng = Rng::new(0);
    let ids = (0..batch * seq)
        .map(|_| (lo + rng.below(vocab.saturating_sub(lo).max(1))) as u32)
        .collect();
    let input = Batch::new(batch, seq, ids, vec![0; batch * seq], vec![1; batch * seq])?;
    // The logits are downloaded, so that the clock also covers a backend that runs
    // asynchronously (the GPU).
    let run = |m: &BertForSequenceClassification<B>| -> Result<()> {
        m.bert.backend().download(&m.logits(&input)?)?;
        Ok(())
    };
    for m in models {
        run(m)?;
    }
    let start = Instant::now();
    let mut times = vec![Vec::new(); models.len()];
    while times[0].len() < 3 || (start.elapsed() < budget && times[0].len() < 50) {
        for (m, t) in models.iter().zip(&mut times) {
            let clock = Instant::now();
            run(m)?;
            t.push(clock.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            let median_ms = t[t.len() / 2];
            Latency {
                batch,
                seq,
                median_ms,
                runs: t.len(),
                examples_per_second: batch as f64 * 1e3 / median_ms,
            }
        })
        .collect())
}
