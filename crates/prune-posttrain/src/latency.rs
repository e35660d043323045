//! Latency as a cost (the latency variant of Kwon et al. 2022, §4.2): the wall time of an
//! attention sub-layer with `h` heads and of an FFN sub-layer with `n` neurons, measured on
//! this machine and backend at a batch shape ([`LatencyTable::measure`]), then fitted with
//! a [`CostModel`] that is constant up to a threshold and linear beyond
//! ([`fit`]): small sub-layers cost a fixed overhead whatever their width.

use crate::error::{PostTrainError, Result};
use crate::search::{CostModel, Costs};
use prune_tensor::rng::Rng;
use prune_tensor::{Backend, Tensor};
use prune_transformer::layers::encoder::LayerCtx;
use prune_transformer::layers::norm::NormSpec;
use prune_transformer::{BertConfig, BertModel};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

/// Median milliseconds of the sub-layers by unit count, at one batch shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyTable {
    /// Batch size B.
    pub batch: usize,
    /// Sequence length T.
    pub seq: usize,
    /// `(heads, ms)` of the attention sub-layer.
    pub heads: Vec<(usize, f64)>,
    /// `(neurons, ms)` of the FFN sub-layer.
    pub neurons: Vec<(usize, f64)>,
    /// Wall seconds the timing took.
    pub seconds: f64,
}

/// What to time: the batch shape, the neuron counts sampled and the runs per count.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LatencyConfig {
    /// Batch size B.
    pub batch: usize,
    /// Sequence length T.
    pub seq: usize,
    /// FFN widths timed: this many, evenly spaced up to the widest layer.
    pub neuron_points: usize,
    /// Timed runs per count (after one warm-up); the median is kept.
    pub runs: usize,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        LatencyConfig {
            batch: 32,
            seq: 128,
            neuron_points: 16,
            runs: 5,
        }
    }
}

impl LatencyConfig {
    /// Checks the settings.
    pub fn check(&self) -> Result<()> {
        let ok = |v: usize, max: usize| (1..=max).contains(&v);
        let fine = ok(self.batch, 4096)
            && ok(self.seq, 1 << 16)
            && ok(self.neuron_points, 1024)
            && ok(self.runs, 1000);
        if !fine {
            return Err(PostTrainError::Input(format!(
                "latency timing needs a batch in 1..=4096, a length in 1..=65536, 1 to 1024 \
                 FFN widths and 1 to 1000 runs, got {self:?}"
            )));
        }
        Ok(())
    }
}

/// A one-layer model shaped like `config`'s layers with `heads` heads and `neurons` FFN
/// neurons (random weights, a token vocabulary of one: only the layer is run).
fn one_layer<B: Backend>(
    backend: &B,
    config: &BertConfig,
    heads: usize,
    neurons: usize,
) -> Result<BertModel<B>> {
    let mut c = config.clone();
    c.num_hidden_layers = 1;
    c.num_attention_heads = heads;
    c.pruned_heads.clear();
    c.layer_heads = vec![heads];
    c.intermediate_size = neurons;
    c.layer_intermediate = vec![neurons];
    c.vocab_size = 1;
    c.pad_token_id = 0;
    c.num_labels = None;
    c.id2label = None;
    Ok(BertModel::random(backend.clone(), c, false, false, 0)?)
}

