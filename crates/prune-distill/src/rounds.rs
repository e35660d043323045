//! The goals of the iterative loop ([`crate::iterative`]) and what each round keeps: after
//! round `k` of `K` a layer of `F₀` neurons keeps `F₀ − ⌊F₀ · f_k⌋`, `f_k` growing to the
//! goal by the last round ([`RoundGrowth`]); a size target sets the hidden goal
//! ([`IterativeConfig::hidden_goal_for`]).

use crate::error::{DistillError, Result};
use prune_pruners::{Growth, Iterative};
use prune_speedup::widest_hidden_within;
use prune_transformer::BertConfig;
use serde::{Deserialize, Serialize};

/// How the goals grow from round to round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundGrowth {
    /// `goal · (1 − (1 − k/K)³)` (NNI v3's `AGPPruner`).
    #[default]
    Agp,
    /// `goal · k/K`.
    Linear,
    /// `1 − (1 − goal)^(k/K)`: the same fraction of what remains, every round (NNI v2).
    Geometric,
}

/// What becomes of the optimizer's moments when the student is cut.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MomentPolicy {
    /// Cut them like the parameters: the surviving entries keep their history.
    #[default]
    Slice,
    /// Start from zero moments and step count (NNI creates a fresh Adam every round).
    Reset,
}

/// Settings of the iterative loop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IterativeConfig {
    /// Optimizer steps between rounds.
    pub interval: u64,
    /// Number of rounds K; the goals are reached at the last.
    pub rounds: u64,
    /// Growth of the goals.
    pub growth: RoundGrowth,
    /// Fraction of each layer's FFN neurons to remove by the last round: one value for
    /// every layer, or one per layer (NNI: `1 − kept_heads / heads / 2`, e.g. from
    /// `prune_pruners::ffn_sparse_ratios`); 1 leaves `min_ffn` neurons.
    pub ffn: Vec<f64>,
    /// Fraction of the hidden channels to remove by the last round (none when unset); 1
    /// leaves `min_hidden` channels.
    pub hidden: Option<f64>,
    /// Steps before each round whose statistics rank it (unset: every step since the
    /// previous round).
    pub taylor_steps: Option<u64>,
    /// What happens to the optimizer's moments at a cut.
    pub moments: MomentPolicy,
    /// Fewest FFN neurons a layer keeps.
    pub min_ffn: usize,
    /// Fewest hidden channels the student keeps.
    pub min_hidden: usize,
}

impl Default for IterativeConfig {
    fn default() -> Self {
        IterativeConfig {
            interval: 2000,
            rounds: 12,
            growth: RoundGrowth::Agp,
            ffn: vec![0.5],
            hidden: None,
            taylor_steps: None,
            moments: MomentPolicy::Slice,
            min_ffn: 1,
            min_hidden: 1,
        }
    }
}

impl IterativeConfig {
    /// Checks the settings against a student of `layers` layers.
    pub fn validate(&self, layers: usize) -> Result<()> {
        let bad = |why: String| Err(DistillError::Config(why));
        if self.interval == 0 || self.rounds == 0 {
            return bad(format!(
                "interval ({}) and rounds ({}) must be at least 1",
                self.interval, self.rounds
            ));
        }
        if self.ffn.len() != 1 && self.ffn.len() != layers {
            return bad(format!(
                "ffn has {} goals; give one, or one per layer ({layers})",
                self.ffn.len()
            ));
        }
        let goals = self.ffn.iter().chain(self.hidden.iter());
        if let Some(g) = goals.into_iter().find(|g| !(0.0..=1.0).contains(*g)) {
            return bad(format!("goal {g} is not a fraction in [0, 1]"));
        }
        if self.taylor_steps == Some(0) {
            return bad("taylor_steps must be at least 1".into());
        }
        if self.min_ffn == 0 || self.min_hidden == 0 {
            return bad("min_ffn and min_hidden must be at least 1".into());
        }
        Ok(())
    }

    /// The hidden goal that leaves a student with `config` (with or without pooler and
    /// classifier) at most `target` parameters once every goal is reached: the widest hidden
    /// width that fits beside the last round's FFN widths (`None`: the full width fits). An
    /// error when that width is below `min_hidden`.
    pub fn hidden_goal_for(
        &self,
        config: &BertConfig,
        pooler: bool,
        classifier: bool,
        target: usize,
    ) -> Result<Option<f64>> {
        let mut last = config.clone();
        last.layer_intermediate = (0..config.num_hidden_layers)
            .map(|l| {
                let f = config.intermediate(l);
                self.keep(f, self.ffn_goal(l), self.rounds, self.min_ffn)
            })
            .collect();
        let width = config.hidden();
        match widest_hidden_within(&last, pooler, classifier, target) {
            Some(h) if h < self.min_hidden => Err(DistillError::Config(format!(
                "leaving at most {target} parameters needs a hidden width of {h}, below \
                 min_hidden = {}",
                self.min_hidden
            ))),
            None => Err(DistillError::Config(format!(
                "no hidden width leaves at most {target} parameters beside FFN widths {:?}",
                last.layer_intermediate
            ))),
            Some(h) if h >= width => Ok(None),
            Some(h) => Ok(Some(exact_ratio(width, h))),
        }
    }

