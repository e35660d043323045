//! The latency variant of the search: the fit of a threshold-linear cost to timings, the
//! search with units every layer keeps, and the timing of sub-layers on a tiny model.

use anyhow::Result;
use prune_posttrain::latency::fit;
use prune_posttrain::{Budget, CostModel, Costs, LatencyConfig, LatencyTable, search};
use prune_tensor::CpuBackend;
use prune_tensor::rng::Rng;
use prune_transformer::BertConfig;

#[test]
fn the_fit_recovers_a_planted_threshold_and_slope() {
    let planted = CostModel {
        free: 4,
        base: 2.0,
        slope: 0.5,
    };
    let points: Vec<(usize, f64)> = (1..=12).map(|n| (n, planted.of(n))).collect();
    let got = fit(&points);
    assert_eq!(got.free, 4);
    assert!(
        (got.base - 2.0).abs() < 1e-12 && (got.slope - 0.5).abs() < 1e-12,
        "{got:?}"
    );
    // Time proportional to the count: one unit's time is the base, then the same slope.
    let line: Vec<(usize, f64)> = (1..=8).map(|n| (n * 64, 0.25 * n as f64)).collect();
    let got = fit(&line);
    assert_eq!(got.free, 64);
    assert!((got.of(512) - 2.0).abs() < 1e-12 && (got.slope * 64.0 - 0.25).abs() < 1e-12);
    // A time that falls with the width never gives a negative slope; no point, no cost.
    assert!(fit(&[(1, 3.0), (2, 1.0), (3, 0.5)]).slope >= 0.0);
    assert_eq!(fit(&[(2, f64::NAN)]), CostModel::linear(0.0));
}

#[test]
fn every_layer_keeps_its_free_units_and_the_rest_is_the_best_within_the_budget() {
    let mut rng = Rng::new(4);
    let costs = Costs {
        head: CostModel {
            free: 1,
            base: 3.0,
            slope: 2.0,
        },
        neuron: CostModel {
            free: 2,
            base: 1.0,
            slope: 0.5,
        },
    };
    let forced = 3.0 * (3.0 + 1.0);
    for trial in 0..20 {
        let hf: Vec<Vec<f64>> = (0..3)
            .map(|_| (0..4).map(|_| rng.uniform()).collect())
            .collect();
        let nf: Vec<Vec<f64>> = (0..3)
            .map(|_| (0..6).map(|_| rng.uniform() * 0.4).collect())
            .collect();
        let budget = forced + rng.range(0.0, 30.0);
        let s = search(&hf, &nf, costs, budget);
        assert!(costs.of_selection(&s) <= budget + 1e-12, "trial {trial}");
        for l in 0..3 {
            let top = |f: &[f64], k: usize| {
                let mut order: Vec<usize> = (0..f.len()).collect();
                order.sort_by(|&a, &b| f[b].total_cmp(&f[a]));
                order.truncate(k);
                order
            };
            assert!(top(&hf[l], 1).iter().all(|u| s.heads[l].contains(u)));
            assert!(top(&nf[l], 2).iter().all(|u| s.neurons[l].contains(u)));
        }
        // Brute force over the counts of the other units: the best of each count is its
        // largest importances.
        let rest = |f: &[Vec<f64>], free: usize| {
            let mut v: Vec<f64> = f
                .iter()
                .flat_map(|l| {
                    let mut l = l.clone();
                    l.sort_by(|a, b| b.total_cmp(a));
                    l.split_off(free)
                })
                .collect();
            v.sort_by(|a, b| b.total_cmp(a));
            v
        };
        let (hs, ns) = (rest(&hf, 1), rest(&nf, 2));
        let mut best: f64 = 0.0;
        for h in 0..=hs.len() {
            for n in 0..=ns.len() {
                if forced + 2.0 * h as f64 + 0.5 * n as f64 <= budget {
                    best = best.max(hs[..h].iter().sum::<f64>() + ns[..n].iter().sum::<f64>());
                }
            }
        }
        let score = |sel: &[Vec<usize>], f: &[Vec<f64>], free: usize| -> f64 {
            let all: f64 = sel
                .iter()
                .enumerate()
                .map(|(l, k)| k.iter().map(|&u| f[l][u]).sum::<f64>())
                .sum();
            let forced: f64 = f
                .iter()
                .map(|l| rest(std::slice::from_ref(l), 0)[..free].iter().sum::<f64>())
                .sum();
            all - forced
        };
        let got = score(&s.heads, &hf, 1) + score(&s.neurons, &nf, 2);
        assert!((got - best).abs() < 1e-9, "trial {trial}: {got} vs {best}");
    }
}

