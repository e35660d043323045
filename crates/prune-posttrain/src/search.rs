//! The mask search under a budget (Kwon et al. 2022, §4.2 and its latency variant).
//!
//! A sub-layer's cost is a [`CostModel`] of its unit count: a fixed `base` for up to `free`
//! units, then `slope` per unit. FLOPs are the linear case (no free units): counted in
//! multiply-accumulates at a sequence length `s` (the task's mean), a head costs
//! `4·s·C·D + 2·s²·D` (its Q, K, V and output projections and its two attention products)
//! and an FFN neuron `2·s·C` ([`Costs::flops`]). Latency, measured per unit count, is fitted
//! with free units ([`crate::latency`]): every layer then keeps its `free` most important
//! units, and the rest of the budget goes to the others. The budget is a fraction of the
//! encoder's attention and FFN cost (embeddings, LayerNorms, pooler and classifier are not
//! counted). The other units are ranked globally by Fisher information; for every head
//! count the neurons the rest of the budget allows are taken, and the pair with the largest
//! summed importance wins.

use prune_transformer::BertConfig;
use serde::Serialize;

/// The cost of one sub-layer as a function of its unit count `n`: 0 for `n = 0`, else
/// `base + slope · max(0, n − free)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CostModel {
    /// Units covered by `base`.
    pub free: usize,
    /// Cost of a sub-layer with 1 to `free` units.
    pub base: f64,
    /// Cost of each unit beyond `free`.
    pub slope: f64,
}

impl CostModel {
    /// `per_unit` for each unit, nothing fixed.
    pub fn linear(per_unit: f64) -> Self {
        CostModel {
            free: 0,
            base: 0.0,
            slope: per_unit,
        }
    }

    /// The cost of a sub-layer with `n` units.
    pub fn of(&self, n: usize) -> f64 {
        if n == 0 {
            0.0
        } else {
            self.base + self.slope * n.saturating_sub(self.free) as f64
        }
    }
}

/// The cost models of an attention sub-layer (per head) and an FFN sub-layer (per neuron).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Costs {
    /// Attention, by head count.
    pub head: CostModel,
    /// FFN, by neuron count.
    pub neuron: CostModel,
}

impl Costs {
    /// Multiply-accumulates in `config`'s model at mean sequence length `seq`.
    pub fn flops(config: &BertConfig, seq: f64) -> Self {
        let (c, d) = (config.hidden() as f64, config.head_dim() as f64);
        Costs {
            head: CostModel::linear(4.0 * seq * c * d + 2.0 * seq * seq * d),
            neuron: CostModel::linear(2.0 * seq * c),
        }
    }

    /// The cost of layers with `heads` and `neurons` units each.
    pub fn of_layers(&self, heads: &[usize], neurons: &[usize]) -> f64 {
        let h: f64 = heads.iter().map(|&n| self.head.of(n)).sum();
        h + neurons.iter().map(|&n| self.neuron.of(n)).sum::<f64>()
    }

    /// The cost of the smallest selection these models allow on layers with `heads` and
    /// `neurons` units: every layer keeps its `free` units (or all it has); nothing when no
    /// unit is free.
    pub fn least(&self, heads: &[usize], neurons: &[usize]) -> f64 {
        let kept = |m: &CostModel, units: &[usize]| -> f64 {
            units.iter().map(|&n| m.of(n.min(m.free))).sum()
        };
        kept(&self.head, heads) + kept(&self.neuron, neurons)
    }

    /// The cost of `selection`.
    pub fn of_selection(&self, selection: &Selection) -> f64 {
        let count = |units: &[Vec<usize>]| units.iter().map(Vec::len).collect::<Vec<_>>();
        self.of_layers(&count(&selection.heads), &count(&selection.neurons))
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

/// One kind of unit split for the search: each layer's `free` most important units (kept
/// whatever the budget) and the others as `(importance, layer, unit)`, most important
/// first (ties: lower layer and unit first, so the order is deterministic).
struct Split {
    forced: Vec<Vec<usize>>,
    ranked: Vec<(f64, usize, usize)>,
}

impl Split {
    fn new(fisher: &[Vec<f64>], free: usize) -> Self {
        let order = |all: &mut Vec<(f64, usize, usize)>| {
            all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        };
        let mut forced = Vec::with_capacity(fisher.len());
        let mut ranked = Vec::new();
        for (l, f) in fisher.iter().enumerate() {
            let mut units: Vec<(f64, usize, usize)> =
                f.iter().enumerate().map(|(u, &v)| (v, l, u)).collect();
            order(&mut units);
            let rest = units.split_off(free.min(units.len()));
            forced.push(units.iter().map(|&(_, _, u)| u).collect());
            ranked.extend(rest);
        }
        order(&mut ranked);
        Split { forced, ranked }
    }

    /// Prefix sums of the ranked importances (`sums[k]`: the best `k`).
    fn prefix(&self) -> Vec<f64> {
        let mut sums = vec![0.0];
        for (v, _, _) in &self.ranked {
            sums.push(sums.last().copied().unwrap_or(0.0) + v);
        }
        sums
    }

    /// The forced units and the best `k` ranked ones, per layer, ascending.
    fn take(&self, k: usize) -> Vec<Vec<usize>> {
        let mut kept = self.forced.clone();
        for &(_, l, u) in &self.ranked[..k] {
            kept[l].push(u);
        }
        kept.iter_mut().for_each(|k| k.sort_unstable());
        kept
    }
}

/// The heads and neurons of largest summed Fisher information whose cost fits `budget`
/// (the forced units of a latency model are kept even beyond it).
pub fn search(
    head_fisher: &[Vec<f64>],
    neuron_fisher: &[Vec<f64>],
    costs: Costs,
    budget: f64,
) -> Selection {
    let heads = Split::new(head_fisher, costs.head.free);
    let neurons = Split::new(neuron_fisher, costs.neuron.free);
    let (hs, ns) = (heads.prefix(), neurons.prefix());
    let counts = |fisher: &[Vec<f64>]| fisher.iter().map(Vec::len).collect::<Vec<_>>();
    let rest = budget - costs.least(&counts(head_fisher), &counts(neuron_fisher));
    // Beyond the forced units, each unit costs its slope (the bases are paid by then).
    let mut best: Option<(f64, usize, usize)> = None;
    for (h, head_score) in hs.iter().enumerate() {
        let left = rest - h as f64 * costs.head.slope;
        if left < 0.0 {
            break;
        }
        let n = if costs.neuron.slope > 0.0 {
            ((left / costs.neuron.slope).floor() as usize).min(neurons.ranked.len())
        } else {
            neurons.ranked.len()
        };
        let score = head_score + ns[n];
        if best.is_none_or(|(s, _, _)| score > s) {
            best = Some((score, h, n));
        }
    }
    let (_, h, n) = best.unwrap_or((0.0, 0, 0));
    Selection {
        heads: heads.take(h),
        neurons: neurons.take(n),
    }
}