    /// The FFN goal of layer `l`.
    pub(crate) fn ffn_goal(&self, l: usize) -> f64 {
        self.ffn.get(l).or(self.ffn.first()).copied().unwrap_or(0.0)
    }

    /// The fraction of `goal` removed after round `k`.
    fn fraction(&self, goal: f64, k: u64) -> f64 {
        let growth = match self.growth {
            RoundGrowth::Agp => Growth::Agp,
            RoundGrowth::Linear => Growth::Linear,
            RoundGrowth::Geometric => {
                let x = k.min(self.rounds) as f64 / self.rounds as f64;
                return 1.0 - (1.0 - goal).powf(x);
            }
        };
        let schedule = Iterative {
            growth,
            interval: self.interval,
            total_times: self.rounds,
        };
        goal * schedule.ratio(k)
    }

    /// Channels left of `original` after round `k` at `goal`, at least `min`.
    pub(crate) fn keep(&self, original: usize, goal: f64, k: u64, min: usize) -> usize {
        let removed = (original as f64 * self.fraction(goal, k)).floor() as usize;
        original.saturating_sub(removed).max(min).min(original)
    }
}

/// FFN widths of every layer.
pub(crate) fn ffn_widths(config: &BertConfig) -> Vec<usize> {
    (0..config.num_hidden_layers)
        .map(|l| config.intermediate(l))
        .collect()
}

/// `(n − keep + ½) / n`: the ratio whose `⌊n · r⌋` removes exactly `n − keep` of `n`.
pub(crate) fn exact_ratio(n: usize, keep: usize) -> f64 {
    (n - keep) as f64 / n as f64 + 0.5 / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_grow_to_their_target_by_the_last_round() {
        let c = IterativeConfig {
            rounds: 4,
            interval: 10,
            ..IterativeConfig::default()
        };
        let keeps: Vec<usize> = (1..=4).map(|k| c.keep(64, 0.5, k, 1)).collect();
        // AGP: 0.5 · (1 − (1 − k/4)³) of 64 removed, floored.
        assert_eq!(keeps, [46, 36, 33, 32]);
        let geo = IterativeConfig {
            growth: RoundGrowth::Geometric,
            ..c.clone()
        };
        let keeps: Vec<usize> = (1..=4).map(|k| geo.keep(64, 0.75, k, 1)).collect();
        assert_eq!(keeps, [46, 32, 23, 16]);
        assert_eq!(c.keep(64, 0.99, 4, 8), 8);
        assert_eq!(c.keep(64, 1.0, 4, 1), 1);
        assert_eq!(geo.keep(64, 1.0, 1, 1), 1);
        for (n, keep) in [(64, 46), (3072, 1536), (7, 1), (5, 4)] {
            let r = exact_ratio(n, keep);
            assert!(r < 1.0);
            assert_eq!((n as f64 * r).floor() as usize, n - keep);
        }
    }

    #[test]
    fn rejects_settings_that_cannot_work() {
        let ok = IterativeConfig::default();
        ok.validate(12).unwrap();
        let e = IterativeConfig {
            ffn: vec![0.5, 0.5],
            ..ok.clone()
        }
        .validate(12)
        .unwrap_err();
        assert!(e.to_string().contains("one per layer (12)"), "{e}");
        let e = IterativeConfig {
            hidden: Some(1.5),
            ..ok.clone()
        }
        .validate(12)
        .unwrap_err();
        assert!(e.to_string().contains("goal 1.5"), "{e}");
        assert!(
            IterativeConfig {
                interval: 0,
                ..ok.clone()
            }
            .validate(12)
            .is_err()
        );
        let json = serde_json::to_string(&ok).unwrap();
        assert_eq!(serde_json::from_str::<IterativeConfig>(&json).unwrap(), ok);
    }

    #[test]
    fn a_size_target_sets_the_hidden_goal_to_the_widest_width_that_fits() {
        let config = BertConfig::new(100, 32, 2, 4, 64).unwrap();
        let c = IterativeConfig {
            ffn: vec![0.5],
            rounds: 3,
            ..IterativeConfig::default()
        };
        let size = |h: usize| {
            let mut m = config.clone();
            m.layer_intermediate = vec![32, 32];
            m.kept_hidden_size = h;
            prune_speedup::ModelStats::of(&m, true, true, 1).parameters
        };
        let goal = c.hidden_goal_for(&config, true, true, size(20) + 1);
        assert_eq!(c.keep(32, goal.unwrap().unwrap(), 3, 1), 20);
        assert_eq!(
            c.hidden_goal_for(&config, true, true, size(32)).unwrap(),
            None
        );
        let e = c
            .hidden_goal_for(&config, true, true, size(1) - 1)
            .unwrap_err();
        assert!(e.to_string().contains("FFN widths [32, 32]"), "{e}");
        let floor = IterativeConfig {
            min_hidden: 24,
            ..c.clone()
        };
        let e = floor.hidden_goal_for(&config, true, true, size(20) + 1);
        assert!(e.unwrap_err().to_string().contains("min_hidden = 24"));
    }
}
