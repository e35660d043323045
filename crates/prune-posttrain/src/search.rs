//! The mask search under a FLOPs budget (Kwon et al. 2022, §4.2). Costs are counted in
//! multiply-accumulates at a sequence length `s` (the task's mean): a head costs
//! `4·s·C·D + 2·s²·D` (its Q, K, V and output projections and its two attention products)
//! and an FFN neuron `2·s·C`; the budget is a fraction of the encoder's heads and neurons
//! (embeddings, LayerNorms, pooler and classifier are not counted). Heads and neurons are
//! ranked globally by Fisher information; for every head count the neurons the rest of the
//! budget allows are taken, and the pair with the largest summed importance wins.

use prune_transformer::BertConfig;
use serde::Serialize;

/// Multiply-accumulates of one head and one FFN neuron at a sequence length.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct UnitCosts {
    /// One head.
    pub head: f64,
    /// One FFN neuron.
    pub neuron: f64,
}

impl UnitCosts {
    /// The costs in `config`'s model at mean sequence length `seq`.
    pub fn of(config: &BertConfig, seq: f64) -> Self {
        let (c, d) = (config.hidden() as f64, config.head_dim() as f64);
        UnitCosts {
            head: 4.0 * seq * c * d + 2.0 * seq * seq * d,
            neuron: 2.0 * seq * c,
        }
    }

    /// The cost of `heads` heads and `neurons` neurons.
    pub fn of_units(&self, heads: usize, neurons: usize) -> f64 {
        heads as f64 * self.head + neurons as f64 * self.neuron
    }
}

/// The units kept in every layer, ascending.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Selection {
    /// Kept heads per layer.
    pub heads: Vec<Vec<usize>>,
    /// Kept FFN neurons per layer.
    pub neurons: Vec<Vec<usize>>,
}

impl Selection {
    /// Kept heads in all layers.
    pub fn head_count(&self) -> usize {
        self.heads.iter().map(Vec::len).sum()
    }

    /// Kept neurons in all layers.
    pub fn neuron_count(&self) -> usize {
        self.neurons.iter().map(Vec::len).sum()
    }
}

/// `(importance, layer, unit)` of every unit, most important first (ties: lower layer and
/// unit first, so the order is deterministic).
fn ranked(fisher: &[Vec<f64>]) -> Vec<(f64, usize, usize)> {
    let mut all: Vec<(f64, usize, usize)> = fisher
        .iter()
        .enumerate()
        .flat_map(|(l, f)| f.iter().enumerate().map(move |(u, &v)| (v, l, u)))
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    all
}

/// Prefix sums of the ranked importances (`sums[k]`: the best `k`).
fn prefix(ranked: &[(f64, usize, usize)]) -> Vec<f64> {
    let mut sums = vec![0.0];
    for (v, _, _) in ranked {
        sums.push(sums.last().copied().unwrap_or(0.0) + v);
    }
    sums
}

/// The best `k` of `ranked`, per layer of `layers`, ascending.
fn take(ranked: &[(f64, usize, usize)], k: usize, layers: usize) -> Vec<Vec<usize>> {
    let mut kept = vec![Vec::new(); layers];
    for &(_, l, u) in &ranked[..k] {
        kept[l].push(u);
    }
    kept.iter_mut().for_each(|k| k.sort_unstable());
    kept
}

/// The heads and neurons of largest summed Fisher information whose cost fits `budget`.
pub fn search(
    head_fisher: &[Vec<f64>],
    neuron_fisher: &[Vec<f64>],
    costs: UnitCosts,
    budget: f64,
) -> Selection {
    let (heads, neurons) = (ranked(head_fisher), ranked(neuron_fisher));
    let (hs, ns) = (prefix(&heads), prefix(&neurons));
    let mut best: Option<(f64, usize, usize)> = None;
    for (h, head_score) in hs.iter().enumerate() {
        let left = budget - costs.of_units(h, 0);
        if left < 0.0 {
            break;
        }
        let n = ((left / costs.neuron).floor() as usize).min(neurons.len());
        let score = head_score + ns[n];
        if best.is_none_or(|(s, _, _)| score > s) {
            best = Some((score, h, n));
        }
    }
    let (_, h, n) = best.unwrap_or((0.0, 0, 0));
    Selection {
        heads: take(&heads, h, head_fisher.len()),
        neurons: take(&neurons, n, neuron_fisher.len()),
    }
}