/// Median milliseconds of `runs` calls of `f` after one warm-up call.
fn median_ms(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let clock = Instant::now();
        f()?;
        times.push(clock.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

impl LatencyTable {
    /// Times sub-layers shaped like `config`'s on `backend`: every head count up to the
    /// most heads of a layer, and `neuron_points` FFN widths up to the widest layer.
    pub fn measure<B: Backend>(
        backend: &B,
        config: &BertConfig,
        settings: &LatencyConfig,
    ) -> Result<Self> {
        settings.check()?;
        let started = Instant::now();
        let (batch, seq) = (settings.batch, settings.seq);
        let max_heads = config.layer_heads.iter().copied().max().unwrap_or(0);
        let max_neurons = config.layer_intermediate.iter().copied().max().unwrap_or(0);
        let points = settings.neuron_points.min(max_neurons);
        let mut rng = Rng::new(0);
        let width = config.hidden();
        let x = Tensor::from_fn([batch * seq, width], |_| rng.normal() as f32);
        let x = backend.upload(&x)?;
        let mask = backend.upload(&Tensor::zeros([batch, seq]))?;
        let ctx = LayerCtx {
            batch,
            seq,
            head_dim: config.head_dim(),
            norm: NormSpec {
                eps: config.layer_norm_eps,
                keep: None,
            },
            attn_mask: &mask,
            head_mask: None,
            activation: config.activation,
            hidden_dropout: 0.0,
            attention_dropout: 0.0,
            seed: 0,
            masks: None,
        };
        // One sub-layer of a one-layer model with `heads` heads and `neurons` neurons, timed;
        // its output is downloaded so that the clock also covers an asynchronous backend.
        let time = |heads: usize, neurons: usize, attention: bool| -> Result<f64> {
            let model = one_layer(backend, config, heads, neurons)?;
            let layer = &model.params.layers[0];
            median_ms(settings.runs, || {
                let y = match attention {
                    true => layer.attention_sublayer(backend, &x, &ctx, None)?,
                    false => layer.ffn_sublayer(backend, &x, &ctx)?,
                };
                backend.download(&y)?;
                Ok(())
            })
        };
        let heads = (1..=max_heads)
            .map(|h| Ok((h, time(h, max_neurons.max(1), true)?)))
            .collect::<Result<Vec<_>>>()?;
        let neurons = (1..=points)
            .map(|i| {
                let n = (max_neurons * i).div_ceil(points);
                Ok((n, time(max_heads.max(1), n, false)?))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(LatencyTable {
            batch,
            seq,
            heads,
            neurons,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Checks a table read from elsewhere against `config`'s model: at least one point of
    /// each kind, unit counts from 1 to the model's largest layer, times finite and ≥ 0.
    pub fn check(&self, config: &BertConfig) -> Result<()> {
        let max_heads = config.layer_heads.iter().copied().max().unwrap_or(0);
        let max_neurons = config.layer_intermediate.iter().copied().max().unwrap_or(0);
        let kinds = [
            ("heads", &self.heads, max_heads),
            ("neurons", &self.neurons, max_neurons),
        ];
        for (kind, points, max) in kinds {
            if points.is_empty() {
                return Err(PostTrainError::Input(format!(
                    "the latency table has no `{kind}` timings"
                )));
            }
            for &(n, ms) in points {
                if !((1..=max).contains(&n) && ms.is_finite() && ms >= 0.0) {
                    return Err(PostTrainError::Input(format!(
                        "the latency table's `{kind}` entry ({n}, {ms}) needs a count in \
                         1..={max} (this model's largest layer) and a time in ms ≥ 0"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The fitted cost models (milliseconds).
    pub fn costs(&self) -> Costs {
        Costs {
            head: fit(&self.heads),
            neuron: fit(&self.neurons),
        }
    }
}

/// The [`CostModel`] closest (least squares) to `(count, ms)` points: for every count `t`
/// among them as the threshold, `base` is the mean time of the points up to `t` and
/// `slope` the least-squares slope (at least 0) of the others' excess over `base` against
/// their count beyond `t`; the threshold with the smallest squared error wins. Points
/// with a non-finite time are ignored; none at all gives a zero cost.
pub fn fit(points: &[(usize, f64)]) -> CostModel {
    let mut by_count: BTreeMap<usize, f64> = BTreeMap::new();
    for &(n, ms) in points.iter().filter(|p| p.0 > 0 && p.1.is_finite()) {
        by_count.insert(n, ms);
    }
    let pts: Vec<(usize, f64)> = by_count.into_iter().collect();
    let mut best: Option<(f64, CostModel)> = None;
    for &(t, _) in &pts {
        let (low, high): (Vec<&(usize, f64)>, Vec<_>) = pts.iter().partition(|p| p.0 <= t);
        let base = low.iter().map(|p| p.1).sum::<f64>() / low.len() as f64;
        let beyond = |p: &(usize, f64)| (p.0 - t) as f64;
        let sxx: f64 = high.iter().map(|p| beyond(p) * beyond(p)).sum();
        let sxy: f64 = high.iter().map(|p| beyond(p) * (p.1 - base)).sum();
        let slope = if sxx > 0.0 { (sxy / sxx).max(0.0) } else { 0.0 };
        let model = CostModel {
            free: t,
            base,
            slope,
        };
        let error: f64 = pts.iter().map(|p| (model.of(p.0) - p.1).powi(2)).sum();
        if best.is_none_or(|(e, _)| error < e) {
            best = Some((error, model));
        }
    }
    best.map_or(CostModel::linear(0.0), |(_, m)| m)
}
