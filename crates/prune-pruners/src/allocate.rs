//! From metrics to masks (NNI's sparsity generation), with every goal scaled by the
//! schedule's current fraction. In NNI's order, and multiplied together where a weight has
//! several rules: a threshold (`metric ≥ τ`, clamped to the min/max ratios by top-k), then
//! dependency groups (one mask from the members' mean metric), then global groups (all
//! members ranked together, each block weighted by the elements it covers, per-weight
//! bounds respected), then per-weight ratios (prune the `⌊n·r⌋` smallest blocks).

use crate::error::{PrunerError, Result};
use crate::masks::{Masks, ParamMask};
use crate::select::Target;
use std::collections::BTreeMap;

/// Order of blocks by ascending metric (ties by position), NaN last.
fn ascending(metric: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..metric.len()).collect();
    order.sort_by(|&a, &b| metric[a].total_cmp(&metric[b]).then(a.cmp(&b)));
    order
}

/// `⌊n · r⌋` as NNI's `int(n * r)`, for `r` in [0, 1].
fn count(n: usize, r: f64) -> usize {
    ((n as f64 * r.clamp(0.0, 1.0)).floor() as usize).min(n)
}

/// Keep flags pruning the `⌊n·r⌋` blocks of smallest metric.
pub fn keep_top(metric: &[f64], ratio: f64) -> Vec<bool> {
    let mut keep = vec![true; metric.len()];
    for &i in ascending(metric).iter().take(count(metric.len(), ratio)) {
        keep[i] = false;
    }
    keep
}

/// A target's ratio bounds, scaled.
fn bounds(t: &Target, scale: f64) -> (f64, f64) {
    (
        t.min_sparse_ratio.unwrap_or(0.0) * scale,
        t.max_sparse_ratio.unwrap_or(1.0) * scale,
    )
}

/// Keep flags of a threshold rule: `metric ≥ τ`, falling back to top-k when the pruned
/// fraction leaves the `[min, max]` bounds.
fn threshold_keep(t: &Target, metric: &[f64], tau: f64, scale: f64) -> Vec<bool> {
    let keep: Vec<bool> = metric.iter().map(|&m| m >= tau).collect();
    let n = metric.len();
    let pruned = keep.iter().filter(|k| !**k).count();
    let (lo, hi) = bounds(t, scale);
    if t.max_sparse_ratio.is_some() && pruned > count(n, hi) {
        keep_top(metric, hi)
    } else if t.min_sparse_ratio.is_some() && pruned < count(n, lo) {
        keep_top(metric, lo)
    } else {
        keep
    }
}

/// Global allocation over `members` (indices into `targets`) at ratio `r` of their total
/// elements.
fn global_keep(
    targets: &[Target],
    metrics: &[Vec<f64>],
    members: &[usize],
    r: f64,
    scale: f64,
) -> Vec<Vec<bool>> {
    let mut keep: Vec<Vec<bool>> = members
        .iter()
        .map(|&i| vec![true; metrics[i].len()])
        .collect();
    let total: usize = members.iter().map(|&i| targets[i].blocking.numel()).sum();
    let budget = count(total, r);
    let mut entries: Vec<(f64, usize, usize)> = members
        .iter()
        .enumerate()
        .flat_map(|(k, &i)| metrics[i].iter().enumerate().map(move |(j, &m)| (m, k, j)))
        .collect();
    entries.sort_by(|a, b| a.0.total_cmp(&b.0).then((a.1, a.2).cmp(&(b.1, b.2))));
    let mut pruned = vec![0usize; members.len()];
    let caps: Vec<usize> = members
        .iter()
        .map(|&i| count(targets[i].blocking.numel(), bounds(&targets[i], scale).1))
        .collect();
    let mut spent = 0;
    for &(_, k, j) in &entries {
        let grain = targets[members[k]].blocking.grain();
        if spent + grain > budget {
            break;
        }
        if pruned[k] + grain > caps[k] {
            continue;
        }
        keep[k][j] = false;
        pruned[k] += grain;
        spent += grain;
    }
    for (k, &i) in members.iter().enumerate() {
        let t = &targets[i];
        let need = count(t.blocking.numel(), bounds(t, scale).0);
        let grain = t.blocking.grain();
        for j in ascending(&metrics[i]) {
            if pruned[k] >= need {
                break;
            }
            if keep[k][j] {
                keep[k][j] = false;
                pruned[k] += grain;
            }
        }
    }
    keep
}

