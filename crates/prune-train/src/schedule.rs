//! Learning-rate schedules: linear warm-up then linear decay to zero (BERT's and NNI's).

use serde::{Deserialize, Serialize};

/// Linear warm-up from 0 to `peak` over `warmup_steps`, then linear decay to 0 at
/// `total_steps` (transformers' `get_linear_schedule_with_warmup`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearSchedule {
    /// Largest learning rate, reached at the end of warm-up.
    pub peak: f64,
    /// Optimizer steps of warm-up.
    pub warmup_steps: u64,
    /// Total optimizer steps; the rate is 0 from here on.
    pub total_steps: u64,
}

impl LinearSchedule {
    /// The learning rate for the optimizer step with 0-based index `step`.
    pub fn lr(&self, step: u64) -> f64 {
        let (s, w, t) = (
            step as f64,
            self.warmup_steps as f64,
            self.total_steps as f64,
        );
        let factor = if step < self.warmup_steps {
            s / w.max(1.0)
        } else {
            ((t - s) / (t - w).max(1.0)).max(0.0)
        };
        self.peak * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays_like_transformers() {
        let s = LinearSchedule {
            peak: 1e-3,
            warmup_steps: 10,
            total_steps: 110,
        };
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(5) - 5e-4).abs() < 1e-15);
        assert!((s.lr(10) - 1e-3).abs() < 1e-15);
        assert!((s.lr(60) - 5e-4).abs() < 1e-15);
        assert_eq!(s.lr(110), 0.0);
        assert_eq!(s.lr(500), 0.0);
        let no_warmup = LinearSchedule {
            peak: 2.0,
            warmup_steps: 0,
            total_steps: 4,
        };
        assert_eq!(no_warmup.lr(0), 2.0);
        assert_eq!(no_warmup.lr(2), 1.0);
    }
}
