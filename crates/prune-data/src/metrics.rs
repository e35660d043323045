//! Task metrics: accuracy, F1, Matthews correlation, Pearson and Spearman correlation.
//!
//! Degenerate inputs get defined values rather than NaN, so model selection never compares
//! against NaN: Matthews is 0 when a marginal is constant (as scikit-learn), Pearson and
//! Spearman are 0 when either side is constant, F1 is 0 when there is no true positive.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A task metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Fraction of correct class predictions.
    Accuracy,
    /// F1 of the positive class (label 1).
    F1,
    /// Matthews correlation coefficient (multi-class form).
    Matthews,
    /// Pearson correlation of scores.
    Pearson,
    /// Spearman rank correlation of scores (average ranks for ties).
    Spearman,
}

/// Model outputs with their gold labels.
#[derive(Clone, Copy, Debug)]
pub enum Outputs<'a> {
    /// Predicted and gold class indices.
    Classes {
        /// Predicted classes.
        pred: &'a [usize],
        /// Gold classes.
        gold: &'a [usize],
    },
    /// Predicted and gold real-valued scores.
    Scores {
        /// Predicted scores.
        pred: &'a [f64],
        /// Gold scores.
        gold: &'a [f64],
    },
}

impl Metric {
    /// The metric's value on `outputs`; `None` when the metric does not apply to that kind
    /// of output (a correlation of classes, an accuracy of scores).
    pub fn compute(self, outputs: Outputs<'_>) -> Option<f64> {
        match (self, outputs) {
            (Metric::Accuracy, Outputs::Classes { pred, gold }) => Some(accuracy(pred, gold)),
            (Metric::F1, Outputs::Classes { pred, gold }) => Some(f1(pred, gold)),
            (Metric::Matthews, Outputs::Classes { pred, gold }) => Some(matthews(pred, gold)),
            (Metric::Pearson, Outputs::Scores { pred, gold }) => Some(pearson(pred, gold)),
            (Metric::Spearman, Outputs::Scores { pred, gold }) => Some(spearman(pred, gold)),
            _ => None,
        }
    }

    /// The metric's short name (`accuracy`, `f1`, `matthews`, `pearson`, `spearman`).
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::F1 => "f1",
            Metric::Matthews => "matthews",
            Metric::Pearson => "pearson",
            Metric::Spearman => "spearman",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Fraction of positions where `pred == gold` (0 for empty input).
pub fn accuracy(pred: &[usize], gold: &[usize]) -> f64 {
    assert_eq!(pred.len(), gold.len(), "accuracy: one prediction per label");
    if gold.is_empty() {
        return 0.0;
    }
    pred.iter().zip(gold).filter(|(p, g)| p == g).count() as f64 / gold.len() as f64
}

/// F1 of class 1: `2·TP / (2·TP + FP + FN)`, 0 when there is no true positive.
pub fn f1(pred: &[usize], gold: &[usize]) -> f64 {
    assert_eq!(pred.len(), gold.len(), "f1: one prediction per label");
    let (mut tp, mut fp, mut fneg) = (0usize, 0usize, 0usize);
    for (&p, &g) in pred.iter().zip(gold) {
        match (p == 1, g == 1) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fneg += 1,
            (false, false) => {}
        }
    }
    if tp == 0 {
        0.0
    } else {
        2.0 * tp as f64 / (2 * tp + fp + fneg) as f64
    }
}