/// One mask over the channels of a dependency group: each member's metric summed per
/// channel, averaged over the members, the `⌊channels·r⌋` smallest channels pruned; returns
/// each member's block flags.
fn dependency_keep(
    group: &str,
    targets: &[Target],
    metrics: &[Vec<f64>],
    members: &[usize],
    scale: f64,
) -> Result<Vec<Vec<bool>>> {
    let first = &targets[members[0]];
    let n = first.channel_count();
    let mut mean = vec![0.0; n];
    let channels: Vec<Vec<usize>> = members
        .iter()
        .map(|&i| targets[i].block_channels())
        .collect();
    for (&i, ch) in members.iter().zip(&channels) {
        if targets[i].channel_count() != n {
            return Err(PrunerError::Group {
                group: group.to_string(),
                why: format!(
                    "members share one mask, but `{}` has {} channels and `{}` {n}",
                    targets[i].param,
                    targets[i].channel_count(),
                    first.param
                ),
            });
        }
        for (&c, &m) in ch.iter().zip(&metrics[i]) {
            mean[c] += m / members.len() as f64;
        }
    }
    let keep = keep_top(&mean, first.sparse_ratio.unwrap_or(0.0) * scale);
    Ok(channels
        .iter()
        .map(|ch| ch.iter().map(|&c| keep[c]).collect())
        .collect())
}