#[test]
fn sub_layers_are_timed_at_every_head_count_and_the_asked_widths() -> Result<()> {
    let config = BertConfig::new(40, 32, 2, 4, 24)?;
    let settings = LatencyConfig {
        batch: 2,
        seq: 8,
        neuron_points: 4,
        runs: 1,
    };
    let table = LatencyTable::measure(&CpuBackend::<f32>::new(), &config, &settings)?;
    assert_eq!((table.batch, table.seq), (2, 8));
    let counts = |p: &[(usize, f64)]| p.iter().map(|x| x.0).collect::<Vec<_>>();
    assert_eq!(counts(&table.heads), vec![1, 2, 3, 4]);
    assert_eq!(counts(&table.neurons), vec![6, 12, 18, 24]);
    let times = table.heads.iter().chain(&table.neurons);
    assert!(
        times.clone().all(|p| p.1.is_finite() && p.1 > 0.0),
        "{table:?}"
    );
    let costs = table.costs();
    assert!(costs.head.free >= 1 && costs.neuron.free >= 6, "{costs:?}");
    let bad = LatencyConfig {
        batch: 0,
        ..settings
    };
    assert!(LatencyTable::measure(&CpuBackend::<f32>::new(), &config, &bad).is_err());
    Ok(())
}

#[test]
fn a_ratio_below_the_fixed_costs_is_refused_and_a_foreign_table_is_checked() -> Result<()> {
    // Two layers of 4 heads and 24 neurons; 1 head costs 3 ms, each more 1 ms; up to 6
    // neurons 2 ms, each more 0.25 ms.
    let config = BertConfig::new(40, 32, 2, 4, 24)?;
    let table = LatencyTable {
        batch: 2,
        seq: 8,
        heads: (1..=4).map(|h| (h, 2.0 + h as f64)).collect(),
        neurons: (1..=4)
            .map(|i| (6 * i, 2.0 + 1.5 * (i - 1) as f64))
            .collect(),
        seconds: 0.0,
    };
    table.check(&config)?;
    let costs = table.costs();
    assert_eq!((costs.head.free, costs.neuron.free), (1, 6), "{costs:?}");
    let budget = Budget::Latency(table.clone());
    // The least: every layer 3 + 2 ms, of 6 + 6.5 ms in all.
    let smallest = budget.smallest_ratio(&config);
    assert!((smallest - 5.0 / 12.5).abs() < 1e-12, "{smallest}");
    assert_eq!(costs.least(&[4, 4], &[24, 24]), 10.0);
    budget.check_ratio(&config, smallest)?;
    let e = budget.check_ratio(&config, 0.39).unwrap_err().to_string();
    assert!(e.contains("cannot be met") && e.contains("0.400"), "{e}");
    assert_eq!(Budget::Flops.smallest_ratio(&config), 0.0);

    let broken = |edit: &dyn Fn(&mut LatencyTable)| {
        let mut t = table.clone();
        edit(&mut t);
        t.check(&config).unwrap_err().to_string()
    };
    assert!(broken(&|t| t.heads.clear()).contains("no `heads`"));
    assert!(broken(&|t| t.heads[0].0 = 5).contains("1..=4"));
    assert!(broken(&|t| t.neurons[1].0 = 0).contains("1..=24"));
    assert!(broken(&|t| t.neurons[1].1 = -1.0).contains("≥ 0"));
    assert!(broken(&|t| t.heads[2].1 = f64::INFINITY).contains("`heads`"));
    Ok(())
}