/// Matthews correlation coefficient, multi-class form:
/// `(c·s − Σ p_k t_k) / sqrt((s² − Σ p_k²)(s² − Σ t_k²))` with `c` correct, `s` samples,
/// `p_k`/`t_k` predicted/true counts of class `k`. 0 when the denominator is 0.
pub fn matthews(pred: &[usize], gold: &[usize]) -> f64 {
    assert_eq!(pred.len(), gold.len(), "matthews: one prediction per label");
    let k = pred.iter().chain(gold).copied().max().map_or(0, |m| m + 1);
    let (mut p, mut t) = (vec![0f64; k], vec![0f64; k]);
    let mut correct = 0f64;
    for (&a, &b) in pred.iter().zip(gold) {
        p[a] += 1.0;
        t[b] += 1.0;
        if a == b {
            correct += 1.0;
        }
    }
    let s = gold.len() as f64;
    let pt: f64 = p.iter().zip(&t).map(|(a, b)| a * b).sum();
    let pp: f64 = p.iter().map(|a| a * a).sum();
    let tt: f64 = t.iter().map(|a| a * a).sum();
    let denom = ((s * s - pp) * (s * s - tt)).sqrt();
    if denom == 0.0 {
        0.0
    } else {
        (correct * s - pt) / denom
    }
}

/// Pearson correlation; 0 when either side is constant (or there are fewer than 2 points).
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "pearson: one prediction per label");
    let n = x.len() as f64;
    if x.len() < 2 {
        return 0.0;
    }
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        0.0
    } else {
        sxy / (sxx * syy).sqrt()
    }
}

/// Spearman rank correlation: Pearson of the ranks, ties sharing their average rank.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

/// 1-based ranks with ties given the mean of the ranks they span.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            r[o] = avg;
        }
        i = j + 1;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    #[test]
    fn classification_metrics_by_hand() {
        // TP=2 (0,2), FP=1 (4), FN=1 (1), TN=1 (3).
        let (pred, gold) = ([1, 0, 1, 0, 1], [1, 1, 1, 0, 0]);
        close(accuracy(&pred, &gold), 3.0 / 5.0);
        close(f1(&pred, &gold), 4.0 / 6.0);
        // MCC = (TP·TN − FP·FN)/sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (2−1)/sqrt(3·3·2·2) = 1/6.
        close(matthews(&pred, &gold), 1.0 / 6.0);
        close(matthews(&gold, &gold), 1.0);
        close(matthews(&[0, 1, 0, 1], &[1, 0, 1, 0]), -1.0);
    }

    #[test]
    fn degenerate_classification() {
        // One class only / constant predictions: MCC undefined → 0; no positive → F1 0.
        close(matthews(&[1, 1, 1], &[1, 0, 1]), 0.0);
        close(matthews(&[1, 1], &[1, 1]), 0.0);
        close(f1(&[0, 0], &[0, 0]), 0.0);
        close(accuracy(&[], &[]), 0.0);
        close(accuracy(&[2, 2], &[2, 2]), 1.0);
    }

    #[test]
    fn correlations_by_hand() {
        close(pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]), 1.0);
        close(pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0);
        // x = [1,2,3,4], y = [1,3,2,4]: r = 0.8.
        close(pearson(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]), 0.8);
        // Monotone but non-linear: Spearman 1, Pearson below 1.
        let (x, y) = ([1.0, 2.0, 3.0, 4.0], [1.0, 4.0, 9.0, 100.0]);
        close(spearman(&x, &y), 1.0);
        assert!(pearson(&x, &y) < 0.99);
        // Ties share ranks: [1, 2, 2, 3] → [1, 2.5, 2.5, 4].
        assert_eq!(ranks(&[1.0, 2.0, 2.0, 3.0]), vec![1.0, 2.5, 2.5, 4.0]);
        // Constant predictions: correlation undefined → 0.
        close(pearson(&[2.0, 2.0, 2.0], &[1.0, 2.0, 3.0]), 0.0);
        close(spearman(&[2.0, 2.0, 2.0], &[1.0, 2.0, 3.0]), 0.0);
    }

    #[test]
    fn metric_applies_only_to_its_output_kind() {
        let c = Outputs::Classes {
            pred: &[1, 0],
            gold: &[1, 1],
        };
        assert_eq!(Metric::Accuracy.compute(c), Some(0.5));
        assert_eq!(Metric::Pearson.compute(c), None);
    }
}