/// Masks for `targets` from their `metrics` (one value per metric block, larger = more
/// important), with every goal (ratio, threshold, bounds) multiplied by `scale`.
pub fn generate(targets: &[Target], metrics: &[Vec<f64>], scale: f64) -> Result<Masks> {
    if metrics.len() != targets.len() {
        return Err(PrunerError::Settings(format!(
            "{} metrics for {} targets",
            metrics.len(),
            targets.len()
        )));
    }
    for (t, m) in targets.iter().zip(metrics) {
        if m.len() != t.blocking.metric_numel() {
            return Err(PrunerError::Mask {
                name: t.param.clone(),
                why: format!(
                    "{} metric values for {} blocks",
                    m.len(),
                    t.blocking.metric_numel()
                ),
            });
        }
    }
    let mut keep: Vec<Vec<bool>> = metrics.iter().map(|m| vec![true; m.len()]).collect();
    let and = |acc: &mut Vec<bool>, other: &[bool]| {
        acc.iter_mut().zip(other).for_each(|(a, b)| *a &= *b);
    };
    for (i, t) in targets.iter().enumerate() {
        if let Some(tau) = t.sparse_threshold {
            let k = threshold_keep(t, &metrics[i], tau * scale, scale);
            and(&mut keep[i], &k);
        }
    }
    let mut dependency: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut global: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, t) in targets.iter().enumerate() {
        let Some(r) = t.sparse_ratio else { continue };
        if let Some(g) = &t.dependency_group {
            dependency.entry(g).or_default().push(i);
        } else if let Some(g) = &t.global_group {
            global.entry(g).or_default().push(i);
        } else {
            let (lo, hi) = bounds(t, scale);
            let k = keep_top(&metrics[i], (r * scale).clamp(lo, hi));
            and(&mut keep[i], &k);
        }
    }
    for (group, members) in dependency {
        let k = dependency_keep(group, targets, metrics, &members, scale)?;
        for (keep_i, &i) in k.iter().zip(&members) {
            and(&mut keep[i], keep_i);
        }
    }
    for members in global.values() {
        let r = targets[members[0]].sparse_ratio.unwrap_or(0.0) * scale;
        for (k, &i) in global_keep(targets, metrics, members, r, scale)
            .iter()
            .zip(members)
        {
            and(&mut keep[i], k);
        }
    }
    let mut masks = Masks::new();
    for (t, k) in targets.iter().zip(keep) {
        masks.insert(&t.param, ParamMask::new(&t.param, t.blocking.clone(), k)?);
    }
    Ok(masks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::granularity::Blocking;
    use crate::modules::OpType;

    fn target(name: &str, rows: usize, ratio: Option<f64>) -> Target {
        Target {
            module: name.into(),
            param: format!("{name}.weight"),
            op_type: OpType::Linear,
            blocking: Blocking::new(vec![rows, 2], vec![1, 2]).unwrap(),
            entry: 0,
            sparse_ratio: ratio,
            sparse_threshold: None,
            min_sparse_ratio: None,
            max_sparse_ratio: None,
            global_group: None,
            dependency_group: None,
            channels: None,
        }
    }

    fn kept(m: &Masks, name: &str) -> Vec<bool> {
        m.get(&format!("{name}.weight")).unwrap().keep().to_vec()
    }

    #[test]
    fn per_layer_ratio_prunes_the_floor_of_n_r_smallest() {
        let t = [target("a", 5, Some(0.5))];
        let m = generate(&t, &[vec![5.0, 1.0, 4.0, 2.0, 3.0]], 1.0).unwrap();
        assert_eq!(kept(&m, "a"), [true, false, true, false, true]);
        // scaled to a quarter: ⌊5 · 0.125⌋ = 0
        let m = generate(&t, &[vec![5.0, 1.0, 4.0, 2.0, 3.0]], 0.25).unwrap();
        assert!(kept(&m, "a").iter().all(|k| *k));
    }

    #[test]
    fn threshold_with_bounds_falls_back_to_top_k() {
        let mut t = target("a", 4, None);
        t.sparse_threshold = Some(0.5);
        let metric = vec![0.1, 0.2, 0.3, 0.9];
        let m = generate(std::slice::from_ref(&t), std::slice::from_ref(&metric), 1.0).unwrap();
        assert_eq!(kept(&m, "a"), [false, false, false, true]);
        t.max_sparse_ratio = Some(0.5);
        let m = generate(std::slice::from_ref(&t), std::slice::from_ref(&metric), 1.0).unwrap();
        assert_eq!(kept(&m, "a"), [false, false, true, true]);
        t.max_sparse_ratio = None;
        t.sparse_threshold = Some(0.05);
        t.min_sparse_ratio = Some(0.25);
        let m = generate(&[t], &[metric], 1.0).unwrap();
        assert_eq!(kept(&m, "a"), [false, true, true, true]);
    }

    #[test]
    fn global_ranking_respects_the_cap_of_each_member() {
        let mut a = target("a", 4, Some(0.5));
        let mut b = target("b", 4, Some(0.5));
        a.global_group = Some("g".into());
        b.global_group = Some("g".into());
        let metrics = [vec![0.1, 0.2, 0.3, 0.4], vec![5.0, 6.0, 7.0, 8.0]];
        let m = generate(&[a.clone(), b.clone()], &metrics, 1.0).unwrap();
        assert_eq!(kept(&m, "a"), [false; 4]);
        assert_eq!(kept(&m, "b"), [true; 4]);
        a.max_sparse_ratio = Some(0.75);
        let m = generate(&[a, b], &metrics, 1.0).unwrap();
        assert_eq!(kept(&m, "a"), [false, false, false, true]);
        assert_eq!(kept(&m, "b"), [false, true, true, true]);
    }

    #[test]
    fn dependency_group_shares_the_mask_of_the_mean_metric() {
        let mut a = target("a", 4, Some(0.5));
        let mut b = target("b", 4, Some(0.5));
        a.dependency_group = Some("d".into());
        b.dependency_group = Some("d".into());
        let metrics = [vec![0.0, 10.0, 1.0, 1.0], vec![9.0, 0.0, 0.5, 2.0]];
        // means 4.5, 5, 0.75, 1.5: blocks 2 and 3 go in both.
        let m = generate(&[a, b], &metrics, 1.0).unwrap();
        assert_eq!(kept(&m, "a"), [true, true, false, false]);
        assert_eq!(kept(&m, "a"), kept(&m, "b"));
    }
}
