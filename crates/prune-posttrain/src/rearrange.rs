//! Mask rearrangement (Kwon et al. 2022, §4.3): within a layer, keeping the number of
//! pruned units, the pruned set is chosen to make the loss change small when the units'
//! interactions count: with `gⱼ` the per-batch mask gradients of unit `j`, the objective is
//! `‖Σⱼ∈pruned gⱼ‖²` (the Fisher information of the pruned set, off-diagonal terms
//! included). Greedy: start from the lowest diagonal Fisher, visit every other unit once in
//! ascending Fisher order, add it, and drop the member whose removal leaves the smallest
//! objective (possibly the one just added), so the objective never rises.

use ndarray::{Array1, Array2};

/// `‖Σⱼ∈set gⱼ‖²` for the rows `set` of `grads` (`[units, batches]`).
pub fn objective(grads: &Array2<f64>, set: &[usize]) -> f64 {
    let sum = set
        .iter()
        .fold(Array1::zeros(grads.ncols()), |acc, &j| acc + grads.row(j));
    sum.dot(&sum)
}

/// The `pruned` units of a layer to remove, ascending, from the per-batch gradients
/// `grads` (`[units, batches]`) of its units.
pub fn rearrange(grads: &Array2<f64>, pruned: usize) -> Vec<usize> {
    let n = grads.nrows();
    let mut order: Vec<usize> = (0..n).collect();
    let fisher: Vec<f64> = grads.rows().into_iter().map(|r| r.dot(&r)).collect();
    order.sort_by(|&a, &b| fisher[a].total_cmp(&fisher[b]).then(a.cmp(&b)));
    if pruned == 0 || pruned >= n {
        let mut set = order[..pruned.min(n)].to_vec();
        set.sort_unstable();
        return set;
    }
    let mut set = order[..pruned].to_vec();
    let mut sum = set
        .iter()
        .fold(Array1::zeros(grads.ncols()), |acc, &j| acc + grads.row(j));
    for &j in &order[pruned..] {
        sum += &grads.row(j);
        set.push(j);
        let norm = sum.dot(&sum);
        // ‖s − g_c‖² = ‖s‖² − 2 s·g_c + ‖g_c‖²
        let (at, _) = set
            .iter()
            .enumerate()
            .map(|(k, &c)| (k, norm - 2.0 * sum.dot(&grads.row(c)) + fisher[c]))
            .fold(
                (0, f64::INFINITY),
                |best, x| if x.1 < best.1 { x } else { best },
            );
        let c = set.swap_remove(at);
        sum -= &grads.row(c);
    }
    set.sort_unstable();
    set
}
