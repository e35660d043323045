//! Sparsity schedules: the cubic ramp of movement pruning (Zhu & Gupta) between a warm-up
//! and a cool-down step, and the iterative schedules (AGP, linear) that raise the goals
//! every `interval` steps.

use crate::error::{PrunerError, Result};

/// Movement pruning's ramp: 0 up to `warmup`, `1 − (1 − (t − w)/(c − w))³` between
/// `warmup` and `cooldown_begin`, then 1. Scheduled goals are `goal · ratio(t)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cubic {
    /// Last step at ratio 0 (w).
    pub warmup: u64,
    /// First step at ratio 1 (c), after `warmup`.
    pub cooldown_begin: u64,
}

impl Cubic {
    /// The ramp; fails unless `warmup < cooldown_begin`.
    pub fn new(warmup: u64, cooldown_begin: u64) -> Result<Self> {
        if warmup >= cooldown_begin {
            return Err(PrunerError::Settings(format!(
                "warmup_step ({warmup}) must come before cooldown_begin_step ({cooldown_begin})"
            )));
        }
        Ok(Cubic {
            warmup,
            cooldown_begin,
        })
    }

    /// The fraction of the goals in force after `step` optimizer steps.
    pub fn ratio(&self, step: u64) -> f64 {
        if step <= self.warmup {
            0.0
        } else if step >= self.cooldown_begin {
            1.0
        } else {
            let span = (self.cooldown_begin - self.warmup) as f64;
            let left = 1.0 - (step - self.warmup) as f64 / span;
            1.0 - left.powi(3)
        }
    }
}

/// How the goals grow from one update to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Growth {
    /// Automated gradual pruning: `1 − (1 − k/K)³`.
    Agp,
    /// `k/K`.
    Linear,
}

/// An iterative schedule: at steps `interval, 2·interval, …, K·interval` the goals become
/// `goal · growth(k)` and fresh masks are generated (NNI's `AGPPruner` / `LinearPruner`).
/// A one-shot pruner is the case `K = 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Iterative {
    /// The growth curve.
    pub growth: Growth,
    /// Steps between updates.
    pub interval: u64,
    /// Number of updates K.
    pub total_times: u64,
}

impl Iterative {
    /// A schedule; fails when `interval` or `total_times` is 0.
    pub fn new(growth: Growth, interval: u64, total_times: u64) -> Result<Self> {
        if interval == 0 || total_times == 0 {
            return Err(PrunerError::Settings(format!(
                "an iterative schedule needs interval >= 1 and total_times >= 1 (got {interval}, \
                 {total_times})"
            )));
        }
        Ok(Iterative {
            growth,
            interval,
            total_times,
        })
    }

    /// A single update with the full goals after `steps` steps.
    pub fn once(steps: u64) -> Result<Self> {
        Self::new(Growth::Agp, steps, 1)
    }

    /// The fraction of the goals at update `k` (1-based; 0 before the first).
    pub fn ratio(&self, k: u64) -> f64 {
        let x = k.min(self.total_times) as f64 / self.total_times as f64;
        match self.growth {
            Growth::Agp => 1.0 - (1.0 - x).powi(3),
            Growth::Linear => x,
        }
    }

    /// The update `k` due after optimizer step `step`, if one is.
    pub fn update_at(&self, step: u64) -> Option<u64> {
        let k = step / self.interval;
        (step > 0 && step % self.interval == 0 && k <= self.total_times).then_some(k)
    }

    /// Steps the whole schedule spans, `K · interval`.
    pub fn total_steps(&self) -> u64 {
        self.interval * self.total_times
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn agp_goal_half_over_four_updates() {
        // NNI 3.0 with goal 0.5, K = 4, interval 2: 0.289, 0.4375, 0.492, 0.5 at steps 2..8.
        let s = Iterative::new(Growth::Agp, 2, 4).unwrap();
        let got: Vec<(u64, f64)> = (1..=10)
            .filter_map(|t| s.update_at(t).map(|k| (t, 0.5 * s.ratio(k))))
            .collect();
        let want = [
            (2, 0.5 * (1.0 - 0.75f64.powi(3))),
            (4, 0.4375),
            (6, 0.5 * (1.0 - 0.25f64.powi(3))),
            (8, 0.5),
        ];
        assert_eq!(got.len(), 4);
        for ((t, r), (wt, wr)) in got.iter().zip(want) {
            assert_eq!(*t, wt);
            assert!(close(*r, wr), "step {t}: {r} vs {wr}");
        }
        assert_eq!(format!("{:.3}", got[0].1), "0.289");
        assert_eq!(format!("{:.3}", got[2].1), "0.492");
        assert_eq!(s.ratio(0), 0.0);
        let lin = Iterative::new(Growth::Linear, 10, 4).unwrap();
        assert!(close(lin.ratio(3), 0.75));
        assert!(Iterative::new(Growth::Agp, 0, 4).is_err());
    }

    #[test]
    fn cubic_ramp_between_warmup_and_cooldown() {
        let c = Cubic::new(10, 50).unwrap();
        assert_eq!(c.ratio(0), 0.0);
        assert_eq!(c.ratio(10), 0.0);
        assert!(close(c.ratio(20), 1.0 - 0.75f64.powi(3))); // 0.578125
        assert!(close(c.ratio(30), 0.875));
        assert!(close(c.ratio(40), 1.0 - 0.25f64.powi(3))); // 0.984375
        assert_eq!(c.ratio(50), 1.0);
        assert_eq!(c.ratio(1000), 1.0);
        assert!(Cubic::new(5, 5).is_err());
    }
}
